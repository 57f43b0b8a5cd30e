"""Running the study: validation first, then notebooks executed with papermill.

  01_extract_activations      once, for every distinct activation spec of the parameter files
  02_train                    once per parameter file, into outputs/<run_name>/
  03_early_concept_formation  once, after the runs, into outputs/analysis/ (figures: outputs/figures/)
  04_orthogonality            likewise
  06_latents                  likewise: each run's latent context store (outputs/<run>/latent_contexts/) and latent pages
  05_report                   likewise, for a sweep: writes outputs/REPORT.md

With a sweep (parameters/_sweep.yaml, taulib.sweep.spec) the parameter files are the sweep's: λ is
calibrated per arm and L0 target first (taulib.sweep.runs, training the seed-0 runs), then the
generated files are run like any others.

Every parameter file is validated (and every run folder checked against its configuration)
before anything executes, so bad input changes nothing under outputs/. A failing run keeps its
executed notebook, does not stop the others, and makes the whole command exit non-zero; a
summary lists each run's status and notebook. The runs execute in this process, one after
another, or as tasks on a Dask cluster (taulib.study.executors, `--backend dask`) with the same semantics.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from taulib import REPOSITORY_ROOT, atomic
from taulib.activations.cache import CacheError, activation_spec, cache_folder, load_cache, verify_cache
from taulib.activations.extraction import cached_activation_folders, ensure_activations
from taulib.activations.models import LoadedModel, hooked_layer, load_language_model
from taulib.activations.synthetic import ensure_synthetic_activations
from taulib.config import ConfigError, RunConfig, discover_parameter_files, load_run_config, load_study_configs
from taulib.metrics.evaluate import PREPARATION_TIME_FILE, evaluate_run, evaluation_data_complete, evaluation_data_folder, prepare_evaluation_data
from taulib.progress import PLAIN_ENV
from taulib.study.cost import StudyEstimate, estimate_study
from taulib.study.executors import Executor, LocalExecutor, RunTask, TaskResult, execute_notebook, short_error
from taulib.study.plan_check import STAGES, Plan, check_plan
from taulib.sweep.calibration import ArmCalibration
from taulib.sweep.runs import calibrate_sweep, plan_runs
from taulib.sweep.spec import Sweep
from taulib.train.trainer import AnnealedTrainer, check_run_folder

NOTEBOOKS_DIR = REPOSITORY_ROOT / "notebooks"
EXTRACT_NOTEBOOK = "01_extract_activations.ipynb"
TRAIN_NOTEBOOK = "02_train.ipynb"
ANALYSIS_NOTEBOOKS = ("03_early_concept_formation.ipynb", "04_orthogonality.ipynb", "06_latents.ipynb")
REPORT_NOTEBOOK = "05_report.ipynb"  # needs a sweep (seeds and L0 targets)


class StudyInputError(ValueError):
    """Input refused before any work started."""


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during a study, after the summary recorded where it stopped; `stage` names it."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


# ---------------------------------------------------------------- the work the notebooks call
def extract_for_study(
    parameters_dir: str | Path, outputs_root: str | Path, overrides: dict[str, Any] | None = None, show_progress: bool = True
) -> pd.DataFrame:
    """Extract every distinct activation cache the parameter files need, loading each model once."""
    outputs_root = Path(outputs_root)
    # one entry per distinct (model, activation spec); runs that differ only in SAE or schedule share it
    distinct: dict[tuple[str, str], tuple[RunConfig, int]] = {}
    configs = load_study_configs(discover_parameter_files(parameters_dir), overrides)
    check_plan(configs, outputs_root, stages=("extract",))
    for _, config in configs:
        layer = hooked_layer(config.model)
        distinct.setdefault((config.model.model_dump_json(), activation_spec(config, "train", layer).key()), (config, layer))
    loaded_models: dict[str, LoadedModel] = {}

    def model_for(model_key: str, config: RunConfig) -> LoadedModel:
        if model_key not in loaded_models:
            loaded_models.clear()  # one model in memory at a time
            loaded_models[model_key] = load_language_model(config.model)
        return loaded_models[model_key]

    rows = []
    for (model_key, _), (config, layer) in distinct.items():
        folders = cached_activation_folders(config, layer, outputs_root)
        if config.model.is_synthetic:
            folders = ensure_synthetic_activations(config, outputs_root, show_progress)
        elif not all((folder / "manifest.json").is_file() for folder in folders.values()):
            folders = ensure_activations(config, model_for(model_key, config), outputs_root, show_progress)
        for split, folder in folders.items():
            manifest = atomic.read_json(folder / "manifest.json")
            rows.append(
                {
                    "split": split,
                    "model": config.model.name,
                    "layer": layer,
                    "tokens": manifest["n_tokens"],
                    "shards": len(manifest["shards"]),
                    "tokens_per_second": manifest["stats"].get("tokens_per_second"),
                    "folder": str(folder),
                }
            )
    # the SAE-independent inputs of the metrics (absorption prompts and probe, probing residuals, CE tokens)
    for _, config in configs:
        layer = hooked_layer(config.model)
        folder = evaluation_data_folder(outputs_root, config, layer)
        if not evaluation_data_complete(folder, config):
            prepare_evaluation_data(config, model_for(config.model.model_dump_json(), config), outputs_root, show_progress)
            rows.append({"split": "evaluation", "model": config.model.name, "layer": layer, "folder": str(folder)})
    return pd.DataFrame(rows)


def train_run(params_file: str | Path, outputs_root: str | Path, overrides: dict[str, Any] | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Train one parameter file's run (resuming if interrupted) on its cached activations."""
    config = load_run_config(params_file, overrides)
    check_plan([(Path(params_file), config)], Path(outputs_root), stages=("train",))
    layer = hooked_layer(config.model)
    spec = activation_spec(config, "train", layer)
    data = load_cache(cache_folder(Path(outputs_root), spec), spec, mmap=config.training.activation_storage == "mmap")
    trainer = AnnealedTrainer(config, data.activations, Path(outputs_root) / config.run_name, show_progress=show_progress, layer=layer)
    return trainer.train()


