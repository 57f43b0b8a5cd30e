"""A matched-sparsity sweep, described in one small file (`parameters/_sweep.yaml`).

Dividing the L1 penalty by τ(t) makes each arm end at its own effective penalty λ/τ_final, and so
at its own L0. The sweep compares the arms at equal sparsity instead: for every arm (a parameter
file of the folder: its schedule), every L0 target and every seed it makes one run whose λ was
calibrated (taulib.sweep.calibration) so that the arm's final held-out L0 lands near the target.

An arm whose τ never moves (a constant schedule) is the plain-L1 arm (τ ≡ 1) with λ·τ: the same
loss, λ/τ·‖f‖₁, step for step. When the sweep has that plain-L1 arm and the two differ in nothing
else, the constant arm is not calibrated and swept again: it gets one *identity run* (the middle
L0 target, the calibration seed, λ = τ·λ_plain), which the report compares with the plain-L1 run
it must reproduce (taulib.analysis.report, the equivalence check). Nine runs of the same
computation would measure nothing but the rounding of λ.

The file expands to the parameter files papermill runs (`outputs/sweeps/parameters/*.yaml`):
fully resolved, one per run, named `<arm>__lam<λ>__seed<seed>`. A run is named by its λ, not its
target, because calibration probes are trained before anyone knows which target they will hit;
the accepted probe *is* the seed-0 run of its target. Profiles (`default`, `full`, …) change the
targets, the seeds and any run parameter (width, tokens, checkpoints), so the CPU-sized default
and the complete sweep live in the same file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from taulib import atomic
from taulib.config import (
    ConfigError,
    RunConfig,
    StrictModel,
    deep_merge,
    discover_parameter_files,
    format_validation_error,
    load_run_config,
    read_yaml_mapping,
    with_upgraded_evaluation_keys,
)

SWEEP_FILE = "_sweep.yaml"
DEFAULT_PROFILE = "default"


class CalibrationSettings(StrictModel):
    """How λ is searched for each (arm, L0 target); see taulib.sweep.calibration."""

    tolerance: float = Field(0.15, gt=0, lt=0.5, description="accept a λ whose final held-out L0 is within this relative distance of the target")
    max_probes_per_target: int = Field(4, ge=1, description="training runs tried per target before the closest one is taken (and flagged)")
    initial_effective_coefficient: float = Field(0.5, gt=0, description="the first probe's final effective penalty λ/τ_final")
    initial_slope: float = Field(-1.0, lt=0, description="assumed d log L0 / d log λ until two probes measure it")
    max_step_factor: float = Field(8.0, gt=1, description="a proposed λ is at most this factor away from the nearest probe's")
    bracket_edges: bool = Field(
        True,
        description="the sparsest and densest targets accept a run only on their outer side (within the tolerance), aiming at its "
        "middle: the frontier reads an edge target only where a run lies beyond it (taulib.sweep.calibration)",
    )


class SweepProfile(StrictModel):
    """What a profile changes; anything left out keeps the sweep's own value."""

    description: str = Field("", description="what the profile is for, in words")
    arms: tuple[str, ...] | None = Field(None, description="arm files (stems) to sweep; None: the sweep's arms")
    l0_targets: tuple[float, ...] | None = Field(None, description="final held-out L0 targets; None: the sweep's")
    seeds: tuple[int, ...] | None = Field(None, description="seeds; None: the sweep's")
    parameters: dict[str, Any] = Field(default_factory=dict, description="deep-merged into every arm's parameters (width, tokens, checkpoints…)")


