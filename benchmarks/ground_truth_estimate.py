"""The study estimate's ground-truth stage against a track that ran from an empty folder on this machine.

    .venv/bin/python benchmarks/ground_truth_estimate.py TRACK_FOLDER [--parameters parameters] [--write]

TRACK_FOLDER is a finished track (`python -m taulib groundtruth`, or `make study`'s outputs/ground_truth) that ran
from an empty folder. Its actual wall time is read from its files: the first calibration probe's record less that
probe's own seconds (the track's start, to about a second) to its REPORT.md. The estimate is
taulib.study.cost.ground_truth_stage for an empty folder of the same design, its units timed now into a fresh timing
cache (never the machine's own, ~/.cache/taulib), so run it on an idle machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

from taulib import atomic  # noqa: E402
from taulib.groundtruth.report import REPORT_FILE  # noqa: E402
from taulib.groundtruth.track import TRACK_FILE, load_track_config, track_arms, track_record  # noqa: E402
from taulib.study.cost import Costs, ground_truth_stage  # noqa: E402
from taulib.timing import SpeedCache  # noqa: E402


def actual_seconds(root: Path) -> float:
    """From the track's first probe (its record's time less its own seconds) to its report."""
    probes = sorted(root.glob("runs/*/*/probe_*.json"), key=lambda path: path.stat().st_mtime)
    if not probes or not (root / REPORT_FILE).is_file():
        raise SystemExit(f"{root}: not a finished track run from an empty folder (no calibration probes or no {REPORT_FILE})")
    first = probes[0]
    return (root / REPORT_FILE).stat().st_mtime - (first.stat().st_mtime - float(atomic.read_json(first)["seconds"]))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("track", type=Path)
    parser.add_argument("--parameters", type=Path, default=Path(__file__).resolve().parents[1] / "parameters")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    config = load_track_config(args.parameters / TRACK_FILE)
    arms, identities = track_arms(args.parameters, config)
    recorded = atomic.read_json(args.track / "track.json")
    if recorded.get("fingerprint") != track_record(config, arms, identities)["fingerprint"]:
        raise SystemExit(f"{args.track}: a track of another design than {args.parameters / TRACK_FILE}")
    actual = actual_seconds(args.track)
    with tempfile.TemporaryDirectory() as folder:
        cache = SpeedCache(Path(folder) / "machine_speed.json")
        costs = Costs(cache, show_progress=False)
        stage = ground_truth_stage(args.parameters, Path(folder) / "empty", costs)
        busy = max(costs.busy_while_timed.values(), default=0.0)
    rows = [["ground-truth track", f"{stage.seconds / 60:.1f}", f"{actual / 60:.1f}", f"{stage.seconds / actual:.2f}", stage.detail]]
    command = " ".join(["benchmarks/ground_truth_estimate.py", *(argv if argv is not None else sys.argv[1:])])
    body = (
        f"{provenance(command)}\n\n"
        + markdown_table(["stage", "estimated min", "actual min", "estimate / actual", "what it counted"], rows)
        + f"\n\nThe actual: the track in `{args.track}` (seconds recorded by its run: {recorded.get('seconds_this_session', float('nan')) / 60:.1f} "
        f"min of calibration and runs, the report after). The estimate: its units timed now, into a fresh cache (other processes kept at "
        f"most {busy:.1f} cores busy while they were timed).\n"
    )
    print(body)
    if args.write:
        write_section(
            "ground_truth_estimate", "The study estimate's ground-truth stage against the track's wall time (`benchmarks/ground_truth_estimate.py`)", body
        )
    return {"estimated": stage.seconds, "actual": actual}


if __name__ == "__main__":
    main()