def evaluate_study_run(params_file: str | Path, outputs_root: str | Path, overrides: dict[str, Any] | None = None, show_progress: bool = True) -> pd.DataFrame:
    """Evaluate every checkpoint of one parameter file's trained run with the file's current `evaluation:`
    settings (cached); the checkpoint × metric table."""
    config = load_run_config(params_file, overrides)
    check_plan([(Path(params_file), config)], Path(outputs_root), stages=("evaluate",))
    return evaluate_run(Path(outputs_root) / config.run_name, outputs_root, show_progress=show_progress, evaluation=config.evaluation)


# ---------------------------------------------------------------- orchestration
@dataclass
class RunRecord:
    run_name: str
    parameter_file: str
    status: str = "pending"  # ok | failed | refused | pending
    seconds: float = 0.0
    notebook: str | None = None
    error: str | None = None
    final: dict[str, Any] = field(default_factory=dict)  # the last training batch's figures (summary.json)
    heldout: dict[str, float] = field(default_factory=dict)  # the final checkpoint's, on held-out tokens: what the closing table shows
    seed: int | None = None
    sweep: dict[str, Any] | None = None  # the run's place in a sweep: arm, l0_target
    worker: str | None = None  # the Dask worker that ran it (None: this process)
    estimated_seconds: float | None = None  # taulib.study.cost's estimate made before the study started


@dataclass
class AnalysisRecord:
    notebook: str
    status: str = "pending"  # ok | failed | skipped
    seconds: float = 0.0
    error: str | None = None


@dataclass
class StudyOutcome:
    runs: list[RunRecord]
    analyses: list[AnalysisRecord] = field(default_factory=list)
    ground_truth: str | None = None  # the ground-truth track's folder, when the study runs it (first)
    ground_truth_seconds: float = 0.0
    extraction_seconds: float = 0.0
    calibration_seconds: float = 0.0
    seconds: float = 0.0
    profile: str | None = None  # the sweep's profile; None without a sweep
    error: str | None = None  # a failure before the runs (extraction, calibration)
    backend: str = "local"  # where the runs executed: local (this process) or dask
    estimate: StudyEstimate | None = None  # the wall time per stage estimated before any work
    started_at: float = field(default_factory=time.time)  # wall clock: which evaluation inputs this study prepared
    interrupted: str | None = None  # the stage a Ctrl-C stopped

    @property
    def failed(self) -> list[str]:
        before = ["study"] if self.error else []
        return before + [r.run_name for r in self.runs if r.status != "ok"] + [Path(a.notebook).stem for a in self.analyses if a.status == "failed"]


