"""The wall-time estimate prices what a study still lacks: a sweep's calibrated targets, trained runs and recorded
checkpoints cost nothing again (taulib.study.cost)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from taulib.sweep.runs import SWEEPS_FOLDER, calibration_key
from taulib.sweep.spec import identity_l1_coefficient, load_sweep, run_config

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"
NOTEBOOK, STEP, UNIT = 2.0, 0.01, 0.1


class FixedCosts:
    """Unit costs fixed by hand, so that what the estimate counts is what is tested, not this machine's timings."""

    cache = SimpleNamespace(key="fixed", measured={}, path=Path("fixed.json"))
    busy_while_timed: dict[str, float] = {}

    def step(self, config, d_model):
        return STEP

    def model(self, config, name):
        return 0.001

    def synthetic(self, config):
        return 1.0, 1e-5

    def measured(self, name, measure):
        return UNIT

    def latent_contexts(self, config, d_model):
        return 1.0

    def notebook(self):
        return NOTEBOOK

    def figures(self):
        return 1.0


def _sweep():
    return load_sweep(PARAMETERS, "synthetic", overrides={"training": {"n_tokens": 25_600, "n_checkpoints": 5}})


def _stages(sweep, outputs):
    from taulib.study.cost import _estimate

    estimate = _estimate([(arm.parameter_file, arm.config) for arm in sweep.arms], outputs, sweep, FixedCosts())
    return {stage.stage: stage.seconds for stage in estimate.stages}


def _trained(outputs: Path, config, evaluated: bool) -> None:
    """A run folder as training (and, if `evaluated`, evaluate_run) leaves it: its summary, its checkpoint index and
    every family's record of every checkpoint."""
    from taulib.metrics.evaluate import _family_folders, _step_file
    from taulib.metrics.families import evaluated as families_of
    from taulib.train.trainer import training_checkpoint_steps

    run_dir = outputs / config.run_name
    (run_dir / "checkpoints").mkdir(parents=True)
    steps = training_checkpoint_steps(config.training)
    (run_dir / "checkpoints" / "index.json").write_text(json.dumps([{"step": step, "tokens": step, "tau": 1.0} for step in steps]))
    (run_dir / "summary.json").write_text("{}")
    if evaluated:
        for folder in _family_folders(run_dir, config, families_of(config)).values():
            folder.mkdir(parents=True)
            for step in steps:
                (folder / _step_file(step)).write_text("{}")


def _calibrated(outputs: Path, sweep, arm, chosen: dict[float, float], landed: dict[float, float] | None = None) -> None:
    """The arm's saved calibration: target → λ `chosen`, each run landing at `landed` L0 (default: where the search aims)."""
    from taulib.sweep.calibration import target_window

    folder = outputs / SWEEPS_FOLDER / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    landed = {target: target_window(target, sweep.l0_targets, sweep.calibration).aim for target in chosen} | (landed or {})
    targets = [{"l0_target": target, "l1_coefficient": coefficient, "l0": landed[target]} for target, coefficient in chosen.items()]
    (folder / f"{arm.name}.json").write_text(json.dumps({"version": 1, "key": calibration_key(arm, sweep.calibration_seed), "targets": targets}))


def test_a_finished_sweep_costs_its_notebooks_only(tmp_path):
    sweep = _sweep()
    before = _stages(sweep, tmp_path)
    assert before["calibration"] > 0 and before["runs"] > sweep.n_runs() * NOTEBOOK
    chosen = {arm.name: {target: 0.1 * (index + 1) for index, target in enumerate(sweep.l0_targets)} for arm in sweep.calibrated_arms()}
    for arm in sweep.calibrated_arms():
        _calibrated(tmp_path, sweep, arm, chosen[arm.name])
        for target, coefficient in chosen[arm.name].items():
            for seed in sweep.seeds:
                _trained(tmp_path, run_config(arm, coefficient, seed, target), evaluated=True)
    for arm_name, reference in sweep.identities.items():
        arm = next(a for a in sweep.arms if a.name == arm_name)
        coefficient = identity_l1_coefficient(arm, chosen[reference][sweep.identity_target])
        _trained(tmp_path, run_config(arm, coefficient, sweep.calibration_seed, sweep.identity_target, identity_of=reference), evaluated=True)
    after = _stages(sweep, tmp_path)
    assert after["calibration"] == 0
    assert after["runs"] == pytest.approx(sweep.n_runs() * NOTEBOOK)  # every run trained and every checkpoint recorded


