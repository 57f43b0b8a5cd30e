"""One schedule trained on the ground-truth world, as the ground-truth track trains its arms, with every
checkpoint kept for the playground's views.

The run *is* a track run: the design (world, batch, learning rate, checkpoints, held-out samples) is the
track's (`parameters/_ground_truth.yaml`, with the playground's overrides), the training samples and the
initialisation are the replicate's (world seed, training seed), and the training loop and scoring are
`taulib.groundtruth.track.train_and_score`. So a playground run of an arm's schedule at that arm's λ
reproduces the track's run, and the track's runs are a fair backdrop for a new schedule.

Sparsity is either λ (the study's `training.l1_coefficient`; the penalty is (λ/τ(t))·‖f‖₁) or a target final
L0, reached by probes (taulib.playground.sparsity) that start from the track's calibrated coefficient for the
same schedule (or plain L1's) when a track of the same design is at hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from taulib import atomic
from taulib.config import ConfigError, ScheduleConfig, StrictModel, format_validation_error, load_run_config
from taulib.groundtruth import endpoints as gt
from taulib.groundtruth import track
from taulib.playground.sparsity import Probe, nearest, probe_to_target
from taulib.sae import SparseAutoencoder

PLAYGROUND_ARM = "playground"
# what makes two runs of the same replicate and budget comparable (the rest of a track's design chooses which runs exist)
# (and the largest budget, for which the training samples are drawn: `same_samples`)
RUN_DEFINING = ("world", "width_ratio", "batch_size", "lr", "lr_warmup_fraction", "lr_decay_fraction", "n_checkpoints", "heldout_samples")


class PlaygroundSettings(StrictModel):
    """What the playground's controls set for one ground-truth run."""

    schedule: ScheduleConfig = Field(description="τ(t), as an arm file's schedule (the controls start from the tested arm's: `tested_schedule`)")
    l1_coefficient: float | None = Field(None, gt=0, description="λ; the penalty is (λ/τ(t))·‖f‖₁. None: calibrated to target_l0")
    target_l0: float | None = Field(8.0, gt=0, description="the final held-out L0 λ is calibrated to (probes, as the track calibrates); None with λ given")
    budget: int = Field(262_144, gt=0, description="training samples (one pass, the replicate's samples in order)")
    world_seed: int = Field(0, ge=0, description="which world of the design: its dictionary, hierarchy and frequencies")
    training_seed: int = Field(0, ge=0, description="the replicate's training samples and SAE initialisation")

    @model_validator(mode="after")
    def _one_sparsity(self) -> PlaygroundSettings:
        if (self.l1_coefficient is None) == (self.target_l0 is None):
            raise ValueError("give either l1_coefficient (λ) or target_l0, not both and not neither")
        return self


def playground_settings(values: dict[str, Any]) -> PlaygroundSettings:
    """Settings from plain values, refused with the study's wording (one line per invalid field)."""
    try:
        return PlaygroundSettings.model_validate(values)
    except ValidationError as error:
        raise ConfigError(format_validation_error("playground", error, PlaygroundSettings, what="settings")) from None


def tested_schedule(parameters_dir: str | Path) -> dict[str, Any]:
    """The schedule under test, read from its arm file in `parameters_dir`: where the playground's controls start."""
    return load_run_config(Path(parameters_dir) / f"{track.TIGHTENED}.yaml").schedule.model_dump()


def load_design(parameters_dir: str | Path, overrides: dict[str, Any] | None = None) -> track.TrackConfig:
    """The ground-truth track's design (its file in `parameters_dir`, then `overrides`): the playground's world and training."""
    return track.load_track_config(Path(parameters_dir) / track.TRACK_FILE, overrides)


def run_design(design: track.TrackConfig, settings: PlaygroundSettings) -> track.TrackConfig:
    """The design narrowed to the playground's replicate, with the playground's budget among its budgets (validated as the
    track validates them). A budget up to the track's largest trains on the first samples of the track's own, as the
    track's smaller budgets do; a larger one draws more."""
    budgets = tuple(sorted({*design.budgets, settings.budget}))  # the training samples are drawn for the largest
    data = design.model_dump() | {"world_seeds": (settings.world_seed,), "training_seeds": (settings.training_seed,), "budgets": budgets}
    try:
        return track.TrackConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error("playground", error, track.TrackConfig, what="design")) from None


@dataclass(frozen=True)
class CheckpointView:
    """One checkpoint of a playground run: its endpoints and what the similarity view draws."""

    row: dict[str, Any]  # step, tokens, τ and every endpoint of taulib.groundtruth.endpoints
    latent: np.ndarray  # per true feature, its matched latent (−1: unmatched)
    cosines: np.ndarray  # (features × latents) signed cosines, float32
    parent_absorption: dict[int, float]  # per parent feature, the share of its co-firing samples absorbed

    @property
    def step(self) -> int:
        return int(self.row["step"])


def checkpoint_view(truth: gt.Truth, row: dict[str, Any], sae: SparseAutoencoder, matching: gt.Matching) -> CheckpointView:
    with torch.no_grad():
        _, latents = sae(truth.x)
        decoder_rows = torch.nn.functional.normalize(sae.W_dec.detach().double(), dim=1).numpy()
    _, per_parent = gt.absorption_rate(truth, matching, latents.float().numpy(), decoder_rows)
    return CheckpointView(dict(row), matching.latent.copy(), matching.cosines.astype(np.float32), per_parent)


