"""The ground-truth track's cost: what a track folder still lacks (taulib.groundtruth.cost) and the study estimate's stage
for it (taulib.study.cost.ground_truth_stage), counted with unit costs fixed by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_study_cost import FixedCosts
from tiny_track import TINY

from taulib.groundtruth import cost
from taulib.groundtruth.track import TRACK_FILE, arm_budgets, calibration_path, load_track_config, run_specs, track_arms

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"


def _design():
    config = load_track_config(PARAMETERS / TRACK_FILE, TINY)
    arms, _ = track_arms(PARAMETERS, config)
    return config, arms


def _parameters(tmp_path: Path) -> Path:
    """The arm files with the tiny track design as their _ground_truth.yaml."""
    parameters = tmp_path / "parameters"
    parameters.mkdir()
    for path in PARAMETERS.glob("*.yaml"):
        parameters.joinpath(path.name).write_text(path.read_text())
    parameters.joinpath(TRACK_FILE).write_text(json.dumps(TINY))  # YAML reads JSON
    return parameters


def _specs(config, arms):
    calibration = {arm.name: {budget: dict.fromkeys(config.l0_targets, 1.0) for budget in arm_budgets(config, arm)} for arm in arms}
    return run_specs(config, arms, calibration)


def test_a_fresh_track_lacks_every_grid_run_and_every_calibration(tmp_path):
    config, arms = _design()
    specs = _specs(config, arms)
    work = cost.pending_work(config, arms, tmp_path)
    assert work.grid_runs == len(specs) and work.grid_samples == sum(spec.budget for spec in specs)
    assert work.proxy_runs == sum(spec.budget == config.budgets[-1] for spec in specs)
    calibrations = sum(len(arm_budgets(config, arm)) for arm in arms)
    assert work.probes == cost.TRACK_PROBES_PER_TARGET * len(config.l0_targets) * calibrations
    assert work.replicates == len(config.replicates)


def test_what_the_folder_holds_is_not_counted_again(tmp_path):
    config, arms = _design()
    specs = _specs(config, arms)
    for arm in arms:
        for budget in arm_budgets(config, arm):
            path = calibration_path(tmp_path, arm.name, budget)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"8": 1.0}))
    missing = specs[0]
    for spec in specs[1:]:
        spec.path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
        spec.path(tmp_path).write_text("{}")
    work = cost.pending_work(config, arms, tmp_path)
    assert (work.grid_runs, work.grid_samples, work.probes, work.probe_samples, work.replicates) == (1, missing.budget, 0, 0, 1)
    missing.path(tmp_path).write_text("{}")
    assert cost.pending_work(config, arms, tmp_path).runs == 0


def test_runs_are_priced_from_two_timed_budgets_and_the_proxies():
    """Timed at 100 samples in 2 s and 300 in 4 s: 0.01 s a sample and 1 s a run; three runs of 500 samples in all and
    two of them with proxies at 0.5 s: 3 + 5 + 1 seconds."""
    work = cost.TrackWork(grid_runs=2, grid_samples=400, proxy_runs=2, probes=1, probe_samples=100, replicates=1)
    assert cost.run_seconds(work, (100, 2.0), (300, 4.0), 0.5) == pytest.approx(9.0)


def test_the_study_estimate_prices_a_pending_track_and_not_a_finished_one(tmp_path):
    from taulib.study.cost import ground_truth_stage

    config, arms = _design()
    parameters = _parameters(tmp_path)
    root = tmp_path / "track"
    costs = FixedCosts()  # every timing 0.1 s: a run costs its fixed part, 0.1 s
    stage = ground_truth_stage(parameters, root, costs)
    work = cost.pending_work(config, arms, root)
    assert stage.stage == "ground-truth track"
    workers = min(config.workers, os.cpu_count() or 1)
    assert stage.seconds == pytest.approx(work.runs * 0.1 / workers + work.replicates * 0.1 + costs.figures())
    for spec in _specs(config, arms):
        spec.path(root).parent.mkdir(parents=True, exist_ok=True)
        spec.path(root).write_text("{}")
    for arm in arms:
        for budget in arm_budgets(config, arm):
            calibration_path(root, arm.name, budget).parent.mkdir(parents=True, exist_ok=True)
            calibration_path(root, arm.name, budget).write_text("{}")
    (root / "REPORT.md").write_text("# done")
    assert ground_truth_stage(parameters, root, costs).seconds == costs.figures()  # only its report and figures again


def test_the_estimate_refuses_a_folder_of_another_design(tmp_path):
    """Runs of another design would count as done: the folder is refused, as the track itself refuses it."""
    from taulib.config import ConfigError
    from taulib.groundtruth.track import track_record
    from taulib.study.cost import ground_truth_stage

    config, arms = _design()
    parameters = _parameters(tmp_path)
    root = tmp_path / "track"
    root.mkdir()
    other = load_track_config(PARAMETERS / TRACK_FILE, TINY | {"lr": 0.02})
    (root / "track.json").write_text(json.dumps(track_record(other, *track_arms(PARAMETERS, other))))
    with pytest.raises(ConfigError, match="another design"):
        ground_truth_stage(parameters, root, FixedCosts())