class SweepFile(StrictModel):
    description: str = Field("", description="what the sweep is, in words")
    arms: tuple[str, ...] | None = Field(None, description="arm files (stems) to sweep; None = every parameter file of the folder")
    l0_targets: tuple[float, ...] = Field(min_length=1, description="final held-out L0 targets; each arm is calibrated to each")
    seeds: tuple[int, ...] = Field(min_length=1, description="seeds of every (arm, target); the first one's runs are the calibration probes")
    calibration: CalibrationSettings = CalibrationSettings()
    aa_control: str | None = Field(
        None,
        description="an arm file (stem) swept a second time as its own arm, `<arm>_again`, calibrated independently (its first probe "
        "AA_FIRST_PROBE_FACTOR× further): the A/A control, which the report compares with the arm on every endpoint; None: no A/A control",
    )
    profiles: dict[str, SweepProfile] = Field(
        default_factory=dict, description="named variants of the sweep, chosen with `--profile`; 'default', unless named here, is the file as it is"
    )

    @model_validator(mode="after")
    def _sane(self) -> SweepFile:
        for name, profile in {"(top level)": self, **self.profiles}.items():
            check_targets_and_seeds(profile.l0_targets, profile.seeds, self.calibration.tolerance, name)
        return self


def check_targets_and_seeds(targets: tuple[float, ...] | None, seeds: tuple[int, ...] | None, tolerance: float, where: str) -> None:
    if targets is not None:
        if len(targets) == 0 or any(not t > 0 for t in targets):
            raise ValueError(f"{where}: l0_targets must be positive numbers")
        ordered = sorted(targets)
        # two targets inside one tolerance band could be met by the same run
        band = (1 + tolerance) / (1 - tolerance)
        for low, high in zip(ordered, ordered[1:], strict=False):
            if high / low <= band:
                raise ValueError(f"{where}: l0_targets {low:g} and {high:g} are closer than the calibration tolerance allows (ratio must exceed {band:.3f})")
    if seeds is not None and (len(seeds) == 0 or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds)):
        raise ValueError(f"{where}: seeds must be distinct non-negative integers")


@dataclass(frozen=True)
class SweepArm:
    name: str  # the parameter file's stem (the A/A control's: the stem + AA_SUFFIX)
    parameter_file: Path
    config: RunConfig  # the arm's parameters with the profile's (and command line's) overrides
    aa_of: str | None = None  # the A/A control: the arm it repeats, calibrated a second time on its own


AA_SUFFIX = "_again"
# the A/A control's calibration starts this factor above the first probe of its arm, so that its probes (and so its
# runs' λ) are its own: the report then matches it to the arm across two independent calibrations, as it matches arms
AA_FIRST_PROBE_FACTOR = 1.5


@dataclass(frozen=True)
class Sweep:
    """A sweep file resolved for one profile against a parameter folder."""

    source: Path
    profile: str
    arms: tuple[SweepArm, ...]
    l0_targets: tuple[float, ...]
    seeds: tuple[int, ...]
    calibration: CalibrationSettings
    overrides: dict[str, Any]  # profile parameters, then the command line's, applied to every arm
    # arm → the plain-L1 arm it reproduces with λ·τ (module docstring): one identity run, no calibration
    identities: dict[str, str] = field(default_factory=dict)

    @property
    def calibration_seed(self) -> int:
        return self.seeds[0]  # probes are trained with the first seed and kept as its runs

    @property
    def identity_target(self) -> float:
        """The L0 target of the identity runs: the middle one."""
        return self.l0_targets[len(self.l0_targets) // 2]

    def calibrated_arms(self) -> tuple[SweepArm, ...]:
        return tuple(arm for arm in self.arms if arm.name not in self.identities)

    @property
    def aa_controls(self) -> dict[str, str]:
        """The A/A control arm → the arm it repeats (at most one)."""
        return {arm.name: arm.aa_of for arm in self.arms if arm.aa_of is not None}

    def calibration_of(self, arm: SweepArm) -> CalibrationSettings:
        """The arm's calibration settings: the sweep's, the A/A control's first probe AA_FIRST_PROBE_FACTOR× further."""
        if arm.aa_of is None:
            return self.calibration
        return self.calibration.model_copy(update={"initial_effective_coefficient": self.calibration.initial_effective_coefficient * AA_FIRST_PROBE_FACTOR})

    def runs_of(self, arm: SweepArm) -> int:
        return 1 if arm.name in self.identities else len(self.l0_targets) * len(self.seeds)

    def n_runs(self) -> int:
        return sum(self.runs_of(arm) for arm in self.arms)

    def arm(self, name: str) -> SweepArm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)


