"""Does per-latent formation against a reference dictionary track when the true features are recovered?

    .venv/bin/python benchmarks/reference_formation_truth.py [--world-seeds 0 1] [--training-seeds 0 1 2] \
        [--scratch DIR] [--set KEY=VALUE ...] [--write]

The language model's formation endpoint times each latent against a reference that is not the run's own: the consensus
of the final SAEs of the study's other seeds, every arm of them, at the same L0 target
(taulib.analysis.reference_formation). Before a verdict leans on it, this checks on the ground-truth track's world
(`parameters/_ground_truth.yaml`, taulib.groundtruth) that it tracks the truth: that a run whose reference directions
form later is a run whose true features are recovered later.

The design is the track's, at its full budget and with its study arms only (no families, no A/A arm), and with three
training seeds per world: a run's reference is the consensus of the other seeds' runs of its world, and a consensus
needs two seeds (each seed is its own initialisation; the arms of one seed share theirs). Each arm is calibrated as the
track calibrates it (`taulib.groundtruth.track.calibrate`, its probes kept in `--scratch` per design) and runs at each
target's calibrated coefficient × 1.1^±1, as the track's grid; each run trains with every checkpoint's decoder kept.

Per run: the reference formation median (taulib.analysis.reference_formation.formation_against; never formed counts
as 1, censored), the track's own proxy (per-latent formation against the run's own final decoder, median over live
latents), and the truth: recovery time (each true feature's first recovery, restricted mean), MCC area and final MCC.
Each proxy against each truth: Spearman ρ over runs and partial on log final L0 (sparsity moves both), with 95%
cluster-bootstrap intervals over worlds (a run's reference is made of its world's other runs: the runs of one world are
not independent); a proxy *tracks* when the partial ρ's interval excludes 0 on the expected side, as the track's own
proxy checks read it (taulib.groundtruth.analysis.proxy_checks, which resample replicates).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from taulib.analysis.reference_formation import HeldInRun, ReferenceSettings, consensus_directions, formation_against
from taulib.groundtruth import analysis as gta
from taulib.groundtruth.track import (
    FIRST_COEFFICIENT,
    GRID_STEP,
    PLAIN,
    TRACK_FILE,
    RunSpec,
    TrackConfig,
    calibrate,
    load_track_config,
    replicate_data,
    track_arms,
    track_record,
    train_and_score,
)
from taulib.metrics.latent_formation import formation_steps, matched_cosines_over_checkpoints
from taulib.progress import progress_bar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"
# (proxy, truth, expected sign): a later formation goes with a later recovery, a smaller MCC area and final MCC
CHECKS = (
    ("reference_formation", "recovery_time", 1),
    ("reference_formation", "mcc_area", -1),
    ("reference_held_at_end", "final_mcc", 1),
    ("own_formation", "recovery_time", 1),
    ("own_formation", "mcc_area", -1),
)


def trained(config: TrackConfig, spec: RunSpec) -> dict[str, Any]:
    """One run of the track's design with every checkpoint's decoder kept: its truth, its own-final proxy, its decoders
    and its live latents at the end (a worker's task)."""
    torch.set_num_threads(1)
    data = replicate_data(config, spec.world_seed, spec.training_seed)
    decoders: list[torch.Tensor] = []
    alive: list[np.ndarray] = []

    def keep(row: dict[str, Any], sae: Any, matching: Any) -> None:
        decoders.append(sae.W_dec.detach().clone())
        with torch.no_grad():
            alive[:] = [(sae.encode(data.truth.x) > 0).any(dim=0).numpy()]

    record = train_and_score(config, spec, data, on_checkpoint=keep)
    tokens = [row["tokens"] for row in record["checkpoints"]]
    own = formation_steps(matched_cosines_over_checkpoints(decoders, "hungarian"), tokens)
    live = alive[0]
    return {
        "arm": spec.arm.name,
        "replicate": spec.replicate,
        "world_seed": spec.world_seed,
        "training_seed": spec.training_seed,
        "coefficient": spec.coefficient,
        "budget": spec.budget,
        "final_l0": record["summary"]["final_l0"],
        "recovery_time": record["summary"]["recovery_time"],
        "mcc_area": record["summary"]["mcc_area"],
        "final_mcc": record["summary"]["final_mcc"],
        "own_formation": float(np.median(own[live]) / spec.budget) if live.any() else math.nan,
        "positions": [t / spec.budget for t in tokens],
        "decoders": torch.stack(decoders).numpy(),  # numpy across the process boundary, not torch's shared-memory handles
        "alive": live,
    }


def grid(config: TrackConfig, arms: list, calibration: dict[str, dict[float, float]]) -> list[tuple[RunSpec, float]]:
    """Every replicate's grid runs at the full budget, with the L0 target each was placed around: the target's calibrated
    coefficient × GRID_STEP^±1, as the track's grid (taulib.groundtruth.track.coefficient_grid), its target kept."""
    budget = config.budgets[-1]
    found = []
    for world_seed, training_seed in config.replicates:
        for arm in arms:
            points = [(target, calibration[arm.name][target] * GRID_STEP**side) for target in config.l0_targets for side in (-1, 1)]
            for index, (target, coefficient) in enumerate(points):
                found.append((RunSpec(arm, world_seed, training_seed, budget, coefficient, index), target))
    return found


def with_reference_formation(runs: list[dict[str, Any]], settings: ReferenceSettings) -> pd.DataFrame:
    """Each run's formation against the consensus of its world's other training seeds' final SAEs at its L0 target."""
    rows = []
    for run in runs:
        held_in = [
            HeldInRun(torch.from_numpy(other["decoders"][-1]), other["training_seed"], other["alive"])
            for other in runs
            if other["world_seed"] == run["world_seed"] and other["l0_target"] == run["l0_target"] and other["training_seed"] != run["training_seed"]
        ]
        reference = consensus_directions(held_in, settings)
        formed = formation_against(reference, list(torch.from_numpy(run["decoders"])), run["positions"], settings.threshold)
        rows.append(
            {key: value for key, value in run.items() if key not in ("decoders", "alive", "positions")}
            | {
                "reference_directions": formed["reference_directions"],
                "reference_formation": formed["reference_formation_median"],
                "reference_formation_censored": formed["reference_formation_median_censored"],
                "reference_held_at_end": formed["reference_held_at_end"],
            }
        )
    return pd.DataFrame(rows)


def check(frame: pd.DataFrame, proxy: str, truth: str, sign: int) -> gta.ProxyCheck:
    """proxy_checks' statistics for one pair, with the bootstrap over worlds (not replicates: a run's reference is made
    of its world's other seeds' runs, so the runs of one world are not independent of each other)."""
    return gta.proxy_check(frame, proxy, truth, sign, cluster="world_seed")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-seeds", nargs="+", type=int, default=[0, 1, 2], help="the bootstrap's clusters: at least three")
    parser.add_argument("--training-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/taulib-reference-formation-truth"), help="calibration probes (kept: resumed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="a key of _ground_truth.yaml")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if len(set(args.training_seeds)) < 3:
        raise SystemExit(f"--training-seeds {args.training_seeds}: a run's reference needs two other seeds; give at least three")
    if len(set(args.world_seeds)) < 3:
        raise SystemExit(f"--world-seeds {args.world_seeds}: the intervals resample worlds; give at least three")
    overrides: dict[str, Any] = {}
    for pair in args.overrides:
        key, _, value = pair.partition("=")
        overrides[key] = yaml.safe_load(value)
    base = load_track_config(PARAMETERS / TRACK_FILE, overrides)
    config = base.model_copy(update={"world_seeds": tuple(args.world_seeds), "training_seeds": tuple(args.training_seeds), "budgets": base.budgets[-1:]})
    config = TrackConfig.model_validate(config.model_dump())  # every field validated before any work
    all_arms, identities = track_arms(PARAMETERS, config)
    arms = [arm for arm in all_arms if arm.role == "study"]
    budget = config.budgets[-1]
    # calibration probes are kept per design (a resumed run reuses them; another design gets its own)
    scratch = args.scratch / track_record(config, all_arms, identities)["fingerprint"]
    started = time.perf_counter()

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(config.workers, mp_context=ctx) as pool:
        plain = next(arm for arm in arms if arm.name == PLAIN)
        calibration = {PLAIN: calibrate(config, plain, budget, FIRST_COEFFICIENT, scratch)}
        others = [arm for arm in arms if arm.name != PLAIN]
        start = calibration[PLAIN][config.l0_targets[0]]
        for arm, found in zip(others, pool.map(calibrate, *zip(*[(config, arm, budget, start, scratch) for arm in others], strict=True)), strict=True):
            calibration[arm.name] = found
        planned = grid(config, arms, calibration)
        runs = []
        bar = progress_bar(total=len(planned), desc="reference formation on the truth: runs", unit="run")
        for (_, target), run in zip(planned, pool.map(trained, [config] * len(planned), [spec for spec, _ in planned]), strict=True):
            runs.append(run | {"l0_target": target})
            bar.update(1)
        bar.close()
    frame = with_reference_formation(runs, ReferenceSettings())
    minutes = (time.perf_counter() - started) / 60

    rows = []
    for proxy, truth, sign in CHECKS:
        found = check(frame, proxy, truth, sign)
        rows.append(
            [
                proxy,
                truth,
                "+" if sign > 0 else "−",
                f"{found.rho.value:+.2f} [{found.rho.low:+.2f}, {found.rho.high:+.2f}]",
                f"{found.partial_rho.value:+.2f} [{found.partial_rho.low:+.2f}, {found.partial_rho.high:+.2f}]",
                "yes" if found.tracks else "no",
            ]
        )
    per_arm = frame.groupby("arm")[["reference_directions", "reference_formation", "reference_formation_censored", "reference_held_at_end", "own_formation"]]
    arm_rows = [[arm, *(f"{value:.3f}" for value in values)] for arm, values in per_arm.mean().iterrows()]
    command = " ".join(["benchmarks/reference_formation_truth.py", *(argv if argv is not None else sys.argv[1:])])
    body = (
        f"{provenance(command)}\n\n"
        f"{len(frame)} runs ({len(arms)} study arms × {len(config.l0_targets)} L0 targets × 2 coefficients × {frame['replicate'].nunique()} replicates: "
        f"world seeds {list(config.world_seeds)} × training seeds {list(config.training_seeds)}), budget {budget:,} samples, in {minutes:.1f} min. "
        f"Intervals: 95% cluster bootstrap over worlds. A proxy *tracks* when its partial ρ's interval excludes 0 on the expected side.\n\n"
        + markdown_table(["proxy", "ground truth", "expected", "ρ [95% CI]", "partial ρ on log L0 [95% CI]", "tracks"], rows)
        + "\n\nMeans per arm (formation on the share-of-training axis; censored: the share of runs whose median direction never formed):\n\n"
        + markdown_table(["arm", "reference directions", "reference formation (median)", "censored", "held at the end", "own-final formation"], arm_rows)
        + "\n\nreference_formation: the median over reference directions of the first checkpoint from which the run holds it (cosine ≥ 0.9) to the "
        "end, the reference being the consensus of the other training seeds' final SAEs of its world at its L0 target (every study arm); "
        "own_formation: the track's proxy, against the run's own final decoder. recovery_time: the share of training until each true feature "
        "is first recovered, restricted mean.\n"
    )
    print(body)
    if args.write:
        write_section(
            "reference_formation_truth",
            "Does formation against a reference dictionary track the true features' recovery? (`benchmarks/reference_formation_truth.py`)",
            body,
        )
    return frame


if __name__ == "__main__":
    main()
