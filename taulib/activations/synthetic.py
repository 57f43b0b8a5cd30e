"""Synthetic activations made of known sparse directions, for checking that an SAE recovers them."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
