"""What evaluating a finished study again costs after the metric families got records of their own.

    .venv/bin/python benchmarks/evaluation_carry_over.py OUTPUTS [--results RESULTS.md | --no-write]

Copies each run of a finished study (made by any earlier commit) into a scratch folder, without its
checkpoints' weights unless a checkpoint must be evaluated, and evaluates it with this code
(taulib.metrics.evaluate.evaluate_run): the records an older evaluation wrote (one per checkpoint for every
family, `records-<key>/`) are split into the families' own, and every checkpoint that cannot be attributed is
evaluated again. Reports, per study: the runs, the checkpoint records carried over and evaluated again, whether
each run's `metrics.csv` came out byte for byte as the older evaluation wrote it, and the seconds taken. The
study's folder itself is only read.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

from taulib import atomic  # noqa: E402
from taulib.metrics.evaluate import evaluate_run  # noqa: E402
from taulib.metrics.families import FAMILIES  # noqa: E402


def carry_over(outputs: Path) -> dict[str, Any]:
    summary = atomic.read_json(outputs / "study_summary.json")
    runs = [run["run_name"] for run in summary["runs"] if run.get("status") == "ok"]
    evaluated: list[tuple[str, str, int]] = []  # (run, family, step) evaluated again
    originals = {family: type(family).evaluate for family in FAMILIES}

    def counting(family):
        def evaluate(self, saes, state, run, chunk):
            evaluated.extend((run.config.run_name, self.name, step) for step in chunk.steps)
            return originals[family](self, saes, state, run, chunk)

        return evaluate

    rows, identical, started = [], 0, time.perf_counter()
    for family in FAMILIES:
        type(family).evaluate = counting(family)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            for name in runs:
                source, target = outputs / name, root / name
                # the run's records, its index and config; its weights only if some checkpoint is evaluated again
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "final", "trainer_state.safetensors", "*.ipynb", "latent_contexts"))
                (target / "checkpoints").mkdir()
                shutil.copy2(source / "checkpoints" / "index.json", target / "checkpoints" / "index.json")
                before = (source / "evaluation" / "metrics.csv").read_bytes()
                try:
                    evaluate_run(target, root, show_progress=False)
                except FileNotFoundError:  # a checkpoint must be evaluated: it needs its weights and the inputs
                    shutil.rmtree(target / "checkpoints")
                    shutil.copytree(source / "checkpoints", target / "checkpoints")
                    evaluate_run(target, outputs, show_progress=False)
                after = (target / "evaluation" / "metrics.csv").read_bytes()
                identical += before == after
                records = sum(1 for _ in (target / "evaluation" / "families").glob("*/step_*.json"))
                rows.append((name, records, sum(1 for run, _, _ in evaluated if run == name), before == after))
    finally:
        for family in FAMILIES:
            type(family).evaluate = originals[family]
    return {"runs": len(runs), "rows": rows, "identical": identical, "evaluated": len(evaluated), "seconds": time.perf_counter() - started}


def render(result: dict[str, Any], command: str) -> str:
    records = sum(row[1] for row in result["rows"])
    carried = records - result["evaluated"]
    lines = [
        provenance(command),
        "",
        f"{result['runs']} runs: {carried:,} of {records:,} family records carried over from the older evaluation, "
        f"{result['evaluated']:,} checkpoint evaluations done again; metrics.csv byte for byte as before in "
        f"{result['identical']} of {result['runs']} runs; {result['seconds']:.0f} s in all.",
        "",
    ]
    changed = [row for row in result["rows"] if row[2] or not row[3]]
    if changed:
        lines += [markdown_table(("run", "family records", "evaluated again", "metrics.csv unchanged"), changed), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    result = carry_over(args.outputs)
    text = render(result, f"benchmarks/evaluation_carry_over.py {args.outputs}")
    if not args.no_write:
        write_section(
            "evaluation_carry_over",
            "A finished study evaluated again after the families got their own records (`benchmarks/evaluation_carry_over.py`)",
            text,
            *([args.results] if args.results else []),
        )
    print(text)
    return result


if __name__ == "__main__":
    main()