def test_a_calibrated_target_prices_its_runs_by_what_they_lack(tmp_path):
    """One arm calibrated at every target, its seed-0 runs (the accepted probes) trained and not evaluated: its probes
    cost nothing, its other seeds are trained and evaluated, and its seed-0 runs are evaluated only."""
    from taulib.metrics.evaluate import checkpoints_to_evaluate

    sweep = _sweep()
    arm = sweep.calibrated_arms()[0]
    before = _stages(sweep, tmp_path)
    chosen = {target: 0.1 * (index + 1) for index, target in enumerate(sweep.l0_targets)}  # a run is one target's
    _calibrated(tmp_path, sweep, arm, chosen)
    for target in sweep.l0_targets:
        _trained(tmp_path, run_config(arm, chosen[target], sweep.calibration_seed, target), evaluated=False)
    after = _stages(sweep, tmp_path)
    from taulib.study.cost import EXPECTED_PROBES_PER_TARGET, _run_seconds

    train, evaluate = _run_seconds(arm.config, FixedCosts(), arm.config.model.synthetic.d_model)
    probes = len(sweep.l0_targets) * EXPECTED_PROBES_PER_TARGET * (train + UNIT * arm.config.evaluation.core.tokens)
    assert before["calibration"] - after["calibration"] == pytest.approx(probes)
    assert after["runs"] == pytest.approx(before["runs"])  # seed 0 was already counted as trained by its probe
    config = run_config(arm, chosen[sweep.l0_targets[0]], sweep.calibration_seed, sweep.l0_targets[0])
    pending = checkpoints_to_evaluate(tmp_path / config.run_name, config)
    assert set(pending.values()) == {len(json.loads((tmp_path / config.run_name / "checkpoints" / "index.json").read_text()))}
    # a calibration saved before the edge targets were bracketed: its densest target's run landed inside the target, so
    # calibrating again probes for that target, and the estimate prices its probes again
    densest = max(sweep.l0_targets)
    _calibrated(tmp_path, sweep, arm, chosen, landed={densest: 0.95 * densest})
    inside = _stages(sweep, tmp_path)
    assert inside["calibration"] - after["calibration"] == pytest.approx(probes / len(sweep.l0_targets))


def test_a_timing_made_while_other_processes_run_is_flagged_and_timed_again_once_the_machine_is_quiet(tmp_path, monkeypatch):
    """Another process busy on a core while the estimate times this machine: the estimate says its timings may run high,
    and the cache marks the value, so that it prices no later study once an estimate finds the machine quiet."""
    import subprocess
    import sys
    import time

    from taulib.study import cost
    from taulib.study.cost import BUSY_CORES, Costs, StageEstimate, StudyEstimate
    from taulib.timing import SpeedCache

    def estimate_of(costs: Costs) -> str:
        return StudyEstimate([StageEstimate("runs", 60.0, "")], busy_while_timed=costs.busy_while_timed, cores=2, cache_file=str(costs.cache.path)).describe()

    def not_timed() -> float:
        raise AssertionError("timed again")

    costs = Costs(SpeedCache(tmp_path / "speed.json", key="test"), show_progress=False)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # the spinner running
        assert costs.measured("a timing", lambda: 1.0) == 1.0  # the busy machine's value
    finally:
        spinner.kill()
        spinner.wait()
    assert costs.busy_while_timed["a timing"] >= BUSY_CORES
    assert "warning: 1 of the timings this estimate uses ran while other processes kept" in estimate_of(costs) and str(tmp_path) in estimate_of(costs)
    assert json.loads((tmp_path / "speed.json").read_text())["test | timed while busy"]["a timing"] >= BUSY_CORES
    # still busy at the next estimate: the marked value is used as it is, and flagged again; the machine is asked once
    readings = []
    monkeypatch.setattr(cost, "busy_cores", lambda: readings.append(1.5) or 1.5)
    busy_again = Costs(SpeedCache(tmp_path / "speed.json", key="test"), show_progress=False)
    assert [busy_again.measured("a timing", not_timed) for _ in range(3)] == [1.0] * 3 and len(readings) == 1
    assert "warning: 1 of the timings" in estimate_of(busy_again)
    # quiet: timed again, kept unmarked, and read from then on without timing or warning
    monkeypatch.setattr(cost, "busy_cores", lambda: 0.1)
    quiet = Costs(SpeedCache(tmp_path / "speed.json", key="test"), show_progress=False)
    assert quiet.measured("a timing", lambda: 0.6) == 0.6 and "warning" not in estimate_of(quiet)
    assert "test | timed while busy" not in json.loads((tmp_path / "speed.json").read_text())
    later = Costs(SpeedCache(tmp_path / "speed.json", key="test"), show_progress=False)
    assert later.measured("a timing", not_timed) == 0.6 and later.busy_while_timed == {}
