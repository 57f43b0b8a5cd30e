"""The probing endpoints' intervals with the probing test set's own sampling error.

Every run's sparse probes are scored on the same held-out probing texts (per binary task, a fixed
test set). Seeds vary the SAE; the test texts are one sample. As for the CE-loss score
(taulib.analysis.sequence_bootstrap), a comparison adds the test set's variance to the seeds': the
test examples of every binary task are redrawn (the same draw for every run and checkpoint), each
replicate recomputes every checkpoint's top-1 accuracy (mean over a task's binary tasks, then over
tasks, as the metric) and from that curve the endpoint itself — when the accuracy formed, and its
value at the matched current L0 — exactly as the run table computes it (taulib.analysis.matched). The final lift over
a random SAE at the same L0 is resampled on the same test examples for both: the baseline's per-example correctness is
recorded with it (taulib.metrics.probing_baseline).
"""

from __future__ import annotations

import math

import numpy as np

from taulib.analysis.formation import at_current_l0, formation_time
from taulib.analysis.matched import MatchedSettings, warmup_end_tokens
from taulib.analysis.sequence_bootstrap import N_RESAMPLES
from taulib.analysis.study_data import Run, StudyData

PROBE_METHOD = "paired t + probing test-set bootstrap"
# the run-table columns whose intervals include the probing test set's error
PROBE_ERROR_COLUMNS = ("formation_sae_top_1_accuracy", "current_sae_top_1_accuracy", "final_sae_top_1_lift")


def _correct_per_checkpoint(run: Run) -> list[dict[tuple[str, str], np.ndarray]] | None:
    """Per checkpoint (step order): each binary task's per-test-example correctness of the top-1
    probe; None when a checkpoint's record does not hold it (evaluated before it was recorded)."""
    curves = []
    for step in sorted(run.steps):
        try:
            rows = run.details(step).get("probing_tasks") or []
        except FileNotFoundError:
            return None
        if not rows or any("top_1_correct" not in row for row in rows):
            return None
        curves.append({(row["task"], row["positive_class"]): np.asarray(row["top_1_correct"], dtype=float) for row in rows})
    return curves


def _random_correct_at_end(run: Run) -> dict[tuple[str, str], np.ndarray] | None:
    """The final checkpoint's random-SAE baseline at its L0, per binary task and test example (a fraction between the
    grid SAEs' 0/1 answers: taulib.metrics.probing_baseline.metric.baseline_correct_at); None where not recorded."""
    try:
        recorded = run.details(max(run.steps)).get("random_top_1_correct")
    except FileNotFoundError:
        return None
    if not recorded:
        return None
    return {tuple(key.split("|", 1)): np.asarray(values, dtype=float) for key, values in recorded.items()}  # type: ignore[misc]


def resample_test_sets(sizes: dict[tuple[str, str], int], n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[tuple[str, str], np.ndarray]:
    """One resample of every binary task's test examples per replicate: (replicates × test examples) indices."""
    rng = np.random.default_rng(seed)
    return {key: rng.integers(0, sizes[key], (n_resamples, sizes[key])) for key in sorted(sizes)}


def accuracy_replicates(correct: dict[tuple[str, str], np.ndarray], draws: dict[tuple[str, str], np.ndarray]) -> np.ndarray:
    """Top-1 accuracy (mean over a task's binary tasks, then over tasks) under every replicate."""
    by_task: dict[str, list[np.ndarray]] = {}
    for key, hits in correct.items():
        by_task.setdefault(key[0], []).append(hits[draws[key]].mean(axis=1))
    return np.mean([np.mean(values, axis=0) for values in by_task.values()], axis=0)


def run_probe_replicates(run: Run, settings: MatchedSettings, draws: dict[tuple[str, str], np.ndarray]) -> dict[str, np.ndarray] | None:
    """The run's probing endpoints (PROBE_ERROR_COLUMNS) under every replicate of the test set."""
    curves = _correct_per_checkpoint(run)
    if curves is None or any({key: len(hits) for key, hits in curve.items()} != {key: d.shape[1] for key, d in draws.items()} for curve in curves):
        return None  # not recorded, or scored on other test sets than the draws
    table = run.evaluation.sort_values("step")
    tokens = table["tokens"].to_numpy(dtype=float)
    total = float(tokens.max())
    after = tokens[tokens >= warmup_end_tokens(run)]
    start = float(after[0]) if len(after) else total
    accuracy = np.stack([accuracy_replicates(curve, draws) for curve in curves], axis=1)  # replicates × checkpoints
    l0 = table["l0"].to_numpy(dtype=float) if "l0" in table else np.full(len(table), np.nan)
    level = settings.current_l0_multiple * run.l0_target if run.l0_target is not None else math.nan
    found = {
        "formation_sae_top_1_accuracy": np.array([formation_time(tokens, curve, start, 1, settings.fraction, settings.formation_min_change) for curve in accuracy])
        / total,
        "current_sae_top_1_accuracy": np.array([at_current_l0(tokens, l0, curve, level, start_tokens=start)[1] for curve in accuracy]),
    }
    # the lift over a random SAE at the same L0, on the same resampled test examples (paired: both are scored on them)
    baseline = _random_correct_at_end(run)
    if baseline is not None and set(baseline) == set(draws) and all(len(baseline[key]) == draws[key].shape[1] for key in draws):
        found["final_sae_top_1_lift"] = accuracy[:, -1] - accuracy_replicates(baseline, draws)
    return found


def probe_replicates(study: StudyData, settings: MatchedSettings | None = None, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Every run's probing endpoints under one shared set of test-set replicates, by run name; runs
    evaluated without per-example records (or on other test sets) are left out."""
    settings = settings or MatchedSettings(latent_formation=None)
    sizes: dict[tuple[str, str], int] | None = None
    for run in study.runs:
        curves = _correct_per_checkpoint(run)
        if curves:
            sizes = {key: len(hits) for key, hits in curves[-1].items()}
            break
    if sizes is None:
        return {}
    draws = resample_test_sets(sizes, n_resamples, seed)
    found = {}
    for run in study.runs:
        replicates = run_probe_replicates(run, settings, draws)
        if replicates is not None:
            found[run.name] = replicates
    return found
