"""What sparse probing reads from a random SAE of the same width at the same L0: the baseline a trained SAE's
probing accuracy is a lift over.

Mean-pooled random features of a residual stream already separate many probing classes: a random SAE (random unit
decoder rows, the encoder tied to them, the data mean as decoder bias) with its threshold set to fire L0 latents per
token probes about as well as an early checkpoint. So a trained SAE's probing accuracy says what its *dictionary*
adds only beside this baseline, and only at the same L0 (a denser code probes better, trained or not).

`baseline_grid` probes one random SAE per L0 of a grid (its threshold the quantile of its pre-activations on the
held-out sample that gives that L0; the L0 recorded is the one it then has on that sample); `baseline_at` reads the
grid at any L0, linearly in log L0 between the two grid SAEs around it (NaN outside the grid's range). A random SAE
identical to a grid SAE reads exactly that SAE's accuracy: its lift over itself is zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from taulib.metrics.probing.metric import ProbingData, evaluate_sparse_probing_many
from taulib.sae import SparseAutoencoder


@torch.no_grad()
def random_sae_at_l0(heldout: torch.Tensor, width: int, l0: float, seed: int) -> SparseAutoencoder:
    """A random SAE of `width` latents on the held-out sample's space, thresholded to fire about `l0` latents per token there."""
    if not 0 < l0 < width:
        raise ValueError(f"a random SAE's L0 must lie between 0 and its width ({width}); got {l0}")
    sae = SparseAutoencoder(heldout.shape[1], width)
    sae.initialise(torch.Generator().manual_seed(seed), data_mean=heldout.float().mean(dim=0))
    pre = (heldout.float() - sae.b_dec) @ sae.W_enc
    threshold = torch.quantile(pre.flatten()[:: max(1, pre.numel() // 16_000_000)], 1 - l0 / width)  # quantile's input limit
    sae.b_enc.fill_(-float(threshold))
    return sae.requires_grad_(False)


def held_out_l0(sae: SparseAutoencoder, heldout: torch.Tensor) -> float:
    with torch.no_grad():
        return float((sae.encode(heldout.float()) > 0).sum(dim=1).double().mean())


def baseline_grid(heldout: torch.Tensor, width: int, data: ProbingData, l0s: Sequence[float], seed: int, autocast: bool) -> list[dict[str, Any]]:
    """Per L0 of the grid (those below the width), a random SAE's held-out L0, its sparse-probing accuracies (the
    averages over tasks, `sae_top_<k>_accuracy`) and, per binary task ("task|positive class"), whether its top-1 probe
    got each test example right (what a test-set bootstrap of the lift resamples), in increasing L0."""
    saes = [random_sae_at_l0(heldout, width, l0, seed) for l0 in sorted(l0s) if l0 < width]
    grid = [
        {
            "l0": held_out_l0(sae, heldout),
            "accuracy": {key: value for key, value in summary.items() if "/" not in key},
            "top_1_correct": {binary_task_key(row["task"], row["positive_class"]): row["top_1_correct"] for row in rows.to_dict("records") if "top_1_correct" in row},
        }
        for sae, (summary, rows) in zip(saes, evaluate_sparse_probing_many(saes, data, autocast), strict=True)
    ]
    return sorted(grid, key=lambda point: point["l0"])


def binary_task_key(task: str, positive_class: str) -> str:
    return f"{task}|{positive_class}"


def _log_l0_weights(grid: list[dict[str, Any]], l0: float) -> tuple[int, int, float] | None:
    """The two grid points around `l0` and the weight of the upper one, linear in log L0; None outside the grid."""
    l0s = np.log([point["l0"] for point in grid])
    if not grid or not math.isfinite(l0) or l0 <= 0 or not l0s[0] <= math.log(l0) <= l0s[-1]:
        return None
    upper = min(int(np.searchsorted(l0s, math.log(l0))), len(l0s) - 1)
    lower = max(upper - 1, 0)
    weight = 0.0 if l0s[upper] == l0s[lower] else (math.log(l0) - l0s[lower]) / (l0s[upper] - l0s[lower])
    return lower, upper, float(weight)


def baseline_at(grid: list[dict[str, Any]], l0: float) -> dict[str, float]:
    """The grid's accuracies at `l0`, linear in log L0 between the grid SAEs around it; NaN outside the grid."""
    keys = list(grid[0]["accuracy"]) if grid else []
    around = _log_l0_weights(grid, l0)
    if around is None:
        return dict.fromkeys(keys, math.nan)
    lower, upper, weight = around
    return {key: float((1 - weight) * grid[lower]["accuracy"][key] + weight * grid[upper]["accuracy"][key]) for key in keys}


def baseline_correct_at(grid: list[dict[str, Any]], l0: float) -> dict[str, list[float]] | None:
    """Per binary task, each test example's top-1 correctness read off the grid at `l0` as the accuracies are (the two
    grid SAEs around it, weighted linearly in log L0): a fraction between their 0/1 answers. Its mean over a task's
    examples is that task's accuracy in `baseline_at`, so a bootstrap that resamples the test examples can pair the
    baseline with a trained SAE scored on the same examples. None outside the grid, or for a grid recorded without them."""
    around = _log_l0_weights(grid, l0)
    if around is None or any("top_1_correct" not in point for point in grid):
        return None
    lower, upper, weight = around
    low, high = grid[lower]["top_1_correct"], grid[upper]["top_1_correct"]
    return {key: ((1 - weight) * np.asarray(low[key], dtype=float) + weight * np.asarray(high[key], dtype=float)).round(6).tolist() for key in sorted(low)}
