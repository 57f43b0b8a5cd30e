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


def test_an_annealed_label_names_its_span_only_when_it_is_not_all_of_training():
    from taulib.config import ScheduleConfig

    def label(kind: str, anneal_fraction: float) -> str:
        return ScheduleConfig(kind=kind, tau_initial=0.3, tau_final=0.05, anneal_fraction=anneal_fraction).label

    assert label("cosine", 1.0) == "cosine τ 0.3 → 0.05"
    assert label("cosine", 0.8) == "cosine τ 0.3 → 0.05 over 80%" != label("cosine", 0.5)
    assert label("linear", 0.8) == "linear τ 0.3 → 0.05 over 80%"


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


# ----------------------------------------------------------------------------- a kind of one's own
STEP_KIND = '''
from taulib.schedules import ScheduleKindSpec, register_kind

register_kind(
    ScheduleKindSpec(
        "step",
        lambda s, a, b: a if s < 0.5 else b,  # τ holds tau_initial for the first half of the anneal, then tau_final
        label=lambda a, b, f: f"step τ {a:g} → {b:g}",
        sentence=lambda a, b, f: f"Step τ {a:g} → {b:g}",
        uses=("tau_initial", "tau_final", "anneal_fraction"),
        check=lambda a, b, f: f"kind 'step' steps τ down: tau_final ({b}) must be <= tau_initial ({a})" if b > a else None,
        dash="dot",
        annealed=True,
    )
)
'''


@pytest.fixture
def step_kind(tmp_path, monkeypatch):
    """A kind declared in a temporary module of its own, as a user would add one; undeclared afterwards."""
    import importlib
    import sys

    from taulib.schedules import SCHEDULE_KIND_SPECS

    (tmp_path / "step_kind.py").write_text(STEP_KIND)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("step_kind")
    try:
        yield SCHEDULE_KIND_SPECS["step"]
    finally:
        SCHEDULE_KIND_SPECS.pop("step", None)
        sys.modules.pop("step_kind", None)


def test_a_kind_declared_in_its_own_module_runs_through_the_study(step_kind, tmp_path):
    """Declaring the kind is the whole change: an arm file uses it, and the configuration, the sweep, the report's
    arm roles, the plots and the playground read its declaration."""
    import shutil
    from pathlib import Path
    from types import SimpleNamespace

    from taulib.analysis.report import constant_coefficient_arms
    from taulib.config import ConfigError, config_from_mapping, load_run_config
    from taulib.playground.controls import schedule_mapping
    from taulib.playground.keep import describe_schedule
    from taulib.plots.style import arm_styles
    from taulib.schedules import schedule_kinds
    from taulib.sweep.spec import load_sweep

    assert "step" in schedule_kinds()
    schedule = TauSchedule("step", 0.3, 0.05)
    assert (schedule.tau(0.2), schedule.tau(0.8), schedule.tau_at_end) == (0.3, 0.05, 0.05)
    parameters = tmp_path / "parameters"
    shutil.copytree(Path(__file__).resolve().parents[1] / "parameters", parameters)
    (parameters / "step_0.3_to_0.05.yaml").write_text("inherit: _study.yaml\ndescription: a step\nschedule: {kind: step, tau_initial: 0.3, tau_final: 0.05}\n")
    config = load_run_config(parameters / "step_0.3_to_0.05.yaml")
    assert config.schedule.label == "step τ 0.3 → 0.05" and config.schedule.spec.annealed
    with pytest.raises(ConfigError, match=r"kind 'step' steps τ down: tau_final \(0.5\) must be <= tau_initial \(0.3\)"):
        config_from_mapping({"run_name": "rising", "schedule": {"kind": "step", "tau_initial": 0.3, "tau_final": 0.5}}, "rising.yaml")
    sweep = load_sweep(parameters)
    arm = sweep.arm("step_0.3_to_0.05")
    assert arm in sweep.calibrated_arms() and "step_0.3_to_0.05" not in sweep.identities
    assert arm_styles([SimpleNamespace(name="step", config=config)])["step"].dash == "dot"
    kinds = {"step_arm": "step", "constant_arm": "constant"}
    table = {"arm": ["step_arm", "constant_arm"]}
    assert constant_coefficient_arms(table, kinds, None) == ["constant_arm"]  # an annealed kind is compared, not an equivalence check
    assert schedule_mapping("step", 0.3, 0.05, 1.0) == {"kind": "step", "tau_initial": 0.3, "tau_final": 0.05}
    assert describe_schedule({"kind": "step", "tau_initial": 0.3, "tau_final": 0.05}) == "Step τ 0.3 → 0.05 (kept from the τ playground)."


def test_a_kind_is_declared_once():
    from taulib.schedules import SCHEDULE_KIND_SPECS, register_kind

    with pytest.raises(ValueError, match="declared already"):
        register_kind(SCHEDULE_KIND_SPECS["cosine"])
