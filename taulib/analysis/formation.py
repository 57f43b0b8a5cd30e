"""Early concept formation: how fast each metric approaches its final value, and how fast absorption falls.

All functions take a run's per-checkpoint table (tokens seen, metric) and return numbers in tokens
seen. Between checkpoints the curves are interpolated linearly in tokens, so a time is resolved to
the checkpoint grid (log-spaced, dense early) and no finer.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from taulib.analysis.study_data import StudyData

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


def time_to_fraction_of_final(tokens: np.ndarray, values: np.ndarray, fraction: float = 0.9, mode: Literal["first", "settled"] = "first") -> float:
    """Tokens seen when a curve has covered `fraction` of its change from its first to its final value.

    Progress at a checkpoint is (v − v_first) / (v_final − v_first), so a falling metric (L0, or
    absorption) and a rising one (explained variance) are treated alike. `first`: the first
    crossing of `fraction`; `settled`: the crossing after which progress never drops below it
    again. NaN when the curve does not change (nothing to approach) or has fewer than two points.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    tokens, values = _finite(tokens, values)
    if len(values) < 2:
        return float("nan")
    change = values[-1] - values[0]
    if abs(change) <= 1e-12 * max(abs(values[0]), abs(values[-1]), 1e-300):
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
