"""Speed, defined as speed: when something happens over training, with times that may never be observed.

A run is followed from 0 to its budget B (tokens). A feature recovered only after B — or never — has
a *censored* recovery time: all we know is T > B. Censored times are never averaged as if they were
observed. Every time here is summarised as a **restricted mean** (restricted mean survival time,
RMST): E[min(T, B)], the area under the survival curve S(t) = P(T > t) from 0 to B. It is defined
whatever the share censored, and estimated without bias by the Kaplan–Meier curve; when every unit is
followed to B (administrative censoring, as here) that is the plain mean of min(T, B).

- `kaplan_meier_rmst`: the restricted mean of censored times (the per-feature recovery times of a run);
- `first_crossing`: tokens at which a curve first reaches a level (linear between checkpoints), or
  censored;
- `settles_below`: tokens from which a curve stays below a level to the end, or censored;
- `mean_over`: the curve's mean over a window (its normalised area).

Two arms are then compared on a run-level restricted mean, paired over replicates (the report's paired t).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CensoredTime:
    time: float  # when observed; the censoring time (the budget) otherwise
    observed: bool

    def restricted(self, horizon: float) -> float:
        """min(T, horizon): a censored time at or past the horizon counts as the horizon."""
        if not self.observed and self.time < horizon:
            raise ValueError(f"a time censored at {self.time:g} before the horizon {horizon:g} has no restricted value")
        return min(self.time, horizon)


def kaplan_meier_rmst(times: Sequence[float], observed: Sequence[bool], horizon: float) -> float:
    """∫₀^horizon S(t) dt with S the Kaplan–Meier estimate of (times, observed)."""
    t = np.asarray(times, dtype=float)
    event = np.asarray(observed, dtype=bool)
    if t.shape != event.shape or t.ndim != 1 or len(t) == 0:
        raise ValueError(f"times {t.shape} and observed {event.shape} must be the same non-empty 1-d shape")
    if not horizon > 0 or np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ValueError("times must be finite and ≥ 0, and the horizon > 0")
    area, survival, previous = 0.0, 1.0, 0.0
    at_risk = len(t)
    for time in np.unique(t):
        if time > horizon:
            break
        area += survival * (time - previous)
        here = t == time
        deaths = int((event & here).sum())
        if at_risk:
            survival *= 1 - deaths / at_risk
        at_risk -= int(here.sum())
        previous = time
    return float(area + survival * (horizon - previous))


def first_crossing(tokens: Sequence[float], values: Sequence[float], level: float, budget: float) -> CensoredTime:
    """Tokens at which `values` (at checkpoints `tokens`) first reach ≥ `level`, linear between checkpoints;
    censored at `budget` when it never does."""
    x, y = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    reached = np.flatnonzero(y >= level)
    if len(reached) == 0:
        return CensoredTime(budget, False)
    k = int(reached[0])
    if k == 0:
        return CensoredTime(float(x[0]), True)
    fraction = (level - y[k - 1]) / (y[k] - y[k - 1])
    return CensoredTime(float(x[k - 1] + fraction * (x[k] - x[k - 1])), True)


def settles_below(tokens: Sequence[float], values: Sequence[float], level: float, budget: float, start: float = 0.0) -> CensoredTime:
    """The first checkpoint at or after `start` from which `values` stay < `level` to the end (NaN counts
    as not below); censored at `budget` when the last checkpoint is not below."""
    x, y = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    window = x >= start
    x, below = x[window], np.nan_to_num(y[window], nan=math.inf) < level
    if len(x) == 0 or not below[-1]:
        return CensoredTime(budget, False)
    stays = np.flip(np.logical_and.accumulate(np.flip(below)))
    return CensoredTime(float(x[int(np.argmax(stays))]), True)


def mean_over(tokens: Sequence[float], values: Sequence[float], start: float = 0.0) -> float:
    """The trapezoid area of `values` over tokens from `start` to the last checkpoint, divided by that span
    (the curve's mean level over the window; NaN where a value inside the window is NaN)."""
    x, y = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    window = x >= start
    x, y = x[window], y[window]
    if len(x) < 2 or x[-1] == x[0]:
        return float(y[-1]) if len(y) else math.nan
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum() / (x[-1] - x[0]))
