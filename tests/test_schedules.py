import math

import pytest

from taulib.schedules import ScheduleError, TauSchedule


@pytest.mark.parametrize(
    ("kind", "start", "mid", "end"),
    [
        ("cosine", 0.3, (0.3 + 0.05) / 2, 0.05),  # cos(π/2) = 0: exactly halfway at the midpoint
        ("linear", 0.3, 0.175, 0.05),
        ("exponential", 0.3, math.sqrt(0.3 * 0.05), 0.05),  # geometric mean at the midpoint
        ("constant", 0.3, 0.3, 0.3),
    ],
)
def test_schedule_values_at_ends_and_midpoint(kind, start, mid, end):
    schedule = TauSchedule(kind, 0.3, 0.05 if kind != "constant" else 0.3)
    assert schedule.tau(0.0) == pytest.approx(start)
    assert schedule.tau(0.5) == pytest.approx(mid)
    assert schedule.tau(1.0) == pytest.approx(end)


def test_cosine_quarter_point_matches_formula():
    schedule = TauSchedule("cosine", 0.5, 0.05)
    expected = 0.05 + 0.5 * (0.5 - 0.05) * (1 + math.cos(math.pi * 0.25))
    assert schedule.tau(0.25) == pytest.approx(expected)


def test_plain_l1_is_tau_one():
    schedule = TauSchedule("none")
    assert {schedule.tau(p) for p in (0.0, 0.3, 1.0)} == {1.0}


def test_anneal_fraction_reaches_floor_early_then_holds():
    schedule = TauSchedule("cosine", 0.3, 0.05, anneal_fraction=0.5)
    assert schedule.tau(0.25) == pytest.approx(0.175)
    assert schedule.tau(0.5) == pytest.approx(0.05)
    assert schedule.tau(0.9) == pytest.approx(0.05)


def test_horizon_is_the_whole_training_not_the_warmup():
    schedule = TauSchedule("linear", 0.3, 0.05)
    total = 1000
    assert schedule.at_step(0, total) == pytest.approx(0.3)
    assert schedule.at_step(total - 1, total) == pytest.approx(0.05)
    assert schedule.at_step(100, total) > 0.27  # still near the start after a typical warm-up length


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_or_non_finite_tau_is_rejected(bad):
    with pytest.raises(ScheduleError, match="tau_initial"):
        TauSchedule("cosine", bad, 0.05)
    with pytest.raises(ScheduleError, match="tau_final"):
        TauSchedule("cosine", 0.3, bad)


def test_unknown_kind_is_rejected():
    with pytest.raises(ScheduleError, match="unknown schedule kind 'sigmoid'"):
        TauSchedule("sigmoid", 0.3, 0.05)  # type: ignore[arg-type]


def test_l1_warmup_ramps_the_coefficient_linearly_from_zero_then_holds_lambda():
    schedule = TauSchedule("l1_warmup", anneal_fraction=0.05)
    total = 1000  # a ramp of 50 steps
    coefficients = [1.0 / schedule.at_step(step, total) for step in range(total)]
    assert coefficients[:50] == pytest.approx([(step + 1) / 50 for step in range(50)])  # λ/50, 2λ/50, … λ
    assert set(coefficients[49:]) == {1.0}
    assert schedule.tau(0.0) == math.inf and schedule.tau(0.025) == pytest.approx(2.0)


def test_l1_warmup_refuses_taus_in_the_config():
    from pydantic import ValidationError

    from taulib.config import ScheduleConfig

    with pytest.raises(ValidationError, match="kind 'l1_warmup' ramps λ from 0"):
        ScheduleConfig.model_validate({"kind": "l1_warmup", "tau_initial": 0.3})
