"""A paired difference whose interval includes the evaluation text's own sampling error.

Every run's spliced CE-loss score is measured on the same held-out sequences. Seeds vary the SAE;
the sequences are one sample of text. A t interval over seeds sees the first source of error only:
the part of the text's error that all runs share never shows in their spread. So the comparison of
two arms at an L0 target adds the text's variance to the seeds': the variance over seeds of the
paired differences (as the paired t interval has it), plus the variance of their mean when the
sequences are redrawn (a bootstrap with the same draw for every run: each replicate recomputes every
run's score from its per-sequence losses and reads each arm and seed at the target off its
frontier). The interval is mean ± t(n − 1) · √(s²/n + v_text). The part of the text's error that
differs between seeds is in s² already and is counted twice: the interval errs wide. (Seeds are not
bootstrapped: three values cannot be resampled into an honest interval.)

The frontier reading (taulib.analysis.frontier) is linear in the runs' values, with weights that
depend on their L0 only, so each run's score is recomputed for all replicates at once.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from taulib.analysis.frontier import FrontierShape, read_at_l0
from taulib.analysis.intervals import CONFIDENCE, Estimate
from taulib.analysis.study_data import StudyData
from taulib.metrics.downstream import SequenceLosses

N_RESAMPLES = 2000
SEQUENCE_METHOD = "paired t + sequence bootstrap"


def frontier_weights(l0s: np.ndarray, target: float, shape: FrontierShape = "linear") -> np.ndarray | None:
    """The weights w with reading = Σ w_k value_k at `target` (both readings are linear in the values);
    None where the target is unmatched."""
    basis = np.eye(len(l0s))
    weights = np.array([read_at_l0(l0s, basis[k], target, shape=shape).value for k in range(len(l0s))])
    return None if not np.all(np.isfinite(weights)) else weights


def _scores(losses: SequenceLosses, draws: np.ndarray) -> np.ndarray:
    """The CE-loss score of one run for every replicate's draw of sequences (rows of `draws`)."""
    total = {name: getattr(losses, name)[draws].sum(axis=1) for name in ("clean", "zero", "sae", "n_ce")}
    clean, zero, ce = (total[name] / total["n_ce"] for name in ("clean", "zero", "sae"))
    return (zero - ce) / (zero - clean)


def ce_score_difference(
    runs: pd.DataFrame,
    losses: dict[str, SequenceLosses],
    arm: str,
    other: str,
    target: float,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    shape: FrontierShape = "linear",
) -> Estimate | None:
    """mean over seeds of (arm − other) CE-loss score at L0 = `target`, with the interval and
    two-sided p-value of seeds' and text's error together. `runs`: the run table (run, arm, seed, l0_target,
    final_l0); `losses`: each run's final per-sequence losses. None when a run lacks its losses or the
    runs scored different sequences (then the caller falls back to the paired t interval)."""
    involved = runs[runs["arm"].isin([arm, other])]
    if any(name not in losses for name in involved["run"]) or len({len(losses[name]) for name in involved["run"]}) != 1:
        return None
    n_sequences = len(losses[involved["run"].iloc[0]])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_sequences, (n_resamples, n_sequences))
    readings: dict[tuple[str, int], np.ndarray] = {}  # (arm, seed) → the reading at the target, per replicate
    point: dict[tuple[str, int], float] = {}
    for (name, run_seed), frontier in involved.groupby(["arm", "seed"], sort=False):
        weights = frontier_weights(frontier["final_l0"].to_numpy(dtype=float), target, shape)
        if weights is None:
            continue
        runs_losses = [losses[run] for run in frontier["run"]]
        readings[(name, int(run_seed))] = sum(w * _scores(run_losses, draws) for w, run_losses in zip(weights, runs_losses, strict=True))
        point[(name, int(run_seed))] = float(sum(w * run_losses.metrics().ce_loss_score for w, run_losses in zip(weights, runs_losses, strict=True)))
    seeds = sorted({s for a, s in readings if a == arm} & {s for a, s in readings if a == other})
    method = SEQUENCE_METHOD
    if len(seeds) < 2:
        return Estimate(math.nan, math.nan, math.nan, len(seeds), method)
    differences = np.array([point[(arm, s)] - point[(other, s)] for s in seeds])
    text_variance = float(np.var(np.mean([readings[(arm, s)] - readings[(other, s)] for s in seeds], axis=0), ddof=1))
    n, value = len(seeds), float(differences.mean())
    standard_error = math.sqrt(float(differences.var(ddof=1)) / n + text_variance)
    if standard_error == 0:  # nothing varies: untestable, not infinitely significant
        return Estimate(value, value, value, n, method)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * standard_error
    p_value = float(2 * stats.t.sf(abs(value) / standard_error, n - 1))
    return Estimate(value, value - half, value + half, n, method, p_value)


def final_sequence_losses(study: StudyData) -> dict[str, SequenceLosses]:
    """Each run's per-sequence losses at its final checkpoint, where recorded."""
    found = {}
    for arm in study.arms:
        try:
            record = arm.details(max(arm.steps)).get("ce_per_sequence")
        except FileNotFoundError:
            continue
        if record:
            found[arm.name] = SequenceLosses.from_lists(record)
    return found
