"""The ground-truth track: every arm trained on hierarchical worlds whose features are known.

Design (`parameters/_ground_truth.yaml`, `TrackConfig`):

- **Replicates**: every world seed × every training seed. A replicate has its own world (dictionary,
  hierarchy, frequencies), its own training samples — one pass, the same samples in the same order
  for every arm, so arms are paired on the data — and its own SAE initialisation.
- **Arms**: the study's arm files in `parameters/` (their schedules: one source of truth for the arms),
  the A/A arm (plain L1 a second time, on its own coefficient grid), and the τ dose-response families
  (cosine τ_initial → 0.05 and 0.3 → τ_final, annealed over the tightened arm's `anneal_fraction`). A family member whose schedule is an arm's is that arm's
  runs; cosine 0.05 → 0.05 is constant τ, i.e. plain L1 at λ/0.05: plain L1's runs (an identity, as the
  constant-τ arm is; it is not trained).
- **Sparsity**: every arm is calibrated at every budget on the first replicate (probes of the final
  effective coefficient λ/τ_final until one lands within 5% of each L0 target; kept under `calibration/`), and
  every replicate runs two coefficients per target, the calibrated one × 1.1^±1, so that two nearby runs
  bracket each target. The analysis reads every endpoint at exactly the targets off each arm's frontier
  (taulib.analysis.frontier). The A/A arm is calibrated independently (from another first probe) and its
  grid sits half a step further, so its readings come from other runs around each target than plain L1's.
- **Budgets**: the primary arms (`budget_arms`) at every budget, with the schedule compressed into it;
  the others at the largest.

Every checkpoint is scored against the truth (taulib.groundtruth.endpoints) on held-out samples of the
replicate's world. A run's record (one JSON file, written atomically) holds every checkpoint's endpoints,
its speed summaries (taulib.groundtruth.speed) and, at the full budget, the language-model proxies
(per-latent formation against its own final decoder, max decoder cosine) and its final decoder (for
seed stability). Finished records are skipped, so a killed track resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError, field_validator, model_validator
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.config import ConfigError, StrictModel, TrainingConfig, discover_parameter_files, format_validation_error, load_study_configs, read_yaml_mapping
from taulib.groundtruth import endpoints as gt
from taulib.groundtruth.speed import first_crossing, kaplan_meier_rmst, mean_over, settles_below
from taulib.groundtruth.world import World, WorldConfig, make_world, sample
from taulib.metrics.ground_truth.metric import recovery_steps
from taulib.metrics.latent_formation import formation_steps, matched_cosines_over_checkpoints
from taulib.metrics.orthogonality.metric import max_cosine_to_others
from taulib.progress import progress_bar
from taulib.sae import SparseAutoencoder
from taulib.schedules import TauSchedule
from taulib.sweep.spec import AA_FIRST_PROBE_FACTOR
from taulib.train.trainer import activation_statistics, checkpoint_steps, learning_rate, make_optimiser, optimiser_step, warmup_steps

TRACK_FILE = "_ground_truth.yaml"
TRACK_VERSION = 1  # bump when the track's training or scoring code changes what a record holds
PLAIN = "baseline_plain_l1"
AGAIN = "plain_l1_again"  # the A/A arm
TIGHTENED = "cosine_0.3_to_0.05_tightened"
WARMUP = "l1_warmup"
FAMILY_FLOOR_TAU = 0.05  # the τ_initial family anneals to this floor
FAMILY_START_TAU = 0.3  # the τ_final family starts here
FIRST_COEFFICIENT = 1.0  # calibration's first probe (λ/τ_final on activations scaled to mean squared norm d_model)
STEP_FACTOR = 4.0  # a calibration step while it has no bracket
CALIBRATION_TOLERANCE = 0.05  # a probe within 5% of the target L0 ends its search
AGAIN_START = AA_FIRST_PROBE_FACTOR  # the A/A arm's calibration starts from another probe than plain L1's: calibrated independently
GRID_STEP = 1.1  # each target's two runs: its calibrated coefficient × 1.1^±1 (L0 roughly ±10–20% around it)


class TrackConfig(StrictModel):
    """The ground-truth track's design: the world, replicates, budgets, grid and declared levels."""

    description: str = Field("", description="what this design is for")
    world: WorldConfig = Field(default_factory=WorldConfig, description="the hierarchical world (taulib.groundtruth.world)")
    world_seeds: tuple[int, ...] = Field((0, 1, 2), min_length=1, description="one world per seed: dictionary, hierarchy and frequencies")
    training_seeds: tuple[int, ...] = Field((0, 1), min_length=1, description="per world: training samples and SAE initialisation")
    width_ratio: float = Field(1.0, gt=0, description="SAE latents per true feature (narrower and wider than the truth: e.g. 0.5 or 2)")
    budgets: tuple[int, ...] = Field((65_536, 131_072, 262_144), min_length=1, description="training samples per run, ascending; the last is the full budget")
    budget_arms: tuple[str, ...] = Field((PLAIN, AGAIN, TIGHTENED, WARMUP), description="arms run at every budget; the others at the full budget only")
    l0_targets: tuple[float, ...] = Field((8.0, 12.0), min_length=1, description="final L0 at which arms are compared: the world's true L0 and above")
    calibration_probes: int = Field(4, ge=2, description="calibration runs (first replicate) each arm may spend per budget and target to land on it")
    batch_size: int = Field(256, gt=0, description="samples per optimiser step")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate after the warm-up")
    lr_warmup_fraction: float = Field(0.05, ge=0, lt=1, description="learning-rate warm-up, as a fraction of steps")
    lr_decay_fraction: float = Field(0.0, ge=0, lt=1, description="linear learning-rate decay over this final fraction of steps")
    n_checkpoints: int = Field(12, ge=3, description="checkpoints scored against the truth per run")
    heldout_samples: int = Field(4096, gt=0, description="held-out samples of each world that every checkpoint is scored on")
    recovery_share: float = Field(0.5, gt=0, le=1, description="formation speed: tokens until this share of true features is recovered")
    absorption_level: float = Field(0.05, gt=0, lt=1, description="absorption speed: tokens from which absorption stays below this level")
    tau_initial_family: tuple[float, ...] = Field(
        (0.05, 0.1, 0.2, 0.3, 0.5), description=f"cosine τ_initial → {FAMILY_FLOOR_TAU}: the τ-trajectory dose-response"
    )
    tau_final_family: tuple[float, ...] = Field((0.02, 0.05, 0.1, 0.2), description=f"cosine {FAMILY_START_TAU} → τ_final: the floor's dose-response")
    workers: int = Field(2, ge=1, description="processes training at once (one thread each: the matmuls are small)")

    @field_validator("budgets")
    @classmethod
    def _ascending(cls, value: tuple[int, ...], info: Any) -> tuple[int, ...]:
        if any(b <= 0 for b in value) or list(value) != sorted(set(value)):
            raise ValueError(f"budgets must be distinct positive sample counts in ascending order, got {list(value)}")
        return value

    @field_validator("l0_targets")
    @classmethod
    def _positive_targets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(t <= 0 for t in value) or list(value) != sorted(set(value)):
            raise ValueError(f"l0_targets must be distinct, positive and ascending, got {list(value)}")
        return value

    @field_validator("tau_initial_family", "tau_final_family")
    @classmethod
    def _positive_taus(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not tau > 0 for tau in value):
            raise ValueError(f"every τ must be > 0, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _fits(self) -> TrackConfig:
        if self.lr_warmup_fraction + self.lr_decay_fraction >= 1:
            raise ValueError("lr_warmup_fraction + lr_decay_fraction must be < 1")
        if min(self.budgets) < self.batch_size * self.n_checkpoints:
            raise ValueError(
                f"budgets: the smallest ({min(self.budgets):,}) must allow n_checkpoints ({self.n_checkpoints}) steps of batch_size ({self.batch_size})"
            )
        if bad := [t for t in self.tau_initial_family if t < FAMILY_FLOOR_TAU]:
            raise ValueError(f"tau_initial_family: τ must fall, so every τ_initial must be ≥ the floor {FAMILY_FLOOR_TAU}, got {bad}")
        if bad := [t for t in self.tau_final_family if t > FAMILY_START_TAU]:
            raise ValueError(f"tau_final_family: τ must fall, so every τ_final must be ≤ the start {FAMILY_START_TAU}, got {bad}")
        return self

    @property
    def width(self) -> int:
        return max(1, round(self.width_ratio * self.world.n_features))

    @property
    def replicates(self) -> list[tuple[int, int]]:
        return [(w, s) for w in self.world_seeds for s in self.training_seeds]


def load_track_config(path: Path, overrides: dict[str, Any] | None = None) -> TrackConfig:
    """The track's design from its YAML file, every field validated before any work."""
    from taulib.config import deep_merge

    data = read_yaml_mapping(path) if path.is_file() else {}
    data = deep_merge(data, overrides or {})
    try:
        return TrackConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(str(path), error, TrackConfig, what="ground-truth track")) from None


