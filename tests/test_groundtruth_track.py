"""The ground-truth track end to end on a tiny design: runs, resume, refusals, report, A/A control."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_track import TINY

from taulib.cli import main
from taulib.config import ConfigError
from taulib.groundtruth import track
from taulib.groundtruth.analysis import load_runs
from taulib.groundtruth.report import REPORT_FILE, SUMMARY_FILE, lead_section, write_report

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"


def calibration_of(record: dict) -> track.Calibration:
    return {
        arm: {int(b): {float(t): c for t, c in by_target.items()} for b, by_target in by_budget.items()} for arm, by_budget in record["calibration"].items()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ground_truth")
    record = track.run_track(PARAMETERS, root, TINY, show_progress=False)
    return root, record


def test_the_track_trains_every_arm_budget_and_grid_point_of_every_replicate(tiny):
    root, record = tiny
    config = track.load_track_config(PARAMETERS / track.TRACK_FILE, TINY)
    arms, identities = track.track_arms(PARAMETERS, config)
    names = {arm.name for arm in arms}
    # the study's arm files (constant τ is plain L1 at λ·τ: not trained), the A/A arm, the families' new members
    assert {track.PLAIN, track.AGAIN, track.TIGHTENED, track.WARMUP, "cosine_0.1_to_0.05", "cosine_0.3_to_0.02"} <= names
    assert "constant_0.3" not in names and identities["constant_0.3"] == track.PLAIN
    assert identities["cosine_0.05_to_0.05"] == track.PLAIN and identities["cosine_0.3_to_0.05"] == track.TIGHTENED
    assert identities["cosine_0.5_to_0.05"] == "cosine_0.5_to_0.05_wider" and identities["cosine_0.3_to_0.1"] == "cosine_0.3_to_0.1_higher_floor"
    # the families anneal over the tested arm's span (its arm file's anneal_fraction), which is what makes those identities
    tested = next(arm for arm in arms if arm.name == track.TIGHTENED).schedule.anneal_fraction
    assert tested < 1 and {arm.schedule.anneal_fraction for arm in arms if arm.role == "family"} == {tested}
    calibration = calibration_of(record)
    specs = track.run_specs(config, arms, calibration)
    assert all(spec.path(root).is_file() for spec in specs)
    budget_runs = [s for s in specs if s.arm.name == track.TIGHTENED]
    assert {s.budget for s in budget_runs} == {4096, 8192}
    assert {s.budget for s in specs if s.arm.name == "linear_0.3_to_0.05"} == {8192}
    run = json.loads(specs[0].path(root).read_text())
    assert [c["step"] for c in run["checkpoints"]][0] == 0 and len(run["checkpoints"]) == 5
    # every arm calibrated at each of its budgets: on the first replicate each target lies between two runs
    runs = load_runs(root)
    for (arm, budget), frontier in runs[runs["replicate"] == "w0_s0"].groupby(["arm", "budget"]):
        assert budget in calibration[arm]
        for target in config.l0_targets:
            l0s = frontier["final_l0"]
            assert l0s.min() <= target <= l0s.max(), (arm, budget, target, sorted(l0s))


def test_a_finished_track_resumes_without_training_and_a_lost_run_is_trained_again_identically(tiny):
    root, record = tiny
    config = track.load_track_config(PARAMETERS / track.TRACK_FILE, TINY)
    arms, _ = track.track_arms(PARAMETERS, config)
    specs = track.run_specs(config, arms, calibration_of(record))
    times = {spec.path(root): spec.path(root).stat().st_mtime_ns for spec in specs}
    lost = specs[7].path(root)
    before = json.loads(lost.read_text())
    lost.unlink()
    # in this process, one worker: the run is retrained the same as in the worker pool
    track.run_track(PARAMETERS, root, TINY | {"workers": 1}, show_progress=False)
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in times.items() if path != lost)
    after = json.loads(lost.read_text())
    before.pop("seconds"), after.pop("seconds")
    assert after == before


def test_the_report_leads_with_the_verdicts_and_the_a_a_control_is_unresolved(tiny):
    root, _ = tiny
    report = write_report(root, png=False)
    text = (root / REPORT_FILE).read_text()
    assert text.index("## Verdicts") < text.index("## Per arm")
    assert "Early concept formation" in text and "Absorption-reduction speed" in text
    summary = json.loads((root / SUMMARY_FILE).read_text())
    assert summary["aa_unresolved_everywhere"] is True
    assert all(row["verdict"] == "unresolved" for row in summary["aa"])
    assert len(summary["aa"]) > 0 and any(row["p"] is not None for row in summary["aa"])  # tested, not empty
    # every contrast pairs replicates: 2 worlds × 3 seeds
    assert max(c.estimate.n for c in report.contrasts) == 6
    assert {p.proxy for p in report.proxies} == {"formation_time", "seed_stability", "max_decoder_cosine"}
    assert (root / "figures" / "ground_truth_mcc.html").is_file()


def test_the_lead_section_of_the_language_models_report_quotes_the_primary_contrasts_with_intervals(tiny):
    root, _ = tiny
    write_report(root, png=False)
    lead = lead_section(root, "ground_truth/REPORT.md")
    summary = json.loads((root / SUMMARY_FILE).read_text())
    assert lead.startswith("## Ground truth first") and "(ground_truth/REPORT.md)" in lead
    primary = [row for row in summary["contrasts"] if row["family"].endswith(": primary")]
    assert len(primary) == 2 * 2 * 2 * 2  # two questions × two references × two budgets × two targets
    assert all(f"| {row['budget']:,} | {row['l0_target']:g} |" in lead for row in primary)
    assert f"of {summary['aa_tested']} contrasts" in lead
    assert lead_section(root / "nothing here") is None


def test_a_folder_of_another_design_is_refused_before_anything_is_written(tiny):
    root, _ = tiny
    before = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    with pytest.raises(ConfigError, match="lr"):
        track.run_track(PARAMETERS, root, TINY | {"lr": 0.02}, show_progress=False)
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"budgets": [8192, 4096]}, "budgets"),
        ({"tau_initial_family": [0.02, 0.3]}, "tau_initial_family"),
        ({"tau_final_family": [0.5]}, "tau_final_family"),
        ({"budget_arms": ["no_such_arm"]}, "budget_arms"),
        ({"world": {"n_features": 8, "n_parents": 4}}, "world"),
        ({"l0_targets": [0.0]}, "l0_targets"),
        ({"typo": 1}, "typo"),
    ],
)
def test_bad_settings_are_refused_naming_the_field_before_any_work(tmp_path, capsys, settings, field):
    root = tmp_path / "gt"
    arguments = ["groundtruth", "--parameters", str(PARAMETERS), "--outputs", str(root), "--quiet", "--no-png"]
    for key, value in settings.items():
        arguments += ["--set", f"{key}={json.dumps(value)}"]
    assert main(arguments) == 2
    assert field in capsys.readouterr().err
    assert not root.exists()


@pytest.mark.parametrize("width_ratio", [0.5, 2.0])
def test_the_track_runs_narrower_and_wider_than_the_truth(tmp_path, width_ratio):
    """Fewer latents than features leave features unmatched (MCC counts them as 0); more leave latents unmatched."""
    settings = TINY | {"world_seeds": [0], "training_seeds": [0, 1], "budgets": [4096], "workers": 1, "width_ratio": width_ratio}
    settings |= {"budget_arms": [track.PLAIN, track.AGAIN, track.TIGHTENED, track.WARMUP], "tau_initial_family": [0.3], "tau_final_family": [0.05]}
    track.run_track(PARAMETERS, tmp_path, settings, show_progress=False)
    report = write_report(tmp_path, png=False)
    width = round(width_ratio * TINY["world"]["n_features"])
    assert (report.runs["final_alive_latents"] <= width).all()
    if width_ratio < 1:
        assert (report.runs["final_mcc"] <= width / TINY["world"]["n_features"] + 1e-9).all()
    assert report.table["match"].isin(["bracketed", "near", "unmatched"]).all()


def test_a_folder_whose_arm_schedules_changed_is_refused_naming_the_arms(tmp_path):
    """Runs are stored by arm name: after an arm file's schedule changes, the old schedule's runs must not count as the
    arm's. The track folder is refused before anything is written, naming the arms whose schedules differ."""
    import shutil

    parameters = tmp_path / "parameters"
    shutil.copytree(PARAMETERS, parameters)
    config = track.load_track_config(parameters / track.TRACK_FILE, TINY)
    root = tmp_path / "track"
    root.mkdir()
    before = track.track_record(config, *track.track_arms(parameters, config))
    (root / "track.json").write_text(json.dumps(before))
    track.check_track_folder(root, track.track_record(config, *track.track_arms(parameters, config)))  # the same design: accepted
    arm_file = parameters / f"{track.TIGHTENED}.yaml"
    arm_file.write_text(arm_file.read_text().replace("anneal_fraction: 0.8", "anneal_fraction: 0.9"))
    changed = track.track_record(config, *track.track_arms(parameters, config))
    assert changed["config"] == before["config"]  # only the schedules moved
    with pytest.raises(ConfigError, match=f"differs in: the arms .*{track.TIGHTENED}"):
        track.check_track_folder(root, changed)
    assert json.loads((root / "track.json").read_text()) == before
