"""The synthetic model's study end to end (a flat stream of known features, taulib.activations.synthetic): the
`synthetic` profile of parameters/_sweep.yaml run as a study, timed, and what every arm recovered of the known
dictionary. (The ground-truth track of hierarchical worlds is taulib.groundtruth: benchmarks/ground_truth_track.py.)

    flock -x /tmp/taulib-cpu.lock .venv/bin/python benchmarks/synthetic_study.py [--outputs DIR] [--no-write]

Runs `python -m taulib study --profile synthetic` into a fresh folder (generation, λ calibration, the runs'
notebooks, the analysis notebooks and the report), then reads its outputs: the stages' seconds from
study_summary.json, and per arm and L0 target (means over seeds, each run as it landed) the final share of
true features recovered (decoder cosine > 0.9), the mean max cosine and the median recovery step of the
recovered features (taulib.metrics.ground_truth.metric). The verdict itself, matched in L0 and corrected, is the
study's REPORT.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPOSITORY, markdown_table, provenance, write_section  # noqa: E402

from taulib import atomic  # noqa: E402
from taulib.analysis.study_data import load_study  # noqa: E402
from taulib.metrics.evaluate import read_ground_truth_recovery  # noqa: E402


def per_arm(outputs: Path) -> pd.DataFrame:
    rows = []
    for run in load_study(outputs).runs:
        final = run.evaluation.sort_values("step").iloc[-1]
        recovery = read_ground_truth_recovery(run.run_dir)
        recovered = recovery[recovery["recovery_step"] >= 0]
        rows.append(
            {
                "arm": run.arm,
                "l0_target": run.l0_target,
                "seed": run.seed,
                "final_l0": final["l0"],
                "recovered": final["gt_recovered_fraction"],
                "mean_max_cosine": final["gt_mean_max_cosine"],
                "median_recovery_step": float(np.median(recovered["recovery_step"])) if len(recovered) else np.nan,
                "steps": run.config.training.total_steps(),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, default=None, help="study outputs folder (default: a fresh temporary one, removed after)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update benchmarks/RESULTS.md")
    args = parser.parse_args()
    outputs = args.outputs or Path(tempfile.mkdtemp(prefix="taulib-synthetic-study-"))
    # as `make study` runs the track: two one-thread runs at once on a local Dask cluster
    command = [sys.executable, "-m", "taulib", "study", "--parameters", str(REPOSITORY / "parameters"), "--profile", "synthetic", "--outputs", str(outputs)]
    command += ["--backend", "dask", "--workers", "2", "--threads-per-run", "1"]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPOSITORY, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summary = atomic.read_json(outputs / "study_summary.json")
    stages = [(stage, values["actual"], values["estimated"]) for stage, values in summary["stages"].items()]
    runs = per_arm(outputs)
    table = runs.groupby(["arm", "l0_target"], sort=False).agg(
        runs=("seed", "size"),
        final_l0=("final_l0", "mean"),
        recovered=("recovered", "mean"),
        recovered_min=("recovered", "min"),
        recovered_max=("recovered", "max"),
        mean_max_cosine=("mean_max_cosine", "mean"),
        median_recovery_step=("median_recovery_step", "mean"),
        steps=("steps", "first"),
    )
    body = "\n\n".join(
        [
            provenance(" ".join(["benchmarks/synthetic_study.py", *sys.argv[1:]])),
            f"The whole study (`{' '.join(command[1:5])} … --profile synthetic`): **{seconds:,.0f} s** "
            f"({len(runs)} evaluated runs), by stage (the runner's clock, beside taulib.study.cost's estimate made before it started):",
            markdown_table(["stage", "seconds", "estimated"], [(stage, actual, estimated if estimated is not None else "-") for stage, actual, estimated in stages]),
            "Per arm and L0 target, means over seeds of each run as it landed (not matched in L0: REPORT.md of the study is): "
            "the final share of the true features recovered (best decoder cosine > 0.9; min and max over seeds), the mean over "
            "true features of the best decoder cosine, and the median recovery step (first checkpoint from which a feature stays "
            "recovered) of the features recovered, out of the run's steps:",
            markdown_table(
                ["arm", "L0 target", "runs", "final L0", "recovered", "min", "max", "mean max cosine", "median recovery step", "steps"],
                [(arm, target, *values) for (arm, target), values in table.iterrows()],
            ),
        ]
    )
    print(body)
    if not args.no_write:
        write_section("synthetic_study", "The ground-truth track: the synthetic profile as a study (`benchmarks/synthetic_study.py`)", body)
    if args.outputs is None:
        shutil.rmtree(outputs, ignore_errors=True)


if __name__ == "__main__":
    main()
