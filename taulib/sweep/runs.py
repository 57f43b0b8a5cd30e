"""From a sweep to the parameter files the study runs: calibrate λ per arm, then write one file per run.

outputs/sweeps/calibration/<arm>.json   every probe (λ, final held-out L0 and EV) and each target's choice
outputs/sweeps/parameters/<run>.yaml    the generated parameter files (02_train runs each)
outputs/sweeps/plan.json                the runs in order, with their labels
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from taulib import atomic
from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.models import hooked_layer
from taulib.config import RunConfig
from taulib.metrics.core.metric import reconstruction_metrics
from taulib.sae import in_raw_units, load_sae
from taulib.sweep.calibration import ArmCalibration, Probe, calibrate_arm, load_calibration, save_calibration
from taulib.sweep.spec import Sweep, SweepArm, identity_l1_coefficient, run_config, write_parameter_file
from taulib.train.trainer import AnnealedTrainer, check_run_folder

SWEEPS_FOLDER = "sweeps"


@dataclass(frozen=True)
class PlannedRun:
    parameter_file: Path
    config: RunConfig


def calibration_key(arm: SweepArm, seed: int) -> str:
    """What a probe's outcome depends on besides λ: the arm's configuration (labels and evaluation aside)."""
    data = run_config(arm, 1.0, seed, 1.0).result_defining_dict()
    for key in ("run_name", "description", "sweep", "evaluation"):
        data.pop(key)
    data["training"].pop("l1_coefficient")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def final_heldout_metrics(run_dir: Path, heldout: torch.Tensor) -> tuple[float, float]:
    """(L0, explained variance) of a run's final SAE on held-out activations, as the evaluation computes them."""
    sae, metadata = load_sae(run_dir / "final")
    metrics, _ = reconstruction_metrics(in_raw_units(sae, metadata), heldout)
    return metrics.l0, metrics.explained_variance


def calibrate_sweep(sweep: Sweep, outputs_root: Path, show_progress: bool = True) -> dict[str, ArmCalibration]:
    """Calibrate λ for every arm and target (resuming saved probes); the probes are the seed-0 runs. An
    identity arm (taulib.sweep.spec) is not calibrated: its λ follows from its plain-L1 arm's."""
    outputs_root = Path(outputs_root)
    folder = outputs_root / SWEEPS_FOLDER / "calibration"
    results: dict[str, ArmCalibration] = {}
    caches: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for arm in sweep.calibrated_arms():
        config, layer = arm.config, hooked_layer(arm.config.model)
        train_spec, heldout_spec = activation_spec(config, "train", layer), activation_spec(config, "heldout", layer)
        if train_spec.key() not in caches:
            caches.clear()  # one activation matrix in memory at a time
            heldout = load_cache(cache_folder(outputs_root, heldout_spec), heldout_spec).activations[: config.evaluation.core.tokens].float()
            mapped = config.training.activation_storage == "mmap"
            caches[train_spec.key()] = (load_cache(cache_folder(outputs_root, train_spec), train_spec, mmap=mapped).activations, heldout)
        activations, heldout = caches[train_spec.key()]

        def train_probe(
            l1_coefficient: float,
            target: float,
            arm: SweepArm = arm,
            layer: int = layer,
            activations: torch.Tensor = activations,
            heldout: torch.Tensor = heldout,
        ) -> Probe:
            probe_config = run_config(arm, l1_coefficient, sweep.calibration_seed, target)
            run_dir = outputs_root / probe_config.run_name
            check_run_folder(probe_config, run_dir)
            AnnealedTrainer(probe_config, activations, run_dir, show_progress=show_progress, layer=layer).train()
            l0, explained_variance = final_heldout_metrics(run_dir, heldout)
            return Probe(probe_config.training.l1_coefficient, l0, explained_variance, probe_config.run_name, target)

        path = folder / f"{arm.name}.json"
        settings = sweep.calibration_of(arm)
        calibration = load_calibration(path, arm.name, config.schedule.to_schedule().tau_at_end, settings, calibration_key(arm, sweep.calibration_seed))
        results[arm.name] = calibrate_arm(calibration, sweep.l0_targets, train_probe, lambda c, path=path: save_calibration(path, c), show_progress)
    return results


def plan_runs(sweep: Sweep, calibrations: dict[str, ArmCalibration], outputs_root: Path) -> list[PlannedRun]:
    """Write the generated parameter files: every arm × target × seed at the calibrated λ, and each identity
    arm's one run at τ·λ of its plain-L1 arm's run (the middle target, the calibration seed)."""
    folder = Path(outputs_root) / SWEEPS_FOLDER / "parameters"
    planned = []
    for arm in sweep.arms:
        if (reference := sweep.identities.get(arm.name)) is not None:
            target = sweep.identity_target
            l1_coefficient = identity_l1_coefficient(arm, calibrations[reference].target(target).l1_coefficient)
            config = run_config(arm, l1_coefficient, sweep.calibration_seed, target, identity_of=reference)
            planned.append(PlannedRun(write_parameter_file(folder, config, sweep), config))
            continue
        for target in sweep.l0_targets:
            chosen = calibrations[arm.name].target(target)
            for seed in sweep.seeds:
                config = run_config(arm, chosen.l1_coefficient, seed, target)
                planned.append(PlannedRun(write_parameter_file(folder, config, sweep), config))
    atomic.write_json(
        Path(outputs_root) / SWEEPS_FOLDER / "plan.json",
        {
            "sweep": str(sweep.source),
            "profile": sweep.profile,
            "l0_targets": list(sweep.l0_targets),
            "seeds": list(sweep.seeds),
            "tolerance": sweep.calibration.tolerance,
            "identities": dict(sweep.identities),
            "aa_controls": sweep.aa_controls,
            "runs": [
                {
                    "run_name": run.config.run_name,
                    "parameter_file": str(run.parameter_file),
                    "arm": run.config.sweep.arm,
                    "l0_target": run.config.sweep.l0_target,
                    "seed": run.config.seed,
                }
                for run in planned
                if run.config.sweep is not None
            ],
        },
    )
    return planned