def _record(path: Path, config: RunConfig) -> RunRecord:
    labels = config.sweep.model_dump(mode="json") if config.sweep is not None else None
    return RunRecord(config.run_name, str(path), seed=config.seed, sweep=labels)


def _check_outputs_writable(outputs_root: Path) -> None:
    probe_parent = outputs_root if outputs_root.exists() else outputs_root.parent
    if outputs_root.exists() and not outputs_root.is_dir():
        raise StudyInputError(f"{outputs_root}: the outputs folder is a file")
    if not os.access(probe_parent, os.W_OK | os.X_OK):
        raise StudyInputError(f"{outputs_root}: the outputs folder is not writable")


def validate_study(
    parameters_dir: Path, outputs_root: Path, overrides: dict[str, Any] | None = None, check_runs: bool = True, stages: Collection[str] = STAGES
) -> tuple[list[tuple[Path, RunConfig]], Plan]:
    """Everything checkable before work starts: parameter files, model depth, run folders (unless a
    sweep names the runs), outputs, and the plan of the `stages` about to run (taulib.study.plan_check): the runs and what they need."""
    try:
        loaded = load_study_configs(discover_parameter_files(parameters_dir), overrides)
    except ConfigError as error:
        raise StudyInputError(str(error)) from None
    for path, config in loaded:
        try:
            hooked_layer(config.model)
        except Exception as error:  # an unknown model or a layer beyond its depth
            raise StudyInputError(f"{path}: {error}") from None
        if check_runs:
            check_run_folder(config, outputs_root / config.run_name, source=str(path))
    _check_outputs_writable(outputs_root)
    _verify_existing_caches(loaded, outputs_root)
    return loaded, check_plan(loaded, outputs_root, stages)


def validate_sweep(sweep: Sweep, outputs_root: Path) -> Plan:
    """The sweep's arms, checked as a study's parameter files are (their runs are named after calibration)."""
    for arm in sweep.arms:
        try:
            hooked_layer(arm.config.model)
        except Exception as error:
            raise StudyInputError(f"{arm.parameter_file}: {error}") from None
    _check_outputs_writable(outputs_root)
    arms = [(arm.parameter_file, arm.config) for arm in sweep.arms]
    _verify_existing_caches(arms, outputs_root)
    return check_plan(arms, outputs_root, sweep=sweep)


def _verify_existing_caches(loaded: list[tuple[Path, RunConfig]], outputs_root: Path) -> None:
    """A cache that claims to be complete but is truncated, altered or holds NaN is refused now,
    not after extraction has been skipped and a training run has failed on it."""
    checked: set[Path] = set()
    for path, config in loaded:
        layer = hooked_layer(config.model)
        for split in ("train", "heldout"):
            spec = activation_spec(config, split, layer)
            folder = cache_folder(outputs_root, spec)
            if folder in checked or not (folder / "manifest.json").is_file():
                continue
            checked.add(folder)
            try:
                verify_cache(folder, spec)
            except CacheError as error:
                raise StudyInputError(f"{path}: its {split} activation cache is unusable: {error}. Delete {folder} to extract it again.") from None


