"""Early concept formation: how fast each metric approaches its final value, and how fast absorption falls.

All functions take a run's per-checkpoint table (tokens seen, metric) and return numbers in tokens
seen. Between checkpoints the curves are interpolated linearly in tokens, so a time is resolved to
the checkpoint grid (log-spaced, dense early) and no finer.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from taulib.analysis.study_data import Arm, StudyData
from taulib.metrics.absorption import AbsorptionSettings

FORMATION_METRICS: dict[str, str] = {
    "l0": "L0",
    "explained_variance": "explained variance",
    "sae_top_1_accuracy": "sparse probing, top-1 accuracy",
    "absorption_fraction": "absorption fraction",
}


def _finite(tokens: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tokens, values = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    if tokens.shape != values.shape:
        raise ValueError(f"tokens and values differ in length: {tokens.shape} vs {values.shape}")
    keep = np.isfinite(values) & np.isfinite(tokens)
    order = np.argsort(tokens[keep], kind="stable")
    return tokens[keep][order], values[keep][order]


def time_to_fraction_of_final(
    tokens: np.ndarray,
    values: np.ndarray,
    fraction: float = 0.9,
    mode: Literal["first", "settled"] = "first",
    start_tokens: float = 0.0,
    direction: Literal[1, -1] | None = None,
) -> float:
    """Tokens seen when a curve has covered `fraction` of its change from its first to its final value.

    Only checkpoints at or after `start_tokens` count (pass the end of the warm-up: before it the SAE
    is essentially its initialisation, and its change from there says nothing about formation).
    Progress at a checkpoint is (v − v_start) / (v_final − v_start). With `direction` +1 (a metric that
    forms by rising) or −1 (by falling), a change of the other sign is no formation: NaN. Without it a
    falling and a rising curve are treated alike. `first`: the first crossing of `fraction`;
    `settled`: the crossing after which progress never drops below it again. Between checkpoints the
    crossing is interpolated linearly in tokens, so it is resolved to the checkpoint grid. NaN when
    the curve does not change or has fewer than two points.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if direction not in (None, 1, -1):
        raise ValueError(f"direction must be +1, -1 or None, got {direction!r}")
    tokens, values = _finite(tokens, values)
    keep = tokens >= start_tokens
    tokens, values = tokens[keep], values[keep]
    if len(values) < 2:
        return float("nan")
    change = values[-1] - values[0]
    if abs(change) <= 1e-12 * max(abs(values[0]), abs(values[-1]), 1e-300):
        return float("nan")
    if direction is not None and np.sign(change) != direction:
        return float("nan")
    progress = (values - values[0]) / change
    reached = progress >= fraction - 1e-12
    if mode == "first":
        index = int(np.argmax(reached))
    elif mode == "settled":
        below = np.flatnonzero(~reached)
        index = int(below[-1]) + 1 if len(below) else 0  # the final point always reaches (progress 1)
    else:
        raise ValueError(f"mode must be 'first' or 'settled', got {mode!r}")
    if index == 0:
        return float(tokens[0])
    p0, p1 = progress[index - 1], progress[index]
    t0, t1 = tokens[index - 1], tokens[index]
    return float(t0 + (fraction - p0) / (p1 - p0) * (t1 - t0))


def formation_time(
    tokens: np.ndarray,
    values: np.ndarray,
    start_tokens: float,
    direction: Literal[1, -1],
    fraction: float = 0.9,
    min_change: float = 0.05,
    final_points: int = 3,
) -> float:
    """Tokens seen when a metric had formed: covered `fraction` of its change (in `direction`) from the
    first checkpoint at or after `start_tokens` to its final level, and stayed there to the end.

    Guarded against the ways a time can mislead: the final level is the mean of the last
    `final_points` checkpoints (one noisy end point does not set it); a change smaller than
    `min_change` is no change to time — the metric had formed before the window if it moved by at
    least `min_change` in `direction` between the first checkpoint and the window's start (the window's
    start is returned), else it never formed; a change against `direction`, or a curve that ends
    below `fraction` of its change, never formed: the run's last checkpoint is returned (censored at
    the end, an outcome kept in every comparison, not a missing value). NaN only without two
    checkpoints in the window."""
    tokens, values = _finite(tokens, values)
    if len(values) == 0:
        return float("nan")
    window = tokens >= start_tokens
    if window.sum() < 2:
        return float("nan")
    end = float(tokens[-1])
    t, v = tokens[window], values[window] * direction
    level = float(v[-final_points:].mean())
    change = level - v[0]
    if abs(change) < min_change:
        formed_before = (v[0] - values[0] * direction) >= min_change
        return float(t[0]) if formed_before else end
    if change < 0:
        return end
    progress = (v - v[0]) / change
    below = np.flatnonzero(progress < fraction - 1e-12)
    if not len(below):
        return float(t[0])
    index = int(below[-1]) + 1
    if index >= len(t):
        return end
    p0, p1 = progress[index - 1], progress[index]
    return float(t[index - 1] + (fraction - p0) / (p1 - p0) * (t[index] - t[index - 1]))


