"""A sweep's runs, one row each: what the report (taulib.analysis.report) compares between arms at
matched sparsity (via taulib.analysis.frontier) and what the Pareto figures plot.

Per run (`run_table`); "after warm-up" means from the first checkpoint at or after the end of the
learning-rate warm-up (and of an L1 warm-up's ramp), where the SAE has left its initialisation:
  final_<metric>        the last checkpoint's value
  early_<metric>        the value at the checkpoint nearest `early_position` of training (the
                        early Pareto figure; not compared between arms: sparsity differs there)
  formation_<metric>    the fraction of training after which the metric, rising, has covered
                        `fraction` of its change from the first post-warm-up checkpoint to its final
                        level and stays there (taulib.analysis.formation.formation_time): the window's
                        start when it had formed before it, 1 (censored) when it never forms
  current_<metric>      the metric when the run's current L0 first falls through
                        `current_l0_multiple` × its L0 target (formation at matched current sparsity);
                        current_l0_position: when that happened, as a fraction of training
  absorption_settling   the fraction of training after which absorption (over letters whose best
                        single latent reaches k=1 F1 `absorption_min_k1_f1` at the end) has covered
                        `fraction` of its fall from the first post-warm-up checkpoint and stays
                        there; 1 (censored) when it never falls (absorption_settles False, counted)
  grid_resolution       the largest gap between post-warm-up checkpoints, as a fraction of training
  latent_formation_median, latents_formed_by_<share>, latents_never_formed …  per-latent formation:
                        when each final latent's decoder direction settled (taulib.analysis.latent_formation)
  penalty_ramp          final λ/τ over its mean: how back-loaded the penalty was (1 = constant)
  gt_recovery_median    the synthetic model's runs (taulib.metrics.ground_truth.metric): the median over true features
                        of the share of training to its recovery step, 1 (censored) for a feature never
                        recovered; its final_gt_* columns are the last checkpoint's shares and cosines
  mean_tau, late_mean_l1_coefficient …  the τ trajectory (taulib.analysis.orthogonality)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from taulib.analysis.formation import at_current_l0, formation_censored, formation_time, formed_letter_absorption
from taulib.analysis.latent_formation import FormationSettings, formation_summary, median_is_censored, run_formation
from taulib.analysis.orthogonality import checkpoint_at_position, lower_bound_pairs, tau_trajectory_summary
from taulib.analysis.reference_formation import ReferenceSettings, study_reference_formation
from taulib.analysis.study_data import Run, StudyData, StudyDataError, planned_identities
from taulib.metrics.catalogue import column as declared_column
from taulib.metrics.evaluate import read_ground_truth_recovery
from taulib.train.trainer import warmup_steps


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    higher_is_better: bool

    @classmethod
    def declared(cls, column: str) -> Metric:
        """A column as the metric family that adds it declares it: its label and which way is better."""
        declared = declared_column(column)
        if declared.higher_is_better is None:
            raise ValueError(f"column {column!r} is declared with no better direction: it cannot be compared between arms")
        return cls(column, declared.label, declared.higher_is_better)


# the Pareto axes: what every SAE metric is read against L0 for
PARETO_METRICS = tuple(map(Metric.declared, ("explained_variance", "ce_loss_score", "absorption_fraction", "sae_top_1_accuracy", "mean_max_cosine")))
# concept formation: how soon features that carry concepts appear
FORMATION_METRICS = tuple(map(Metric.declared, ("sae_top_1_accuracy", "k1_f1")))
ORTHOGONALITY_METRICS = tuple(map(Metric.declared, ("alive_excess_mean_max_cosine", "alive_near_duplicate_latent_fraction", "mean_max_cosine")))
# against the synthetic model's known dictionary (taulib.metrics.ground_truth); absent for a language model
GROUND_TRUTH_METRICS = tuple(map(Metric.declared, ("gt_recovered_fraction", "gt_mean_max_cosine")))
# a time column's companion: 1 where the time is censored (formed before the window, or never), 0 where observed
CENSORED_SUFFIX = "_censored"
# how far a run's dictionary moved from its initialisation (taulib.metrics.decoder_drift), shown per run
DRIFT_COLUMNS = ("decoder_init_cosine_median", "decoder_init_cosine_weighted_median")
# the reconstruction without L1's shrinkage (taulib.metrics.support_refit), where the run's evaluation has it
REFIT_COLUMNS = ("support_refit_explained_variance", "support_refit_ev_gain")
# read beside the orthogonality metrics: what else moves them
ORTHOGONALITY_CONTEXT = ("dead_fraction", "alive_mean_max_cosine", "alive_random_mean_max_cosine", "alive_covariance_mean_max_cosine")


@dataclass(frozen=True)
class MatchedSettings:
    early_position: float = 0.1  # the early Pareto figure: the checkpoint nearest this fraction of training
    fraction: float = 0.9  # formation: the share of the change from the end of warm-up to the end
    current_l0_multiple: float = 2.0  # formation at matched current sparsity: where current L0 = this × the target
    formation_min_change: float = 0.05  # a smaller post-warm-up change in probing accuracy or F1 is no change to time
    absorption_min_change: float = 0.01  # likewise for the absorption fraction
    absorption_metric: str = "absorption_fraction"
    absorption_min_k1_f1: float = 0.5  # absorption speed: letters whose best single latent reaches this F1 at the end
    latent_formation: FormationSettings | None = FormationSettings()  # None: skip per-latent formation (reads every checkpoint)
    reference_formation: ReferenceSettings | None = ReferenceSettings()  # None: skip formation against the other seeds' consensus


def _value(run: Run, step: int, column: str) -> float:
    table = run.evaluation
    if column not in table:
        return math.nan
    return float(table.loc[table["step"] == step, column].iloc[0])


LATE_FRACTION = 0.1  # the end of training over which a run's L0 drift says how near its equilibrium it ended


def late_l0_drift(tokens: np.ndarray, l0: np.ndarray, fraction: float = LATE_FRACTION) -> tuple[float, float]:
    """How much L0 still moved over the last `fraction` of training: the final L0 over the L0 at (1 − fraction) of the
    tokens, minus 1 (read linearly in tokens between the checkpoints around that point), and the position of the
    checkpoint the reading starts from (the interpolation spans it to the next). NaN where no checkpoint lies that early."""
    tokens, l0 = np.asarray(tokens, dtype=float), np.asarray(l0, dtype=float)
    total = tokens.max()
    point = (1 - fraction) * total
    before = np.flatnonzero(tokens <= point)
    if len(before) == 0 or not np.isfinite(l0).all():
        return math.nan, math.nan
    at = float(np.interp(point, tokens, l0))
    return float(l0[-1] / at - 1), float(tokens[before[-1]] / total)


def warmup_end_tokens(run: Run) -> float:
    """Tokens at the end of the learning-rate warm-up, or of an L1 warm-up's ramp if longer."""
    training = run.config.training
    total = training.total_steps()
    steps = warmup_steps(total, training)
    if run.config.schedule.spec.coefficient_ramp:
        steps = max(steps, int(run.config.schedule.anneal_fraction * total))
    return float(steps * training.batch_size)


