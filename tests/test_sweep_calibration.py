"""λ calibration: the search on known L0(λ) curves, and with the real trainer on a tiny dataset."""

from __future__ import annotations

import math

import pytest
from references import sparse_directions_dataset

from taulib.config import RunConfig
from taulib.metrics.core.metric import reconstruction_metrics
from taulib.sae import in_raw_units, load_sae
from taulib.sweep.calibration import ArmCalibration, Probe, calibrate_arm, load_calibration, propose_lambda, save_calibration, within_tolerance
from taulib.sweep.spec import CalibrationSettings
from taulib.train.trainer import AnnealedTrainer

SETTINGS = CalibrationSettings(tolerance=0.15, max_probes_per_target=4, initial_effective_coefficient=0.5, initial_slope=-1.0, max_step_factor=8.0)


def _power_law(scale: float, exponent: float):
    """A noise-free L0(λ) = scale·λ^exponent, as a probe trainer."""

    def train(l1_coefficient: float, target: float) -> Probe:
        return Probe(l1_coefficient, scale * l1_coefficient**exponent, 0.9, f"lam{l1_coefficient:.4g}", target)

    return train


def test_first_proposal_gives_every_arm_the_same_final_penalty():
    assert propose_lambda([], 50.0, 0.05, SETTINGS) == pytest.approx(0.025)
    assert propose_lambda([], 50.0, 1.0, SETTINGS) == pytest.approx(0.5)


def test_one_probe_steps_along_the_assumed_slope_and_is_clamped():
    probe = Probe(0.1, 100.0, 0.9, "p", 50.0)
    assert propose_lambda([probe], 50.0, 1.0, SETTINGS) == pytest.approx(0.2)  # slope −1: half the L0, twice the λ
    assert propose_lambda([probe], 0.01, 1.0, SETTINGS) == pytest.approx(0.8)  # 10,000× would be asked; 8× is allowed


def test_a_bracket_is_interpolated_inside_it():
    dense, sparse = Probe(0.1, 80.0, 0.9, "a", 40.0), Probe(0.4, 10.0, 0.9, "b", 40.0)
    proposal = propose_lambda([dense, sparse], 40.0, 1.0, SETTINGS)
    # log-linear interpolation: log λ = log 0.1 + (log 40 − log 80)/(log 10 − log 80)·(log 0.4 − log 0.1)
    expected = math.exp(math.log(0.1) + (math.log(40) - math.log(80)) / (math.log(10) - math.log(80)) * (math.log(0.4) - math.log(0.1)))
    assert proposal == pytest.approx(expected, rel=1e-3) and 0.1 < proposal < 0.4


@pytest.mark.parametrize(("scale", "exponent"), [(5.0, -1.3), (2.0, -0.5), (40.0, -2.2)])
def test_reaches_every_target_on_known_curves(scale, exponent):
    calibration = calibrate_arm(ArmCalibration("arm", 0.05, SETTINGS, "k"), (20.0, 50.0, 100.0), _power_law(scale, exponent), show_progress=False)
    for result in calibration.targets:
        assert result.within_tolerance and within_tolerance(result.l0, result.l0_target, SETTINGS.tolerance)
        assert result.probes_tried <= SETTINGS.max_probes_per_target
    assert len(calibration.probes) <= 3 * SETTINGS.max_probes_per_target


@pytest.mark.parametrize(("scale", "exponent"), [(5.0, -1.3), (40.0, -2.2)])
def test_the_edge_targets_runs_land_outside_them_so_every_seed_brackets_them(scale, exponent):
    """Seeds reuse seed 0's λ and land a few percent apart in L0. A run at the sparsest or densest target that lands
    inside it leaves the seeds on that side with nothing beyond the target: the cell is unmatched. Aimed outward, the
    edge runs bracket every seed's edge target."""
    from taulib.analysis.frontier import read_at_l0

    targets = (20.0, 50.0, 100.0)
    statuses = {}
    for bracket_edges in (True, False):
        settings = SETTINGS.model_copy(update={"bracket_edges": bracket_edges})
        calibration = calibrate_arm(ArmCalibration("arm", 0.05, settings, "k"), targets, _power_law(scale, exponent), show_progress=False)
        if bracket_edges:
            low, middle, high = (result.l0 / result.l0_target for result in calibration.targets)
            assert 1 - SETTINGS.tolerance <= low <= 1 <= high <= 1 + SETTINGS.tolerance and within_tolerance(middle * 50, 50, SETTINGS.tolerance)
            assert all(result.within_tolerance for result in calibration.targets)
        statuses[bracket_edges] = {
            read_at_l0([seed * scale * result.l1_coefficient**exponent for result in calibration.targets], [1.0, 2.0, 3.0], target, slots=targets, grid=targets).status
            for seed in (0.97, 1.0, 1.03)  # L0 3% below and above seed 0's, at the same λ
            for target in targets
        }
    assert "unmatched" in statuses[False] and statuses[True] == {"bracketed"}


