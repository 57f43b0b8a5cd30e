"""Orthogonality over training, the lower-bound (τ floor) ablation, and τ trajectory against outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd

from taulib.analysis.study_data import Run, StudyData
from taulib.metrics.catalogue import label

# labelled as the metric families declare their columns (taulib/metrics/<family>/settings.py)
OUTCOME_METRICS: dict[str, str] = {
    column: label(column)
    for column in ("l0", "explained_variance", "ce_loss_score", "mean_max_cosine", "near_duplicate_latent_fraction", "absorption_fraction", "sae_top_1_accuracy")
}


def lower_bound_pairs(study: StudyData) -> list[tuple[Run, Run]]:
    """Pairs of arms that differ only in τ's floor (same kind and start, e.g. cosine 0.3→0.05 vs 0.3→0.1),
    lower floor first. Everything else about the runs (λ, width, tokens, seed…) must match too; in
    a sweep, λ may differ (it was calibrated) but the L0 target must match."""

    def without_floor(run: Run) -> str:
        update = {"run_name": "-", "description": "", "sweep": None, "schedule": run.config.schedule.model_copy(update={"tau_final": 0.0})}
        if run.l0_target is not None:  # sweep runs at one L0 target: λ was calibrated to match sparsity, it differs by design
            update["training"] = run.config.training.model_copy(update={"l1_coefficient": 0.0})
        config = run.config.model_copy(update=update)
        return config.model_dump_json(exclude={"evaluation"}) + f"|{run.l0_target}"

    pairs = []
    annealed = [run for run in study.runs if run.config.schedule.spec.annealed]
    keys = [without_floor(arm) for arm in annealed]  # once per run: a whole sweep is searched
    for i, first in enumerate(annealed):
        for j in range(i + 1, len(annealed)):
            second = annealed[j]
            if keys[i] == keys[j] and first.config.schedule.tau_final != second.config.schedule.tau_final:
                low, high = sorted((first, second), key=lambda arm: arm.config.schedule.tau_final)
                pairs.append((low, high))
    return pairs


def tau_trajectory_summary(run: Run) -> dict[str, float]:
    """Numbers that place an arm's τ(t) on one axis: start, floor, and what the SAE felt on average.

    `mean_l1_coefficient` is λ/τ averaged over the logged steps (the total penalty dose); the
    late mean covers the last 20% of training, where the final sparsity is set (an arm that holds τ_final over that
    stretch, as the default annealed arms do, has a late mean equal to its final coefficient).
    """
    log = run.training.sort_values("step")
    coefficient = log["l1_coefficient_effective"].to_numpy(dtype=float)
    late = log["step"].to_numpy() >= 0.8 * log["step"].max()
    return {
        "tau_initial": float(log["tau"].iloc[0]),
        "tau_final": float(log["tau"].iloc[-1]),
        "mean_tau": float(log["tau"].mean()),
        "final_l1_coefficient": float(coefficient[-1]),
        "mean_l1_coefficient": float(coefficient.mean()),
        "late_mean_l1_coefficient": float(coefficient[late].mean()),
    }


def trajectory_vs_outcome(study: StudyData, outcomes: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per arm: its τ-trajectory summary beside its final evaluated metrics."""
    outcomes = OUTCOME_METRICS if outcomes is None else outcomes
    final = study.final()
    rows = []
    for run in study.runs:
        row = {"arm": run.name, "schedule": run.schedule_label, **tau_trajectory_summary(run)}
        row |= {column: float(final.loc[run.name, column]) for column in outcomes if column in final}
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def near_duplicates_over_training(study: StudyData) -> pd.DataFrame:
    """Long table, one row per (arm, checkpoint): near-duplicate pair and latent counts (cos > the
    evaluation's threshold), the same count for random unit vectors, and the mean max cosine."""
    frames = []
    for run in study.runs:
        table, width = run.evaluation, run.config.sae.width
        n_pairs = width * (width - 1) // 2
        frames.append(
            pd.DataFrame(
                {
                    "arm": run.name,
                    "step": table["step"],
                    "tokens": table["tokens"],
                    # the records hold fractions; counts are exact multiples of them
                    "near_duplicate_pairs": (table["near_duplicate_pair_fraction"] * n_pairs).round().astype(int),
                    "near_duplicate_latents": (table["near_duplicate_latent_fraction"] * width).round().astype(int),
                    "random_near_duplicate_pairs": (table["random_near_duplicate_pair_fraction"] * n_pairs).round().astype(int),
                    "mean_max_cosine": table["mean_max_cosine"],
                    "random_mean_max_cosine": table["random_mean_max_cosine"],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def checkpoint_at_position(run: Run, position: float) -> int:
    """The arm's checkpoint step nearest a training progress in [0, 1] (arms of different lengths share a slider)."""
    steps = np.asarray(run.steps, dtype=float)
    return int(steps[np.argmin(np.abs(steps / steps.max() - position))])
