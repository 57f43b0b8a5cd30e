"""Downstream cost of an SAE: the model's loss with the reconstruction spliced in at the hooked layer.

Through nnsight, the residual stream after decoder block `layer` is replaced by the SAE's
reconstruction (BOS positions keep their original value, as the SAE never saw them) and the
forward pass continues to the logits. Following SAE Bench:

    CE-loss score = (CE_zero − CE_sae) / (CE_zero − CE_clean)
    KL score      = (KL_zero − KL_sae) / KL_zero,  KL_* = KL(p_clean ‖ p_*) per token

where "zero" replaces the whole residual stream at that layer by zeros. A perfect reconstruction
scores 1 on both; one no better than zero-ablation scores 0. Losses are averaged over positions
whose input token is not BOS.

The forward up to the hooked block, and the clean and zero-ablated losses, do not depend on the
SAE: `splice_reference` computes them once per model, layer and held-out sequences (the evaluation
caches it with its data). Each SAE's splice then runs only the blocks after the hooked one, the
final norm and the unembedding, on the spliced residual (`SplicedModel.logits_from_residual`).
`downstream_metrics_full_forward` (tests/references.py), whole forwards spliced through nnsight, is the reference the
split forward is tested against.

KL needs the clean distribution at every position, too large to keep (16k positions × 262k words).
When the logits are the unembedding's output itself (logits = h·Wᵀ + b, no soft-capping after it),
the reference keeps two things per position instead, and no SAE's splice recomputes the clean logits:

    m = Σ_v p_clean(v)·W_v  (the clean distribution's expected unembedding row, d numbers)
    KL(p_clean ‖ p_sae) = logsumexp(logits_sae) − logsumexp(logits_clean) − (h_sae − h_clean)·m

(h: the unembedding's input; the bias cancels). It is exact algebra, and 0 when the residual is left
as it was; tests/test_metrics_downstream.py checks it against the distributions themselves. A model
whose logits are not linear in h (Gemma 2's soft-capping) falls back to the clean logits per batch.

Every loss is also kept per part of a held-out sequence that one document fills (`SequenceLosses`:
a position's loss belongs to the document of the token it reads, taulib.corpus.stream), so that the
scores' sampling error over the evaluation text can be bootstrapped by resampling documents, the unit
the text was drawn in (a document spans many sequences), and so that two calls on disjoint sequences
combine exactly. Sequences whose documents are not given are each their own document.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from taulib import atomic
from taulib.activations.extraction import ResidualReader
from taulib.activations.models import decoder_layers
from taulib.sae import SparseAutoencoder
from taulib.train.kernels import onednn_matmul, uses_onednn


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


LOSS_FIELDS = ("clean", "zero", "sae", "kl_zero", "kl_sae", "n_ce", "n_kl")


@dataclass(frozen=True)
class SequenceLosses:
    """Per unit of the held-out text (the part of one sequence that one document fills; a whole
    sequence where documents are unknown): the summed cross-entropy of the clean, zero-ablated and
    spliced forwards, the summed KLs to the clean distribution, the positions each sum covers, and
    each unit's document (None: each unit is its own)."""

    clean: np.ndarray
    zero: np.ndarray
    sae: np.ndarray
    kl_zero: np.ndarray
    kl_sae: np.ndarray
    n_ce: np.ndarray
    n_kl: np.ndarray
    document: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.clean)

    def metrics(self, units: np.ndarray | None = None) -> DownstreamMetrics:
        """The scores over `units` (indices, repeats allowed: a bootstrap sample), default all."""
        pick = slice(None) if units is None else np.asarray(units)
        total = {name: float(np.sum(getattr(self, name)[pick], dtype=np.float64)) for name in LOSS_FIELDS}
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
            per_sequence=self if units is None else None,
        )

    @property
    def documents_known(self) -> bool:
        return self.document is not None

    def by_document(self) -> SequenceLosses:
        """One unit per document that has a scored position, in document order: the units a bootstrap
        of the text resamples. Units without documents are each their own."""
        if self.document is None:
            return self
        documents, unit_document = np.unique(self.document, return_inverse=True)
        sums = {name: np.bincount(unit_document, weights=getattr(self, name), minlength=len(documents)) for name in LOSS_FIELDS}
        scored = (sums["n_ce"] > 0) | (sums["n_kl"] > 0)
        return SequenceLosses(**{name: values[scored] for name, values in sums.items()}, document=documents[scored])

    def concat(self, other: SequenceLosses) -> SequenceLosses:
        if self.documents_known != other.documents_known:
            raise ValueError("one part's documents are known and the other's are not: they cannot be resampled together")
        document = None if self.document is None else np.concatenate([self.document, other.document])
        return SequenceLosses(**{name: np.concatenate([getattr(self, name), getattr(other, name)]) for name in LOSS_FIELDS}, document=document)

    def bootstrap_intervals(self, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
        """Percentile intervals of the CE-loss and KL scores over resampled documents: the error the
        evaluation text alone puts on them."""
        documents = self.by_document()
        rng = np.random.default_rng(seed)
        draws = [documents.metrics(rng.integers(0, len(documents), len(documents))) for _ in range(n_resamples)]
        tails = (100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2)
        ce_low, ce_high = np.percentile([d.ce_loss_score for d in draws], tails)
        kl_low, kl_high = np.percentile([d.kl_div_score for d in draws], tails)
        return {"ce_loss_score_low": float(ce_low), "ce_loss_score_high": float(ce_high), "kl_div_score_low": float(kl_low), "kl_div_score_high": float(kl_high)}

    def to_lists(self) -> dict[str, list[float]]:
        lists = {name: getattr(self, name).tolist() for name in LOSS_FIELDS}
        return lists if self.document is None else lists | {"document": self.document.tolist()}

    @classmethod
    def from_lists(cls, data: dict[str, list[float]]) -> SequenceLosses:
        document = None if data.get("document") is None else np.asarray(data["document"], dtype=np.int64)
        return cls(**{name: np.asarray(data[name], dtype=float) for name in LOSS_FIELDS}, document=document)


Replacement = Callable[[torch.Tensor], torch.Tensor]


class _GivenResidual(nn.Module):
    """Stands in for a decoder block up to the hooked one: whatever it is given, it returns the residual."""

    def __init__(self, residual: torch.Tensor, as_tuple: bool, block: nn.Module) -> None:
        super().__init__()
        self.residual, self.as_tuple = residual, as_tuple
        if hasattr(block, "attention_type"):  # some model families pick a block's attention mask by it
            self.attention_type = block.attention_type

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return (self.residual,) if self.as_tuple else self.residual


class SplicedModel(ResidualReader):
    """A causal LM whose residual stream after block `layer` can be replaced.

    `logits` runs the whole forward and replaces the block's output through nnsight (the reference);
    `logits_from_residual` runs only what comes after the block, from a given residual: the model's
    own forward with blocks 0…layer standing in (they return the residual), so the position
    embeddings, attention masks (sliding windows included), final norm and any logit soft-capping
    are the model's own. `residuals` (the forward up to the block) and the later blocks split the
    full forward in two; tests/test_metrics_downstream.py checks the two against each other."""

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

    @contextlib.contextmanager
    def weights_cast_once(self) -> Iterator[None]:
        """Under a lower-precision autocast, the linear weights after the hooked block (the unembedding's
        included) cast to it once for the duration, not at every forward: autocast casts them the same
        way, so the logits are the same, without re-casting the 262k-row unembedding each time."""
        if self.autocast is None or self.autocast == torch.float32:
            yield
            return
        layers = decoder_layers(self.loaded.model)
        later = [module for block in list(layers)[self.loaded.layer + 1 :] for module in block.modules()]
        linears = [module for module in [*later, self.loaded.model.get_output_embeddings()] if isinstance(module, nn.Linear)]
        saved = [(module, module.weight, module.bias) for module in linears]
        try:
            for module, weight, bias in saved:
                module.weight = nn.Parameter(weight.detach().to(self.autocast), requires_grad=False)
                if bias is not None:
                    module.bias = nn.Parameter(bias.detach().to(self.autocast), requires_grad=False)
        except BaseException:
            self._restore(saved)
            raise
        try:
            yield
        finally:
            self._restore(saved)

    @contextlib.contextmanager
    def unembedding_on_onednn(self) -> Iterator[None]:
        """Without autocast on a CPU, the unembedding's float32 matmul on oneDNN for the duration, where
        taulib.train.kernels would put a product that wide (its output spans the vocabulary, the shape
        at which oneDNN beats torch's BLAS: benchmarks/RESULTS.md, "Training and extraction against the
        matmul ceiling"); elsewhere, and for inputs of another dtype, the model's own. The same products,
        summed in another order: the logits agree to float32 rounding (tested)."""
        head = self.loaded.model.get_output_embeddings()
        # (the weight's first row stands in for the input: uses_onednn reads only its device and dtype)
        if self.autocast is not None or type(head) is not nn.Linear or not uses_onednn(head.weight[:1], head.weight.t()):
            yield
            return

        def forward(hidden: torch.Tensor) -> torch.Tensor:
            if hidden.dtype != torch.float32 or head.weight.dtype != torch.float32:
                return nn.Linear.forward(head, hidden)
            flat = onednn_matmul(hidden.reshape(-1, hidden.shape[-1]), head.weight.t(), head.bias)
            return flat.reshape(*hidden.shape[:-1], flat.shape[-1])

        head.forward = forward
        try:
            yield
        finally:
            del head.forward

    @staticmethod
    def _restore(saved: list[tuple[nn.Linear, nn.Parameter, nn.Parameter | None]]) -> None:
        for module, weight, bias in saved:  # the original parameters: the unembedding is tied to the embedding again
            module.weight, module.bias = weight, bias

    def residuals(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, seq, d) residual after block `layer` of unpadded sequences (the forward stops there)."""
        return self(input_ids, torch.ones_like(input_ids))

    def logits_from_residual(self, input_ids: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Float32 logits (batch, seq, vocab) of `input_ids` whose residual after block `layer` is `residual`."""
        return self.head_from_residual(input_ids, residual).logits.float()

    @torch.inference_mode()
    def head_from_residual(self, input_ids: torch.Tensor, residual: torch.Tensor) -> HeadOutput:
        """The logits in the forward's own dtype (vocabulary-wide: not copied to float32), the unembedding's
        input, and whether the logits are its output unchanged."""
        if residual.shape[:2] != input_ids.shape:
            raise ValueError(f"residual {tuple(residual.shape)} does not match input_ids {tuple(input_ids.shape)}")
        if self.block_returns_tuple is None:
            self.residuals(input_ids[:1, :2])  # learns what the blocks return
        input_ids = input_ids.to(self.device)
        layers = decoder_layers(self.loaded.model)
        originals = [layers[i] for i in range(self.loaded.layer + 1)]
        residual = residual.to(self.device)
        captured: dict[str, torch.Tensor] = {}

        def capture(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            captured["hidden"], captured["head"] = inputs[0], output

        hook = self.loaded.model.get_output_embeddings().register_forward_hook(capture)
        try:
            for i, block in enumerate(originals):
                layers[i] = _GivenResidual(residual, bool(self.block_returns_tuple), block)
            with self._autocast():
                output = self.loaded.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False)
        finally:
            hook.remove()
            for i, block in enumerate(originals):
                layers[i] = block
        logits, head = output.logits, captured["head"]
        # one position's logits tell a soft-capped (or otherwise rescaled) head apart
        linear = head.shape == logits.shape and bool(torch.equal(head[:, :1], logits[:, :1]))
        return HeadOutput(logits, captured["hidden"].float(), linear)


@dataclass(frozen=True)
class HeadOutput:
    logits: torch.Tensor  # (batch, seq, vocab) in the forward's dtype
    hidden: torch.Tensor  # (batch, seq, d) float32: the unembedding's input
    linear: bool  # the logits are the unembedding's output, unchanged (no soft-capping after it)


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


def _unit_sums(values: torch.Tensor, mask: torch.Tensor, offsets: torch.Tensor, units_per_sequence: int) -> np.ndarray:
    """Per sequence and document offset (batch, units_per_sequence): the sum of `values` (batch, positions)
    over the masked positions whose document is that many after the sequence's first (`offsets`, aligned
    with `values`)."""
    sums = torch.zeros(values.shape[0], units_per_sequence, dtype=torch.float64, device=values.device)
    return sums.scatter_add_(1, offsets.to(values.device), values.double() * mask).cpu().numpy()


def _document_offsets(documents: torch.Tensor) -> torch.Tensor:
    """Each position's document counted from its sequence's first (documents never decrease along a sequence)."""
    return documents - documents[:, :1]


def check_documents(documents: torch.Tensor, sequences: torch.Tensor) -> int:
    """The units per sequence `documents` (n, seq: each position's document) split the sequences into; an error
    where they do not fit the sequences or run backwards."""
    if documents.shape != sequences.shape:
        raise ValueError(f"documents must give each position of the sequences {tuple(sequences.shape)} a document, got shape {tuple(documents.shape)}")
    if len(documents) and bool((documents[:, 1:] < documents[:, :-1]).any()):
        raise ValueError("documents must not decrease along a sequence: a sequence is packed from documents in order")
    return int(_document_offsets(documents).max()) + 1 if len(documents) else 1


def _check_sequences(sequences: torch.Tensor) -> None:
    if sequences.ndim != 2 or sequences.shape[1] < 2:
        raise ValueError(f"sequences must be (n, seq ≥ 2) token ids, got shape {tuple(sequences.shape)}")


REFERENCE_PER_SEQUENCE = ("clean", "zero", "kl_zero", "n_ce", "n_kl")  # the SequenceLosses fields every SAE shares


@dataclass(frozen=True)
class SpliceReference:
    """What every SAE's splice on some held-out sequences shares, computed once per model and layer:
    the sequences, their residual after the hooked block (where each SAE's splice starts), per sequence
    and document in it the clean and zero-ablated losses (as in SequenceLosses), and, for a linear
    unembedding, per position what KL needs of the clean distribution (see the module docstring; else None)."""

    input_ids: torch.Tensor  # (n, seq)
    residual: torch.Tensor  # (n, seq, d), in the dtype the model's forward gives it
    per_sequence: dict[str, np.ndarray]  # REFERENCE_PER_SEQUENCE → (n, units per sequence): by document offset in the sequence
    head_mean: torch.Tensor | None = None  # (n, seq, d) float32: m = Σ_v p_clean(v)·W_v
    clean_offset: torch.Tensor | None = None  # (n, seq) float64: logsumexp(logits_clean) − h_clean·m
    documents: torch.Tensor | None = None  # (n, seq) int64: each position's document; None: each sequence its own

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def units_per_sequence(self) -> int:
        return int(self.per_sequence["n_ce"].shape[1])

    def unit_documents(self) -> np.ndarray | None:
        """Each unit's document, units in SequenceLosses order (row by row, by document offset); None when unknown."""
        if self.documents is None:
            return None
        return (self.documents[:, :1].numpy() + np.arange(self.units_per_sequence)).reshape(-1)

    def position_documents(self) -> torch.Tensor:
        """Each position's document; a sequence's index where the documents are unknown."""
        if self.documents is not None:
            return self.documents
        return torch.arange(len(self.input_ids))[:, None].expand_as(self.input_ids)

    def rows(self, start: int, stop: int) -> SpliceReference:
        linear = {} if self.head_mean is None else {"head_mean": self.head_mean[start:stop], "clean_offset": self.clean_offset[start:stop]}
        documents = None if self.documents is None else self.documents[start:stop]
        per_sequence = {k: v[start:stop] for k, v in self.per_sequence.items()}
        return SpliceReference(self.input_ids[start:stop], self.residual[start:stop], per_sequence, **linear, documents=documents)

    def save(self, path: Path) -> None:
        tensors = {"input_ids": self.input_ids.contiguous(), "residual": self.residual.contiguous()}
        if self.documents is not None:
            tensors["documents"] = self.documents.contiguous()
        tensors |= {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float64)) for key, value in self.per_sequence.items()}
        if self.head_mean is not None:
            tensors |= {"head_mean": self.head_mean.contiguous(), "clean_offset": self.clean_offset.contiguous()}
        with atomic.atomic_path(path) as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, path: Path) -> SpliceReference:
        tensors = load_file(str(path))
        per_sequence = {key: tensors[key].numpy().reshape(len(tensors["input_ids"]), -1) for key in REFERENCE_PER_SEQUENCE}  # one unit a sequence before documents
        return cls(tensors["input_ids"], tensors["residual"], per_sequence, tensors.get("head_mean"), tensors.get("clean_offset"), tensors.get("documents"))