def load_sweep(
    parameters_dir: str | Path, profile: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None, sweep_file: str | Path | None = None
) -> Sweep:
    """Read and validate the sweep file of a parameter folder for one profile; refuses anything unusable."""
    parameters_dir = Path(parameters_dir)
    path = Path(sweep_file) if sweep_file is not None else parameters_dir / SWEEP_FILE
    data = read_yaml_mapping(path)
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(str(path), error, SweepFile, "sweep")) from None
    if profile != DEFAULT_PROFILE and profile not in sweep.profiles:
        known = ", ".join(sorted({DEFAULT_PROFILE, *sweep.profiles}))
        raise ConfigError(f"{path}: no profile {profile!r}; profiles: {known}")
    chosen = sweep.profiles.get(profile, SweepProfile())
    # each source's old evaluation keys moved into their families' sections before they are merged (warned, named)
    merged = deep_merge(with_upgraded_evaluation_keys(chosen.parameters, f"{path} (profile {profile})"), with_upgraded_evaluation_keys(overrides or {}, "the command line's --set"))

    files = {file.stem: file for file in discover_parameter_files(parameters_dir)}
    names = chosen.arms or sweep.arms or tuple(files)
    missing = [name for name in names if name not in files]
    if missing:
        raise ConfigError(f"{path}: arms {', '.join(missing)} have no parameter file in {parameters_dir} (files: {', '.join(files)})")
    arms = tuple(SweepArm(name, files[name], load_run_config(files[name], merged or None)) for name in names)
    if sweep.aa_control is not None:
        original = next((arm for arm in arms if arm.name == sweep.aa_control), None)
        if original is None and sweep.aa_control not in files:
            raise ConfigError(f"{path}: aa_control {sweep.aa_control!r} has no parameter file in {parameters_dir} (files: {', '.join(files)})")
        if original is not None:  # a profile that leaves the arm out has no A/A control
            if original.name + AA_SUFFIX in files:
                raise ConfigError(f"{path}: aa_control {original.name!r} would name its repeat {original.name + AA_SUFFIX!r}, which is a parameter file already")
            arms += (SweepArm(original.name + AA_SUFFIX, original.parameter_file, original.config, aa_of=original.name),)
    return Sweep(
        source=path,
        profile=profile,
        arms=arms,
        l0_targets=tuple(sorted(chosen.l0_targets or sweep.l0_targets)),
        seeds=chosen.seeds or sweep.seeds,
        calibration=sweep.calibration,
        overrides=merged,
        identities=identity_arms(arms),
    )


def _computation(config: RunConfig) -> dict[str, Any]:
    """What a run computes besides its schedule and λ (labels aside)."""
    data = config.result_defining_dict()
    for key in ("run_name", "description", "sweep", "schedule"):
        data.pop(key, None)
    data["training"].pop("l1_coefficient")
    return data


def identity_arms(arms: tuple[SweepArm, ...]) -> dict[str, str]:
    """Constant-coefficient arms (constant τ) that are the sweep's plain-L1 arm with λ·τ, each mapped to it:
    the same configuration in everything but the schedule and λ (module docstring)."""
    plain = [arm for arm in arms if arm.config.schedule.spec.plain and arm.aa_of is None]
    if not plain:
        return {}
    reference = plain[0]
    return {
        arm.name: reference.name
        for arm in arms
        if arm.config.schedule.spec.constant_coefficient and not arm.config.schedule.spec.plain and _computation(arm.config) == _computation(reference.config)
    }


def identity_l1_coefficient(arm: SweepArm, reference_l1_coefficient: float) -> float:
    """λ of an identity run: τ·λ_plain, to the significant figures that keep λ/τ equal to λ_plain."""
    return round_lambda(arm.config.schedule.to_schedule().tau_at_end * reference_l1_coefficient, IDENTITY_DIGITS)


# ----------------------------------------------------------------------------- the runs
LAMBDA_DIGITS = 4  # significant figures of a calibrated λ
IDENTITY_DIGITS = 6  # of an identity run's λ = τ·λ_plain (τ = 0.3 times a 4-figure λ needs 5)