def run_study(
    parameters_dir: str | Path,
    outputs_root: str | Path,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    sweep: Sweep | None = None,
    executor: Executor | None = None,
    ground_truth: str | Path | None = None,
) -> StudyOutcome:
    """Validate, (run the ground-truth track,) extract once, (calibrate a sweep,) train and evaluate every run, then run
    the analysis notebooks.

    With `ground_truth` (a folder) the ground-truth track of the parameters folder's arms and `_ground_truth.yaml` runs
    there first (taulib.groundtruth.track, resuming), its design validated with everything else and its cost in the
    estimate.

    With `sweep` the runs are the sweep's generated parameter files and `overrides` are ignored
    (the sweep's own overrides, its profile's and the command line's, are in it). `executor` says
    where the runs (and a sweep's per-arm calibrations) execute: this process (default) or a Dask
    cluster (taulib.study.executors); extraction and the analyses run here.
    """
    executor = executor or LocalExecutor()
    parameters_dir, outputs_root = Path(parameters_dir).resolve(), Path(outputs_root).resolve()
    if sweep is None:
        loaded, plan = validate_study(parameters_dir, outputs_root, overrides)
        outcome = StudyOutcome([_record(path, config) for path, config in loaded], backend=executor.name)
    else:
        plan = validate_sweep(sweep, outputs_root)
        overrides = sweep.overrides
        outcome = StudyOutcome([], profile=sweep.profile, backend=executor.name)
    track_root = Path(ground_truth).resolve() if ground_truth is not None else None
    if track_root is not None:
        validate_track(parameters_dir, track_root)
        outcome.ground_truth = str(track_root)
    print(f"the study needs of this machine:\n{plan.describe(outputs_root)}", flush=True)
    arms = loaded if sweep is None else [(arm.parameter_file, arm.config) for arm in sweep.arms]
    outcome.estimate = estimate_study(arms, outputs_root, sweep, ground_truth=(parameters_dir, track_root) if track_root is not None else None)
    for record in outcome.runs:
        record.estimated_seconds = outcome.estimate.runs.get(record.run_name)
    print(outcome.estimate.describe(), flush=True)
    os.environ.setdefault(PLAIN_ENV, "plain")  # the kernels inherit it: progress as text lines
    started = time.perf_counter()
    track_done = track_root is None
    try:
        if track_root is not None:
            try:
                run_ground_truth(parameters_dir, track_root)
            except Exception as error:
                outcome.ground_truth_seconds = time.perf_counter() - started
                return _stopped(outputs_root, outcome, started, f"the ground-truth track failed: {short_error(error)} (its folder {track_root})")
            outcome.ground_truth_seconds = time.perf_counter() - started
            track_done = True
        return _run_stages(parameters_dir, outputs_root, notebooks_dir, sweep, executor, loaded if sweep is None else [], overrides, outcome, started)
    except KeyboardInterrupt:
        # what finished is on disk (every artefact is written atomically): record where it stopped
        pending = next((record.run_name for record in outcome.runs if record.status == "pending"), None)
        if not track_done:
            outcome.interrupted = "the ground-truth track"
            outcome.ground_truth_seconds = time.perf_counter() - started
        elif outcome.extraction_seconds == 0.0:
            outcome.interrupted = "extraction (activations and evaluation inputs)"
        elif sweep is not None and not outcome.runs:
            outcome.interrupted = "λ calibration"
        elif pending is not None:
            outcome.interrupted = f"training and evaluation of run {pending}"
        else:
            outcome.interrupted = "analysis notebooks"
        outcome.seconds = time.perf_counter() - started
        _write_summary(outputs_root, outcome)
        raise StudyInterrupted(outcome.interrupted) from None


def validate_track(parameters_dir: Path, track_root: Path) -> None:
    """The ground-truth track's design, arms and folder checked before any work (ConfigError naming the problem)."""
    from taulib.groundtruth.track import TRACK_FILE, check_track_folder, load_track_config, track_arms, track_record

    config = load_track_config(parameters_dir / TRACK_FILE)
    arms, identities = track_arms(parameters_dir, config)
    check_track_folder(track_root, track_record(config, arms, identities))


def run_ground_truth(parameters_dir: Path, track_root: Path) -> None:
    """The ground-truth track (resuming what its folder holds) and its report."""
    from taulib.groundtruth.report import REPORT_FILE, write_report
    from taulib.groundtruth.track import run_track

    record = run_track(parameters_dir, track_root)
    report = write_report(track_root)
    print(f"ground truth: {len(report.runs)} runs in {record['seconds_this_session'] / 60:.1f} min; report: {track_root / REPORT_FILE}", flush=True)


