"""The runs of a finished study, read from outputs/ alone: what every analysis starts from."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from taulib import atomic
from taulib.config import RunConfig
from taulib.metrics.evaluate import read_checkpoint_details, read_evaluation, recorded_evaluation_fingerprint
from taulib.train.trainer import read_metrics


class StudyDataError(FileNotFoundError):
    """A study folder with nothing (or not enough) to analyse."""


@dataclass(frozen=True)
class Run:
    """One trained and evaluated run (in a slice of a sweep, one per arm, named by its arm)."""

    name: str
    run_dir: Path
    config: RunConfig
    evaluation: pd.DataFrame  # one row per checkpoint: step, tokens, tau, l1_coefficient_effective, metrics…
    training: pd.DataFrame  # the trainer's log: one row every log_every_steps
    sweep_arm: str | None = None  # in a sweep: the arm (parameter file) the run belongs to
    l0_target: float | None = None  # in a sweep: the final L0 its λ was calibrated for

    @property
    def arm(self) -> str:
        """The arm this run is a seed / sparsity of (the run's own name outside a sweep)."""
        return self.sweep_arm or self.name

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def description(self) -> str:
        return self.config.description or self.name

    @property
    def aa_of(self) -> str | None:
        """The arm this run's arm repeats as the A/A control (taulib.sweep.spec), else None."""
        return self.config.sweep.aa_of if self.config.sweep is not None else None

    @property
    def schedule_label(self) -> str:
        return self.config.schedule.label + (" again (A/A)" if self.aa_of is not None else "")

    @property
    def steps(self) -> list[int]:
        return [int(step) for step in self.evaluation["step"]]

    def details(self, step: int) -> dict[str, Any]:
        """One checkpoint's evaluation details (histograms, per-letter absorption, per-task probing)."""
        return read_checkpoint_details(self.run_dir, step)["details"]


@dataclass(frozen=True)
class StudyData:
    outputs_root: Path
    runs: tuple[Run, ...]  # a sweep's runs: every arm × L0 target × seed
    slice_label: str = ""  # set by `slice`: which of a sweep's runs these are

    @property
    def names(self) -> list[str]:
        return [run.name for run in self.runs]

    def run(self, name: str) -> Run:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(f"no run {name!r} in {self.outputs_root}; runs: {', '.join(self.names)}")

    @property
    def is_sweep(self) -> bool:
        return any(run.l0_target is not None for run in self.runs)

    @property
    def l0_targets(self) -> list[float]:
        return sorted({run.l0_target for run in self.runs if run.l0_target is not None})

    @property
    def seeds(self) -> list[int]:
        return sorted({run.seed for run in self.runs})

    @property
    def arm_names(self) -> list[str]:
        """The distinct arms in the study's order (a sweep's runs grouped by arm)."""
        return list(dict.fromkeys(run.arm for run in self.runs))

    def slice(self, l0_target: float | None = None, seed: int | None = None) -> StudyData:
        """One run per arm: a sweep's runs at one L0 target (default: the middle one) and one seed
        (default: the first), named by their arm. A study without a sweep is returned as it is."""
        if not self.is_sweep:
            return self
        targets = self.l0_targets
        target = targets[len(targets) // 2] if l0_target is None else float(l0_target)
        if target not in targets:
            raise StudyDataError(f"{self.outputs_root}: no runs for L0 target {target:g}; targets: {', '.join(f'{t:g}' for t in targets)}")
        seed = self.seeds[0] if seed is None else int(seed)
        chosen = [replace(run, name=run.arm) for run in self.runs if run.l0_target == target and run.seed == seed]
        if not chosen:
            raise StudyDataError(f"{self.outputs_root}: no runs for L0 target {target:g} with seed {seed}; seeds: {', '.join(map(str, self.seeds))}")
        label = f"runs calibrated for L0 ≈ {target:g}, seed {seed}"
        missing = [name for name in self.arm_names if name not in {run.name for run in chosen}]
        if missing:  # a failed (or not yet finished) run: said, not silently dropped
            label += f"; no such run for {', '.join(missing)}"
        return StudyData(self.outputs_root, tuple(chosen), slice_label=label)

    def one_run_per_arm(self) -> StudyData:
        """Each arm's first run, whatever its L0 target and seed, named by its arm: the arms'
        configurations (schedules, labels, styles), also where a sweep's runs of one target and seed
        failed for some arm. A study without a sweep is returned as it is."""
        if not self.is_sweep:
            return self
        first: dict[str, Run] = {}
        for run in self.runs:
            first.setdefault(run.arm, replace(run, name=run.arm))
        return StudyData(self.outputs_root, tuple(first.values()), slice_label="one run per arm")

    def check_one_code_version(self) -> None:
        """Refuse a study whose runs were trained, or evaluated, by different versions of the code (taulib.versions):
        their numbers are not comparable. Names the runs of each version, so that they can be rerun."""
        for what, version_of in (("trained", _training_version), ("evaluated", _evaluation_fingerprint)):
            groups: dict[str, list[str]] = {}
            for run in self.runs:
                groups.setdefault(version_of(run), []).append(run.run_dir.name)
            if len(groups) > 1:
                listed = "; ".join(f"{version}: {', '.join(runs)}" for version, runs in sorted(groups.items()))
                raise StudyDataError(
                    f"{self.outputs_root}: its runs were {what} by different versions of the code (taulib.versions), so their numbers "
                    f"are not comparable ({listed}); rerun `make study` (or the runs of the older version) to bring them to one version"
                )

    def evaluation(self) -> pd.DataFrame:
        """Every run's per-checkpoint table stacked, with an `arm` column holding the run's name (long format for grouping)."""
        return pd.concat([run.evaluation.assign(arm=run.name) for run in self.runs], ignore_index=True)

    def final(self) -> pd.DataFrame:
        """The last evaluated checkpoint of every run, one row per run, indexed by its name."""
        return pd.DataFrame([run.evaluation.sort_values("step").iloc[-1].rename(run.name) for run in self.runs])


def _run_entries(outputs_root: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """Runs in the study's own order (study_summary.json), with their sweep labels, when there is
    a summary; else every evaluated folder."""
    summary = outputs_root / "study_summary.json"
    if summary.is_file():
        return [(run["run_name"], run.get("sweep")) for run in atomic.read_json(summary)["runs"] if run.get("status") == "ok"]
    return [(path.parent.parent.name, None) for path in sorted(outputs_root.glob("*/evaluation/metrics.csv"))]


def load_study(outputs_root: str | Path, runs: list[str] | None = None) -> StudyData:
    """Every trained and evaluated run under outputs_root (or only `runs`), in the study's order."""
    outputs_root = Path(outputs_root)
    if not outputs_root.is_dir():
        raise StudyDataError(f"{outputs_root}: no such outputs folder; run the study first (`make study`)")
    entries = _run_entries(outputs_root)
    if runs is not None:
        labels = dict(entries)
        entries = [(name, labels.get(name)) for name in runs]
    found = []
    for name, label in entries:
        run_dir = outputs_root / name
        if not (run_dir / "config.json").is_file():
            raise StudyDataError(f"{run_dir}: no trained run of that name")
        config = RunConfig.model_validate(atomic.read_json(run_dir / "config.json")["config"])
        evaluation, training = read_evaluation(run_dir).sort_values("step").reset_index(drop=True), read_metrics(run_dir)
        label = label or {}
        found.append(Run(name, run_dir, config, evaluation, training, label.get("arm"), label.get("l0_target")))
    if not found:
        raise StudyDataError(f"{outputs_root}: no trained and evaluated runs; run the study first (`make study`)")
    return StudyData(outputs_root, tuple(found))



def _training_version(run: Run) -> str:
    record = atomic.read_json(run.run_dir / "config.json") if (run.run_dir / "config.json").is_file() else {}
    return f"training_version {record.get('training_version', 1)}"  # a run made before versions were recorded: version 1


def _evaluation_fingerprint(run: Run) -> str:
    fingerprint = recorded_evaluation_fingerprint(run.run_dir, run.config)
    return f"evaluation {fingerprint}" if fingerprint is not None else "an evaluation of another version (its key is not this code's)"


def planned_identities(outputs_root: Path) -> dict[str, str] | None:
    """The identity arms the sweep planned (outputs/sweeps/plan.json), None for a study without that record."""
    plan = _plan(outputs_root)
    return dict(plan["identities"]) if "identities" in plan else None


def planned_aa_controls(outputs_root: Path) -> dict[str, str]:
    """The A/A control the sweep planned (outputs/sweeps/plan.json): its arm → the arm it repeats; {} for none."""
    return dict(_plan(outputs_root).get("aa_controls", {}))


def _plan(outputs_root: Path) -> dict[str, Any]:
    path = Path(outputs_root) / "sweeps" / "plan.json"
    return atomic.read_json(path) if path.is_file() else {}