def round_lambda(value: float, digits: int = LAMBDA_DIGITS) -> float:
    """λ to `digits` significant figures: the value trained is the value in the run's name."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"λ must be a positive finite number, got {value!r}")
    return float(f"{value:.{digits}g}")


def run_name(arm: str, l1_coefficient: float, seed: int, digits: int = LAMBDA_DIGITS) -> str:
    return f"{arm}__lam{round_lambda(l1_coefficient, digits):.{digits}g}__seed{seed}"


def run_config(arm: SweepArm, l1_coefficient: float, seed: int, l0_target: float, identity_of: str | None = None) -> RunConfig:
    """The arm's configuration at a calibrated λ and a seed, labelled with its place in the sweep; an identity
    run (`identity_of`: the plain-L1 arm it reproduces) keeps λ = τ·λ_plain to IDENTITY_DIGITS."""
    digits = LAMBDA_DIGITS if identity_of is None else IDENTITY_DIGITS
    value = round_lambda(l1_coefficient, digits)
    data = arm.config.to_dict()
    data["run_name"] = run_name(arm.name, value, seed, digits)
    data["seed"] = seed
    data["training"]["l1_coefficient"] = value
    data["sweep"] = {"arm": arm.name, "l0_target": float(l0_target)} | ({"aa_of": arm.aa_of} if arm.aa_of is not None else {})
    base = arm.config.description or arm.name
    if arm.aa_of is not None:
        base = f"A/A control: {arm.aa_of} calibrated a second time, on its own. {base}"
    if identity_of is None:
        data["description"] = f"{base} λ = {value:.{digits}g} (calibrated for final L0 ≈ {l0_target:g}), seed {seed}."
    else:
        data["description"] = f"{base} λ = {value:.{digits}g} = τ·λ of {identity_of} at final L0 ≈ {l0_target:g}, seed {seed}: the identity check."
    return RunConfig.model_validate(data)


def write_parameter_file(folder: Path, config: RunConfig, sweep: Sweep) -> Path:
    """One generated, fully resolved parameter file (atomically); papermill runs 02_train with it."""
    header = (
        f"# Generated by taulib.sweep.spec from {sweep.source.name} (profile {sweep.profile!r}) and the arm file\n"
        f"# {config.sweep.arm if config.sweep else '?'}.yaml, with the λ found by calibration. Do not edit: edit those files and rerun.\n"
    )
    path = Path(folder) / f"{config.run_name}.yaml"
    atomic.write_text(path, header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True))
    return path


def describe(sweep: Sweep) -> str:
    """The plan, for `python -m taulib sweep`."""
    lines = [
        f"sweep {sweep.source} · profile {sweep.profile!r}",
        f"arms ({len(sweep.arms)}): {', '.join(arm.name for arm in sweep.arms)}",
        *[
            f"{arm} is {reference} with λ·τ: one identity run (L0 target {sweep.identity_target:g}, seed {sweep.calibration_seed}), not calibrated"
            for arm, reference in sweep.identities.items()
        ],
        *[
            f"{arm} is {original} calibrated a second time, on its own (first probe ×{AA_FIRST_PROBE_FACTOR:g}): the A/A control, "
            f"compared with {original} on every endpoint"
            for arm, original in sweep.aa_controls.items()
        ],
        f"final held-out L0 targets: {', '.join(f'{t:g}' for t in sweep.l0_targets)} (±{sweep.calibration.tolerance:.0%})",
        f"seeds: {', '.join(map(str, sweep.seeds))} (calibration probes use seed {sweep.calibration_seed})",
        f"runs: {sweep.n_runs()} evaluated, plus the calibration probes that miss (at most "
        f"{len(sweep.calibrated_arms()) * len(sweep.l0_targets) * (sweep.calibration.max_probes_per_target - 1)})",
    ]
    if sweep.overrides:
        lines.append(f"parameters changed in every run: {sweep.overrides}")
    example = sweep.arms[0].config
    lines.append(
        f"each run: {example.sae.width} latents, {example.training.n_tokens:,} tokens, batch {example.training.batch_size}, "
        f"{example.training.n_checkpoints} checkpoints, model {example.model.name} layer {example.model.layer}"
    )
    return "\n".join(lines)