# ----------------------------------------------------------------------------- arms
@dataclass(frozen=True)
class TrackArm:
    name: str
    schedule: TauSchedule
    role: str  # "study" (an arm file), "again" (the A/A arm), "family" (dose-response only)

    @property
    def tau_final(self) -> float:
        """τ at the end of training: the final penalty is λ/τ_final."""
        return self.schedule.tau_at_end


def family_name(tau_initial: float, tau_final: float) -> str:
    return f"cosine_{tau_initial:g}_to_{tau_final:g}"


def track_arms(parameters: Path, config: TrackConfig) -> tuple[list[TrackArm], dict[str, str]]:
    """(arms to train, identities): the arm files' schedules (constant τ excluded: plain L1 at λ·τ), the A/A
    arm, and the dose-response families' members that no arm already is. `identities` maps a family
    member or an excluded arm to the arm whose runs it is."""
    arms: list[TrackArm] = []
    identities: dict[str, str] = {}
    for _, run in load_study_configs(discover_parameter_files(parameters)):
        schedule = run.schedule.to_schedule()
        if schedule.spec.constant_coefficient and not schedule.spec.plain:  # constant τ: plain L1 at λ·τ
            identities[run.run_name] = PLAIN
            continue
        arms.append(TrackArm(run.run_name, schedule, "study"))
    names = {arm.name for arm in arms}
    for required in (PLAIN, TIGHTENED, WARMUP):
        if required not in names:
            raise ConfigError(f"{parameters}: the ground-truth track's primary contrasts need the arm file {required}.yaml")
    if missing := sorted(set(config.budget_arms) - names - {AGAIN}):
        raise ConfigError(f"{parameters / TRACK_FILE}: budget_arms names {missing}, which are no arm files in {parameters}")
    arms.insert(1, TrackArm(AGAIN, TauSchedule("none"), "again"))
    # the families anneal over the tested arm's span, so a member with an arm's τ range is that arm's runs
    anneal_fraction = next(arm.schedule.anneal_fraction for arm in arms if arm.name == TIGHTENED)
    members = [(t, FAMILY_FLOOR_TAU) for t in config.tau_initial_family] + [(FAMILY_START_TAU, t) for t in config.tau_final_family]
    for tau_initial, tau_final in members:
        name = family_name(tau_initial, tau_final)
        if tau_initial == tau_final:  # constant τ: plain L1 at λ/τ, the same runs at every effective coefficient
            identities[name] = PLAIN
            continue
        schedule = TauSchedule("cosine", tau_initial, tau_final, anneal_fraction)
        same = next((arm.name for arm in arms if arm.schedule == schedule), None)
        if same is not None:
            identities[name] = same
        elif name not in identities:
            arms.append(TrackArm(name, schedule, "family"))
            identities[name] = name
    return arms, identities