def run_row(run: Run, settings: MatchedSettings) -> dict[str, float | str | int]:
    table = run.evaluation.sort_values("step")
    tokens = table["tokens"].to_numpy(dtype=float)
    total = float(tokens.max())
    final_step, early_step = int(table["step"].iloc[-1]), checkpoint_at_position(run, settings.early_position)
    trajectory = tau_trajectory_summary(run)
    after = tokens[tokens >= warmup_end_tokens(run)]
    start = float(after[0]) if len(after) else total  # the first post-warm-up checkpoint
    row: dict[str, float | str | int] = {
        "run": run.name,
        "arm": run.arm,
        "l0_target": run.l0_target if run.l0_target is not None else math.nan,
        "seed": run.seed,
        "l1_coefficient": run.config.training.l1_coefficient,
        "width": run.config.sae.width,
        "total_tokens": total,
        "early_step": early_step,
        "early_position": float(table.loc[table["step"] == early_step, "tokens"].iloc[0]) / total,
        "formation_start_position": start / total,
        "grid_resolution": float(np.diff(after).max()) / total if len(after) > 1 else math.nan,
        "checkpoints": len(tokens),
        **trajectory,
        "penalty_ramp": trajectory["final_l1_coefficient"] / trajectory["mean_l1_coefficient"],
    }
    columns = {m.column for m in (*PARETO_METRICS, *FORMATION_METRICS, *ORTHOGONALITY_METRICS)} | {"l0", settings.absorption_metric, *ORTHOGONALITY_CONTEXT}
    for column in sorted(columns):
        row[f"final_{column}"] = _value(run, final_step, column)
        row[f"early_{column}"] = _value(run, early_step, column)
    l0 = table["l0"].to_numpy(dtype=float) if "l0" in table else np.full(len(table), np.nan)
    level = settings.current_l0_multiple * run.l0_target if run.l0_target is not None else math.nan
    row["current_l0_level"] = level
    row["l0_drift_late"], row["l0_drift_from_position"] = late_l0_drift(tokens, l0)
    for column in DRIFT_COLUMNS:  # is the dictionary learned or inherited from its initialisation (taulib.metrics.decoder_drift)
        row[f"final_{column}"] = _value(run, final_step, column)
    if "random_sae_top_1_accuracy" in table:  # what the dictionary adds to sparse probing over a random SAE at the same L0
        for when, step in (("final", final_step), ("early", early_step)):
            row[f"{when}_sae_top_1_lift"] = _value(run, step, "sae_top_1_accuracy") - _value(run, step, "random_sae_top_1_accuracy")
    if "support_refit_explained_variance" in table:
        for column in REFIT_COLUMNS:
            row[f"final_{column}"] = _value(run, final_step, column)
    # when the run's current L0 first falls through the level, from L0 alone (the same for every metric)
    row["current_l0_position"] = at_current_l0(tokens, l0, l0, level, start_tokens=start)[0] / total
    for metric in FORMATION_METRICS:
        values = table[metric.column].to_numpy(dtype=float) if metric.column in table else np.full(len(table), np.nan)
        direction = 1 if metric.higher_is_better else -1
        formed = formation_time(tokens, values, start, direction, settings.fraction, settings.formation_min_change)
        row[f"formation_{metric.column}"] = formed / total
        row[f"formation_{metric.column}{CENSORED_SUFFIX}"] = float(formation_censored(tokens, values, start, formed))
        row[f"current_{metric.column}"] = at_current_l0(tokens, l0, values, level, start_tokens=start)[1]
    letters, formed_absorption = formed_letter_absorption(run, settings.absorption_min_k1_f1)
    # absorption evaluated at the final checkpoint only (evaluation.absorption.checkpoints): its level, no speed to read
    final_only = "absorption" in run.config.evaluated_families() and run.config.evaluation.absorption.checkpoints == "final"
    speed_measured = not final_only
    timed = bool(letters) and speed_measured
    settling = formation_time(tokens, formed_absorption, start, -1, settings.fraction, settings.absorption_min_change) if timed else math.nan
    row["absorption_letters_formed"] = len(letters)
    row["absorption_speed_measured"] = speed_measured
    row["absorption_settling"] = settling / total
    row[f"absorption_settling{CENSORED_SUFFIX}"] = float(formation_censored(tokens, formed_absorption, start, settling)) if timed else math.nan
    row["absorption_settles"] = bool(math.isfinite(settling) and settling < total)
    if settings.latent_formation is not None:
        row |= formation_summary(run_formation(run, settings.latent_formation), start)
    if "gt_recovered_fraction" in table:
        for metric in GROUND_TRUTH_METRICS:
            row[f"final_{metric.column}"] = _value(run, final_step, metric.column)
        recovery = read_ground_truth_recovery(run.run_dir)
        shares = np.where(recovery["recovery_tokens"] >= 0, recovery["recovery_tokens"] / total, 1.0)
        row["gt_recovery_median"] = float(np.median(shares))
        row[f"gt_recovery_median{CENSORED_SUFFIX}"] = float(median_is_censored(recovery["recovery_tokens"] < 0))
    return row


