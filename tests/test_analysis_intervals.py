"""The interval code against known distributions and against scipy's own tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from taulib.analysis.intervals import Estimate, bootstrap_interval, spearman, t_interval, welch_difference


def test_t_interval_matches_the_closed_form():
    values = [1.0, 2.0, 4.0]
    mean, sd = 7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 dof), from tables
    estimate = t_interval(values)
    assert estimate.value == pytest.approx(mean)
    assert (estimate.low, estimate.high) == pytest.approx((mean - half, mean + half), rel=1e-9)
    assert estimate.n == 3 and estimate.method == "t"


def test_t_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, hits = 4000, 0
    for _ in range(trials):
        estimate = t_interval(rng.normal(5.0, 2.0, size=3))
        hits += estimate.low <= 5.0 <= estimate.high
    # binomial standard error of a 95% coverage over 4000 trials is 0.0034
    assert abs(hits / trials - 0.95) < 0.012


def test_welch_difference_matches_scipy_and_covers():
    a, b = [1.0, 1.4, 0.9, 1.2], [0.5, 0.9, 0.2]
    ours = welch_difference(a, b)
    theirs = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert ours.value == pytest.approx(np.mean(a) - np.mean(b))
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), rel=1e-9)

    rng = np.random.default_rng(1)
    trials, hits = 3000, 0
    for _ in range(trials):
        estimate = welch_difference(rng.normal(1.0, 1.0, 3), rng.normal(0.0, 3.0, 4))
        hits += estimate.low <= 1.0 <= estimate.high
    assert abs(hits / trials - 0.95) < 0.015  # Welch is approximate at these sizes; it stays near nominal


def test_bootstrap_of_the_mean_of_a_large_normal_sample_agrees_with_theory():
    sample = np.random.default_rng(2).normal(10.0, 1.0, 2000)
    estimate = bootstrap_interval(sample, np.mean, n_resamples=4000)
    half = 1.96 * sample.std(ddof=1) / math.sqrt(len(sample))
    assert estimate.value == pytest.approx(sample.mean())
    assert estimate.low == pytest.approx(sample.mean() - half, abs=0.01) and estimate.high == pytest.approx(sample.mean() + half, abs=0.01)


def test_paired_bootstrap_of_a_correlation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    strong = bootstrap_interval((x, 2 * x + rng.normal(0, 0.1, 60)), spearman, paired=True)
    none = bootstrap_interval((x, rng.normal(size=60)), spearman, paired=True)
    assert strong.value > 0.95 and strong.excludes_zero
    assert not none.excludes_zero and none.low < 0 < none.high


def test_degenerate_inputs_say_so():
    assert t_interval([3.0]).method == "single value" and not t_interval([3.0]).defined
    assert t_interval([math.nan, 1.0, 2.0]).n == 2  # NaN seeds are dropped, and counted out
    assert math.isnan(t_interval([]).value)
    assert welch_difference([1.0], [2.0, 3.0]).method == "single value"
    assert Estimate(0.4123, 0.4011, 0.4234, 3, "t").format() == "0.412 [0.401, 0.423]"
    assert Estimate(12345.0, 12000.0, 12600.0, 3, "t").format() == "12,345 [12,000, 12,600]"
    assert "no interval" in t_interval([3.0]).format()
