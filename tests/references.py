"""The references the package's faster code is checked against, kept with the tests rather than in the package:

- `sae_loss`: the training objective written with autograd, the definition taulib.train.gradients computes by hand
  in fewer passes (tests/test_train_gradients.py; the autograd trainers of benchmarks/trainers.py run it);
- `sparse_directions_dataset`: sums of a few random unit directions per sample, a dataset with a known dictionary
  for the trainer's tests and benchmarks, and `mean_max_cosine` of a learned dictionary against it;
- `downstream_metrics_full_forward`: the CE/KL metrics from whole forwards spliced through nnsight, what
  taulib.metrics.downstream.downstream_metrics computes faster (tests/test_metrics_downstream.py);
- `assert_declared`: an evaluation's table and details against the metric families' declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from taulib.metrics.downstream.metric import DownstreamMetrics, SequenceLosses, SplicedModel, _check_sequences, _per_token_losses, _sae_replacement
from taulib.sae import SparseAutoencoder


@dataclass(frozen=True)
class LossTerms:
    loss: torch.Tensor
    mse: torch.Tensor  # mean over the batch of ‖x − x̂‖²
    l1: torch.Tensor  # mean over the batch of ‖f‖₁



def _row_sums(values: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    return (values.double() * mask).sum(dim=1).cpu().numpy()

def sae_loss(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor, l1_coefficient_effective: float) -> LossTerms:
    """Squared reconstruction error plus the (already τ-divided) L1 penalty, both per-token means."""
    mse = (x_hat.float() - x).pow(2).sum(dim=-1).mean()
    l1 = f.float().abs().sum(dim=-1).mean()
    return LossTerms(mse + l1_coefficient_effective * l1, mse, l1)


@dataclass(frozen=True)
class SparseDataset:
    activations: torch.Tensor  # (n, d)
    directions: torch.Tensor  # (n_features, d), unit norm: the ground-truth dictionary


def sparse_directions_dataset(n: int, d: int, n_features: int, mean_active: float, seed: int = 0) -> SparseDataset:
    """x = Σ c_i·u_i over a few random unit directions u_i per sample, c_i ~ U(1, 2) when active."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d, generator=generator)
    directions /= directions.norm(dim=1, keepdim=True)
    active = torch.rand(n, n_features, generator=generator) < mean_active / n_features
    coefficients = active * (1 + torch.rand(n, n_features, generator=generator))
    return SparseDataset(coefficients @ directions, directions)


def mean_max_cosine(true_directions: torch.Tensor, learned_directions: torch.Tensor) -> float:
    """For each true direction, the best cosine with any learned direction; averaged."""
    true = true_directions / true_directions.norm(dim=1, keepdim=True)
    learned = learned_directions / learned_directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((true @ learned.T).max(dim=1).values.mean())


@torch.no_grad()
def downstream_metrics_full_forward(
    model: SplicedModel, sequences: torch.Tensor, saes: Sequence[SparseAutoencoder], batch_size: int = 4, progress: Callable[[int], None] | None = None
) -> list[DownstreamMetrics]:
    """The same metrics from whole forwards (clean, zero-ablated, and one per SAE, spliced through
    nnsight): what `downstream_metrics` computes faster, kept as the reference it is tested against."""
    _check_sequences(sequences)
    bos = model.loaded.bos_token_id
    saes = [sae.to(model.device) for sae in saes]
    shared: dict[str, list[np.ndarray]] = {"clean": [], "zero": [], "kl_zero": [], "n_ce": [], "n_kl": []}
    per_sae: list[dict[str, list[np.ndarray]]] = [{"sae": [], "kl_sae": []} for _ in saes]
    for start in range(0, sequences.shape[0], batch_size):
        ids = sequences[start : start + batch_size].to(model.device)
        is_bos = ids == bos
        ce_mask, kl_mask = ~is_bos[:, :-1], ~is_bos
        clean_log_probs = torch.log_softmax(model.logits(ids), dim=-1)
        clean_probs = clean_log_probs.exp()
        clean_entropy_term = (clean_probs * clean_log_probs).sum(dim=-1)
        shared["clean"].append(_row_sums(-clean_log_probs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1), ce_mask))
        del clean_log_probs
        ce, kl = _per_token_losses(model.logits(ids, torch.zeros_like), ids, clean_probs, clean_entropy_term)
        shared["zero"].append(_row_sums(ce, ce_mask))
        shared["kl_zero"].append(_row_sums(kl, kl_mask))
        for index, sae in enumerate(saes):
            ce, kl = _per_token_losses(model.logits(ids, _sae_replacement(sae, is_bos)), ids, clean_probs, clean_entropy_term)
            per_sae[index]["sae"].append(_row_sums(ce, ce_mask))
            per_sae[index]["kl_sae"].append(_row_sums(kl, kl_mask))
            if progress is not None:
                progress(1)
        shared["n_ce"].append(ce_mask.sum(dim=1).cpu().numpy().astype(float))
        shared["n_kl"].append(kl_mask.sum(dim=1).cpu().numpy().astype(float))
    common = {key: np.concatenate(parts) for key, parts in shared.items()}
    return [SequenceLosses(**common, **{key: np.concatenate(parts) for key, parts in own.items()}).metrics() for own in per_sae]


