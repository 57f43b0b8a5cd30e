"""Intervals over seeds: every number the report quotes carries one.

With three to five seeds per configuration, the t interval is the honest default (a bootstrap of
three values cannot reach beyond their range); the percentile bootstrap is here for statistics
without a t theory (correlations over runs). Both come from scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval; `n` is the number of independent values behind it."""

    value: float
    low: float
    high: float
    n: int
    method: str  # "t", "welch", "paired t", "bootstrap", "single value"
    p_value: float = math.nan  # two-sided, of "the true value is 0" (differences and correlations)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def format(self, digits: int = 3) -> str:
        """ "0.412 [0.401, 0.423]" (three significant digits by default); the bare value when n = 1."""
        if not self.defined:
            return f"{_num(self.value, digits)} (n = {self.n}, no interval)"
        return f"{_num(self.value, digits)} [{_num(self.low, digits)}, {_num(self.high, digits)}]"


def _num(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _clean(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean with the Student-t interval (normal values, unknown variance); NaNs are dropped."""
    array = _clean(values)
    n = len(array)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "t")
    mean = float(array.mean())
    if n == 1:
        return Estimate(mean, math.nan, math.nan, 1, "single value")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * array.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n, "t")


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """mean(a) − mean(b) with Welch's interval (unequal variances, Welch–Satterthwaite degrees of freedom)."""
    x, y = _clean(a), _clean(b)
    n = min(len(x), len(y))
    if len(x) == 0 or len(y) == 0:
        return Estimate(math.nan, math.nan, math.nan, n, "welch")
    difference = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Estimate(difference, math.nan, math.nan, n, "single value")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return Estimate(difference, difference, difference, n, "welch")
    dof = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof) * se)
    return Estimate(difference, difference - half, difference + half, n, "welch")


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """mean(a − b) over pairs (a[i], b[i]) — e.g. two arms run with the same seed, hence the same
    initialisation and batch order — with the paired t interval and p-value. A pair with a missing
    value on either side is dropped; `n` counts the complete pairs."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} vs {y.shape}")
    differences = (x - y)[np.isfinite(x) & np.isfinite(y)]
    estimate = t_interval(differences, confidence)
    if estimate.n < 2:
        return replace(estimate, method="single value" if estimate.n == 1 else "paired t")
    spread = float(differences.std(ddof=1))
    # identical differences in every pair: no spread to test against, so no p-value (a zero variance
    # is a measurement artefact, not infinite evidence)
    untestable = spread <= 1e-12 * max(1.0, abs(estimate.value))  # rounding, not seed-to-seed variation
    p_value = math.nan if untestable else float(2 * stats.t.sf(abs(estimate.value) / (spread / math.sqrt(estimate.n)), estimate.n - 1))
    return replace(estimate, method="paired t", p_value=p_value)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., float],
    confidence: float = CONFIDENCE,
    n_resamples: int = 2000,
    seed: int = 0,
    paired: bool = False,
) -> Estimate:
    """The percentile bootstrap of `statistic` over `values` (rows resampled together when `paired`).

    `values` is one sample, or with `paired` a tuple of equal-length samples (e.g. x and y of a correlation).
    """
    data = tuple(np.asarray(v, dtype=float) for v in values) if paired else (np.asarray(values, dtype=float),)
    n = len(data[0])
    point = float(statistic(*data))
    if n < 3:
        return Estimate(point, math.nan, math.nan, n, "single value" if n == 1 else "bootstrap")
    result = stats.bootstrap(
        data,
        statistic,
        paired=paired,
        vectorized=False,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Estimate(point, float(low), float(high), n, "bootstrap")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rho = stats.spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else math.nan
