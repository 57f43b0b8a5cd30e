"""How far a dictionary moved from its initialisation: each latent's cosine between its decoder row now and at
step 0.

A dictionary that barely leaves its random start is inherited, not learned, and its "features" are the
initialisation's directions. The median over latents says how much the typical latent moved; a latent that rarely
fires gets few gradient steps and has little reason to move, so the median weighted by each latent's firing
frequency (on the held-out sample) says how much the dictionary the model's tokens actually use moved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DecoderDriftMetrics:
    decoder_init_cosine_median: float  # median over latents of cos(decoder row, its initial row)
    decoder_init_cosine_p10: float  # its tenth percentile: the latents that moved most
    decoder_init_cosine_weighted_median: float  # the median with each latent weighted by its firing frequency (NaN: none fires)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest value at which the cumulative weight of the sorted values reaches half the total (the lower
    weighted median; with equal weights and an odd count, the median). NaN when the weights sum to 0."""
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if values.shape != weights.shape:
        raise ValueError(f"weighted_median: {values.shape[0]} values but {weights.shape[0]} weights")
    if (weights < 0).any():
        raise ValueError("weighted_median: weights must be non-negative")
    total = weights.sum()
    if total <= 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * total)])


@torch.no_grad()
def row_cosines(initial: torch.Tensor, decoder: torch.Tensor) -> np.ndarray:
    """Per latent, the cosine between its row of `decoder` and of `initial` (both (d_sae, d_in)), in float64."""
    if initial.shape != decoder.shape:
        raise ValueError(f"decoder drift: the initial decoder is {tuple(initial.shape)}, this one {tuple(decoder.shape)}")
    a, b = initial.double(), decoder.double()
    return (torch.linalg.vecdot(a, b) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)).numpy()


def decoder_drift_metrics(initial: torch.Tensor, decoder: torch.Tensor, density: np.ndarray | None) -> DecoderDriftMetrics:
    """The drift of `decoder` from `initial`; `density`: each latent's firing frequency (None: not weighted)."""
    cosines = row_cosines(initial, decoder)
    weighted = float("nan") if density is None else weighted_median(cosines, density)
    return DecoderDriftMetrics(float(np.median(cosines)), float(np.percentile(cosines, 10)), weighted)
