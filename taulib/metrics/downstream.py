"""Downstream cost of an SAE: the model's loss with the reconstruction spliced in at the hooked layer.

Through nnsight, the residual stream after decoder block `layer` is replaced by the SAE's
reconstruction (BOS positions keep their original value, as the SAE never saw them) and the
forward pass continues to the logits. Following SAE Bench:

    CE-loss score = (CE_zero − CE_sae) / (CE_zero − CE_clean)
    KL score      = (KL_zero − KL_sae) / KL_zero,  KL_* = KL(p_clean ‖ p_*) per token

where "zero" replaces the whole residual stream at that layer by zeros. A perfect reconstruction
scores 1 on both; one no better than zero-ablation scores 0. Losses are averaged over positions
whose input token is not BOS. The clean and zero-ablated passes are run once per batch and
shared by every SAE evaluated in the same call (e.g. all checkpoints of a run).

Every loss is also kept per held-out sequence (`SequenceLosses`), so that the scores' sampling
error over the evaluation text can be bootstrapped (resampling sequences, the unit the text was
drawn in), and so that two calls on disjoint sequences combine exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from taulib.activations.extraction import TracedBlock
from taulib.sae import SparseAutoencoder


@dataclass(frozen=True)
class DownstreamMetrics:
    n_tokens: int
    ce_loss_clean: float
    ce_loss_with_sae: float
    ce_loss_with_ablation: float
    ce_loss_score: float
    kl_div_with_sae: float
    kl_div_with_ablation: float
    kl_div_score: float
    per_sequence: SequenceLosses | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        return {key: value for key, value in asdict(self).items() if key != "per_sequence"}


@dataclass(frozen=True)
class SequenceLosses:
    """Per held-out sequence: the summed cross-entropy of the clean, zero-ablated and spliced
    forwards, the summed KLs to the clean distribution, and the positions each sum covers."""

    clean: np.ndarray
    zero: np.ndarray
    sae: np.ndarray
    kl_zero: np.ndarray
    kl_sae: np.ndarray
    n_ce: np.ndarray
    n_kl: np.ndarray

    def __len__(self) -> int:
        return len(self.clean)

    def metrics(self, sequences: np.ndarray | None = None) -> DownstreamMetrics:
        """The scores over `sequences` (indices, repeats allowed: a bootstrap sample), default all."""
        pick = slice(None) if sequences is None else np.asarray(sequences)
        total = {f.name: float(np.sum(getattr(self, f.name)[pick], dtype=np.float64)) for f in fields(self)}
        clean, zero, ce = total["clean"] / total["n_ce"], total["zero"] / total["n_ce"], total["sae"] / total["n_ce"]
        kl_zero, kl = total["kl_zero"] / total["n_kl"], total["kl_sae"] / total["n_kl"]
        return DownstreamMetrics(
            n_tokens=int(total["n_ce"]),
            ce_loss_clean=clean,
            ce_loss_with_sae=ce,
            ce_loss_with_ablation=zero,
            ce_loss_score=(zero - ce) / (zero - clean),
            kl_div_with_sae=kl,
            kl_div_with_ablation=kl_zero,
            kl_div_score=(kl_zero - kl) / kl_zero,
            per_sequence=self if sequences is None else None,
        )

    def concat(self, other: SequenceLosses) -> SequenceLosses:
        return SequenceLosses(**{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})

    def bootstrap_intervals(self, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
        """Percentile intervals of the CE-loss and KL scores over resampled sequences: the error the
        evaluation text alone puts on them."""
        rng = np.random.default_rng(seed)
        draws = [self.metrics(rng.integers(0, len(self), len(self))) for _ in range(n_resamples)]
        tails = (100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2)
        ce_low, ce_high = np.percentile([d.ce_loss_score for d in draws], tails)
        kl_low, kl_high = np.percentile([d.kl_div_score for d in draws], tails)
        return {"ce_loss_score_low": float(ce_low), "ce_loss_score_high": float(ce_high), "kl_div_score_low": float(kl_low), "kl_div_score_high": float(kl_high)}

    def to_lists(self) -> dict[str, list[float]]:
        return {f.name: getattr(self, f.name).tolist() for f in fields(self)}

    @classmethod
    def from_lists(cls, data: dict[str, list[float]]) -> SequenceLosses:
        return cls(**{f.name: np.asarray(data[f.name], dtype=float) for f in fields(cls)})


Replacement = Callable[[torch.Tensor], torch.Tensor]


class SplicedModel(TracedBlock):
    """A causal LM whose residual stream after one block can be replaced, through nnsight."""

    @torch.inference_mode()
    def logits(self, input_ids: torch.Tensor, replacement: Replacement | None = None) -> torch.Tensor:
        """Float32 logits (batch, seq, vocab); `replacement` maps the layer's residual (batch, seq, d) to a new one."""
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": torch.ones_like(input_ids, device=self.device)}
        with self._autocast():
            with self.traced.trace(inputs):
                if replacement is not None:
                    layer = self._layer_envoy()
                    output = layer.output
                    # transformers 5 decoder layers return a tensor; older ones and other families a tuple
                    if isinstance(output, tuple):
                        layer.output = (replacement(output[0]), *output[1:])
                    else:
                        layer.output = replacement(output)
                result = self.traced.output.save()
        return result.logits.float()


