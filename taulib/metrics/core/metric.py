"""Reconstruction metrics on held-out activations, with SAE Bench's definitions where they are sound.

All quantities are in the model's units (the SAE is evaluated in raw units), over tokens the SAE
never trained on. Explained variance is 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over all tokens (SAE Bench
0.6.0's `explained_variance` subtracts (E‖x‖²/d)² instead of ‖x̄‖², see docs/metrics.md).
`VarianceParts` keeps both sums per document of the held-out text, so that the text's sampling error
can be bootstrapped by resampling documents (x̄ stays the whole sample's mean in every replicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from taulib.sae import SparseAutoencoder

# log10 latent-density bins of the histogram: 1e-7 … 1, plus a separate count of dead latents
DENSITY_BIN_EDGES = np.linspace(-7.0, 0.0, 29)


@dataclass(frozen=True)
class ReconstructionMetrics:
    n_tokens: int
    l0: float  # mean number of active latents per token
    l1: float  # mean Σ_i f_i per token (raw units)
    mse: float  # mean squared error per element, raw units
    explained_variance: float
    cosine_similarity: float  # mean over tokens of cos(x, x̂)
    dead_fraction: float  # latents that never fire on these tokens
    dense_fraction: float  # latents that fire on more than `dense_threshold` of tokens

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def reconstruction_metrics(
    sae: SparseAutoencoder, activations: torch.Tensor, batch_size: int = 8192, dense_threshold: float = 0.1
) -> tuple[ReconstructionMetrics, np.ndarray]:
    """Metrics over `activations` (n, d_in) and each latent's firing density (fraction of tokens).

    Computed on the SAE's device, batch by batch (the activations may stay on the CPU); sums in float64."""
    return reconstruction_metrics_many([sae], activations, batch_size, dense_threshold)[0]


@torch.no_grad()
def reconstruction_metrics_many(
    saes: Sequence[SparseAutoencoder], activations: torch.Tensor, batch_size: int = 8192, dense_threshold: float = 0.1
) -> list[tuple[ReconstructionMetrics, np.ndarray]]:
    """`reconstruction_metrics` of several SAEs (e.g. a run's checkpoints) in one pass over the activations:
    each batch is read, converted and summed once, then every SAE runs on it (the same operations, in
    the same order, as one SAE at a time, so the same numbers). The SAEs share one device."""
    n = activations.shape[0]
    if n == 0:
        raise ValueError("reconstruction_metrics needs at least one activation")
    if not saes:
        return []
    device = saes[0].W_enc.device
    fire_counts = [torch.zeros(sae.d_sae, dtype=torch.float64) for sae in saes]
    active, l1, residual, cosine = ([0.0] * len(saes) for _ in range(4))
    total_sq = 0.0
    total_sum = torch.zeros(saes[0].d_in, dtype=torch.float64)
    for start in range(0, n, batch_size):
        x = activations[start : start + batch_size].to(device, torch.float32)
        total_sq += float(x.double().pow(2).sum())
        total_sum += x.double().sum(dim=0).cpu()
        for index, sae in enumerate(saes):
            x_hat, f = sae(x)
            counts = (f > 0).sum(dim=0)
            fire_counts[index] += counts.cpu()
            active[index] += float(counts.sum())  # from the per-latent counts: one pass over the latents, not two
            l1[index] += float(f.sum(dtype=torch.float64))  # accumulated in float64 without a float64 copy of f
            residual[index] += float((x - x_hat).double().pow(2).sum())
            cosine[index] += float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).double().sum())
    # Σ‖x − x̄‖² = Σ‖x‖² − n‖x̄‖², accumulated in one pass
    total_variance = total_sq - float(total_sum.pow(2).sum()) / n
    results = []
    for index, sae in enumerate(saes):
        density = (fire_counts[index] / n).numpy()
        metrics = ReconstructionMetrics(
            n_tokens=n,
            l0=active[index] / n,
            l1=l1[index] / n,
            mse=residual[index] / (n * sae.d_in),
            explained_variance=1.0 - residual[index] / total_variance,
            cosine_similarity=cosine[index] / n,
            dead_fraction=float((density == 0).mean()),
            dense_fraction=float((density > dense_threshold).mean()),
        )
        results.append((metrics, density))
    return results