# ----------------------------------------------------------------------------- one replicate's data
def _generator(*parts: object) -> torch.Generator:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@dataclass(frozen=True)
class ReplicateData:
    world: World
    train: torch.Tensor  # (full budget, d), already divided by the input scale
    truth: gt.Truth  # held-out samples in the same units
    data_mean: torch.Tensor


_REPLICATE_CACHE: dict[tuple[Any, ...], ReplicateData] = {}


def replicate_data(config: TrackConfig, world_seed: int, training_seed: int) -> ReplicateData:
    """The replicate's world, training samples and held-out truth (kept for the next run of this process)."""
    key = (config.world.model_dump_json(), world_seed, training_seed, max(config.budgets), config.heldout_samples)
    if key not in _REPLICATE_CACHE:
        _REPLICATE_CACHE.clear()
        world = make_world(config.world, world_seed)
        train, _ = sample(world, max(config.budgets), _generator("train", world_seed, training_seed))
        heldout, activations = sample(world, config.heldout_samples, _generator("heldout", world_seed))
        scale, data_mean = activation_statistics(train)
        truth = gt.Truth(world.directions, world.parent.numpy(), world.feature_type, heldout / scale, activations)
        _REPLICATE_CACHE[key] = ReplicateData(world, train / scale, truth, data_mean)
    return _REPLICATE_CACHE[key]


