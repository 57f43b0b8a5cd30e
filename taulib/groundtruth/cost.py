"""What the ground-truth track still has to do, and what one of its runs costs on this machine.

The track's wall time is its calibration probes and grid runs (each one training run, scored at every checkpoint;
a full-budget grid run adds the language-model proxies) shared among its one-thread workers, then its report. A run's
seconds grow linearly with its samples (the steps; the checkpoint scoring is a fixed part), so two timed runs of the
design, at the smallest budget and at the full one, price every run, and a third, at the full budget with the proxies,
prices those (`run_seconds`); drawing a replicate's world and samples is timed apart (`time_replicate`). The study's
estimate (taulib.study.cost) times them once per machine and design and counts with `pending_work`. What the track's
folder already holds (finished runs, saved calibrations) is not counted again.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from taulib.groundtruth import track
from taulib.groundtruth.track import FIRST_COEFFICIENT, RunSpec, TrackArm, TrackConfig, arm_budgets, calibration_path, replicate_data, train_and_score

# The track's calibration (taulib.groundtruth.track.calibrate, not the language-model sweep's) spends about two probes
# per target of an arm × budget (a first probe, then a secant step); its bound is calibration_probes per target. Probes
# of one target serve the next, so this errs high.
TRACK_PROBES_PER_TARGET = 2.0
TIMING_REPEATS = 2


@dataclass(frozen=True)
class TrackWork:
    """The samples the track's pending runs train on, by kind; each run also pays the fixed part of a run."""

    grid_runs: int
    grid_samples: int
    proxy_runs: int  # full-budget grid runs: they add the language-model proxies
    probes: int  # expected calibration probes
    probe_samples: float
    replicates: int  # worlds and their samples to draw

    @property
    def runs(self) -> float:
        return self.grid_runs + self.probes

    @property
    def samples(self) -> float:
        return self.grid_samples + self.probe_samples


def pending_work(config: TrackConfig, arms: list[TrackArm], root: Path) -> TrackWork:
    """What the track in `root` still has to train: every grid run not on disk (its coefficients are known only after
    calibration, so a run counts as pending unless every grid point of its replicate, arm and budget is on disk) and the
    expected probes of every calibration not saved."""
    grid_runs = grid_samples = proxy_runs = 0
    probes = probe_samples = 0.0
    replicates: set[tuple[int, int]] = set()
    points = 2 * len(config.l0_targets)  # coefficient_grid: two per target
    for arm in arms:
        for budget in arm_budgets(config, arm):
            if not calibration_path(root, arm.name, budget).is_file():
                probes += TRACK_PROBES_PER_TARGET * len(config.l0_targets)
                probe_samples += TRACK_PROBES_PER_TARGET * len(config.l0_targets) * budget
                replicates.add(config.replicates[0])
            for world_seed, training_seed in config.replicates:
                folder = root / "runs" / f"w{world_seed}_s{training_seed}" / arm.name
                done = len(list(folder.glob(f"b{budget}_g*.json"))) if folder.is_dir() else 0
                missing = max(points - done, 0)
                grid_runs += missing
                grid_samples += missing * budget
                proxy_runs += missing if budget == max(config.budgets) else 0
                if missing:
                    replicates.add((world_seed, training_seed))
    return TrackWork(grid_runs, grid_samples, proxy_runs, round(probes), probe_samples, len(replicates))


def design_key(config: TrackConfig) -> str:
    """What a run's cost depends on: the world, the SAE's width, the batch, the checkpoints and the held-out samples."""
    shape = (config.world.model_dump_json(), config.width, config.batch_size, config.n_checkpoints, config.heldout_samples, config.lr_decay_fraction)
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:12]


def timing_budgets(config: TrackConfig) -> tuple[int, int]:
    """The two budgets a run is timed at: the smallest and the full one (half the full one when there is one budget)."""
    full = config.budgets[-1]
    small = config.budgets[0] if len(config.budgets) > 1 else max(full // 2, config.batch_size * config.n_checkpoints)
    return small, full


def time_run(config: TrackConfig, arm: TrackArm, budget: int, with_proxies: bool) -> float:
    """Seconds of one run of the design at `budget` on one thread (as the track's workers run), its replicate's data
    drawn before the clock starts; with the language-model proxies (as a full-budget grid run) when `with_proxies`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world_seed, training_seed = config.replicates[0]
        data = replicate_data(config, world_seed, training_seed)
        spec = RunSpec(arm, world_seed, training_seed, budget, FIRST_COEFFICIENT, 0)
        seconds = []
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(TIMING_REPEATS):  # the faster: a busy machine slows a timing, it never speeds one up
                started = time.perf_counter()
                train_and_score(config, spec, data, Path(folder) / "decoder.safetensors" if with_proxies else None)
                seconds.append(time.perf_counter() - started)
        return min(seconds)
    finally:
        torch.set_num_threads(threads)
        track._REPLICATE_CACHE.clear()  # the study's process keeps no world: the track's workers draw their own


def time_replicate(config: TrackConfig) -> float:
    """Seconds to draw one replicate's world, training samples and held-out truth."""
    track._REPLICATE_CACHE.clear()  # drawn afresh, as a worker does for each replicate
    started = time.perf_counter()
    world_seed, training_seed = config.replicates[0]
    replicate_data(config, world_seed, training_seed)
    seconds = time.perf_counter() - started
    track._REPLICATE_CACHE.clear()
    return seconds


def run_seconds(work: TrackWork, small: tuple[int, float], full: tuple[int, float], proxies: float) -> float:
    """The pending runs' seconds of work, from two timed runs without proxies (budget, seconds) — a fixed part per run
    and a part per sample — and the proxies' seconds per full-budget grid run."""
    (b0, t0), (b1, t1) = small, full
    per_sample = max((t1 - t0) / (b1 - b0), 0.0) if b1 != b0 else t1 / b1
    fixed = max(t1 - per_sample * b1, 0.0)
    return work.runs * fixed + work.samples * per_sample + work.proxy_runs * max(proxies, 0.0)