def test_a_target_out_of_reach_is_flagged_not_hidden():
    def saturating(l1_coefficient: float, target: float) -> Probe:  # L0 never exceeds 30
        return Probe(l1_coefficient, min(30.0, 3.0 / l1_coefficient), 0.9, f"lam{l1_coefficient:.4g}", target)

    calibration = calibrate_arm(ArmCalibration("arm", 1.0, SETTINGS, "k"), (100.0,), saturating, show_progress=False)
    (result,) = calibration.targets
    assert not result.within_tolerance and result.l0 == 30.0


def test_saved_probes_are_reused(tmp_path):
    path = tmp_path / "arm.json"
    calls = []

    def counting(l1_coefficient: float, target: float) -> Probe:
        calls.append(l1_coefficient)
        return _power_law(5.0, -1.3)(l1_coefficient, target)

    first = calibrate_arm(
        load_calibration(path, "arm", 0.05, SETTINGS, "key"), (20.0, 50.0), counting, lambda c: save_calibration(path, c), show_progress=False
    )
    made = len(calls)
    again = calibrate_arm(load_calibration(path, "arm", 0.05, SETTINGS, "key"), (20.0, 50.0), counting, show_progress=False)
    assert len(calls) == made  # nothing retrained
    assert [t.l1_coefficient for t in again.targets] == [t.l1_coefficient for t in first.targets]
    assert load_calibration(path, "arm", 0.05, SETTINGS, "another configuration").probes == []


def test_calibration_with_the_real_trainer_on_a_tiny_dataset(tmp_path):
    """λ found for a cosine 0.3 → 0.05 arm reaches each final held-out L0 target within the tolerance (±15%)."""
    data = sparse_directions_dataset(n=12_000, d=24, n_features=40, mean_active=3.0, seed=4)
    train, heldout = data.activations[:10_000], data.activations[10_000:]

    def train_probe(l1_coefficient: float, target: float) -> Probe:
        name = f"lam{l1_coefficient:.4g}"
        config = RunConfig.model_validate(
            {
                "run_name": name,
                "sae": {"width": 64},
                "schedule": {"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.05},
                "training": {"l1_coefficient": l1_coefficient, "n_tokens": 60_000, "batch_size": 500, "lr": 3e-3, "log_every_steps": 20, "n_checkpoints": 2},
            }
        )
        AnnealedTrainer(config, train, tmp_path / name, show_progress=False).train()
        sae, metadata = load_sae(tmp_path / name / "final")
        metrics, _ = reconstruction_metrics(in_raw_units(sae, metadata), heldout)
        return Probe(l1_coefficient, metrics.l0, metrics.explained_variance, name, target)

    calibration = calibrate_arm(ArmCalibration("tiny", 0.05, SETTINGS, "k"), (4.0, 10.0, 25.0), train_probe, show_progress=False)
    for result in calibration.targets:
        assert result.within_tolerance, result
        assert abs(result.relative_error) <= SETTINGS.tolerance
    # sparser targets need larger λ
    lambdas = [t.l1_coefficient for t in calibration.targets]
    assert lambdas == sorted(lambdas, reverse=True)


def test_no_probe_becomes_the_run_of_two_targets():
    """Where L0 barely moves with λ, one probe is the nearest to two targets: each target still gets a run of its own
    (two targets sharing one run would be one SAE counted twice, under two run names)."""

    def flat(l1_coefficient: float, target: float) -> Probe:  # L0 50 whatever λ: the nearest probe to 20 is also 50's
        return Probe(l1_coefficient, 50.0, 0.9, f"lam{l1_coefficient:.4g}", target)

    calibration = calibrate_arm(ArmCalibration("arm", 1.0, SETTINGS, "k"), (20.0, 50.0, 100.0), flat, show_progress=False)
    runs = [result.run_name for result in calibration.targets]
    assert len(set(runs)) == 3, runs
    assert {probe.run_name for probe in calibration.probes} >= set(runs)
    assert [result.within_tolerance for result in calibration.targets] == [False, True, False]


def test_a_target_that_converges_on_another_targets_run_trains_its_own_a_step_off_it():
    """Two targets whose one tried λ is the best for both: the second steps off it instead of reusing the run."""

    def plateau(l1_coefficient: float, target: float) -> Probe:  # a plateau at L0 40 below λ 1, steep above
        return Probe(l1_coefficient, 40.0 if l1_coefficient < 1.0 else 40.0 / l1_coefficient**6, 0.9, f"lam{l1_coefficient:.4g}", target)

    settings = SETTINGS.model_copy(update={"max_probes_per_target": 1, "bracket_edges": False})  # two targets, both edges: aimed at themselves here
    # target 30: one probe at λ 0.5, L0 40 (out of tolerance, but the nearest); target 40: the search proposes λ 0.5 again
    calibration = calibrate_arm(ArmCalibration("arm", 1.0, settings, "k"), (30.0, 40.0), plateau, show_progress=False)
    first, second = calibration.targets
    assert first.l1_coefficient == 0.5 and second.l1_coefficient == pytest.approx(0.5 / 1.1, rel=1e-3)
    assert first.run_name != second.run_name and second.within_tolerance