# ----------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class RunSpec:
    arm: TrackArm
    world_seed: int
    training_seed: int
    budget: int
    coefficient: float  # final effective coefficient λ/τ_final
    grid_index: int  # position on the arm's grid (−1: a calibration probe)

    @property
    def l1_coefficient(self) -> float:
        return self.coefficient * self.arm.tau_final

    @property
    def replicate(self) -> str:
        return f"w{self.world_seed}_s{self.training_seed}"

    def path(self, root: Path) -> Path:
        name = f"probe_b{self.budget}_{self.coefficient:.6g}" if self.grid_index < 0 else f"b{self.budget}_g{self.grid_index}"
        return root / "runs" / self.replicate / self.arm.name / f"{name}.json"


def training_settings(config: TrackConfig, budget: int) -> TrainingConfig:
    return TrainingConfig(
        lr=config.lr, lr_warmup_fraction=config.lr_warmup_fraction, lr_decay_fraction=config.lr_decay_fraction, n_tokens=budget, batch_size=config.batch_size
    )


@torch.no_grad()
def _score(sae: SparseAutoencoder, truth: gt.Truth) -> tuple[gt.CheckpointEndpoints, gt.Matching]:
    reconstruction, latents = sae(truth.x)
    return gt.score_checkpoint(truth, latents, reconstruction, sae.W_dec)


CheckpointHook = Callable[[dict[str, Any], SparseAutoencoder, gt.Matching], None]


def train_and_score(
    config: TrackConfig, spec: RunSpec, data: ReplicateData, decoder_target: Path | None = None, on_checkpoint: CheckpointHook | None = None
) -> dict[str, Any]:
    """Train one run on the replicate's samples, scoring every checkpoint against the truth; its record. With a
    `decoder_target`, the language-model proxies too, and the final decoder written there. `on_checkpoint` sees
    each checkpoint's row, the SAE and the matching as they are scored (the playground draws from it)."""
    with_proxies = decoder_target is not None
    started = time.perf_counter()
    training = training_settings(config, spec.budget)
    total = training.total_steps()
    warmup = warmup_steps(total, training)
    steps = checkpoint_steps(total, config.n_checkpoints, warmup)
    sae = SparseAutoencoder(data.train.shape[1], config.width)
    sae.initialise(_generator("init", spec.world_seed, spec.training_seed), data.data_mean)
    optimiser = make_optimiser(sae, training)
    rows, decoders, matched = [], [], []

    def checkpoint(step: int, tau: float) -> None:
        scored, matching = _score(sae, data.truth)
        rows.append({"step": step, "tokens": step * config.batch_size, "tau": tau, **scored.as_dict()})
        matched.append(matching.cosine)
        if with_proxies:
            decoders.append(sae.W_dec.detach().clone())
        if on_checkpoint is not None:
            on_checkpoint(rows[-1], sae, matching)

    checkpoint(0, spec.arm.schedule.at_step(0, total))
    for step in range(total):
        tau = spec.arm.schedule.at_step(step, total)
        x = data.train[step * config.batch_size : (step + 1) * config.batch_size]
        optimiser_step(sae, optimiser, x, spec.l1_coefficient / tau, learning_rate(step, total, training), torch.float32)
        if step + 1 in steps:
            checkpoint(step + 1, tau)
    if not all(math.isfinite(row["l0"]) and math.isfinite(row["mcc"]) for row in rows):
        raise FloatingPointError(f"{spec.arm.name}, {spec.replicate}, budget {spec.budget}, coefficient {spec.coefficient:.4g}: non-finite endpoints")
    tokens = [row["tokens"] for row in rows]
    budget, warmup_tokens = spec.budget, warmup * config.batch_size
    recovered_at = recovery_steps(tokens, np.stack(matched), gt.RECOVERY_COSINE)
    share = first_crossing(tokens, [row["recall"] for row in rows], config.recovery_share, budget)
    settled = settles_below(tokens, [row["absorption"] for row in rows], config.absorption_level, budget, start=warmup_tokens)
    final = rows[-1]
    summary = {
        **{f"final_{key}": value for key, value in final.items() if key not in ("step", "tokens", "tau")},
        "recovery_time": kaplan_meier_rmst(np.where(recovered_at >= 0, recovered_at, budget), recovered_at >= 0, budget) / budget,
        "mcc_area": mean_over(tokens, [row["mcc"] for row in rows]),
        "share_time": share.restricted(budget) / budget,
        "share_reached": share.observed,
        "absorption_area": mean_over(tokens, [row["absorption"] for row in rows], start=warmup_tokens),
        "absorption_settle_time": settled.restricted(budget) / budget,
        "absorption_settled": settled.observed,
    }
    record: dict[str, Any] = {
        "version": TRACK_VERSION,
        "arm": spec.arm.name,
        "world_seed": spec.world_seed,
        "training_seed": spec.training_seed,
        "budget": budget,
        "coefficient": spec.coefficient,
        "l1_coefficient": spec.l1_coefficient,
        "grid_index": spec.grid_index,
        "warmup_tokens": warmup_tokens,
        "checkpoints": rows,
        "recovery_tokens": recovered_at.tolist(),
        "summary": summary,
    }
    if with_proxies:
        formed = formation_steps(matched_cosines_over_checkpoints(decoders, "hungarian"), tokens)
        alive = _alive(sae, data.truth)
        best, _ = max_cosine_to_others(sae.W_dec.detach()[alive]) if alive.sum() > 1 else (np.array([math.nan]), 0)
        record["proxies"] = {
            "formation_time": float(np.median(formed[alive.numpy()]) / budget) if alive.any() else math.nan,
            "max_decoder_cosine": float(np.mean(best)),
        }
        with atomic.atomic_path(decoder_target) as tmp:
            save_file({"decoder": sae.W_dec.detach().contiguous()}, str(tmp))
    record["seconds"] = time.perf_counter() - started
    return record


