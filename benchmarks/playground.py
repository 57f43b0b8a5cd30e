"""How responsive the τ playground (notebooks/07_tau_playground) is on this CPU.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/playground.py
    .venv/bin/python benchmarks/playground.py --quick --results /tmp/results.md   # seconds

Timed in this process, as the notebook's kernel runs them (the browser's drawing of the figure comes on top):
- the default run: `Playground.train()` with the controls' defaults (tightened annealing, target L0 8, 262,144
  samples on the ground-truth track's default world; λ's search starting from the kept report's calibration), the
  first in a fresh process (the world and its samples are drawn then) and again (they are kept);
- the same with λ given (one run, no probes);
- a redraw of the schedule's curves when a slider moves, and of the dictionary view when the checkpoint slider moves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPOSITORY, RESULTS, markdown_table, provenance, write_section  # noqa: E402

QUICK_DESIGN = {
    "world": {"d_model": 16, "n_features": 24, "n_parents": 2, "children_per_parent": 3, "n_rare": 2, "mean_active_features": 3.0},
    "budgets": [4096, 8192],
    "batch_size": 128,
    "n_checkpoints": 5,
    "heldout_samples": 2048,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs after the first, and redraws of each kind ×10")
    parser.add_argument("--track-dir", type=Path, default=REPOSITORY / "outputs" / "ground_truth", help="a track to compare with (skipped when absent)")
    parser.add_argument("--quick", action="store_true", help="a tiny world and budget, one repeat (a smoke test)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats <= 0:
        parser.error("--repeats must be positive")
    if args.quick:
        args.repeats = 1
    return args


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse(argv)
    started = time.perf_counter()
    from taulib.playground.ui import TAU_GRID, Playground  # noqa: PLC0415 (the import is part of a fresh kernel's cost)

    overrides = QUICK_DESIGN if args.quick else None
    settings = {"budget": 8192, "target_l0": 4.0} if args.quick else None
    playground = Playground(REPOSITORY / "parameters", args.track_dir, REPOSITORY / "docs" / "findings" / "ground_truth", overrides, settings)
    built = time.perf_counter() - started
    first = _timed(playground.train)
    run = playground.run
    assert run is not None, playground.summary
    again = [_timed(playground.train) for _ in range(args.repeats)]
    probes = len(playground.run.probes)
    playground.controls.sparsity.value = "λ"
    playground.controls.l1_coefficient.options = sorted(
        {*playground.controls.l1_coefficient.options, (f"{run.l1_coefficient:g}", run.l1_coefficient)}, key=lambda o: o[1]
    )
    playground.controls.l1_coefficient.value = run.l1_coefficient
    given = [_timed(playground.train) for _ in range(args.repeats)]
    taus = [t for t in TAU_GRID if t < 0.3][: 10 * args.repeats]
    schedule_redraws = [_timed(lambda t=t: setattr(playground.controls.tau_final, "value", t)) for t in taus]
    steps = playground.run.steps
    checkpoint_redraws = [
        _timed(lambda s=s: setattr(playground.checkpoint, "value", s)) for s in (steps * (1 + 10 * args.repeats // len(steps)))[: 10 * args.repeats]
    ]
    measured = {
        "build_s": built,
        "first_run_s": first,
        "run_s": statistics.median(again),
        "lambda_run_s": statistics.median(given),
        "probes": probes,
        "schedule_redraw_s": max(schedule_redraws),
        "checkpoint_redraw_s": max(checkpoint_redraws),
    }
    world = run.design.world
    print(", ".join(f"{key} {value:.3g}" for key, value in measured.items()), flush=True)
    command = "python benchmarks/playground.py" + (" --quick" if args.quick else "")
    body = provenance(command, ("torch", "plotly", "ipywidgets")) + "\n"
    body += (
        f"The playground's default ({world.n_features} true features in {world.d_model} dimensions, {run.settings.budget:,} samples, "
        f"tightened annealing at target L0 {run.settings.target_l0:g}: {probes} probe(s), final L0 {run.final_l0:.3g}), timed in the kernel's "
        "process; the browser's drawing comes on top. The goals: a default run under 20 s, a redraw under 1 s.\n\n"
    )
    body += markdown_table(
        ["what", "seconds"],
        [
            ["building the widgets (imports included)", built],
            ["the default run, first in a fresh process (the world and its samples drawn)", first],
            [f"the default run again (median of {args.repeats})", measured["run_s"]],
            [f"the same with λ given: one run, no probes (median of {args.repeats})", measured["lambda_run_s"]],
            [f"schedule curves redrawn as τ_final moves (slowest of {len(schedule_redraws)})", measured["schedule_redraw_s"]],
            [f"dictionary view redrawn as the checkpoint slider moves (slowest of {len(checkpoint_redraws)})", measured["checkpoint_redraw_s"]],
        ],
    )
    write_section("playground", "The τ playground: a run and a redraw on this CPU (`benchmarks/playground.py`)", body, args.results)
    return measured


if __name__ == "__main__":
    main()
