"""The study's wall-time estimate (taulib.study.cost) against what each stage then took.

    .venv/bin/python benchmarks/estimate_accuracy.py [--results RESULTS.md | --no-write]

Runs the tiny study (the default study's parameter files for plain L1 and tightened annealing, shrunk
by tests/tiny_study.py's settings) in a temporary folder, timing this machine afresh into an empty
speed cache, as a first study on a fresh clone does. Run it on an otherwise idle machine: the
estimate is made from timings taken before the stages run, so anything else loading the cores in
between moves the ratio, not the estimate's quality.

Compared: extraction, the evaluation inputs, the runs (training and every checkpoint's evaluation)
and the analysis notebooks. The tiny study has no sweep, so its calibration is 0 in both columns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import REPOSITORY, markdown_table, provenance, write_section  # noqa: E402
from tiny_study import TINY  # noqa: E402

from taulib import atomic  # noqa: E402
from taulib.timing import CACHE_ENV  # noqa: E402

RUNS = ("baseline_plain_l1", "cosine_0.3_to_0.05_tightened")
COMPARED = ("extraction", "evaluation inputs", "runs", "analysis")


def measure() -> dict[str, Any]:
    """The tiny study's estimated and actual seconds per stage, read from its study_summary.json."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        parameters = root / "parameters"
        parameters.mkdir()
        for name in ("_study", *RUNS):
            shutil.copy(REPOSITORY / "parameters" / f"{name}.yaml", parameters)
        outputs = root / "outputs"
        command = [sys.executable, "-m", "taulib", "study", "--parameters", str(parameters), "--outputs", str(outputs), *TINY]
        result = subprocess.run(command, cwd=REPOSITORY, env=os.environ | {CACHE_ENV: str(root / "speed-cache")}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the tiny study failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        summary = atomic.read_json(outputs / "study_summary.json")
    stages = summary["stages"]
    analyses = {Path(analysis["notebook"]).name: analysis["seconds"] for analysis in summary.get("analyses", [])}
    return {"stages": {stage: (stages[stage]["estimated"], stages[stage]["actual"]) for stage in COMPARED}, "analyses": analyses, "seconds": summary["seconds"]}


def render(result: dict[str, Any]) -> str:
    rows = [(stage, estimated, actual, f"{estimated / actual:.2f}" if actual else "—") for stage, (estimated, actual) in result["stages"].items()]
    text = provenance("benchmarks/estimate_accuracy.py") + "\n\n"
    text += "The tiny study (plain L1 and tightened annealing, 40,000 training tokens, 6 checkpoints), timed afresh into an empty speed cache, on an idle machine.\n\n"
    text += markdown_table(["stage", "estimated s", "actual s", "estimate / actual"], rows)
    text += "\nThe analysis notebooks, each: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result["analyses"].items()) + ".\n"
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    result = measure()
    text = render(result)
    if not args.no_write:
        write_section("estimate_accuracy", "The wall-time estimate against the actual stages (`benchmarks/estimate_accuracy.py`)", text, *([args.results] if args.results else []))
    print(text)
    return result


if __name__ == "__main__":
    main()
