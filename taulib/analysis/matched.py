"""A sweep's runs compared at matched sparsity: one row per run, then means with intervals per
(arm, L0 target), and differences between arms.

Per run (`run_table`):
  final_<metric>        the last checkpoint's value
  early_<metric>        the value at the checkpoint nearest `early_position` of training
  formation_<metric>    the fraction of training after which the metric first covered `fraction`
                        of its change from initialisation to the end (taulib.analysis.formation)
  absorption_area       absorption averaged over log tokens: low when it falls early
  absorption_settled    the fraction of training from which absorption stays below a threshold
  penalty_ramp          final λ/τ over its mean: how back-loaded the penalty was (1 = constant)
  mean_tau, late_mean_l1_coefficient …  the τ trajectory (taulib.analysis.orthogonality)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from taulib.analysis.formation import first_settled_below, mean_over_log_tokens, time_to_fraction_of_final
from taulib.analysis.intervals import Estimate, t_interval, welch_difference
from taulib.analysis.orthogonality import checkpoint_at_position, lower_bound_pairs, tau_trajectory_summary
from taulib.analysis.study_data import Arm, StudyData, StudyDataError


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    higher_is_better: bool


# the Pareto axes: what every SAE metric is read against L0 for
PARETO_METRICS = (
    Metric("explained_variance", "explained variance", True),
    Metric("ce_loss_score", "CE-loss score", True),
    Metric("absorption_fraction", "absorption fraction", False),
    Metric("sae_top_1_accuracy", "sparse probing, top-1 accuracy", True),
    Metric("mean_max_cosine", "mean max decoder cosine", False),
)
# concept formation: how soon features that carry concepts appear
FORMATION_METRICS = (
    Metric("sae_top_1_accuracy", "sparse probing, top-1 accuracy", True),
    Metric("k1_f1", "first-letter probe, k=1 F1", True),
)
ORTHOGONALITY_METRICS = (
    Metric("mean_max_cosine", "mean max decoder cosine", False),
    Metric("near_duplicate_latent_fraction", "near-duplicate latents (fraction)", False),
)


@dataclass(frozen=True)
class MatchedSettings:
    early_position: float = 0.1  # "early": the checkpoint nearest this fraction of training
    fraction: float = 0.9  # formation: the share of the final change
    absorption_metric: str = "absorption_fraction"
    absorption_threshold: float = 0.05


def _value(arm: Arm, step: int, column: str) -> float:
    table = arm.evaluation
    if column not in table:
        return math.nan
    return float(table.loc[table["step"] == step, column].iloc[0])


def run_row(arm: Arm, settings: MatchedSettings) -> dict[str, float | str | int]:
    table = arm.evaluation.sort_values("step")
    tokens = table["tokens"].to_numpy(dtype=float)
    total = float(tokens.max())
    final_step, early_step = int(table["step"].iloc[-1]), checkpoint_at_position(arm, settings.early_position)
    trajectory = tau_trajectory_summary(arm)
    row: dict[str, float | str | int] = {
        "run": arm.name,
        "arm": arm.arm_name,
        "l0_target": arm.l0_target if arm.l0_target is not None else math.nan,
        "seed": arm.seed,
        "l1_coefficient": arm.config.training.l1_coefficient,
        "total_tokens": total,
        "early_step": early_step,
        "early_position": float(table.loc[table["step"] == early_step, "tokens"].iloc[0]) / total,
        **trajectory,
        "penalty_ramp": trajectory["final_l1_coefficient"] / trajectory["mean_l1_coefficient"],
    }
    columns = {m.column for m in (*PARETO_METRICS, *FORMATION_METRICS, *ORTHOGONALITY_METRICS)} | {"l0", settings.absorption_metric}
    for column in sorted(columns):
        row[f"final_{column}"] = _value(arm, final_step, column)
        row[f"early_{column}"] = _value(arm, early_step, column)
    for metric in FORMATION_METRICS:
        values = table[metric.column].to_numpy(dtype=float) if metric.column in table else np.full(len(table), np.nan)
        row[f"formation_{metric.column}"] = time_to_fraction_of_final(tokens, values, settings.fraction) / total
    absorption = table[settings.absorption_metric].to_numpy(dtype=float) if settings.absorption_metric in table else np.full(len(table), np.nan)
    row["absorption_area"] = mean_over_log_tokens(tokens, absorption)
    row["absorption_settled"] = first_settled_below(tokens, absorption, settings.absorption_threshold) / total
    return row


def run_table(study: StudyData, settings: MatchedSettings | None = None) -> pd.DataFrame:
    """One row per run of a sweep (every arm × L0 target × seed)."""
    if not study.is_sweep:
        raise StudyDataError(
            f"{study.outputs_root}: not a sweep study (no run has an L0 target); the matched comparison needs `make study` with parameters/_sweep.yaml"
        )
    settings = settings or MatchedSettings()
    return pd.DataFrame([run_row(arm, settings) for arm in study.arms])


def cell_estimates(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and t interval over seeds of `column`, per (arm, l0_target), in the table's arm order."""
    rows = []
    for (arm, target), group in table.groupby(["arm", "l0_target"], sort=False):
        estimate = t_interval(group[column])
        rows.append(
            {"arm": arm, "l0_target": target, "estimate": estimate, "mean": estimate.value, "low": estimate.low, "high": estimate.high, "n": estimate.n}
        )
    return pd.DataFrame(rows)


def cell_values(table: pd.DataFrame, arm: str, target: float, column: str) -> np.ndarray:
    selected = table[(table["arm"] == arm) & np.isclose(table["l0_target"], target)]
    return selected[column].to_numpy(dtype=float)


def difference(table: pd.DataFrame, column: str, arm: str, other: str, target: float) -> Estimate:
    """mean(arm) − mean(other) of `column` over seeds at one L0 target (Welch)."""
    return welch_difference(cell_values(table, arm, target, column), cell_values(table, other, target, column))


def lower_bound_partner(study: StudyData, arm_name: str) -> str | None:
    """The arm that differs from `arm_name` only in τ's floor (taulib.analysis.orthogonality.lower_bound_pairs),
    if the study has one. All runs are searched, pairs forming at equal L0 target and seed, so that a
    failed run of either arm does not hide the pair."""
    for low, high in lower_bound_pairs(study):
        if arm_name in (low.arm_name, high.arm_name):
            return high.arm_name if low.arm_name == arm_name else low.arm_name
    return None
