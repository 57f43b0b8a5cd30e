"""How orthogonal the learned features are: decoder max-cosine statistics against a random baseline.

For each latent, the maximum cosine similarity of its decoder direction to any other latent's (as
SAE Bench's `max_decoder_cosine_sim`, signed). The same statistics for random unit vectors of the
same shape are the baseline: in 640 dimensions, 4096 random directions already have a mean max
cosine near 0.15, so only the excess over it says the SAE learned redundant directions. A
near-duplicate pair has cosine > `duplicate_threshold`. The encoder–decoder cosine per latent
says how far the encoder has moved away from the (tied) decoder direction to suppress interference.

Dead latents keep their random initial directions, so over all latents the statistic mixes what
was learned with the initial draw, and two SAEs with different dead fractions are not comparable.
The `alive_*` fields are the same statistics over the latents that fired on the held-out tokens
(their nearest neighbour sought among alive latents only), with two baselines of the same count:
random unit directions (isotropic) and random directions drawn from the activations' covariance
(Gaussian with the held-out covariance, normalised). The second says how aligned directions are
that merely follow the data's dominant subspace, without learning features.
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
    alive_latents: int  # latents that fired on the held-out tokens (all of them when no density is given)
    alive_mean_max_cosine: float  # among alive latents only
    alive_near_duplicate_latent_fraction: float
    alive_random_mean_max_cosine: float  # isotropic random directions, as many as alive latents
    alive_covariance_mean_max_cosine: float  # random directions from the activations' covariance, as many
    alive_excess_mean_max_cosine: float  # alive − isotropic baseline: redundancy beyond chance

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


def covariance_directions(n: int, covariance_factor: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """`n` unit directions x/‖x‖ with x ~ N(0, Σ), Σ = F Fᵀ (`covariance_factor` F, d × d)."""
    generator = torch.Generator().manual_seed(seed)
    samples = torch.randn(n, covariance_factor.shape[0], generator=generator) @ covariance_factor.T.float()
    return torch.nn.functional.normalize(samples, dim=1)


def covariance_factor(activations: torch.Tensor) -> torch.Tensor:
    """A factor F of the activations' covariance (F Fᵀ = Σ), from its eigendecomposition (Σ may be singular)."""
    x = activations.double()
    centred = x - x.mean(dim=0)
    covariance = centred.T @ centred / max(len(x) - 1, 1)
    values, vectors = torch.linalg.eigh(covariance)
    return (vectors * values.clamp(min=0).sqrt()).float()


def orthogonality_metrics(
    sae: SparseAutoencoder,
    duplicate_threshold: float = 0.9,
    seed: int = 0,
    alive: np.ndarray | None = None,
    activation_covariance_factor: torch.Tensor | None = None,
) -> tuple[OrthogonalityMetrics, dict[str, np.ndarray]]:
    """Summary numbers and the per-latent arrays behind them (decoder, random baseline, encoder–decoder).

    `alive` (a boolean mask over latents, e.g. held-out density > 0) restricts the `alive_*` fields;
    `activation_covariance_factor` (taulib.metrics.orthogonality.covariance_factor of held-out
    activations) gives their covariance baseline (NaN without it)."""
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
        **_alive_statistics(sae, duplicate_threshold, seed, alive, activation_covariance_factor),
    )
    return metrics, {"max_cosine": max_cos, "random_max_cosine": random_max_cos, "encoder_decoder_cosine": enc_dec}


def _alive_statistics(
    sae: SparseAutoencoder, duplicate_threshold: float, seed: int, alive: np.ndarray | None, factor: torch.Tensor | None
) -> dict[str, float | int]:
    mask = np.ones(sae.d_sae, dtype=bool) if alive is None else np.asarray(alive, dtype=bool)
    if mask.shape != (sae.d_sae,):
        raise ValueError(f"alive must be a mask over the {sae.d_sae} latents, got shape {mask.shape}")
    n_alive = int(mask.sum())
    if n_alive < 2:  # no pair among alive latents: the statistics are undefined
        undefined = [field for field in OrthogonalityMetrics.__dataclass_fields__ if field.startswith("alive_") and field != "alive_latents"]
        return dict.fromkeys(undefined, float("nan")) | {"alive_latents": n_alive}
    alive_max, _ = max_cosine_to_others(sae.W_dec[torch.from_numpy(mask)], duplicate_threshold)
    random_max, _ = random_baseline(n_alive, sae.d_in, seed, duplicate_threshold)
    covariance_mean = float(max_cosine_to_others(covariance_directions(n_alive, factor, seed))[0].mean()) if factor is not None else float("nan")
    return {
        "alive_latents": n_alive,
        "alive_mean_max_cosine": float(alive_max.mean()),
        "alive_near_duplicate_latent_fraction": float((alive_max > duplicate_threshold).mean()),
        "alive_random_mean_max_cosine": float(random_max.mean()),
        "alive_covariance_mean_max_cosine": covariance_mean,
        "alive_excess_mean_max_cosine": float(alive_max.mean() - random_max.mean()),
    }
