"""taulib.groundtruth.speed: restricted means of censored times, crossings and areas, on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from taulib.analysis.intervals import paired_difference
from taulib.groundtruth.speed import CensoredTime, first_crossing, kaplan_meier_rmst, mean_over, settles_below


def test_kaplan_meier_rmst_of_a_hand_computed_case():
    # S = 1 on [0, 1), 3/4 on [1, 3) (the censored unit at 2 leaves the risk set), 3/8 on [3, 4), 0 after
    assert kaplan_meier_rmst([1, 2, 3, 4], [True, False, True, True], horizon=5) == pytest.approx(1 + 2 * 0.75 + 1 * 0.375)


def test_without_censoring_before_the_horizon_rmst_is_the_mean_of_the_times_cut_at_the_horizon():
    rng = np.random.default_rng(0)
    times = rng.exponential(3.0, size=500)
    horizon = 4.0
    observed = times <= horizon
    cut = np.minimum(times, horizon)  # what a run records: never recovered = censored at its budget
    assert kaplan_meier_rmst(cut, observed, horizon) == pytest.approx(cut.mean(), rel=1e-12)


def exponential_rmst(rate: float, horizon: float) -> float:
    return (1 - math.exp(-rate * horizon)) / rate


def test_a_known_difference_in_restricted_mean_recovery_time_is_found_despite_censoring():
    """Two arms whose features recover at exponential rates 1 and 0.5 (the slower arm leaves 37% unrecovered
    by the budget): the restricted means, paired over replicates, cover the true difference; the naive mean
    over recovered features only (dropping the censored ones) is biased and would understate it."""
    rng = np.random.default_rng(1)
    horizon, replicates, features = 2.0, 8, 400
    fast, slow, naive = [], [], []
    for _ in range(replicates):
        for rate, out in ((1.0, fast), (0.5, slow)):
            times = rng.exponential(1 / rate, size=features)
            observed = times <= horizon
            out.append(kaplan_meier_rmst(np.minimum(times, horizon), observed, horizon))
            if rate == 0.5:
                naive.append(times[observed].mean())
    estimate = paired_difference(slow, fast)
    truth = exponential_rmst(0.5, horizon) - exponential_rmst(1.0, horizon)
    assert estimate.low < truth < estimate.high
    assert estimate.low > 0
    assert abs(np.mean(naive) - exponential_rmst(0.5, horizon)) > 5 * abs(np.mean(slow) - exponential_rmst(0.5, horizon))


def test_a_censored_time_has_no_restricted_value_before_its_censoring():
    assert CensoredTime(5.0, False).restricted(5.0) == 5.0
    assert CensoredTime(3.0, True).restricted(5.0) == 3.0
    with pytest.raises(ValueError, match="censored"):
        CensoredTime(2.0, False).restricted(5.0)


def test_first_crossing_interpolates_between_checkpoints_and_censors_at_the_budget():
    assert first_crossing([0, 10, 20], [0.0, 0.4, 0.8], 0.5, budget=20) == CensoredTime(12.5, True)
    assert first_crossing([0, 10, 20], [0.6, 0.7, 0.8], 0.5, budget=20) == CensoredTime(0.0, True)
    assert first_crossing([0, 10, 20], [0.0, 0.4, 0.45], 0.5, budget=20) == CensoredTime(20.0, False)


def test_settles_below_needs_the_curve_to_stay_below_to_the_end():
    tokens = [0, 10, 20, 30, 40]
    assert settles_below(tokens, [0.0, 0.3, 0.1, 0.02, 0.01], 0.05, budget=40) == CensoredTime(30.0, True)
    # dips below and comes back: not settled until the last dip
    assert settles_below(tokens, [0.0, 0.01, 0.2, 0.01, 0.01], 0.05, budget=40) == CensoredTime(30.0, True)
    assert settles_below(tokens, [0.0, 0.3, 0.1, 0.02, 0.2], 0.05, budget=40) == CensoredTime(40.0, False)
    # the warm-up is left out: a curve below the level from the start settles where the window starts
    assert settles_below(tokens, [0.0, 0.0, 0.0, 0.0, 0.0], 0.05, budget=40, start=10) == CensoredTime(10.0, True)
    assert settles_below(tokens, [0.0, 0.01, float("nan"), 0.0, 0.0], 0.05, budget=40) == CensoredTime(30.0, True)


def test_mean_over_is_the_normalised_trapezoid_area():
    assert mean_over([0, 10, 20], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert mean_over([0, 10, 30], [0.0, 1.0, 1.0]) == pytest.approx((5 + 20) / 30)
    assert mean_over([0, 10, 30], [9.0, 1.0, 1.0], start=10) == pytest.approx(1.0)  # before `start` is left out


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        kaplan_meier_rmst([], [], 1.0)
    with pytest.raises(ValueError):
        kaplan_meier_rmst([1.0, -1.0], [True, True], 1.0)
