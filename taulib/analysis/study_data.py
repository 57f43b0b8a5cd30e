"""The arms of a finished study, read from outputs/ alone: what every analysis starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from taulib import atomic
from taulib.config import RunConfig
from taulib.evaluate import read_checkpoint_details, read_evaluation
from taulib.trainer import read_metrics


class StudyDataError(FileNotFoundError):
    """A study folder with nothing (or not enough) to analyse."""


@dataclass(frozen=True)
class Arm:
    """One trained and evaluated run."""

    name: str
    run_dir: Path
    config: RunConfig
    evaluation: pd.DataFrame  # one row per checkpoint: step, tokens, tau, l1_coefficient_effective, metrics…
    training: pd.DataFrame  # the trainer's log: one row every log_every_steps

    @property
    def description(self) -> str:
        return self.config.description or self.name

    @property
    def schedule_label(self) -> str:
        s = self.config.schedule
        if s.kind == "none":
            return "plain L1 (τ ≡ 1)"
        if s.kind == "constant":
            return f"constant τ = {s.tau_initial:g}"
        return f"{s.kind} τ {s.tau_initial:g} → {s.tau_final:g}"

    @property
    def steps(self) -> list[int]:
        return [int(step) for step in self.evaluation["step"]]

    def details(self, step: int) -> dict[str, Any]:
        """One checkpoint's evaluation details (histograms, per-letter absorption, per-task probing)."""
        return read_checkpoint_details(self.run_dir, step)["details"]


@dataclass(frozen=True)
class StudyData:
    outputs_root: Path
    arms: tuple[Arm, ...]

    @property
    def names(self) -> list[str]:
        return [arm.name for arm in self.arms]

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"no arm {name!r} in {self.outputs_root}; arms: {', '.join(self.names)}")

    def evaluation(self) -> pd.DataFrame:
        """Every arm's per-checkpoint table stacked, with an `arm` column (long format for grouping)."""
        return pd.concat([arm.evaluation.assign(arm=arm.name) for arm in self.arms], ignore_index=True)

    def final(self) -> pd.DataFrame:
        """The last evaluated checkpoint of every arm, one row per arm, indexed by arm name."""
        return pd.DataFrame([arm.evaluation.sort_values("step").iloc[-1].rename(arm.name) for arm in self.arms])


def _run_names(outputs_root: Path) -> list[str]:
    """Runs in the study's own order (study_summary.json) when there is one, else every evaluated folder."""
    summary = outputs_root / "study_summary.json"
    if summary.is_file():
        return [run["run_name"] for run in atomic.read_json(summary)["runs"] if run.get("status") == "ok"]
    return sorted(path.parent.parent.name for path in outputs_root.glob("*/evaluation/metrics.csv"))


def load_study(outputs_root: str | Path, runs: list[str] | None = None) -> StudyData:
    """Every trained and evaluated arm under outputs_root (or only `runs`), in the study's order."""
    outputs_root = Path(outputs_root)
    if not outputs_root.is_dir():
        raise StudyDataError(f"{outputs_root}: no such outputs folder; run the study first (`make study`)")
    names = runs if runs is not None else _run_names(outputs_root)
    arms = []
    for name in names:
        run_dir = outputs_root / name
        if not (run_dir / "config.json").is_file():
            raise StudyDataError(f"{run_dir}: no trained run of that name")
        config = RunConfig.model_validate(atomic.read_json(run_dir / "config.json")["config"])
        arms.append(Arm(name, run_dir, config, read_evaluation(run_dir).sort_values("step").reset_index(drop=True), read_metrics(run_dir)))
    if not arms:
        raise StudyDataError(f"{outputs_root}: no trained and evaluated runs; run the study first (`make study`)")
    return StudyData(outputs_root, tuple(arms))
