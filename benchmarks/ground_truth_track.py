"""The hierarchical ground-truth track end to end, timed, with its verdicts and per-arm summaries.

    flock -x /tmp/taulib-cpu.lock .venv/bin/python benchmarks/ground_truth_track.py [--outputs DIR] [--keep DIR] [--no-write]

Runs `python -m taulib groundtruth` (as `make study` does) into a fresh folder on this machine, and records in
RESULTS.md the wall time (calibration, runs and report together), the per-run training-and-scoring seconds, and from
the track's own summary.json and REPORT.md: the verdicts of the primary contrasts, the A/A control, the
dose-response readings and the proxy checks. With --keep DIR the track's REPORT.md, summary.json, track.json
and figures (PNG) are copied to DIR with a provenance.json (commit, CPU, command, date), and README's ground-truth
findings are generated from them (`--keep docs/findings/ground_truth`: the kept report README quotes).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPOSITORY, RESULTS, markdown_table, provenance, write_section  # noqa: E402

from taulib import atomic  # noqa: E402
from taulib.groundtruth.report import PROVENANCE_FILE, REPORT_FILE, SUMMARY_FILE, primary_table, readme_block, replace_readme_block  # noqa: E402
from taulib.provenance import cpu_kind, git_commit  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, default=None, help="the track's folder (default: a fresh temporary one, removed after)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the track's REPORT.md, summary.json and figures here")
    parser.add_argument("--no-write", action="store_true", help="print, do not update benchmarks/RESULTS.md")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="a key of _ground_truth.yaml (the smoke test's tiny design)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the RESULTS.md to update")
    parser.add_argument("--readme", type=Path, default=REPOSITORY / "README.md", help="the README whose ground-truth findings --keep regenerates")
    args = parser.parse_args(argv)
    outputs = args.outputs or Path(tempfile.mkdtemp(prefix="taulib-ground-truth-"))
    commit = git_commit(REPOSITORY)
    command = [sys.executable, "-m", "taulib", "groundtruth", "--parameters", str(REPOSITORY / "parameters"), "--outputs", str(outputs), "--quiet"]
    command += [part for pair in args.overrides for part in ("--set", pair)]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPOSITORY)
    seconds = time.perf_counter() - started
    summary = atomic.read_json(outputs / SUMMARY_FILE)
    record = atomic.read_json(outputs / "track.json")
    run_seconds = [atomic.read_json(path)["seconds"] for path in (outputs / "runs").glob("*/*/*.json")]
    primary = [row for row in summary["contrasts"] if row["family"].endswith(": primary")]
    body = "\n\n".join(
        [
            provenance(" ".join(["benchmarks/ground_truth_track.py", *(sys.argv[1:] if argv is None else argv)])),
            f"`python -m taulib groundtruth` from an empty folder: **{seconds / 60:.1f} min** wall time for {summary['runs']} grid runs "
            f"and {len(run_seconds) - summary['runs']} calibration probes ({record['workers']} one-thread workers); training and scoring "
            f"summed over runs {sum(run_seconds) / 60:.1f} min (mean {sum(run_seconds) / len(run_seconds):.1f} s, longest {max(run_seconds):.1f} s). "
            "Plain L1's calibrated final effective coefficients λ/τ_final (budget: L0 target → coefficient): "
            + "; ".join(
                f"{b}: " + ", ".join(f"{t} → {c:.3g}" for t, c in by_target.items()) for b, by_target in record["calibration"]["baseline_plain_l1"].items()
            )
            + ".",
            "The primary contrasts (tightened minus the reference, paired over replicates, Holm within each question):",
            "\n".join(primary_table(primary)) + "\n",
            f"A/A control: {summary['aa_tested']} contrasts tested, "
            + ("all unresolved." if summary["aa_unresolved_everywhere"] else f"{sum(r['verdict'] != 'unresolved' for r in summary['aa'])} resolved."),
            "Dose-response (full budget; slope and curvature in log τ, Holm within each family):",
            markdown_table(
                ["family", "endpoint", "L0", "slope", "Holm p", "curvature", "Holm p"],
                [
                    (d["family"], d["endpoint"], d["l0_target"], d["slope"], d["slope_holm_p"], d["curvature"], d["curvature_holm_p"])
                    for d in summary["dose_response"]
                ],
            ),
            "The language model's proxies against the truth (full-budget runs; partial Spearman on log final L0, cluster bootstrap over replicates):",
            markdown_table(
                ["proxy", "truth", "ρ", "partial ρ", "low", "high", "tracks"],
                [tuple(p[key] for key in ("proxy", "truth", "rho", "partial_rho", "low", "high", "tracks")) for p in summary["proxies"]],
            ),
        ]
    )
    print(body)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for name in (SUMMARY_FILE, "track.json"):
            shutil.copy2(outputs / name, args.keep / name)
        (args.keep / "figures").mkdir(exist_ok=True)
        for figure in (outputs / "figures").glob("*.png"):  # the PNGs: each HTML page embeds plotly.js (MBs)
            shutil.copy2(figure, args.keep / "figures" / figure.name)
        stamp = {
            "commit": commit,
            "cpu": cpu_kind(),
            "command": " ".join(["benchmarks/ground_truth_track.py", *(sys.argv[1:] if argv is None else argv)]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "minutes": round(seconds / 60, 1),
        }
        atomic.write_json(args.keep / PROVENANCE_FILE, stamp)
        header = f"> Kept report: made at commit {stamp['commit']} on {stamp['cpu']}, {stamp['date']}, by `{stamp['command']}` ({stamp['minutes']} min).\n\n"
        atomic.write_text(args.keep / REPORT_FILE, header + (outputs / REPORT_FILE).read_text(encoding="utf-8"))
        link = Path(os.path.relpath(args.keep.resolve() / REPORT_FILE, args.readme.resolve().parent)).as_posix()
        replace_readme_block(args.readme, readme_block(args.keep, link))
    if not args.no_write:
        write_section("ground_truth_track", "The hierarchical ground-truth track (`benchmarks/ground_truth_track.py`)", body, args.results)
    if args.outputs is None:
        shutil.rmtree(outputs, ignore_errors=True)
    return {"seconds": seconds, "summary": summary, "body": body}


if __name__ == "__main__":
    main()
