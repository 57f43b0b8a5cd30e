"""Exact disentanglement against a known dictionary (the synthetic model, taulib.activations.synthetic).

For every true feature u_i (unit norm), its best signed cosine with any learned decoder direction d_j:

    c_i = max_j  u_i · d_j / ‖d_j‖

Signed, because the latents of a ReLU SAE are non-negative: a decoder row −u_i cannot reconstruct
a positive firing of u_i. Per checkpoint: the mean of c_i over the true features, and the share of
them recovered (c_i > threshold, 0.9 by default). Over a run's checkpoints: each true feature's
recovery step, the first checkpoint from which it stays recovered to the end (none if it is not
recovered at the last checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GroundTruthMetrics:
    gt_mean_max_cosine: float  # mean over true features of the best decoder cosine
    gt_recovered_fraction: float  # share of true features with best cosine above the threshold
    gt_n_features: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def feature_max_cosines(true_directions: torch.Tensor, decoder: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(best cosine, index of the best latent) of every true feature against the decoder rows (d_sae, d)."""
    if true_directions.ndim != 2 or decoder.ndim != 2 or true_directions.shape[1] != decoder.shape[1]:
        raise ValueError(f"true directions {tuple(true_directions.shape)} and decoder {tuple(decoder.shape)} must be (n, d) and (m, d)")
    true = true_directions.double()
    true = true / true.norm(dim=1, keepdim=True)
    learned = decoder.detach().double()
    learned = learned / learned.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best, index = (true @ learned.T).max(dim=1)
    return best.numpy(), index.numpy()


def ground_truth_metrics(true_directions: torch.Tensor, decoder: torch.Tensor, threshold: float = 0.9) -> tuple[GroundTruthMetrics, np.ndarray]:
    """The checkpoint's scalars, and every true feature's best cosine (for its recovery step)."""
    best, _ = feature_max_cosines(true_directions, decoder)
    return GroundTruthMetrics(float(best.mean()), float((best > threshold).mean()), len(best)), best


def recovery_steps(steps: Sequence[int], max_cosines: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Per true feature, the first of `steps` (ascending checkpoints) from which its best cosine stays above
    `threshold` to the last checkpoint; -1 where it is not recovered at the last one.

    `max_cosines` is (checkpoints, features), row k at steps[k]."""
    steps = np.asarray(steps)
    max_cosines = np.asarray(max_cosines)
    if max_cosines.ndim != 2 or max_cosines.shape[0] != len(steps) or len(steps) == 0:
        raise ValueError(f"max_cosines {max_cosines.shape} must be (checkpoints = {len(steps)}, features)")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    recovered = max_cosines > threshold
    # the checkpoints from which a feature stays recovered: a suffix of True; its start is after the last False
    never_lost_after = np.flip(np.logical_and.accumulate(np.flip(recovered, axis=0), axis=0), axis=0)
    first = never_lost_after.argmax(axis=0)
    return np.where(never_lost_after[-1], steps[first], -1)