def _alive(sae: SparseAutoencoder, truth: gt.Truth) -> torch.Tensor:
    with torch.no_grad():
        return (sae.encode(truth.x) > 0).any(dim=0)


def decoder_path(record_path: Path) -> Path:
    return record_path.with_suffix(".decoder.safetensors")


def load_decoder(record_path: Path) -> torch.Tensor:
    return load_file(str(decoder_path(record_path)))["decoder"]


def run_one(config: TrackConfig, spec: RunSpec, root: Path) -> dict[str, Any]:
    """The run's record, trained now unless its file is already there (resume)."""
    path = spec.path(root)
    if path.is_file():
        return atomic.read_json(path)
    data = replicate_data(config, spec.world_seed, spec.training_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with_proxies = spec.budget == max(config.budgets) and spec.grid_index >= 0
    record = train_and_score(config, spec, data, decoder_path(path) if with_proxies else None)
    atomic.write_json(path, record)  # last: the decoder beside it is already complete
    return record


# ----------------------------------------------------------------------------- calibration and the grid
Calibration = dict[str, dict[int, dict[float, float]]]  # arm → budget → L0 target → final effective coefficient


def calibration_path(root: Path, arm: str, budget: int) -> Path:
    return root / "calibration" / f"{arm}__b{budget}.json"


def calibrate(config: TrackConfig, arm: TrackArm, budget: int, start: float, root: Path) -> dict[float, float]:
    """Per L0 target, the arm's final effective coefficient that lands on it at this budget, on the first replicate:
    probes (kept, so a resumed track does not repeat them) until one lands within CALIBRATION_TOLERANCE of the target
    or `calibration_probes` are spent, then the nearest. Probes serve every target."""
    path = calibration_path(root, arm.name, budget)
    if path.is_file():
        return {float(t): c for t, c in atomic.read_json(path).items()}
    torch.set_num_threads(1)
    world_seed, training_seed = config.replicates[0]
    probes: list[tuple[float, float]] = []  # (coefficient, final L0)
    found: dict[float, float] = {}
    for target in config.l0_targets:
        for _ in range(config.calibration_probes):
            if any(abs(l0 / target - 1) < CALIBRATION_TOLERANCE for _, l0 in probes):
                break
            coefficient = next_coefficient(probes, target, start)
            record = run_one(config, RunSpec(arm, world_seed, training_seed, budget, coefficient, -1), root)
            probes.append((coefficient, record["summary"]["final_l0"]))
        found[target] = min(probes, key=lambda p: abs(math.log(max(p[1], 1e-9) / target)))[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {f"{t:g}": c for t, c in found.items()})
    return found


def next_coefficient(probes: list[tuple[float, float]], target: float, start: float) -> float:
    """The next probe: inside a bracket (one probe above the target L0, one below), the secant in log L0 against
    log coefficient, kept to the bracket's inner 80%; without one, the slope of the two nearest probes (−1 from one,
    clamped to [−3, −0.3]), each step at most STEP_FACTOR (L0 falls as the coefficient rises; an L0 of 0 is a probe
    above every target's coefficient)."""
    if not probes:
        return start
    dense = [(c, l0) for c, l0 in probes if l0 > target]  # coefficient too low
    sparse = [(c, l0) for c, l0 in probes if l0 <= target]  # too high (or exact)
    if dense and sparse:
        (c0, l0), (c1, l1) = max(dense), min(sparse)
        x0, x1 = math.log(c0), math.log(c1)
        fraction = 0.5 if l1 <= 0 else (math.log(target) - math.log(l0)) / (math.log(l1) - math.log(l0))
        return float(math.exp(x0 + min(max(fraction, 0.1), 0.9) * (x1 - x0)))
    usable = sorted(((c, l0) for c, l0 in probes if l0 > 0), key=lambda p: abs(math.log(p[1] / target)))
    if not usable:  # every probe silenced the SAE
        return min(c for c, _ in probes) / STEP_FACTOR
    (c0, l0), *rest = usable
    slope = -1.0
    if rest and rest[0][0] != c0 and rest[0][1] != l0:
        slope = (math.log(rest[0][1]) - math.log(l0)) / (math.log(rest[0][0]) - math.log(c0))
    step = (math.log(target) - math.log(l0)) / min(max(slope, -3.0), -0.3)
    return float(c0 * math.exp(min(max(step, -math.log(STEP_FACTOR)), math.log(STEP_FACTOR))))


def coefficient_grid(config: TrackConfig, calibrated: dict[float, float], arm: TrackArm) -> list[float]:
    """The arm's final effective coefficients at one budget: each target's calibrated coefficient times GRID_STEP^±1,
    so that two runs close to it bracket every target; the A/A arm's half a step further, so that its runs sit
    elsewhere around the targets than plain L1's."""
    shift = math.sqrt(GRID_STEP) if arm.role == "again" else 1.0
    return sorted(c * shift * GRID_STEP**side for c in calibrated.values() for side in (-1, 1))


def run_specs(config: TrackConfig, arms: list[TrackArm], calibration: Calibration) -> list[RunSpec]:
    specs = []
    for world_seed, training_seed in config.replicates:
        for arm in arms:
            for budget in arm_budgets(config, arm):
                for index, coefficient in enumerate(coefficient_grid(config, calibration[arm.name][budget], arm)):
                    specs.append(RunSpec(arm, world_seed, training_seed, budget, coefficient, index))
    return specs


def arm_budgets(config: TrackConfig, arm: TrackArm) -> tuple[int, ...]:
    return config.budgets if arm.name in config.budget_arms else config.budgets[-1:]


# ----------------------------------------------------------------------------- the whole track
def _run_group(config: TrackConfig, specs: list[RunSpec], root: Path) -> int:
    torch.set_num_threads(1)
    for spec in specs:
        run_one(config, spec, root)
    return len(specs)


def _groups(specs: list[RunSpec]) -> Iterator[list[RunSpec]]:
    """One task per (replicate, arm): a worker reuses the replicate's data across the arm's runs."""
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.replicate, spec.arm.name), []).append(spec)
    yield from groups.values()


