"""How a finished study's wall time splits across its stages, read from its outputs folder.

    .venv/bin/python benchmarks/study_stages.py [outputs] [--results RESULTS.md | --no-write]

Runs nothing: it reads what `make study` leaves behind.

* the whole study, the ground-truth track (when `--ground-truth` ran it first), the extraction notebook, a
  sweep's λ calibration, each run's notebook and the analysis notebooks: `study_summary.json` (the runner's clock);
* activation extraction: each cache's `manifest.json` (`stats.seconds_this_session`), counted in
  this study only if the cache was written during it;
* training: each run's `summary.json` (`train_seconds_this_session`), when the run trained in its
  notebook; a sweep's seed-0 runs trained earlier, as calibration probes, and count there;
* evaluation: not recorded by the pipeline; estimated from file times, from the later of the
  run's `summary.json` (training done) and its notebook's start to its `evaluation/metrics.csv`;
* evaluation inputs (prompts, probe and probing residuals): the study's record of preparing them
  (`study_summary.json`, stages); for a study made before it was recorded, from the first and last file
  times in `activations/evaluation-*`.
The rest of a run's notebook is kernel start, imports, plots and writing the notebook.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402

from taulib import atomic  # noqa: E402


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def study_stages(outputs: Path) -> dict[str, Any]:
    """The stages' seconds of the study in `outputs` (see the module docstring for the sources)."""
    summary_path = outputs / "study_summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: no finished study here (the runner writes it at the end)")
    study = atomic.read_json(summary_path)
    total = float(study["seconds"])
    finished = _mtime(summary_path)
    started = finished - total

    def during(time: float) -> bool:  # written by this study (not before it, nor by a later command)
        return started <= time <= finished + 1.0

    runs = []
    for record in study["runs"]:
        run_dir = outputs / record["run_name"]
        run_summary = run_dir / "summary.json"
        train = atomic.read_json(run_summary) if run_summary.is_file() else {}
        notebook = run_dir / "02_train.ipynb"
        notebook_started = _mtime(notebook) - float(record["seconds"]) if notebook.is_file() else started
        # a calibration probe was trained before its notebook started: its training belongs to the calibration
        trained_in_notebook = run_summary.is_file() and during(_mtime(run_summary)) and _mtime(run_summary) >= notebook_started - 1.0
        metrics = run_dir / "evaluation" / "metrics.csv"
        evaluation_started = max(_mtime(run_summary), notebook_started) if run_summary.is_file() else notebook_started
        evaluated_now = run_summary.is_file() and metrics.is_file() and during(_mtime(metrics)) and _mtime(metrics) >= evaluation_started
        records = 0
        if (run_dir / "evaluation" / "evaluation.json").is_file():
            summary = atomic.read_json(run_dir / "evaluation" / "evaluation.json")
            # each family's records (taulib.metrics.evaluate), or the one all-families folder of an evaluation made before
            folders = [run_dir / "evaluation" / "families" / name for name in summary["records"].values()] if "records" in summary else [run_dir / "evaluation" / f"records-{summary['key']}"]
            records = max(len(list(folder.glob("step_*.json"))) for folder in folders)
        runs.append(
            {
                "run": record["run_name"],
                "status": record["status"],
                "notebook": float(record["seconds"]),
                "training": float(train.get("train_seconds_this_session", 0.0)) if trained_in_notebook else 0.0,
                "trained_in": "notebook" if trained_in_notebook else ("calibration" if run_summary.is_file() and during(_mtime(run_summary)) else "earlier"),
                "resumed_from_step": train.get("resumed_from_step", 0),
                "evaluation": _mtime(metrics) - evaluation_started if evaluated_now else 0.0,
                "checkpoints_evaluated": records if evaluated_now else 0,
            }
        )

    caches = []
    for manifest_path in sorted((outputs / "activations").glob("*/manifest.json")):
        manifest = atomic.read_json(manifest_path)
        stats = manifest.get("stats", {})
        caches.append(
            {
                "cache": manifest_path.parent.name,
                "split": manifest["spec"]["split"],
                "tokens": manifest["n_tokens"],
                "seconds": float(stats.get("seconds_this_session") or 0.0),
                "in_this_study": during(_mtime(manifest_path)),
            }
        )
    inputs = []
    for folder in sorted((outputs / "activations").glob("evaluation-*")):
        times = [_mtime(path) for path in folder.iterdir() if path.is_file()]
        if times:
            inputs.append({"folder": folder.name, "seconds_at_least": max(times) - min(times), "in_this_study": during(min(times)) and during(max(times))})

    calibration = float(study.get("calibration_seconds") or 0.0)
    analyses = sum(float(a.get("seconds", 0.0)) for a in study.get("analyses", []))
    run_notebooks = sum(run["notebook"] for run in runs)
    ground_truth = float(study.get("ground_truth_seconds") or 0.0)  # `--ground-truth`: the track ran first, inside the study
    notebook_01 = float(study["extraction_seconds"]) if "extraction_seconds" in study else total - ground_truth - run_notebooks - calibration - analyses
    extraction = sum(cache["seconds"] for cache in caches if cache["in_this_study"])
    recorded = (study.get("stages") or {}).get("evaluation inputs", {}).get("actual")
    # the study's own record of preparing them (taulib.study.run.stage_times), else the file times' lower bound
    preparation = float(recorded) if recorded is not None else sum(entry["seconds_at_least"] for entry in inputs if entry["in_this_study"])
    preparation_source = "study_summary.json" if recorded is not None else "file times (lower bound)"
    training = sum(run["training"] for run in runs)
    evaluation = sum(run["evaluation"] for run in runs)
    stages = [
        ("ground-truth track (calibration, runs, report)", ground_truth, "study_summary.json"),
        ("activation extraction", extraction, "cache manifests"),
        ("evaluation inputs (prompts, probe, probing residuals)", preparation, preparation_source),
        ("rest of the extraction notebook (corpus check, model load, kernel)", notebook_01 - extraction - preparation, "difference"),
        ("λ calibration (a sweep's probes, its seed-0 runs, trained in the study process)", calibration, "study_summary.json"),
        ("training", training, "runs' summary.json (the run notebooks)"),
        ("evaluation of the checkpoints", evaluation, "file times"),
        ("rest of the run notebooks (kernel, imports, plots)", run_notebooks - training - evaluation, "difference"),
        ("analysis notebooks (03, 04, 05)", analyses, "study_summary.json"),
        ("unaccounted (the runner between stages)", total - ground_truth - notebook_01 - calibration - run_notebooks - analyses, "difference"),
    ]
    finished_at = datetime.datetime.fromtimestamp(finished, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {"outputs": str(outputs), "finished": finished_at, "total": total, "stages": stages, "runs": runs, "caches": caches, "evaluation_inputs": inputs}


def render(result: dict[str, Any]) -> str:
    total = result["total"]
    text = f"`benchmarks/study_stages.py {Path(result['outputs']).name}` on the study that finished {result['finished']}; read from its outputs, nothing is re-run.\n\n"
    text += markdown_table(
        ["stage", "seconds", "share", "source"], [(name, seconds, f"{100 * seconds / total:.1f}%", source) for name, seconds, source in result["stages"]]
    )
    text += f"| **whole study** | **{total:,.0f}** | 100% | study_summary.json |\n\n"
    text += markdown_table(
        ["run", "status", "notebook s", "trained in", "training s", "evaluation s", "checkpoints evaluated", "resumed from step"],
        [
            (r["run"], r["status"], r["notebook"], r["trained_in"], r["training"], r["evaluation"], r["checkpoints_evaluated"], r["resumed_from_step"])
            for r in result["runs"]
        ],
    )
    earlier = [c for c in result["caches"] if not c["in_this_study"]]
    if earlier:
        text += "\nActivation caches reused from an earlier run of the pipeline (their recorded extraction time, not part of the total above): "
        text += "; ".join(f"{c['split']} {c['tokens']:,} tokens, {c['seconds']:.0f} s" for c in earlier) + ".\n"
    earlier_inputs = [e for e in result["evaluation_inputs"] if not e["in_this_study"]]
    if earlier_inputs:
        text += "Evaluation inputs not made by this study (earlier or later): " + ", ".join(e["folder"] for e in earlier_inputs) + ".\n"
    if not any(r["checkpoints_evaluated"] for r in result["runs"]):
        text += "No checkpoint was evaluated in this study (it predates the per-checkpoint evaluation, or evaluation was cached).\n"
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", nargs="?", type=Path, default=Path("outputs"))
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--section", default="study_stages", help="the RESULTS section written (a study of another default keeps its own)")
    parser.add_argument("--title", default="The default study's wall time by stage", help="the section's title")
    args = parser.parse_args(argv)
    result = study_stages(args.outputs)
    text = render(result)
    if not args.no_write:
        write_section(args.section, f"{args.title} (`benchmarks/study_stages.py`)", text, *([args.results] if args.results else []))
    print(text)
    return result


if __name__ == "__main__":
    main()
