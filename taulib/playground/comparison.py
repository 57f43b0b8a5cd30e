"""The ground-truth track's own runs beside a playground run: for every arm, its run of the same replicate and
budget whose final L0 is nearest the playground run's, so that a new schedule is seen against the arms.

Only a track of the same design is comparable (the run-defining keys of taulib.playground.world_runs): another
world, batch or learning rate would put the arms on other data, and the comparison is refused with the keys
that differ. The runs are read from the track's records (runs/<replicate>/<arm>/*.json), calibration probes
included: each is a complete run of that arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taulib import atomic
from taulib.groundtruth import track
from taulib.playground import world_runs
from taulib.playground.sparsity import log_distance
from taulib.playground.world_runs import PlaygroundRun, design_differences, read_track_record


@dataclass(frozen=True)
class ArmRun:
    """One arm's run nearest the playground's final L0."""

    arm: str
    final_l0: float
    l1_coefficient: float
    checkpoints: list[dict[str, Any]]  # the record's rows: step, tokens, τ and every endpoint
    path: Path


@dataclass(frozen=True)
class Comparison:
    runs: list[ArmRun]  # the study's arms, in the track's order
    note: str  # what was compared, or why nothing was


def nearest_arm_runs(track_dir: str | Path, run: PlaygroundRun, roles: tuple[str, ...] = ("study",)) -> Comparison:
    """Per arm of the track (of `roles`: the study's arm files by default), the run of the playground run's replicate
    and budget nearest its final L0; an empty comparison with the reason when the track is missing or of another design."""
    track_dir = Path(track_dir)
    record = read_track_record(track_dir)
    if record is None:
        return Comparison([], f"no ground-truth track in {track_dir} (`python -m taulib groundtruth` or `make study` makes one)")
    if record.get("version") != track.TRACK_VERSION:
        return Comparison([], f"{track_dir} holds a track of version {record.get('version')}; this code writes version {track.TRACK_VERSION}")
    if differing := design_differences(record["config"], run.design):
        return Comparison([], f"{track_dir} is a track of another design (differs in: {', '.join(differing)}): its runs are not on this world")
    settings = run.settings
    replicate = f"w{settings.world_seed}_s{settings.training_seed}"
    config = record["config"]
    if settings.world_seed not in config["world_seeds"] or settings.training_seed not in config["training_seeds"] or settings.budget not in config["budgets"]:
        return Comparison(
            [],
            f"the track has no replicate {replicate} at budget {settings.budget:,} (world seeds {config['world_seeds']}, "
            f"training seeds {config['training_seeds']}, budgets {config['budgets']})",
        )
    if not world_runs.same_samples(config, run.design):
        return Comparison([], f"the track's samples are drawn for {max(config['budgets']):,}, this run's for {max(run.design.budgets):,}: not the same data")
    found = []
    for arm in record["arms"]:
        if arm["role"] not in roles:
            continue
        folder = track_dir / "runs" / replicate / arm["name"]
        candidates = [*folder.glob(f"b{settings.budget}_g*.json"), *folder.glob(f"probe_b{settings.budget}_*.json")]
        records = [(path, atomic.read_json(path)) for path in sorted(candidates)]
        usable = [(path, r) for path, r in records if math.isfinite(r["summary"]["final_l0"])]
        if not usable:
            continue
        path, best = min(usable, key=lambda item: log_distance(item[1]["summary"]["final_l0"], run.final_l0))
        found.append(ArmRun(arm["name"], float(best["summary"]["final_l0"]), float(best["l1_coefficient"]), best["checkpoints"], path))
    if not found:
        return Comparison([], f"{track_dir} has no finished run of replicate {replicate} at budget {settings.budget:,} yet")
    return Comparison(found, f"the track's runs of replicate {replicate} at {settings.budget:,} samples nearest L0 {run.final_l0:.3g}, from {track_dir}")
