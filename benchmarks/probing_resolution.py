"""Whether the probing test set resolves each run's lift over a random SAE, and how many examples per class would.

    .venv/bin/python benchmarks/probing_resolution.py OUTPUTS [--write]

Reads a finished study (`make study`); trains and evaluates nothing. The lift is a run's final sparse-probing top-1
accuracy minus that of a random SAE of the same width at the same L0, both scored on the same held-out probing texts
(taulib.metrics.probing_baseline). Its interval here is the test set's alone: every binary task's test examples
resampled (the same draw for the run and its baseline, taulib.analysis.probe_bootstrap), seeds held. A run's lift is
*resolved* when that 95% interval excludes 0.

The examples per class a lift needs: the test set's standard error falls as 1/√(test examples), so a lift L with
standard error s at n texts per class (`evaluation.probing.examples_per_class`, the same share held out for testing) is
resolved (1.96·s' < |L|) from n·(1.96·s/|L|)² texts per class. A projection from the measured spread, assuming the
lift itself stays where it is and the tasks have that many texts. It reads the spread as a standard deviation, where
"resolved" reads the replicates' 2.5th and 97.5th percentiles: near the edge the two can disagree (a run unresolved
that projects to fewer texts than it has, or the reverse).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taulib.analysis.probe_bootstrap import probe_replicates
from taulib.analysis.study_data import load_study

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

Z = 1.96


def examples_per_class_needed(lift: float, standard_error: float, examples_per_class: int) -> float:
    """The texts per class (the same share held out for testing) from which a lift with this test-set standard error at
    `examples_per_class` is resolved (inf: a lift of 0)."""
    if lift == 0:
        return math.inf
    return examples_per_class * (Z * standard_error / abs(lift)) ** 2


@dataclass(frozen=True)
class LiftResolution:
    run: str
    arm: str
    l0_target: float | None
    seed: int
    lift: float  # final top-1 accuracy minus the random SAE's, as the run table (taulib.analysis.matched)
    low: float  # its 95% test-set interval
    high: float
    examples_per_class: int
    needed: float  # texts per class from which the lift is resolved (examples_per_class_needed)

    @property
    def resolved(self) -> bool:
        return self.low > 0 or self.high < 0


def lift_resolutions(outputs: Path) -> list[LiftResolution]:
    """Every run whose records hold its random baseline's per-example answers, in arm, target and seed order."""
    study = load_study(outputs)
    replicates = probe_replicates(study)
    found = []
    for run in study.runs:
        draws = replicates.get(run.name, {}).get("final_sae_top_1_lift")
        if draws is None:
            continue
        final = run.evaluation.sort_values("step").iloc[-1]
        lift = float(final["sae_top_1_accuracy"] - final["random_sae_top_1_accuracy"])
        low, high = np.nanpercentile(draws, [2.5, 97.5])
        examples_per_class = run.config.evaluation.section("probing").examples_per_class
        needed = examples_per_class_needed(lift, float(np.nanstd(draws, ddof=1)), examples_per_class)
        found.append(LiftResolution(run.name, run.arm, run.l0_target, run.seed, lift, float(low), float(high), examples_per_class, needed))
    return sorted(found, key=lambda r: (r.arm, r.l0_target or 0.0, r.seed))


def resolution_table(resolutions: list[LiftResolution]) -> list[list[str]]:
    """One row per arm and L0 target: each seed's lift with its interval, how many are resolved, and the texts each needs."""
    groups: dict[tuple[str, float | None], list[LiftResolution]] = {}
    for found in resolutions:
        groups.setdefault((found.arm, found.l0_target), []).append(found)
    return [
        [
            arm,
            "—" if target is None else f"{target:g}",
            ", ".join(f"{r.lift:+.3f} [{r.low:+.3f}, {r.high:+.3f}]" for r in runs),
            f"{sum(r.resolved for r in runs)} of {len(runs)}",
            ", ".join("—" if not math.isfinite(r.needed) else f"{r.needed:,.0f}" for r in runs),
        ]
        for (arm, target), runs in groups.items()
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if not (args.outputs / "study_summary.json").is_file():
        raise SystemExit(f"{args.outputs}: no study_summary.json; give a finished study's outputs folder")
    resolutions = lift_resolutions(args.outputs)
    if not resolutions:
        raise SystemExit(f"{args.outputs}: no run records its random baseline's per-example answers (a study made before they were recorded)")
    table = markdown_table(
        ["arm", "L0 target", "lift per seed [95% test-set interval]", "resolved", "examples per class to resolve each"], resolution_table(resolutions)
    )
    resolved = sum(r.resolved for r in resolutions)
    examples = sorted({r.examples_per_class for r in resolutions})
    command = " ".join(["benchmarks/probing_resolution.py", *(argv if argv is not None else sys.argv[1:])])
    body = (
        f"{provenance(command)}\n\n{table}\n\n"
        f"{resolved} of {len(resolutions)} runs have a lift whose test-set interval excludes 0, at "
        f"{', '.join(map(str, examples))} texts per class. The lift: final sparse-probing top-1 "
        f"accuracy minus a random SAE's of the same width at the same L0, on the same test texts; its interval resamples each binary "
        f"task's test texts (the run and its baseline alike), seeds held. Examples per class to resolve: the texts per class from which "
        f"1.96 test-set standard errors fall below the lift, if the lift stays where it is (the error falls as 1/√texts); "
        f"— where the lift is 0.\n"
    )
    print(body)
    if args.write:
        write_section(
            "probing_resolution", "Whether the probing test set resolves each run's lift over a random SAE (`benchmarks/probing_resolution.py`)", body
        )


if __name__ == "__main__":
    main()
