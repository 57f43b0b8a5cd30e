"""The study command end to end on the real model with tiny sizes: papermill, files, failure semantics."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from tiny_study import TINY
from tiny_track import TINY as TINY_TRACK

from taulib.study.cost import STAGES
from taulib.study.run import ANALYSIS_NOTEBOOKS
from taulib.timing import CACHE_ENV

pytestmark = [pytest.mark.model, pytest.mark.notebook]
TRACK = TINY_TRACK | {"world_seeds": [0], "training_seeds": [0, 1], "budgets": [4096], "workers": 1, "tau_initial_family": [0.3], "tau_final_family": [0.05]}


def _study(repo_root, params, outputs, *extra, env=None):
    return subprocess.run(
        [sys.executable, "-m", "taulib", "study", "--parameters", str(params), "--outputs", str(outputs), *TINY, *extra],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=900,
        env=env,
    )


@pytest.fixture(scope="module")
def tiny_study(repo_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    params = root / "parameters"
    params.mkdir()
    shutil.copy(repo_root / "parameters" / "_study.yaml", params)
    for name in ("baseline_plain_l1", "cosine_0.3_to_0.05_tightened", "l1_warmup"):  # the ground-truth track's primary contrasts need the three
        shutil.copy(repo_root / "parameters" / f"{name}.yaml", params)
    # a run that passes validation but diverges: its learning rate throws the weights beyond float32
    (params / "diverges.yaml").write_text("inherit: _study.yaml\ntraining:\n  lr: 1.0e+30\n")
    # the ground-truth track, run first as `make study` runs it: a tiny design, two replicates, the arm files only
    (params / "_ground_truth.yaml").write_text(yaml.safe_dump(TRACK))
    outputs = root / "outputs"
    # this machine is timed afresh (an empty speed cache): the estimate is made before any work, from nothing cached
    env = os.environ | {CACHE_ENV: str(root / "speed-cache")}
    result = _study(repo_root, params, outputs, "--ground-truth", str(root / "ground_truth"), env=env)
    return params, outputs, result


def test_each_run_writes_its_notebook_and_artefacts(tiny_study):
    _, outputs, result = tiny_study
    for run in ("baseline_plain_l1", "cosine_0.3_to_0.05_tightened"):
        folder = outputs / run
        for name in (
            "02_train.ipynb",
            "config.json",
            "environment.json",
            "metrics.csv",
            "summary.json",
            "checkpoints/index.json",
            "final/sae.safetensors",
            "final/sae_config.json",
            "evaluation/metrics.csv",
        ):
            assert (folder / name).is_file(), f"{run}: {name} missing\n{result.stderr[-3000:]}"
        index = json.loads((folder / "checkpoints" / "index.json").read_text())
        assert index[0]["step"] == 0 and index[-1]["step"] == 157  # ceil(40000 / 256)
        notebook = json.loads((folder / "02_train.ipynb").read_text())
        assert notebook["metadata"]["papermill"]["parameters"]["params_file"].endswith(f"{run}.yaml")
    assert (outputs / "activations" / "01_extract_activations.ipynb").is_file()
    environment = json.loads((outputs / "baseline_plain_l1" / "environment.json").read_text())
    assert environment["packages"]["torch"].startswith("2.13.0") and "git_commit" in environment
    resolved = json.loads((outputs / "baseline_plain_l1" / "config.json").read_text())["config"]
    assert resolved["training"]["n_tokens"] == 40000 and resolved["schedule"]["kind"] == "none"
    leftovers = [p for p in outputs.rglob("*") if p.name.endswith((".tmp", ".partial.ipynb"))]
    assert leftovers == [], "no temporary or partial files after a completed study"


def test_the_closing_table_shows_each_runs_final_held_out_figures(tiny_study):
    """Not the last training batch's (summary.json): the final checkpoint's on held-out tokens, as the report reads them."""
    import pandas as pd

    _, outputs, result = tiny_study
    recorded = {run["run_name"]: run for run in json.loads((outputs / "study_summary.json").read_text())["runs"]}
    for run in ("baseline_plain_l1", "cosine_0.3_to_0.05_tightened"):
        last = pd.read_csv(outputs / run / "evaluation" / "metrics.csv").sort_values("step").iloc[-1]
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"{run} "))
        assert f"{last['l0']:.1f}" in line.split() and f"{last['explained_variance']:.3f}" in line.split(), line
        assert recorded[run]["heldout"]["l0"] == pytest.approx(last["l0"]) and recorded[run]["heldout"]["step"] == last["step"]
    assert "L0 (held out)" in result.stdout and "L0 (batch)" not in result.stdout
    diverged = next(line for line in result.stdout.splitlines() if line.startswith("diverges "))
    assert recorded["diverges"]["heldout"] == {} and diverged.split()[3:5] == ["-", "-"]
    # nothing a user cannot act on, once per run: the kernel's TCP warning, papermill's unreadable parameter lines
    assert "without encryption" not in result.stderr and "Unable to parse line" not in result.stderr


def test_a_failing_run_exits_non_zero_keeps_its_notebook_and_spares_the_others(tiny_study):
    _, outputs, result = tiny_study
    assert result.returncode == 1, result.stderr[-3000:]
    summary = {run["run_name"]: run for run in json.loads((outputs / "study_summary.json").read_text())["runs"]}
    assert summary["diverges"]["status"] == "failed" and "non-finite" in summary["diverges"]["error"]
    assert summary["baseline_plain_l1"]["status"] == "ok" and summary["cosine_0.3_to_0.05_tightened"]["status"] == "ok"
    failed_notebook = json.loads((outputs / "diverges" / "02_train.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in failed_notebook["cells"] for o in c.get("outputs", []))
    assert "diverges" in result.stdout and "failed" in result.stdout


def test_the_wall_time_estimate_is_printed_before_any_stage_and_recorded_beside_each_stage(tiny_study):
    """The study prints and records its estimate (taulib.study.cost) before any stage runs, and then
    records beside it what each stage took. How close the two are is a measurement, not a test:
    benchmarks/estimate_accuracy.py runs this tiny study on an idle machine and reports the ratios
    (benchmarks/RESULTS.md)."""
    _, outputs, result = tiny_study
    estimate_at = result.stdout.find("wall time, estimated for this machine")
    assert estimate_at >= 0, result.stdout[-3000:]
    assert estimate_at < result.stdout.find("ground truth: ") < result.stdout.find("baseline_plain_l1"), "the estimate, the track, then the runs"
    summary = json.loads((outputs / "study_summary.json").read_text())
    stages = summary["stages"]
    assert set(stages) == set(STAGES)
    assert stages["calibration"] == {"estimated": 0.0, "actual": 0.0}  # no sweep: nothing to calibrate
    for stage in ("ground-truth track", "extraction", "evaluation inputs", "runs", "analysis"):
        assert stages[stage]["estimated"] > 0 and stages[stage]["actual"] > 0, (stage, stages[stage])
    runs = {run["run_name"]: run for run in summary["runs"]}
    assert all(run["estimated_seconds"] > 0 for run in runs.values())
    # the stage's estimate is its runs' estimates summed, the failed run's included (it was planned)
    assert stages["runs"]["estimated"] == pytest.approx(sum(run["estimated_seconds"] for run in runs.values()))


def test_the_ground_truth_track_runs_first_into_its_folder_and_its_time_is_recorded(tiny_study):
    """--ground-truth: the track of the parameters folder's arms and _ground_truth.yaml, trained and reported into its
    folder before the extraction notebook starts; its seconds are the summary's and the report's first stage."""
    from taulib.groundtruth.track import load_track_config, track_arms

    params, outputs, result = tiny_study
    root = outputs.parent / "ground_truth"
    assert (root / "REPORT.md").is_file(), result.stdout[-3000:]
    assert (root / "REPORT.md").stat().st_mtime <= (outputs / "activations" / "01_extract_activations.ipynb").stat().st_mtime
    record = json.loads((root / "track.json").read_text())
    assert record["config"]["training_seeds"] == [0, 1] and record["config"]["budgets"] == [4096]  # the folder's own design
    arms, _ = track_arms(params, load_track_config(params / "_ground_truth.yaml"))
    trained = {path.parent.name for path in (root / "runs").glob("*/*/b*_g*.json")}
    assert trained == {arm.name for arm in arms}  # every arm of the design, the A/A arm with them
    summary = json.loads((outputs / "study_summary.json").read_text())
    assert summary["ground_truth"] == str(root.resolve()) and 0 < summary["ground_truth_seconds"] < summary["seconds"]


def test_a_bad_ground_truth_design_is_refused_before_any_work(repo_root, tiny_study, tmp_path):
    params, _, _ = tiny_study
    bad = tmp_path / "parameters"
    shutil.copytree(params, bad)
    (bad / "_ground_truth.yaml").write_text(yaml.safe_dump(TRACK | {"lr": -1.0}))
    refused = _study(repo_root, bad, tmp_path / "outputs", "--ground-truth", str(tmp_path / "ground_truth"))
    assert refused.returncode == 2 and re.search(r"\blr\b", refused.stderr), refused.stderr[-3000:]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "ground_truth").exists()


ANALYSIS_FIGURES = (
    "03_metrics_over_training",
    "03_formation",
    "03_absorption_speed",
    "03_latent_formation",
    "03_checkpoint_state_early",
    "03_checkpoint_state_final",
    "04_max_cosine_final",
    "04_near_duplicates",
    "04_lower_bound",
    "04_trajectory_vs_outcome",
)


def test_the_analysis_notebooks_run_after_the_runs_and_write_every_figure(tiny_study):
    _, outputs, result = tiny_study
    analyses = {a["notebook"].rsplit("/", 1)[-1]: a for a in json.loads((outputs / "study_summary.json").read_text())["analyses"]}
    assert {name: a["status"] for name, a in analyses.items()} == {
        "03_early_concept_formation.ipynb": "ok",
        "04_orthogonality.ipynb": "ok",
        "06_latents.ipynb": "ok",
        "05_report.ipynb": "skipped",  # the report needs a sweep; this tiny study runs its files as they are
    }, analyses
    assert "no sweep" in analyses["05_report.ipynb"]["error"]
    for name in [name for name, a in analyses.items() if a["status"] == "ok"]:
        executed = json.loads((outputs / "analysis" / name).read_text())
        outputs_of_cells = [o for c in executed["cells"] for o in c.get("outputs", [])]
        assert not any(o.get("output_type") == "error" for o in outputs_of_cells)
        text = json.dumps(outputs_of_cells)
        assert "baseline_plain_l1" in text and "cosine_0.3_to_0.05_tightened" in text  # both arms reached the tables
    for figure in ANALYSIS_FIGURES:
        assert (outputs / "figures" / f"{figure}.html").stat().st_size > 1_000_000, figure  # plotly.js embedded
        assert (outputs / "figures" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG", figure
    assert "figures:" in result.stdout
    # 06: a page per sampled latent, linked from one index, sharing one plotly.js
    index = (outputs / "figures" / "06_latents.html").read_text()
    assert index.count("<li>") >= 2 and (outputs / "figures" / "plotly.min.js").stat().st_size > 1_000_000


def test_a_dask_cluster_of_two_workers_runs_the_same_study(repo_root, tiny_study, tmp_path):
    """--backend dask: each run a task on a local two-worker cluster, into its own folder; for the runs
    it shares with the local study, the same statuses, the same failure, and results equal to the
    local study's up to the thread count's rounding."""
    params, outputs, _ = tiny_study
    # one run that trains and one that fails: a task for each worker, in one round
    shared_runs = ("baseline_plain_l1", "diverges")
    dask_params = tmp_path / "parameters"
    dask_params.mkdir()
    for name in ("_study", *shared_runs):
        shutil.copy(params / f"{name}.yaml", dask_params)
    dask_outputs = tmp_path / "outputs"
    shutil.copytree(outputs / "activations", dask_outputs / "activations")  # the extraction step finds its caches
    result = _study(repo_root, dask_params, dask_outputs, "--backend", "dask", "--workers", "2", "--threads-per-run", "1")
    assert result.returncode == 1, result.stderr[-3000:]
    local = {run["run_name"]: run for run in json.loads((outputs / "study_summary.json").read_text())["runs"] if run["run_name"] in shared_runs}
    summary = json.loads((dask_outputs / "study_summary.json").read_text())
    assert summary["backend"] == "dask"
    runs = {run["run_name"]: run for run in summary["runs"]}
    assert {name: run["status"] for name, run in runs.items()} == {name: run["status"] for name, run in local.items()}
    assert "non-finite" in runs["diverges"]["error"] and (dask_outputs / "diverges" / "02_train.ipynb").is_file()
    assert len({run["worker"] for run in runs.values()}) == 2  # both workers took runs
    trained = "baseline_plain_l1"
    assert runs[trained]["worker"].startswith("tcp://")
    for metric in ("l0", "explained_variance", "mse"):
        assert runs[trained]["final"][metric] == pytest.approx(local[trained]["final"][metric], rel=0.02), metric
    assert (dask_outputs / trained / "evaluation" / "metrics.csv").is_file()
    assert {a["notebook"].rsplit("/", 1)[-1]: a["status"] for a in summary["analyses"]}["04_orthogonality.ipynb"] == "ok"


def test_a_sweep_study_calibrates_runs_and_reports_on_a_dask_cluster(repo_root, tiny_study, tmp_path):
    """The sweep path of the study command end to end on the real model: λ calibrated per arm (one
    task per arm), every arm × target × seed run from its generated file, and 05_report's REPORT.md."""
    params, outputs, _ = tiny_study
    sweep_params = tmp_path / "parameters"
    sweep_params.mkdir()
    for name in ("_study.yaml", "baseline_plain_l1.yaml", "cosine_0.3_to_0.05_tightened.yaml"):
        shutil.copy(params / name, sweep_params)
    shutil.copy(repo_root / "parameters" / "constant_0.3.yaml", sweep_params)
    (sweep_params / "_sweep.yaml").write_text("l0_targets: [10]\nseeds: [0, 1]\ncalibration: {tolerance: 0.2}\n")
    sweep_outputs = tmp_path / "outputs"
    shutil.copytree(outputs / "activations", sweep_outputs / "activations")
    result = _study(repo_root, sweep_params, sweep_outputs, "--backend", "dask", "--workers", "2", "--threads-per-run", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    plan = json.loads((sweep_outputs / "sweeps" / "plan.json").read_text())
    assert len(plan["runs"]) == 2 * 1 * 2 + 1  # arms × targets × seeds, and constant τ's identity run
    assert plan["identities"] == {"constant_0.3": "baseline_plain_l1"}
    assert not (sweep_outputs / "sweeps" / "calibration" / "constant_0.3.json").exists()  # not calibrated
    for arm in ("baseline_plain_l1", "cosine_0.3_to_0.05_tightened"):
        calibration = json.loads((sweep_outputs / "sweeps" / "calibration" / f"{arm}.json").read_text())
        for target in calibration["targets"]:  # each target reached within the tolerance, or flagged
            assert target["within_tolerance"] == (abs(target["l0"] / target["l0_target"] - 1) <= 0.2)
            assert abs(target["relative_error"]) <= 0.2 or not target["within_tolerance"]
    summary = json.loads((sweep_outputs / "study_summary.json").read_text())
    assert summary["profile"] == "default" and summary["backend"] == "dask" and summary["calibration_seconds"] > 0
    assert {(run["sweep"]["arm"], run["sweep"]["l0_target"], run["seed"]) for run in summary["runs"]} == {
        (run["arm"], run["l0_target"], run["seed"]) for run in plan["runs"]
    }
    assert all(run["status"] == "ok" for run in summary["runs"])
    assert [a["status"] for a in summary["analyses"]] == ["ok"] * (len(ANALYSIS_NOTEBOOKS) + 1)  # and the sweep's report
    report = (sweep_outputs / "REPORT.md").read_text()
    claims = json.loads((sweep_outputs / "report_claims.json").read_text())
    assert "## Early concept formation" in report and claims and all(claim["numbers"] for claim in claims)
    # the identity run reproduces plain L1's seed-0 run: every evaluated number the same
    (identity,) = [claim for claim in claims if claim["kind"] == "equivalence"]
    assert identity["verdict"] == "equivalent" and "identical in all" in identity["text"] and identity["numbers"]["runs"] == 1
    assert (sweep_outputs / "figures" / "05_pareto_final.png").read_bytes()[:4] == b"\x89PNG"


def test_dask_options_without_the_dask_backend_are_refused(repo_root, tmp_path):
    result = _study(repo_root, tmp_path / "parameters", tmp_path / "outputs", "--workers", "2")
    assert result.returncode == 2 and "belong to --backend dask" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_rerun_reuses_everything_and_bad_input_changes_nothing(repo_root, tiny_study):
    params, outputs, _ = tiny_study
    (params / "diverges.yaml").unlink()
    # the run's own artefacts; the figures (some named after the run) are the analyses', drawn again on every study
    snapshot = {p: p.stat().st_mtime_ns for p in outputs.rglob("*") if p.is_file() and "baseline" in str(p) and "figures" not in p.relative_to(outputs).parts}
    again = _study(repo_root, params, outputs)
    assert again.returncode == 0, again.stderr[-3000:]
    # finished runs are not retrained: their artefacts are untouched (only the executed notebook is rewritten)
    changed = [p for p, t in snapshot.items() if p.stat().st_mtime_ns != t and p.name != "02_train.ipynb"]
    assert changed == []
    (params / "broken.yaml").write_text("inherit: _study.yaml\nschedule:\n  kind: cosine\n  tau_initial: 0.3\n  tau_final: -1\n")
    before = {p: p.stat().st_mtime_ns for p in outputs.rglob("*")}
    refused = _study(repo_root, params, outputs)
    assert refused.returncode == 2
    assert "broken.yaml" in refused.stderr and "tau_final must be a finite number > 0" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in outputs.rglob("*")} == before