def _run_stages(
    parameters_dir: Path,
    outputs_root: Path,
    notebooks_dir: Path,
    sweep: Sweep | None,
    executor: Executor,
    loaded: list[tuple[Path, RunConfig]],
    overrides: dict[str, Any] | None,
    outcome: StudyOutcome,
    started: float,
) -> StudyOutcome:
    common = {"outputs_dir": str(outputs_root)}

    extract_output = outputs_root / "activations" / EXTRACT_NOTEBOOK
    extraction_started = time.perf_counter()  # after the ground-truth track, when the study ran it
    try:
        execute_notebook(notebooks_dir / EXTRACT_NOTEBOOK, extract_output, {"parameters_dir": str(parameters_dir), "overrides": overrides or {}, **common})
    except Exception as error:
        return _stopped(outputs_root, outcome, started, f"extraction failed: {short_error(error)} (notebook {extract_output})")
    outcome.extraction_seconds = time.perf_counter() - extraction_started

    run_overrides = overrides or {}
    if sweep is not None:
        calibration_started = time.perf_counter()
        try:
            planned = plan_runs(sweep, calibrate(sweep, outputs_root, executor), outputs_root)
        except Exception as error:
            outcome.calibration_seconds = time.perf_counter() - calibration_started
            return _stopped(outputs_root, outcome, started, f"calibration failed: {short_error(error)}")
        outcome.calibration_seconds = time.perf_counter() - calibration_started
        loaded = [(run.parameter_file, run.config) for run in planned]
        outcome.runs = [_record(path, config) for path, config in loaded]
        run_overrides = {}  # the generated files are complete

    tasks = []
    for (path, config), record in zip(loaded, outcome.runs, strict=True):
        record.notebook = str(outputs_root / config.run_name / TRAIN_NOTEBOOK)
        parameters = {"params_file": str(path), "overrides": run_overrides, **common}
        tasks.append(
            RunTask(config.run_name, notebooks_dir / TRAIN_NOTEBOOK, Path(record.notebook), parameters, outputs_root / config.run_name / "summary.json")
        )

    def record_result(index: int, result: TaskResult) -> None:
        record = outcome.runs[index]
        record.status, record.seconds, record.final, record.error, record.worker = result.status, result.seconds, result.final, result.error, result.worker
        record.heldout = result.heldout
        outcome.seconds = time.perf_counter() - started
        _write_summary(outputs_root, outcome)  # a long study's progress, run by run

    executor.run_tasks(tasks, on_result=record_result)
    # the analysis notebooks read the finished runs from the summary
    outcome.seconds = time.perf_counter() - started
    _write_summary(outputs_root, outcome)

    any_ok = any(record.status == "ok" for record in outcome.runs)
    outcome.analyses = run_analyses(outputs_root, notebooks_dir, is_sweep=sweep is not None, any_run=any_ok)
    outcome.seconds = time.perf_counter() - started
    _write_summary(outputs_root, outcome)
    return outcome


def calibrate(sweep: Sweep, outputs_root: Path, executor: Executor) -> dict[str, ArmCalibration]:
    """λ calibration of every arm of a sweep; on a cluster each arm is a task (its probes run in order)."""
    if isinstance(executor, LocalExecutor):
        return calibrate_sweep(sweep, outputs_root)
    per_arm = executor.map_calls(calibrate_sweep, [(dataclasses.replace(sweep, arms=(arm,)), outputs_root, False) for arm in sweep.calibrated_arms()])
    return {name: calibration for result in per_arm for name, calibration in result.items()}


def run_analyses(outputs_root: str | Path, notebooks_dir: Path = NOTEBOOKS_DIR, is_sweep: bool | None = None, any_run: bool = True) -> list[AnalysisRecord]:
    """Execute the analysis notebooks (and, for a sweep, the report) on a finished study's outputs.

    `is_sweep` None: read from study_summary.json (a sweep's runs carry labels)."""
    outputs_root = Path(outputs_root).resolve()
    if is_sweep is None:
        summary_path = outputs_root / "study_summary.json"
        if not summary_path.is_file():
            raise StudyInputError(f"{summary_path}: no finished study to analyse; run `python -m taulib study` first")
        is_sweep = any(run.get("sweep") for run in atomic.read_json(summary_path)["runs"])
    analyses = []
    for name in [*ANALYSIS_NOTEBOOKS, REPORT_NOTEBOOK]:
        analysis = AnalysisRecord(str(outputs_root / "analysis" / name))
        analyses.append(analysis)
        if not any_run:
            analysis.status, analysis.error = "skipped", "no run finished"
            continue
        if name == REPORT_NOTEBOOK and not is_sweep:
            analysis.status, analysis.error = "skipped", "the report compares a sweep's seeds and L0 targets; this study has no sweep"
            continue
        analysis_started = time.perf_counter()
        try:
            execute_notebook(notebooks_dir / name, Path(analysis.notebook), {"outputs_dir": str(outputs_root), "figures_dir": str(outputs_root / "figures")})
            analysis.status = "ok"
        except Exception as error:
            analysis.status, analysis.error = "failed", short_error(error)
        analysis.seconds = time.perf_counter() - analysis_started
    return analyses