@dataclass
class PlaygroundRun:
    """A finished playground run: the run the controls asked for (with a target L0, the probe nearest it)."""

    settings: PlaygroundSettings
    design: track.TrackConfig  # the run design (one replicate)
    l1_coefficient: float
    record: dict[str, Any]  # the track's record of this run (taulib.groundtruth.track.train_and_score)
    checkpoints: list[CheckpointView]
    probes: list[tuple[float, float]] = field(default_factory=list)  # every probe's (λ, final L0), in order
    truth: gt.Truth | None = None

    @property
    def final_l0(self) -> float:
        return float(self.record["summary"]["final_l0"])

    @property
    def steps(self) -> list[int]:
        return [view.step for view in self.checkpoints]

    def at_step(self, step: int) -> CheckpointView:
        for view in self.checkpoints:
            if view.step == step:
                return view
        raise KeyError(f"no checkpoint at step {step}; steps: {self.steps}")


ViewHook = Callable[[CheckpointView], None]
ProbeHook = Callable[[int, float], None]  # (probe number from 1, λ) as a probe starts


def tau_final(schedule: ScheduleConfig) -> float:
    """The τ the penalty ends at (λ/τ_final is the final effective coefficient, what calibration searches)."""
    return track.TrackArm(PLAYGROUND_ARM, schedule.to_schedule(), PLAYGROUND_ARM).tau_final


def train_on_world(
    settings: PlaygroundSettings,
    design: track.TrackConfig,
    on_checkpoint: ViewHook | None = None,
    on_probe: ProbeHook | None = None,
    start_coefficient: float | None = None,
) -> PlaygroundRun:
    """Train the settings' schedule on the design's world (probing λ first when a target L0 is set); the run."""
    config = run_design(design, settings)
    arm = track.TrackArm(PLAYGROUND_ARM, settings.schedule.to_schedule(), PLAYGROUND_ARM)
    data = track.replicate_data(config, settings.world_seed, settings.training_seed)
    probes_made: list[tuple[float, float]] = []

    def run(coefficient: float) -> tuple[PlaygroundRun, float]:
        spec = track.RunSpec(arm, settings.world_seed, settings.training_seed, settings.budget, coefficient, -1)
        if on_probe is not None:
            on_probe(len(probes_made) + 1, spec.l1_coefficient)
        views: list[CheckpointView] = []

        def keep(row: dict[str, Any], sae: SparseAutoencoder, matching: gt.Matching) -> None:
            views.append(checkpoint_view(data.truth, row, sae, matching))
            if on_checkpoint is not None:
                on_checkpoint(views[-1])

        record = track.train_and_score(config, spec, data, on_checkpoint=keep)
        final_l0 = float(record["summary"]["final_l0"])
        probes_made.append((spec.l1_coefficient, final_l0))
        return PlaygroundRun(settings, config, spec.l1_coefficient, record, views, truth=data.truth), final_l0

    if settings.l1_coefficient is not None:
        result, _ = run(settings.l1_coefficient / arm.tau_final)
    else:
        assert settings.target_l0 is not None
        start = start_coefficient or track.FIRST_COEFFICIENT
        probes: list[Probe[PlaygroundRun]] = probe_to_target(run, settings.target_l0, start, config.calibration_probes)
        result = nearest(probes, settings.target_l0).result
    result.probes = probes_made
    return result


# ----------------------------------------------------------------------------- a track of the same design
def design_differences(track_config: dict[str, Any], design: track.TrackConfig) -> list[str]:
    """The run-defining keys in which a track's recorded design (its track.json "config") differs from `design`."""
    ours = design.model_dump(mode="json")
    return [key for key in RUN_DEFINING if track_config.get(key) != ours.get(key)]


def same_samples(track_config: dict[str, Any], design: track.TrackConfig) -> bool:
    """Whether a track's replicates trained on the samples this design draws (both drawn for the same largest budget)."""
    return max(track_config["budgets"]) == max(design.budgets)


def read_track_record(track_dir: str | Path) -> dict[str, Any] | None:
    """A track folder's (or a kept report's) track.json, or None when there is none."""
    path = Path(track_dir) / "track.json"
    return atomic.read_json(path) if path.is_file() else None


def start_from_track(record: dict[str, Any] | None, design: track.TrackConfig, settings: PlaygroundSettings) -> float | None:
    """The calibration's first probe: the track's calibrated final coefficient for the same schedule (else plain L1's)
    at the same budget and the L0 target nearest the playground's, when the track is of the same design; else None."""
    if record is None or settings.target_l0 is None or "calibration" not in record or record.get("version") != track.TRACK_VERSION:
        return None
    if design_differences(record["config"], design):
        return None
    schedule = asdict(settings.schedule.to_schedule())
    same = [arm["name"] for arm in record["arms"] if arm["schedule"] == schedule]
    for name in [*same, track.PLAIN]:
        by_target = record["calibration"].get(name, {}).get(str(settings.budget))
        if by_target:
            target = min(by_target, key=lambda t: abs(math.log(float(t) / settings.target_l0)))
            return float(by_target[target])
    return None