def check_track_folder(root: Path, record: dict[str, Any]) -> None:
    """A folder holding another design's runs is refused, naming what differs, before anything is written."""
    path = root / "track.json"
    if path.is_file():
        existing = atomic.read_json(path)
        if existing.get("fingerprint") != record["fingerprint"]:
            old, new = existing.get("config", {}), record["config"]
            differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            old_arms, new_arms = ({arm["name"]: arm["schedule"] for arm in r.get("arms", [])} for r in (existing, record))
            if changed := sorted(name for name in set(old_arms) | set(new_arms) if old_arms.get(name) != new_arms.get(name)):
                differing.append(f"the arms {', '.join(changed)}")
            differing = differing or ["version"]
            raise ConfigError(
                f"{root} holds a ground-truth track of another design (differs in: {', '.join(differing)}); choose another --outputs or delete it"
            )


def track_record(config: TrackConfig, arms: list[TrackArm], identities: dict[str, str]) -> dict[str, Any]:
    design = config.model_dump(mode="json", exclude={"workers", "description"})
    described = [{"name": arm.name, "role": arm.role, "schedule": asdict(arm.schedule)} for arm in arms]
    # the arms' schedules are part of the design: runs are stored by arm name, so an arm file whose schedule changed
    # must not find the old schedule's runs and calibrations and count them as its own
    schedules = [(arm["name"], sorted(arm["schedule"].items())) for arm in described]
    fingerprint = hashlib.sha256(repr(sorted(design.items())).encode() + str(TRACK_VERSION).encode() + repr(schedules).encode()).hexdigest()[:16]
    return {"fingerprint": fingerprint, "config": design, "version": TRACK_VERSION, "arms": described, "identities": identities}