def test_results_script_reports_every_run_from_the_outputs(repo_root, tiny_study):
    _, outputs, _ = tiny_study
    spec = importlib.util.spec_from_file_location("default_study", repo_root / "benchmarks" / "default_study.py")
    default_study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(default_study)

    table = default_study.study_results(outputs).set_index("run")
    recorded = {run["run_name"]: run["status"] for run in json.loads((outputs / "study_summary.json").read_text())["runs"]}
    assert table["status"].to_dict() == recorded  # every run of the last study, failed ones included
    ok = table[table["status"] == "ok"]
    assert set(ok.index) == {"baseline_plain_l1", "cosine_0.3_to_0.05_tightened", "l1_warmup"}
    assert ((ok["heldout_l0"] > 0) & (ok["heldout_l0"] <= 128)).all()
    assert (ok["heldout_explained_variance"] < 1).all() and (ok["train_tokens_per_second"] > 0).all()
    printed = subprocess.run([sys.executable, "benchmarks/default_study.py", str(outputs)], capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert printed.returncode == 0, printed.stderr
    assert "cosine_0.3_to_0.05_tightened" in printed.stdout and "study wall time" in printed.stdout


def test_probing_resolution_reads_each_runs_lift_and_its_test_set_interval(repo_root, tiny_study):
    """benchmarks/probing_resolution.py on the tiny study: every evaluated run's lift is its final top-1 accuracy minus
    its random baseline's (read here from metrics.csv), and its interval is the report's test-set bootstrap's."""
    import pandas as pd

    _, outputs, _ = tiny_study
    spec = importlib.util.spec_from_file_location("probing_resolution", repo_root / "benchmarks" / "probing_resolution.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves its annotations through its module
    spec.loader.exec_module(module)

    import numpy as np

    from taulib.analysis.probe_bootstrap import probe_replicates
    from taulib.analysis.study_data import load_study

    found = {r.run: r for r in module.lift_resolutions(outputs)}
    assert set(found) == {"baseline_plain_l1", "cosine_0.3_to_0.05_tightened", "l1_warmup"}
    replicates = probe_replicates(load_study(outputs))  # the report's own test-set bootstrap
    for name, resolution in found.items():
        final = pd.read_csv(outputs / name / "evaluation" / "metrics.csv").sort_values("step").iloc[-1]
        assert resolution.lift == pytest.approx(final["sae_top_1_accuracy"] - final["random_sae_top_1_accuracy"], abs=1e-12)
        low, high = np.nanpercentile(replicates[name]["final_sae_top_1_lift"], [2.5, 97.5])
        assert (resolution.low, resolution.high) == pytest.approx((low, high)) and resolution.examples_per_class == 10
    rows = module.resolution_table(list(found.values()))
    assert [row[0] for row in rows] == sorted(found) and all(row[3].endswith("of 1") for row in rows)


def test_every_checkpoint_is_evaluated_and_the_evaluation_is_cached(tiny_study):
    import pandas as pd

    from taulib.metrics.evaluate import evaluate_run

    _, outputs, _ = tiny_study
    run_dir = outputs / "cosine_0.3_to_0.05_tightened"
    table = pd.read_csv(run_dir / "evaluation" / "metrics.csv")
    index = json.loads((run_dir / "checkpoints" / "index.json").read_text())
    assert table["step"].tolist() == [entry["step"] for entry in index]
    for column in (
        "l0",
        "explained_variance",
        "cosine_similarity",
        "dead_fraction",
        "dense_fraction",
        "ce_loss_score",
        "kl_div_score",
        "ce_loss_score_low",
        "ce_loss_score_high",
        "mean_max_cosine",
        "alive_excess_mean_max_cosine",
        "alive_covariance_mean_max_cosine",
        "random_mean_max_cosine",
        "near_duplicate_pair_fraction",
        "mean_encoder_decoder_cosine",
        "absorption_fraction",
        "absorption_fraction_unthresholded",
        "full_absorption_rate",
        "mean_split_latents",
        "k1_f1",
        "sae_top_1_accuracy",
        "sae_top_50_accuracy",
        "tau",
        "l1_coefficient_effective",
    ):
        assert column in table, column
    # as in the default study, only the final checkpoint is spliced (downstream.sequences 0), on two held-out sequences
    # (BOS positions, at the start and between documents, are not scored),
    # with its bootstrap interval; the others have no CE/KL rather than a number from too few tokens
    final = table.iloc[-1]
    assert -1 <= final["ce_loss_score"] <= 1.0001 and -1 <= final["kl_div_score"] <= 1.0001
    assert table[["ce_loss_score", "kl_div_score", "ce_tokens"]].iloc[:-1].isna().all().all()
    assert 2 * 120 < final["ce_tokens"] <= 2 * 127 and final["ce_loss_score_low"] <= final["ce_loss_score"] + 1e-9 <= final["ce_loss_score_high"] + 2e-9
    assert table["l0"].iloc[-1] < table["l0"].iloc[0]  # the penalty sparsifies the SAE
    assert (table["tau"].iloc[1:].diff().dropna() <= 1e-12).all()  # τ anneals downwards
    # one record per family and checkpoint (taulib.metrics.evaluate); the full record of a checkpoint joins them
    from taulib.metrics.evaluate import read_checkpoint_details

    records = sorted((run_dir / "evaluation" / "families").glob("*/step_*.json"))
    assert {path.parent.name.rsplit("-", 1)[0] for path in records} == {"core", "downstream", "orthogonality", "decoder_drift", "support_refit", "absorption", "probing", "probing_baseline"}
    assert len(records) == 8 * len(index)
    detail = read_checkpoint_details(run_dir, index[-1]["step"])["details"]
    assert {"density_histogram", "max_cosine_histogram", "absorption_letters", "probing_tasks", "ce_per_sequence"} <= set(detail)
    # what the language model's families compute is what they declare (taulib/metrics/<family>/settings.py)
    from references import assert_declared

    assert_declared(table, detail, ["core", "downstream", "orthogonality", "decoder_drift", "support_refit", "absorption", "probing", "probing_baseline"])
    assert table["decoder_init_cosine_median"].iloc[0] == pytest.approx(1.0, abs=1e-6)  # step 0 is the initialisation
    # the losses are kept per part of a sequence one document fills, with its document; explained variance per document
    from taulib.metrics.core.metric import VarianceParts
    from taulib.metrics.downstream.metric import SequenceLosses

    losses = SequenceLosses.from_lists(detail["ce_per_sequence"])
    assert losses.documents_known and len(losses) % 2 == 0 and losses.metrics().ce_loss_score == pytest.approx(final["ce_loss_score"], rel=1e-9)
    parts = VarianceParts.from_lists(detail["ev_per_document"])
    assert parts.tokens.sum() == final["n_tokens"] and parts.explained_variance() == pytest.approx(final["explained_variance"], abs=1e-9)
    assert final["explained_variance_low"] <= final["explained_variance"] + 1e-9 <= final["explained_variance_high"] + 2e-9
    assert table[["explained_variance_low", "explained_variance_high"]].iloc[:-1].isna().all().all()
    # one call, cached: nothing is recomputed; a missing record is recomputed alone
    stamps = {path: path.stat().st_mtime_ns for path in records}
    again = evaluate_run(run_dir, outputs, show_progress=False)
    pd.testing.assert_frame_equal(again, table, check_dtype=False)
    assert {path: path.stat().st_mtime_ns for path in records} == stamps
    records[2].unlink()
    redone = evaluate_run(run_dir, outputs, show_progress=False)
    assert records[2].is_file() and all(path.stat().st_mtime_ns == stamps[path] for path in records if path != records[2])
    pd.testing.assert_frame_equal(redone, table, check_dtype=False, atol=1e-6)
    # new evaluation settings re-evaluate the saved checkpoints (no retraining); the details follow them
    from taulib.config import EvaluationConfig

    fewer = evaluate_run(run_dir, outputs, show_progress=False, evaluation=EvaluationConfig(families=("core",), core={"tokens": 500}))
    assert "absorption_fraction" not in fewer and fewer["step"].tolist() == table["step"].tolist()
    assert not fewer["l0"].equals(table["l0"])  # 500 held-out tokens, not 1000
    assert set(read_checkpoint_details(run_dir, index[-1]["step"])["details"]) == {"density_histogram", "latent_density", "ev_per_document"}
    assert all(path.is_file() for path in records)  # the earlier evaluation's records stay cached