@torch.no_grad()
def splice_reference(
    model: SplicedModel, sequences: torch.Tensor, batch_size: int = 4, progress: Callable[[int], None] | None = None, documents: torch.Tensor | None = None
) -> SpliceReference:
    """The residuals after the hooked block and the clean and zero-ablated losses of `sequences` (n, seq),
    token ids starting with BOS: the forward up to the block runs once here, never again per SAE.
    `documents` (n, seq): each position's document (taulib.corpus.stream.sequence_documents), whose
    units the losses are kept by; None: each sequence its own. `progress` is told the sequences of each batch."""
    _check_sequences(sequences)
    units = 1 if documents is None else check_documents(documents, sequences)
    positions = torch.arange(len(sequences))[:, None].expand_as(sequences) if documents is None else documents
    bos = model.loaded.bos_token_id
    residuals: list[torch.Tensor] = []
    sums: dict[str, list[np.ndarray]] = {key: [] for key in REFERENCE_PER_SEQUENCE}
    linear_parts: list[tuple[torch.Tensor, torch.Tensor] | None] = []
    with model.weights_cast_once(), model.unembedding_on_onednn():
        for start in range(0, sequences.shape[0], batch_size):
            offsets = _document_offsets(positions[start : start + batch_size])
            linear_parts.append(_reference_batch(model, sequences[start : start + batch_size], offsets, units, bos, residuals, sums))
            if progress is not None:
                progress(len(sequences[start : start + batch_size]))
    linear = {}
    if all(part is not None for part in linear_parts):
        linear = {"head_mean": torch.cat([part[0] for part in linear_parts]), "clean_offset": torch.cat([part[1] for part in linear_parts])}
    kept = None if documents is None else documents.cpu().to(torch.int64).clone()
    return SpliceReference(sequences.cpu().clone(), torch.cat(residuals), {key: np.concatenate(parts) for key, parts in sums.items()}, **linear, documents=kept)


