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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from taulib.extraction import TracedBlock
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

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


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
    sums = {"clean": 0.0, "zero": 0.0, "kl_zero": 0.0}
    sae_ce, sae_kl = [0.0] * len(saes), [0.0] * len(saes)
    n_ce = n_kl = 0
    for start in range(0, sequences.shape[0], batch_size):
        ids = sequences[start : start + batch_size].to(model.device)
        is_bos = ids == bos
        ce_mask, kl_mask = ~is_bos[:, :-1], ~is_bos
        clean_log_probs = torch.log_softmax(model.logits(ids), dim=-1)
        clean_probs = clean_log_probs.exp()
        clean_entropy_term = (clean_probs * clean_log_probs).sum(dim=-1)
        sums["clean"] += float(-clean_log_probs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)[ce_mask].double().sum())
        del clean_log_probs
        ce, kl = _per_token_losses(model.logits(ids, torch.zeros_like), ids, clean_probs, clean_entropy_term)
        sums["zero"] += float(ce[ce_mask].double().sum())
        sums["kl_zero"] += float(kl[kl_mask].double().sum())
        for index, sae in enumerate(saes):
            ce, kl = _per_token_losses(model.logits(ids, _sae_replacement(sae, is_bos)), ids, clean_probs, clean_entropy_term)
            sae_ce[index] += float(ce[ce_mask].double().sum())
            sae_kl[index] += float(kl[kl_mask].double().sum())
            if progress is not None:
                progress(1)
        n_ce += int(ce_mask.sum())
        n_kl += int(kl_mask.sum())
    clean, zero, kl_zero = sums["clean"] / n_ce, sums["zero"] / n_ce, sums["kl_zero"] / n_kl
    results = []
    for ce_total, kl_total in zip(sae_ce, sae_kl, strict=True):
        ce, kl = ce_total / n_ce, kl_total / n_kl
        results.append(
            DownstreamMetrics(
                n_tokens=n_ce,
                ce_loss_clean=clean,
                ce_loss_with_sae=ce,
                ce_loss_with_ablation=zero,
                ce_loss_score=(zero - ce) / (zero - clean),
                kl_div_with_sae=kl,
                kl_div_with_ablation=kl_zero,
                kl_div_score=(kl_zero - kl) / kl_zero,
            )
        )
    return results