def at_current_l0(tokens: np.ndarray, l0: np.ndarray, values: np.ndarray, level: float, start_tokens: float = 0.0) -> tuple[float, float]:
    """(tokens, value) where a run's current L0 first falls through `level` after `start_tokens`,
    both interpolated linearly in log L0 between the two checkpoints around the passage.

    Formation compared at the same *current* sparsity: an annealed arm early in training runs at a
    fraction of its final penalty, so at equal steps it is far denser than plain L1, and its metrics
    are those of a denser SAE. (NaN, NaN) when the run is already below `level` at `start_tokens`, or
    never reaches it."""
    tokens, l0, values = (np.asarray(a, dtype=float) for a in (tokens, l0, values))
    keep = np.isfinite(tokens) & np.isfinite(l0) & np.isfinite(values) & (l0 > 0) & (tokens >= start_tokens)
    order = np.argsort(tokens[keep], kind="stable")
    tokens, l0, values = tokens[keep][order], l0[keep][order], values[keep][order]
    nan = (float("nan"), float("nan"))
    if len(tokens) < 2 or l0[0] <= level:
        return nan
    below = np.flatnonzero(l0 <= level)
    if not len(below):
        return nan
    j = int(below[0])
    x0, x1, at = math.log(l0[j - 1]), math.log(l0[j]), math.log(level)
    weight = (at - x0) / (x1 - x0) if x1 != x0 else 1.0
    return float(tokens[j - 1] + weight * (tokens[j] - tokens[j - 1])), float(values[j - 1] + weight * (values[j] - values[j - 1]))


def formed_letter_absorption(arm: Arm, min_k1_f1: float, min_probe_f1: float = AbsorptionSettings.min_probe_f1) -> tuple[list[str], np.ndarray]:
    """The letters whose best single latent detects them with k=1 F1 ≥ `min_k1_f1` at the final
    checkpoint (and whose ground-truth probe passes, as in the absorption metric), and the absorption
    fraction averaged over those letters at every checkpoint, in step order.

    Absorption is about a letter's latent failing to fire where another absorbs it; where no latent
    detects the letter there is nothing to absorb, and a mean over such letters measures noise.
    ([], all-NaN) when no letter qualifies or the run has no absorption details."""
    steps = sorted(arm.steps)
    empty: tuple[list[str], np.ndarray] = ([], np.full(len(steps), np.nan))
    try:
        details = [arm.details(step).get("absorption_letters") for step in steps]
    except FileNotFoundError:
        return empty
    if not steps or not details[-1]:
        return empty
    final = pd.DataFrame(details[-1])
    chosen = final[(final["probe_f1"] > min_probe_f1) & (final["k1_f1"] >= min_k1_f1) & final.get("absorption_fraction", pd.Series(np.nan, index=final.index)).notna()]
    letters = sorted(chosen["letter"])
    if not letters:
        return empty
    curve = []
    for rows in details:
        table = pd.DataFrame(rows or [])
        if "absorption_fraction" not in table:
            curve.append(np.nan)
            continue
        picked = table[table["letter"].isin(letters)]["absorption_fraction"]
        curve.append(float(picked.mean()) if picked.notna().all() and len(picked) == len(letters) else np.nan)
    return letters, np.asarray(curve, dtype=float)


def mean_over_log_tokens(tokens: np.ndarray, values: np.ndarray) -> float:
    """The curve's average over log10(tokens seen) (trapezoid rule; checkpoints with 0 tokens left out).

    The normalised area under an absorption curve drawn on a log axis: a curve that falls early has
    a low mean, one that falls late (or never) a high one, and runs of different lengths compare.
    """
    tokens, values = _finite(tokens, values)
    keep = tokens > 0
    tokens, values = tokens[keep], values[keep]
    if len(values) == 0:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    x = np.log10(tokens)
    return float(np.trapezoid(values, x) / (x[-1] - x[0]))


def first_settled_below(tokens: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """Tokens seen at the first checkpoint from which the curve stays below `threshold`; NaN if it ends above."""
    tokens, values = _finite(tokens, values)
    if len(values) == 0 or values[-1] >= threshold:
        return float("nan")
    above = np.flatnonzero(values >= threshold)
    return float(tokens[above[-1] + 1] if len(above) else tokens[0])


def below_threshold_column(metric: str, threshold: float) -> str:
    """The formation table's column holding the tokens from which `metric` stays below `threshold`."""
    return f"tokens_{metric}_below_{threshold:g}"


def formation_table(
    study: StudyData,
    metrics: dict[str, str] | None = None,
    fraction: float = 0.9,
    absorption_metric: str = "absorption_fraction",
    absorption_threshold: float = 0.05,
    mode: Literal["first", "settled"] = "first",
) -> pd.DataFrame:
    """One row per arm: tokens to `fraction` of final for each metric, and absorption-reduction speed."""
    metrics = FORMATION_METRICS if metrics is None else metrics
    rows = []
    for arm in study.arms:
        table = arm.evaluation
        row: dict[str, float | str] = {"arm": arm.name, "schedule": arm.schedule_label, "total_tokens": float(table["tokens"].max())}
        for column in metrics:
            row[f"tokens_to_{int(round(fraction * 100))}pct_{column}"] = (
                time_to_fraction_of_final(table["tokens"], table[column], fraction, mode) if column in table else float("nan")
            )
        if absorption_metric in table:
            absorption = table[absorption_metric]
            row[f"{absorption_metric}_final"] = float(absorption.iloc[-1])
            row[f"{absorption_metric}_mean_over_log_tokens"] = mean_over_log_tokens(table["tokens"], absorption)
            below = first_settled_below(table["tokens"], absorption, absorption_threshold)
            row[below_threshold_column(absorption_metric, absorption_threshold)] = below
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")