def _head_weight(model: SplicedModel) -> torch.Tensor:
    return model.loaded.model.get_output_embeddings().weight


LOG_PARTITION_ROWS = 4  # positions per float32 copy: 4 × 262k words (4 MiB) stay in cache, ~5× faster than one vocabulary-wide pass


def log_partition(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over the vocabulary (batch, seq), in float32 from logits of any dtype, a few positions at a time."""
    flat = logits.reshape(-1, logits.shape[-1])
    parts = [torch.logsumexp(flat[start : start + LOG_PARTITION_ROWS].float(), dim=-1) for start in range(0, len(flat), LOG_PARTITION_ROWS)]
    return torch.cat(parts).reshape(logits.shape[:-1])


def _linear_kl(hidden: torch.Tensor, partition: torch.Tensor, head_mean: torch.Tensor, clean_offset: torch.Tensor) -> torch.Tensor:
    """KL(p_clean ‖ p) per position (batch, seq) from the splice's unembedding input and log-partition and the
    clean reference's m and offset (module docstring)."""
    return partition.double() - (hidden.double() * head_mean.double()).sum(dim=-1) - clean_offset


def _cross_entropy(logits: torch.Tensor, partition: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting token t+1 at position t (batch, seq − 1) from the log-partition: no
    vocabulary-wide log-softmax."""
    return partition[:, :-1] - logits[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1).float()


def _reference_batch(
    model: SplicedModel, batch: torch.Tensor, offsets: torch.Tensor, units: int, bos: int, residuals: list[torch.Tensor], sums: dict[str, list[np.ndarray]]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One batch of `splice_reference`: its residuals and clean and zero-ablated sums per sequence and document
    offset (`offsets`, of `units`), appended; returned, for a linear unembedding, the batch's m and clean offset (else None)."""
    ids = batch.to(model.device)
    is_bos = ids == bos
    ce_mask, kl_mask = ~is_bos[:, :-1], ~is_bos
    residual = model.residuals(ids)
    clean = model.head_from_residual(ids, residual)
    clean_partition = log_partition(clean.logits)
    clean_log_probs = torch.log_softmax(clean.logits.float(), dim=-1)
    clean_probs = clean_log_probs.exp()
    clean_entropy_term = (clean_probs * clean_log_probs).sum(dim=-1)
    del clean_log_probs
    ce_offsets, kl_offsets = offsets[:, :-1], offsets
    sums["clean"].append(_unit_sums(_cross_entropy(clean.logits, clean_partition, ids), ce_mask, ce_offsets, units))  # as every SAE's is computed
    linear = None
    if clean.linear:
        # the weights the logits were computed with (cast once, under autocast), accumulated in float32
        weight = _head_weight(model).float()
        head_mean = torch.stack([probs @ weight for probs in clean_probs])
        del weight
        clean_offset = clean_partition.double() - (clean.hidden.double() * head_mean.double()).sum(dim=-1)
        linear = (head_mean.cpu(), clean_offset.cpu())
    zero = model.head_from_residual(ids, torch.zeros_like(residual))
    if linear is not None:  # the zero-ablated KL as every SAE's is computed
        partition = log_partition(zero.logits)
        ce, kl = _cross_entropy(zero.logits, partition, ids), _linear_kl(zero.hidden, partition, head_mean, clean_offset)
    else:
        ce, kl = _per_token_losses(zero.logits.float(), ids, clean_probs, clean_entropy_term)
    sums["zero"].append(_unit_sums(ce, ce_mask, ce_offsets, units))
    sums["kl_zero"].append(_unit_sums(kl, kl_mask, kl_offsets, units))
    sums["n_ce"].append(_unit_sums(torch.ones_like(ce_mask, dtype=torch.float64), ce_mask, ce_offsets, units))
    sums["n_kl"].append(_unit_sums(torch.ones_like(kl_mask, dtype=torch.float64), kl_mask, kl_offsets, units))
    residuals.append(residual.cpu())
    return linear


@torch.no_grad()
def downstream_metrics(
    model: SplicedModel,
    sequences: torch.Tensor,
    saes: Sequence[SparseAutoencoder],
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
    reference: SpliceReference | None = None,
    saes_per_forward: int = 1,
) -> list[DownstreamMetrics]:
    """CE/KL metrics of each SAE (in raw units) on `sequences` (n, seq) of token ids starting with BOS.

    Per batch, each SAE's splice runs only the blocks after the hooked one, `saes_per_forward` SAEs
    stacked in one forward (memory: that many batches of vocabulary-wide logits); the clean logits
    are recomputed from the cached residual only for a non-linear unembedding (module docstring).
    `reference` (`splice_reference` of the same sequences, e.g. cached with the evaluation data) is
    computed here when not given. The SAEs are moved to the model's device (in place, as
    `Module.to` does)."""
    _check_sequences(sequences)
    if saes_per_forward < 1:
        raise ValueError(f"saes_per_forward must be at least 1, got {saes_per_forward}")
    if reference is None:
        reference = splice_reference(model, sequences, batch_size)
    elif not torch.equal(reference.input_ids, sequences.cpu()):
        raise ValueError("the splice reference was computed on other sequences than these")
    saes = [sae.to(model.device) for sae in saes]  # the splice runs where the language model runs
    per_sae: list[dict[str, list[np.ndarray]]] = [{"sae": [], "kl_sae": []} for _ in saes]
    with model.weights_cast_once(), model.unembedding_on_onednn():
        for start in range(0, sequences.shape[0], batch_size):
            _splice_batch(model, sequences[start : start + batch_size], reference.rows(start, start + batch_size), saes, saes_per_forward, per_sae, progress)
    common = {key: values.reshape(-1) for key, values in reference.per_sequence.items()}
    document = reference.unit_documents()
    return [SequenceLosses(**common, **{key: np.concatenate(parts).reshape(-1) for key, parts in own.items()}, document=document).metrics() for own in per_sae]


def _splice_batch(
    model: SplicedModel,
    batch: torch.Tensor,
    reference: SpliceReference,
    saes: list[SparseAutoencoder],
    saes_per_forward: int,
    per_sae: list[dict[str, list[np.ndarray]]],
    progress: Callable[[int], None] | None,
) -> None:
    """One batch of `downstream_metrics` (`reference`: its rows): every SAE's splice, and the clean logits
    from the cached residual only when the unembedding is not linear."""
    ids = batch.to(model.device)
    residual = reference.residual.to(model.device)
    is_bos = ids == model.loaded.bos_token_id
    ce_mask, kl_mask = ~is_bos[:, :-1], ~is_bos
    offsets, units = _document_offsets(reference.position_documents()), reference.units_per_sequence
    if reference.head_mean is None:
        clean_log_probs = torch.log_softmax(model.logits_from_residual(ids, residual), dim=-1)
        clean_probs = clean_log_probs.exp()
        clean_entropy_term = (clean_probs * clean_log_probs).sum(dim=-1)
        del clean_log_probs
    for first in range(0, len(saes), saes_per_forward):
        group = range(first, min(first + saes_per_forward, len(saes)))
        with model._autocast():  # the reconstruction as the full forward computes it, inside the model's autocast
            spliced = torch.cat([_sae_replacement(saes[index], is_bos)(residual) for index in group])
        head = model.head_from_residual(ids.repeat(len(group), 1), spliced)
        if reference.head_mean is not None and not head.linear:
            raise ValueError("the splice reference assumes logits linear in the unembedding's input, and this model's are not")
        for offset, index in enumerate(group):
            rows = slice(offset * len(ids), (offset + 1) * len(ids))
            if reference.head_mean is None:
                ce, kl = _per_token_losses(head.logits[rows].float(), ids, clean_probs, clean_entropy_term)
            else:
                partition = log_partition(head.logits[rows])
                ce = _cross_entropy(head.logits[rows], partition, ids)
                kl = _linear_kl(head.hidden[rows], partition, reference.head_mean, reference.clean_offset)
            per_sae[index]["sae"].append(_unit_sums(ce, ce_mask, offsets[:, :-1], units))
            per_sae[index]["kl_sae"].append(_unit_sums(kl, kl_mask, offsets, units))
            if progress is not None:
                progress(1)
        del head
