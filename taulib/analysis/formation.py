"""Early concept formation: when a metric has formed after the warm-up, its value at a matched current
L0, and the absorption curve over the letters that have a latent.

The functions take a run's per-checkpoint values (tokens seen, metric) and return tokens seen.
Between checkpoints the curves are interpolated linearly, so a time is resolved to the checkpoint
grid and no finer (`taulib.analysis.matched` records the grid's resolution beside every time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from taulib.analysis.study_data import Run
from taulib.metrics.absorption.metric import AbsorptionSettings


def _finite(tokens: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tokens, values = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    if tokens.shape != values.shape:
        raise ValueError(f"tokens and values differ in length: {tokens.shape} vs {values.shape}")
    keep = np.isfinite(values) & np.isfinite(tokens)
    order = np.argsort(tokens[keep], kind="stable")
    return tokens[keep][order], values[keep][order]


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


def formation_censored(tokens: np.ndarray, values: np.ndarray, start_tokens: float, formed: float) -> bool:
    """Whether a `formation_time` is censored rather than observed: the window's first checkpoint (formed
    before the window, or already at its level there) or the run's last (never formed). A censored time
    is a bound, not a measurement: a t-test on it would treat the bound as the value."""
    tokens, _ = _finite(tokens, values)
    window = tokens[tokens >= start_tokens]
    if not math.isfinite(formed) or len(window) == 0:
        return False
    return formed == float(window[0]) or formed == float(tokens[-1])


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


def formed_letter_absorption(run: Run, min_k1_f1: float, min_probe_f1: float = AbsorptionSettings.min_probe_f1) -> tuple[list[str], np.ndarray]:
    """The letters whose best single latent detects them with k=1 F1 ≥ `min_k1_f1` at the final
    checkpoint (and whose ground-truth probe passes, as in the absorption metric), and the absorption
    fraction averaged over those letters at every checkpoint, in step order.

    Absorption is about a letter's latent failing to fire where another absorbs it; where no latent
    detects the letter there is nothing to absorb, and a mean over such letters measures noise.
    ([], all-NaN) when no letter qualifies or the run has no absorption details."""
    steps = sorted(run.steps)
    empty: tuple[list[str], np.ndarray] = ([], np.full(len(steps), np.nan))
    try:
        details = [run.details(step).get("absorption_letters") for step in steps]
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


@dataclass(frozen=True)
class LetterCurves:
    """Each first letter's k=1 F1 (the F1 of the single latent that best detects it) at every checkpoint of a run."""

    tokens: np.ndarray  # (checkpoints,) tokens seen, in step order
    letters: list[str]
    k1_f1: np.ndarray  # (letters, checkpoints); NaN at a checkpoint whose absorption was not evaluated
    evaluated: np.ndarray  # (letters,) bool: the letter's ground-truth probe passes at the final checkpoint (the metric's own rule)

    def formation(self, start_tokens: float, fraction: float = 0.9, min_change: float = 0.05) -> pd.DataFrame:
        """Per letter: its final k=1 F1, and the tokens at which its curve had formed (`formation_time`, the report's
        rule for the mean curve: `fraction` of the rise from the first checkpoint at or after `start_tokens`, kept to
        the end) with whether that time is censored (formed before the window, or never)."""
        rows = []
        for letter, curve, evaluated in zip(self.letters, self.k1_f1, self.evaluated, strict=True):
            formed = formation_time(self.tokens, curve, start_tokens, 1, fraction, min_change)
            rows.append(
                {
                    "letter": letter,
                    "evaluated": bool(evaluated),
                    "final_k1_f1": float(curve[-1]),
                    "formed_tokens": formed,
                    "censored": formation_censored(self.tokens, curve, start_tokens, formed),
                }
            )
        return pd.DataFrame(rows).set_index("letter")


def letter_k1_f1(run: Run, min_probe_f1: float = AbsorptionSettings.min_probe_f1) -> LetterCurves | None:
    """The run's per-letter k=1 F1 curves, from the absorption details of its checkpoints; None when its final
    checkpoint has none (absorption not evaluated). A checkpoint without absorption (`evaluation.absorption.checkpoints:
    final`) is a NaN column, not a zero."""
    table = run.evaluation.sort_values("step")
    steps, tokens = table["step"].astype(int).tolist(), table["tokens"].to_numpy(dtype=float)
    try:
        details = [run.details(step).get("absorption_letters") or [] for step in steps]
    except FileNotFoundError:
        return None
    if not steps or not details[-1]:
        return None
    final = pd.DataFrame(details[-1]).set_index("letter")
    letters = sorted(final.index)
    curves = np.full((len(letters), len(steps)), np.nan)
    for column, rows in enumerate(details):
        if rows:
            curves[:, column] = pd.DataFrame(rows).set_index("letter")["k1_f1"].reindex(letters).to_numpy(dtype=float)
    evaluated = ((final["probe_f1"] > min_probe_f1) & (final["n_probe_true_positives"] > 0)).reindex(letters).to_numpy(dtype=bool)
    return LetterCurves(tokens, letters, curves, evaluated)