def _stopped(outputs_root: Path, outcome: StudyOutcome, started: float, error: str) -> StudyOutcome:
    """A failure before the runs: every planned run is marked failed, and the summary says why."""
    outcome.error = error
    for record in outcome.runs:
        record.status, record.error = "failed", error
    outcome.seconds = time.perf_counter() - started
    _write_summary(outputs_root, outcome)
    return outcome


def _write_summary(outputs_root: Path, outcome: StudyOutcome) -> None:
    atomic.write_json(
        outputs_root / "study_summary.json",
        {
            "seconds": outcome.seconds,
            "ground_truth": outcome.ground_truth,
            "ground_truth_seconds": outcome.ground_truth_seconds,
            "extraction_seconds": outcome.extraction_seconds,
            "calibration_seconds": outcome.calibration_seconds,
            "profile": outcome.profile,
            "backend": outcome.backend,
            "error": outcome.error,
            "interrupted": outcome.interrupted,
            "stages": stage_times(outputs_root, outcome),
            "runs": [asdict(record) for record in outcome.runs],
            "analyses": [asdict(record) for record in outcome.analyses],
        },
    )


def stage_times(outputs_root: Path, outcome: StudyOutcome) -> dict[str, dict[str, float | None]]:
    """Each stage's estimated seconds (taulib.study.cost, before the study) beside its actual seconds so far."""
    preparation = 0.0
    for path in (outputs_root / "activations").glob(f"evaluation-*/{PREPARATION_TIME_FILE}"):
        if path.stat().st_mtime >= outcome.started_at:  # prepared by this study
            preparation += float(atomic.read_json(path)["seconds"])
    actual = {"ground-truth track": outcome.ground_truth_seconds} if outcome.ground_truth is not None else {}
    actual |= {
        "extraction": max(outcome.extraction_seconds - preparation, 0.0),  # the extraction notebook, less the inputs it prepared
        "evaluation inputs": preparation,
        "calibration": outcome.calibration_seconds,
        "runs": sum(record.seconds for record in outcome.runs),
        "analysis": sum(analysis.seconds for analysis in outcome.analyses),
    }
    estimated = outcome.estimate.as_dict()["stages"] if outcome.estimate is not None else {}
    return {stage: {"estimated": estimated.get(stage), "actual": seconds} for stage, seconds in actual.items()}


def format_summary(outcome: StudyOutcome) -> str:
    # L0 and EV of the final checkpoint on held-out tokens, what the report compares (a sweep's targets are held-out L0
    # too); the last training batch's figures are noise between seeds and stay in each run's summary.json
    sweep = any(record.sweep for record in outcome.runs)
    target_header = f" {'target':>6s}" if sweep else ""
    width = max([34, *(len(record.run_name) for record in outcome.runs)])
    lines = [f"{'run':{width}s} {'status':8s} {'minutes':>7s}{target_header} {'L0 (held out)':>13s} {'EV':>6s}  notebook / error"]
    if outcome.error:
        lines.append(f"study stopped: {outcome.error}")
    for record in outcome.runs:
        l0 = f"{record.heldout['l0']:.1f}" if "l0" in record.heldout else "-"
        ev = f"{record.heldout['explained_variance']:.3f}" if "explained_variance" in record.heldout else "-"
        target = f" {record.sweep['l0_target']:>6g}" if record.sweep else (f" {'':>6s}" if sweep else "")
        detail = record.notebook if record.status == "ok" else f"{record.notebook or ''} {record.error or ''}".strip()
        lines.append(f"{record.run_name:{width}s} {record.status:8s} {record.seconds / 60:7.1f}{target} {l0:>13s} {ev:>6s}  {detail}")
    for analysis in outcome.analyses:
        detail = analysis.notebook if analysis.status == "ok" else f"{analysis.notebook} {analysis.error or ''}".strip()
        lines.append(
            f"{Path(analysis.notebook).stem:{width}s} {analysis.status:8s} {analysis.seconds / 60:7.1f}{' ' * len(target_header)} {'':>13s} {'':>6s}  {detail}"
        )
    if outcome.analyses and any(a.status == "ok" for a in outcome.analyses):
        lines.append(f"figures: {Path(outcome.analyses[0].notebook).parent.parent / 'figures'}")
    return "\n".join(lines)