def _per_token_losses(
    logits: torch.Tensor, input_ids: torch.Tensor, clean_probs: torch.Tensor | None = None, clean_entropy_term: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cross-entropy of predicting token t+1 at position t (batch, seq − 1), and, given the clean
    distribution, KL(p_clean ‖ p) per position (batch, seq) = Σ p_clean log p_clean − Σ p_clean log p."""
    log_probs = torch.log_softmax(logits, dim=-1)
    ce = -log_probs[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    kl = None if clean_probs is None else clean_entropy_term - (clean_probs * log_probs).sum(dim=-1)
    return ce, kl


def _sae_replacement(sae: SparseAutoencoder, keep_original: torch.Tensor) -> Replacement:
    def replace(residual: torch.Tensor) -> torch.Tensor:
        reconstruction = sae(residual.float())[0].to(residual.dtype)
        return torch.where(keep_original[..., None].to(residual.device), residual, reconstruction)

    return replace


@torch.no_grad()
def downstream_metrics(
    model: SplicedModel, sequences: torch.Tensor, saes: Sequence[SparseAutoencoder], batch_size: int = 4, progress: Callable[[int], None] | None = None
) -> list[DownstreamMetrics]:
    """CE/KL metrics of each SAE (in raw units) on `sequences` (n, seq) of token ids starting with BOS.

    The SAEs are moved to the model's device (in place, as `Module.to` does)."""
    if sequences.ndim != 2 or sequences.shape[1] < 2:
        raise ValueError(f"sequences must be (n, seq ≥ 2) token ids, got shape {tuple(sequences.shape)}")
    bos = model.loaded.bos_token_id
    saes = [sae.to(model.device) for sae in saes]  # the splice runs where the language model runs
    shared: dict[str, list[np.ndarray]] = {"clean": [], "zero": [], "kl_zero": [], "n_ce": [], "n_kl": []}
    per_sae: list[dict[str, list[np.ndarray]]] = [{"sae": [], "kl_sae": []} for _ in saes]

    def row_sums(values: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        return (values.double() * mask).sum(dim=1).cpu().numpy()

    for start in range(0, sequences.shape[0], batch_size):
        ids = sequences[start : start + batch_size].to(model.device)
        is_bos = ids == bos
        ce_mask, kl_mask = ~is_bos[:, :-1], ~is_bos
        clean_log_probs = torch.log_softmax(model.logits(ids), dim=-1)
        clean_probs = clean_log_probs.exp()
        clean_entropy_term = (clean_probs * clean_log_probs).sum(dim=-1)
        shared["clean"].append(row_sums(-clean_log_probs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1), ce_mask))
        del clean_log_probs
        ce, kl = _per_token_losses(model.logits(ids, torch.zeros_like), ids, clean_probs, clean_entropy_term)
        shared["zero"].append(row_sums(ce, ce_mask))
        shared["kl_zero"].append(row_sums(kl, kl_mask))
        for index, sae in enumerate(saes):
            ce, kl = _per_token_losses(model.logits(ids, _sae_replacement(sae, is_bos)), ids, clean_probs, clean_entropy_term)
            per_sae[index]["sae"].append(row_sums(ce, ce_mask))
            per_sae[index]["kl_sae"].append(row_sums(kl, kl_mask))
            if progress is not None:
                progress(1)
        shared["n_ce"].append(ce_mask.sum(dim=1).cpu().numpy().astype(float))
        shared["n_kl"].append(kl_mask.sum(dim=1).cpu().numpy().astype(float))
    common = {key: np.concatenate(parts) for key, parts in shared.items()}
    return [SequenceLosses(**common, **{key: np.concatenate(parts) for key, parts in own.items()}).metrics() for own in per_sae]