def run_track(parameters: Path, root: Path, overrides: dict[str, Any] | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Calibrate every arm at every budget, then train and score every run of the track into `root` (resuming);
    returns the design with the calibrated coefficients."""
    config = load_track_config(parameters / TRACK_FILE, overrides)
    arms, identities = track_arms(parameters, config)
    record = track_record(config, arms, identities)
    check_track_folder(root, record)
    root.mkdir(parents=True, exist_ok=True)
    atomic.write_json(root / "track.json", record)
    started = time.perf_counter()
    with _executor(config.workers) as pool:
        # plain L1 (and, independently, the A/A arm from another first probe) first; the other arms start from plain L1's
        first = [arm for arm in arms if arm.name in (PLAIN, AGAIN)]
        starts = {arm.name: dict.fromkeys(arm_budgets(config, arm), FIRST_COEFFICIENT * (AGAIN_START if arm.role == "again" else 1.0)) for arm in first}
        calibration = _calibrate_all(config, first, starts, root, pool, show_progress)
        rest = [arm for arm in arms if arm.name not in calibration]
        starts = {arm.name: {b: calibration[PLAIN][b][config.l0_targets[0]] for b in arm_budgets(config, arm)} for arm in rest}
        calibration |= _calibrate_all(config, rest, starts, root, pool, show_progress)
        specs = run_specs(config, arms, calibration)
        pending = [group for group in _groups(specs) if not all(spec.path(root).is_file() for spec in group)]
        bar = progress_bar(total=len(specs), desc="ground truth: runs", unit="run", disable=not show_progress)
        bar.update(len(specs) - sum(len(group) for group in pending))  # finished before: resumed past
        for done in _map(pool, _run_group, [(config, group, root) for group in pending]):
            bar.update(done)
        bar.close()
    record |= {
        "calibration": {
            arm: {str(b): {f"{t:g}": c for t, c in by_target.items()} for b, by_target in by_budget.items()} for arm, by_budget in calibration.items()
        },
        "seconds_this_session": time.perf_counter() - started,
        "workers": config.workers,
    }
    atomic.write_json(root / "track.json", record)
    return record


def _calibrate_all(config: TrackConfig, arms: list[TrackArm], starts: dict[str, dict[int, float]], root: Path, pool: Any, show_progress: bool) -> Calibration:
    """Every (arm, budget)'s calibration, in the pool; `starts`: each one's first probe."""
    tasks = [(arm, budget) for arm in arms for budget in arm_budgets(config, arm)]
    args = [(config, arm, budget, starts[arm.name][budget], root) for arm, budget in tasks]
    calibration: Calibration = {}
    bar = progress_bar(total=len(tasks), desc="ground truth: calibration", unit="arm×budget", disable=not show_progress)
    for (arm, budget), found in zip(tasks, _map(pool, calibrate, args), strict=True):
        calibration.setdefault(arm.name, {})[budget] = found
        bar.update(1)
    bar.close()
    return calibration


@contextlib.contextmanager
def _executor(workers: int) -> Iterator[Any]:
    """A pool of one-thread worker processes (spawned: torch and fork do not mix), or None to run here."""
    if workers == 1:
        yield None
        return
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _map(pool: Any, function: Any, args: list[tuple[Any, ...]]) -> Iterator[Any]:
    """function(*a) for every a, in order: in the pool, or here one after another."""
    if pool is None:
        for a in args:
            yield function(*a)
        return
    futures = [pool.submit(function, *a) for a in args]
    for future in futures:
        yield future.result()
