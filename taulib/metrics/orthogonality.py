"""How orthogonal the learned features are: decoder max-cosine statistics against a random baseline.

For each latent, the maximum cosine similarity of its decoder direction to any other latent's (as
SAE Bench's `max_decoder_cosine_sim`, signed). The same statistics for random unit vectors of the
same shape are the baseline: in 640 dimensions, 4096 random directions already have a mean max
cosine near 0.15, so only the excess over it says the SAE learned redundant directions. A
near-duplicate pair has cosine > `duplicate_threshold`. The encoder–decoder cosine per latent
says how far the encoder has moved away from the (tied) decoder direction to suppress interference.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch

from taulib.sae import SparseAutoencoder


@dataclass(frozen=True)
class OrthogonalityMetrics:
    mean_max_cosine: float
    median_max_cosine: float
    p99_max_cosine: float
    near_duplicate_pair_fraction: float  # pairs (i < j) with cosine > threshold, over all pairs
    near_duplicate_latent_fraction: float  # latents with at least one near-duplicate
    random_mean_max_cosine: float
    random_near_duplicate_pair_fraction: float
    mean_encoder_decoder_cosine: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def max_cosine_to_others(directions: torch.Tensor, duplicate_threshold: float = 0.9, chunk: int = 2048) -> tuple[np.ndarray, int]:
    """Per row, the max cosine to any other row; and the number of pairs (i < j) above the threshold.

    Works in chunks of rows so an n × n matrix is never held (n = 65k latents needs 16 GiB at once).
    """
    unit = torch.nn.functional.normalize(directions.float(), dim=1)
    n = unit.shape[0]
    best = torch.empty(n)
    pairs_above = 0
    for start in range(0, n, chunk):
        cosines = unit[start : start + chunk] @ unit.T
        rows = torch.arange(cosines.shape[0])
        cosines[rows, rows + start] = -float("inf")  # a latent is not its own neighbour
        best[start : start + chunk] = cosines.max(dim=1).values
        pairs_above += int((cosines > duplicate_threshold).sum())
    return best.numpy(), pairs_above // 2  # every pair was counted from both ends


def random_unit_directions(n: int, d: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(n, d, generator=generator)
    return directions / directions.norm(dim=1, keepdim=True)


@functools.lru_cache(maxsize=8)
def random_baseline(n: int, d: int, seed: int, duplicate_threshold: float) -> tuple[np.ndarray, int]:
    """`max_cosine_to_others` of random unit directions: the same for every checkpoint of a shape, so computed once."""
    max_cos, duplicates = max_cosine_to_others(random_unit_directions(n, d, seed), duplicate_threshold)
    max_cos.setflags(write=False)  # shared between callers
    return max_cos, duplicates


@torch.no_grad()
def encoder_decoder_cosine(sae: SparseAutoencoder) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(sae.W_enc.T.float(), sae.W_dec.float(), dim=1).numpy()


def orthogonality_metrics(sae: SparseAutoencoder, duplicate_threshold: float = 0.9, seed: int = 0) -> tuple[OrthogonalityMetrics, dict[str, np.ndarray]]:
    """Summary numbers and the per-latent arrays behind them (decoder, random baseline, encoder–decoder)."""
    n_latents = sae.d_sae
    n_pairs = n_latents * (n_latents - 1) / 2
    max_cos, duplicates = max_cosine_to_others(sae.W_dec, duplicate_threshold)
    random_max_cos, random_duplicates = random_baseline(n_latents, sae.d_in, seed, duplicate_threshold)
    enc_dec = encoder_decoder_cosine(sae)
    metrics = OrthogonalityMetrics(
        mean_max_cosine=float(max_cos.mean()),
        median_max_cosine=float(np.median(max_cos)),
        p99_max_cosine=float(np.quantile(max_cos, 0.99)),
        near_duplicate_pair_fraction=duplicates / n_pairs,
        near_duplicate_latent_fraction=float((max_cos > duplicate_threshold).mean()),
        random_mean_max_cosine=float(random_max_cos.mean()),
        random_near_duplicate_pair_fraction=random_duplicates / n_pairs,
        mean_encoder_decoder_cosine=float(enc_dec.mean()),
    )
    return metrics, {"max_cosine": max_cos, "random_max_cosine": random_max_cos, "encoder_decoder_cosine": enc_dec}