@torch.no_grad()
def document_losses_full_forward(model: SplicedModel, sequences: torch.Tensor, sae: SparseAutoencoder, documents: torch.Tensor) -> SequenceLosses:
    """One unit per document (in document order): the losses of the positions whose token belongs to it, from whole
    forwards and a loop over positions, what `SequenceLosses.by_document` of `downstream_metrics` groups by scatter."""
    ids, bos = sequences.to(model.device), model.loaded.bos_token_id
    clean_log_probs = torch.log_softmax(model.logits(ids), dim=-1)
    clean_probs = clean_log_probs.exp()
    clean_entropy_term = (clean_probs * clean_log_probs).sum(dim=-1)
    clean_ce, _ = _per_token_losses(model.logits(ids), ids)
    zero_ce, zero_kl = _per_token_losses(model.logits(ids, torch.zeros_like), ids, clean_probs, clean_entropy_term)
    sae_ce, sae_kl = _per_token_losses(model.logits(ids, _sae_replacement(sae.to(model.device), ids == bos)), ids, clean_probs, clean_entropy_term)
    found = sorted({int(d) for d in documents.flatten()})
    sums = {name: {d: 0.0 for d in found} for name in ("clean", "zero", "sae", "kl_zero", "kl_sae", "n_ce", "n_kl")}
    for row in range(ids.shape[0]):
        for position in range(ids.shape[1]):
            if int(ids[row, position]) == bos:
                continue
            document = int(documents[row, position])
            if position < ids.shape[1] - 1:  # position t's cross-entropy predicts token t + 1
                for name, values in (("clean", clean_ce), ("zero", zero_ce), ("sae", sae_ce)):
                    sums[name][document] += float(values[row, position])
                sums["n_ce"][document] += 1
            sums["kl_zero"][document] += float(zero_kl[row, position])
            sums["kl_sae"][document] += float(sae_kl[row, position])
            sums["n_kl"][document] += 1
    return SequenceLosses(**{name: np.array([by_document[d] for d in found]) for name, by_document in sums.items()}, document=np.array(found))


def assert_declared(table, details, families):
    """A run's evaluation table and one checkpoint's details against what the evaluated families declare
    (taulib/metrics/<family>/settings.py): every column a head column or exactly one family's, every fixed declared
    column present, and the details those declared."""
    from taulib.metrics.catalogue import DECLARED, HEAD_COLUMNS

    head = {column.name for column in HEAD_COLUMNS}
    for column in table.columns:
        owners = [name for name in families if DECLARED[name].owns(column)]
        assert column in head or len(owners) == 1, (column, owners)
    for name in families:
        fixed = {column.name for column in DECLARED[name].columns if "*" not in column.name}
        assert fixed <= set(table.columns), (name, fixed - set(table.columns))
    declared_details = {detail for name in families for detail in DECLARED[name].details}
    assert set(details) - {"not_applicable"} == declared_details