@dataclass(frozen=True)
class VarianceParts:
    """Per document of the held-out sample: Σ‖x − x̂‖² (`residual`), Σ‖x − x̄‖² (`total`, x̄ the whole
    sample's mean) and its tokens, in document order."""

    document: np.ndarray
    residual: np.ndarray
    total: np.ndarray
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.document)

    def explained_variance(self, documents: np.ndarray | None = None) -> float:
        """Over `documents` (indices into the parts, repeats allowed: a bootstrap sample), default all."""
        pick = slice(None) if documents is None else np.asarray(documents)
        return 1.0 - float(self.residual[pick].sum()) / float(self.total[pick].sum())

    def replicates(self, draws: np.ndarray) -> np.ndarray:
        """The explained variance for every row of `draws` (document indices)."""
        return 1.0 - self.residual[draws].sum(axis=1) / self.total[draws].sum(axis=1)

    def bootstrap_interval(self, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
        """The percentile interval of explained variance over resampled documents: the error the held-out text alone puts on it."""
        draws = np.random.default_rng(seed).integers(0, len(self), (n_resamples, len(self)))
        low, high = np.percentile(self.replicates(draws), (100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2))
        return {"explained_variance_low": float(low), "explained_variance_high": float(high)}

    def to_lists(self) -> dict[str, list[float]]:
        return {"document": self.document.tolist(), "residual": self.residual.tolist(), "total": self.total.tolist(), "tokens": self.tokens.tolist()}

    @classmethod
    def from_lists(cls, data: dict[str, list[float]]) -> VarianceParts:
        return cls(np.asarray(data["document"], dtype=np.int64), *(np.asarray(data[name], dtype=float) for name in ("residual", "total", "tokens")))


@torch.no_grad()
def variance_by_document(sae: SparseAutoencoder, activations: torch.Tensor, documents: torch.Tensor, batch_size: int = 8192) -> VarianceParts:
    """`VarianceParts` of `activations` (n, d_in), token i from document `documents[i]`: sums in float64, the
    reconstruction as `reconstruction_metrics` computes it."""
    if documents.shape != (activations.shape[0],):
        raise ValueError(f"documents must give each of the {activations.shape[0]} activations a document, got shape {tuple(documents.shape)}")
    device = sae.W_enc.device
    found, index = np.unique(documents.numpy(), return_inverse=True)
    mean = activations.double().mean(dim=0)
    residual, total = np.zeros(len(found)), np.zeros(len(found))
    for start in range(0, activations.shape[0], batch_size):
        x = activations[start : start + batch_size].to(device, torch.float32)
        x_hat, _ = sae(x)
        rows = index[start : start + batch_size]
        residual += np.bincount(rows, weights=(x - x_hat).double().pow(2).sum(dim=1).cpu().numpy(), minlength=len(found))
        total += np.bincount(rows, weights=(x.double().cpu() - mean).pow(2).sum(dim=1).numpy(), minlength=len(found))
    return VarianceParts(found.astype(np.int64), residual, total, np.bincount(index, minlength=len(found)).astype(float))


def density_histogram(density: np.ndarray) -> dict[str, list[float] | int]:
    """Histogram of log10 firing density over DENSITY_BIN_EDGES; dead latents are counted apart."""
    alive = density[density > 0]
    counts, edges = np.histogram(np.log10(alive), bins=DENSITY_BIN_EDGES)
    below = int((np.log10(alive) < edges[0]).sum()) if alive.size else 0
    counts[0] += below  # rarer than 1e-7 goes in the first bin
    return {"log10_density_edges": edges.tolist(), "counts": counts.astype(int).tolist(), "dead": int((density == 0).sum())}
