"""The tests behind the report's verdicts: a correction for the number of comparisons, an
equivalence test, and a rank correlation over distinct schedules.

- `holm`: Holm's step-down adjustment of a family's p-values (family-wise error ≤ α without
  Bonferroni's loss of power). The report applies it within each question, to the primary
  endpoint's tests as one family and to the secondary endpoints' as another, so the primary
  verdict is not diluted by the secondaries (taulib.analysis.report).
- `equivalence`: two one-sided tests (TOST) of a paired difference against ±margin: "equivalent"
  only when the 1 − 2α interval lies inside the margin.
- `rank_correlation`: Spearman ρ with an exact permutation p-value, for the handful of points
  there are when each schedule is one point (runs of one schedule are not independent evidence
  about the schedule's effect).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from taulib.analysis.intervals import Estimate, paired_difference

ALPHA = 0.05


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input's order; NaN (no test) stays NaN and does not count
    towards the family's size."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    if m == 0:
        return adjusted
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))  # step-down, kept monotone
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Equivalence:
    difference: Estimate  # with the 1 − 2α interval
    margin: float
    equivalent: bool

    def describe(self) -> str:
        verdict = "equivalent" if self.equivalent else "not shown equivalent"
        return f"{verdict} within ±{self.margin:g} (TOST, {1 - 2 * ALPHA:.0%} interval {self.difference.format()})"


def equivalence(a: Sequence[float], b: Sequence[float], margin: float, alpha: float = ALPHA) -> Equivalence:
    """Paired TOST of mean(a − b) against ±margin; equivalence needs at least two complete pairs."""
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    estimate = paired_difference(a, b, confidence=1 - 2 * alpha)
    inside = estimate.defined and -margin < estimate.low and estimate.high < margin
    return Equivalence(estimate, margin, bool(inside))


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> Estimate:
    """Spearman ρ of (x, y) with its exact two-sided permutation p-value (every ordering of y when
    there are at most 8 points, else 20,000 random ones). No interval: with a handful of points a
    bootstrap cannot give a sound one; the p-value carries the uncertainty."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    n = len(xs)
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return Estimate(math.nan, math.nan, math.nan, n, "permutation")
    rho = float(stats.spearmanr(xs, ys).statistic)
    result = stats.permutation_test(
        (ys,),
        lambda values: stats.spearmanr(xs, values).statistic,
        permutation_type="pairings",
        n_resamples=20_000 if n > 8 else math.inf,
        alternative="two-sided",
        rng=np.random.default_rng(0),
    )
    return Estimate(rho, math.nan, math.nan, n, "permutation", float(result.pvalue))