def run_table(study: StudyData, settings: MatchedSettings | None = None) -> pd.DataFrame:
    """One row per run of a sweep (every arm × L0 target × seed)."""
    if not study.is_sweep:
        raise StudyDataError(
            f"{study.outputs_root}: not a sweep study (no run has an L0 target); the matched comparison needs `make study` with parameters/_sweep.yaml"
        )
    settings = settings or MatchedSettings()
    study.check_one_code_version()
    rows = [run_row(run, settings) for run in study.runs]
    if settings.latent_formation is not None and settings.reference_formation is not None:
        found = study_reference_formation(study, settings.reference_formation, list(planned_identities(study.outputs_root) or {}))
        for row in rows:
            row |= found.get(str(row["run"]), {})
    return pd.DataFrame(rows)


FORMATION_COLUMNS = (
    "arm",
    "l0_target",
    "seed",
    "formation_start_position",
    "grid_resolution",
    *(f"formation_{metric.column}" for metric in FORMATION_METRICS),
    "current_l0_level",
    "current_l0_position",
    *(f"current_{metric.column}" for metric in FORMATION_METRICS),
    "absorption_letters_formed",
    "absorption_speed_measured",
    "absorption_settling",
    "absorption_settles",
)


def formation_table(study: StudyData, settings: MatchedSettings | None = None) -> pd.DataFrame:
    """One row per run (indexed by run name): the formation measures the report compares, as fractions
    of training — a sweep's or a single study's runs (without an L0 target the current-L0 columns are NaN).
    Per-latent formation is left out unless `settings.latent_formation` asks for it (it reads every checkpoint)."""
    settings = settings or MatchedSettings(latent_formation=None)
    return pd.DataFrame([run_row(run, settings) for run in study.runs]).set_index("run")[list(FORMATION_COLUMNS)]


def lower_bound_partner(study: StudyData, arm_name: str) -> str | None:
    """The arm that differs from `arm_name` only in τ's floor (taulib.analysis.orthogonality.lower_bound_pairs),
    if the study has one. All runs are searched, pairs forming at equal L0 target and seed, so that a
    failed run of either arm does not hide the pair."""
    for low, high in lower_bound_pairs(study):
        if arm_name in (low.arm, high.arm):
            return high.arm if low.arm == arm_name else low.arm
    return None
