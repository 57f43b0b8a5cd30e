"""A paired difference whose interval includes the evaluation text's own sampling error.

Every run's spliced CE-loss score is measured on the same held-out sequences, and its explained
variance on the same held-out tokens. Seeds vary the SAE; the text is one sample, drawn as documents
(a document spans many sequences), so it is redrawn by resampling documents (records made before the
documents were kept resample sequences, and say so). A t interval over seeds sees the first source of error only:
the part of the text's error that all runs share never shows in their spread. So the comparison of
two arms at an L0 target adds the text's variance to the seeds': the variance over seeds of the
paired differences (as the paired t interval has it), plus the variance of their mean when the
documents are redrawn (a bootstrap with the same draw for every run: each replicate recomputes every
run's score from its per-sequence losses and reads each arm and seed at the target off its
frontier). The interval is mean ± t(n − 1) · √(s²/n + v_text). The part of the text's error that
differs between seeds is in s² already and is counted twice: the interval errs wide. (Seeds are not
bootstrapped: three values cannot be resampled into an honest interval.)

The frontier reading (taulib.analysis.frontier) is linear in the runs' values, with weights that
depend on their L0 only, so each run's score is recomputed for all replicates at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from taulib.analysis.frontier import FrontierShape, read_at_l0
from taulib.analysis.intervals import CONFIDENCE, Estimate
from taulib.analysis.study_data import StudyData
from taulib.metrics.core.metric import VarianceParts
from taulib.metrics.downstream.metric import SequenceLosses

N_RESAMPLES = 2000
SEQUENCE_METHOD = "paired t + sequence bootstrap"  # records made before the documents were kept
DOCUMENT_METHOD = "paired t + document bootstrap"


def frontier_weights(l0s: np.ndarray, target: float, shape: FrontierShape = "linear", finite: np.ndarray | None = None) -> np.ndarray | None:
    """The weights w with reading = Σ w_k value_k at `target` (both readings are linear in the values);
    None where the target is unmatched. `finite` marks the runs that have a value: the others are read
    as the frontier reads a missing value (taulib.analysis.frontier.read_at_l0), so the weights give
    exactly the matched table's reading."""
    finite = np.ones(len(l0s), dtype=bool) if finite is None else np.asarray(finite, dtype=bool)
    weights = np.zeros(len(l0s))
    for k in np.flatnonzero(finite):
        unit = np.where(finite, 0.0, np.nan)
        unit[k] = 1.0
        weights[k] = read_at_l0(l0s, unit, target, shape=shape).value
    return None if not finite.any() or not np.all(np.isfinite(weights)) else weights


def _scores(losses: SequenceLosses, draws: np.ndarray) -> np.ndarray:
    """The CE-loss score of one run for every replicate's draw of units (rows of `draws`)."""
    total = {name: getattr(losses, name)[draws].sum(axis=1) for name in ("clean", "zero", "sae", "n_ce")}
    clean, zero, ce = (total[name] / total["n_ce"] for name in ("clean", "zero", "sae"))
    return (zero - ce) / (zero - clean)


def replicated_difference(
    runs: pd.DataFrame,
    points: dict[str, float],
    replicates: dict[str, np.ndarray],
    arm: str,
    other: str,
    target: float,
    on_frontier: bool = True,
    confidence: float = CONFIDENCE,
    shape: FrontierShape = "linear",
    method: str = SEQUENCE_METHOD,
) -> Estimate | None:
    """mean over seeds of (arm − other) at L0 = `target`, with the interval and two-sided p-value of
    the seeds' and the evaluation sample's error together. `points[run]` is a run's value,
    `replicates[run]` the same value under every replicate of the evaluation sample (one shared draw
    for every run). Each arm and seed is read at the target off its frontier (`on_frontier`) or from
    its run at the target. None when a run lacks its replicates or the runs' replicate counts differ
    (the caller falls back to the paired t interval)."""
    involved = runs[runs["arm"].isin([arm, other])]
    if any(name not in replicates or name not in points for name in involved["run"]) or len({len(replicates[name]) for name in involved["run"]}) != 1:
        return None
    readings: dict[tuple[str, int], np.ndarray] = {}  # (arm, seed) → the reading at the target, per replicate
    point: dict[tuple[str, int], float] = {}
    for (name, run_seed), frontier in involved.groupby(["arm", "seed"], sort=False):
        if on_frontier:
            finite = np.array([math.isfinite(points[run]) for run in frontier["run"]])
            weights = frontier_weights(frontier["final_l0"].to_numpy(dtype=float), target, shape, finite)
        else:
            at_target = np.isclose(frontier["l0_target"].to_numpy(dtype=float), target)
            weights = at_target.astype(float) if at_target.sum() == 1 else None
        if weights is None:
            continue
        used = [(w, run) for w, run in zip(weights, frontier["run"], strict=True) if w != 0]
        if not all(math.isfinite(points[run]) for _, run in used):
            continue  # a run without a value is never read across
        readings[(name, int(run_seed))] = sum(w * replicates[run] for w, run in used)
        point[(name, int(run_seed))] = float(sum(w * points[run] for w, run in used))
    seeds = sorted({s for a, s in readings if a == arm} & {s for a, s in readings if a == other})
    if len(seeds) < 2:
        return Estimate(math.nan, math.nan, math.nan, len(seeds), method)
    differences = np.array([point[(arm, s)] - point[(other, s)] for s in seeds])
    sample_variance = float(np.nanvar(np.mean([readings[(arm, s)] - readings[(other, s)] for s in seeds], axis=0), ddof=1))
    n, value = len(seeds), float(differences.mean())
    standard_error = math.sqrt(float(differences.var(ddof=1)) / n + sample_variance)
    if standard_error == 0:  # nothing varies: untestable, not infinitely significant
        return Estimate(value, value, value, n, method)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * standard_error
    p_value = float(2 * stats.t.sf(abs(value) / standard_error, n - 1))
    return Estimate(value, value - half, value + half, n, method, p_value)


def _text_difference(
    runs: pd.DataFrame,
    arm: str,
    other: str,
    target: float,
    units: dict[str, Any],
    point: Callable[[str], float],
    replicate: Callable[[Any, np.ndarray], np.ndarray],
    signature: Callable[[Any], tuple],
    method: str,
    n_resamples: int,
    confidence: float,
    seed: int,
    shape: FrontierShape,
) -> Estimate | None:
    """The comparison with the text redrawn: one draw of `units` (each run's resampling units, which must agree by
    `signature`: the same text) shared by every run; `point(run)` its value, `replicate(units, draws)` its value per
    replicate. None when a run lacks its units or the runs measured different text."""
    involved = runs[runs["arm"].isin([arm, other])]
    if any(name not in units for name in involved["run"]) or len({signature(units[name]) for name in involved["run"]}) != 1:
        return None
    n_units = len(units[involved["run"].iloc[0]])
    draws = np.random.default_rng(seed).integers(0, n_units, (n_resamples, n_units))
    points = {run: point(run) for run in involved["run"]}
    replicates = {run: replicate(units[run], draws) for run in involved["run"]}
    return replicated_difference(runs, points, replicates, arm, other, target, confidence=confidence, shape=shape, method=method)


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
    final_l0); `losses`: each run's final losses (taulib.metrics.downstream.metric.SequenceLosses). Documents are
    resampled where every run's losses know them, else sequences. None when a run lacks its losses or the runs
    scored different text (then the caller falls back to the paired t interval)."""
    names = runs.loc[runs["arm"].isin([arm, other]), "run"]
    found = {name: losses[name] for name in names if name in losses}
    by_documents = bool(found) and all(found[name].documents_known for name in found)
    units = {name: value.by_document() if by_documents else _as_sequences(value) for name, value in found.items()}
    return _text_difference(
        runs, arm, other, target, units, lambda run: float(losses[run].metrics().ce_loss_score), _scores, _unit_signature,
        DOCUMENT_METHOD if by_documents else SEQUENCE_METHOD, n_resamples, confidence, seed, shape,
    )


def explained_variance_difference(
    runs: pd.DataFrame,
    parts: dict[str, VarianceParts],
    arm: str,
    other: str,
    target: float,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    shape: FrontierShape = "linear",
) -> Estimate | None:
    """As `ce_score_difference`, for the final explained variance: the held-out tokens' documents resampled
    (`parts`: each run's taulib.metrics.core.metric.VarianceParts). None when a run lacks them or the runs
    evaluated different tokens."""
    return _text_difference(
        runs, arm, other, target, parts, lambda run: parts[run].explained_variance(), lambda units, draws: units.replicates(draws),
        lambda units: (tuple(units.document.tolist()), tuple(units.tokens.tolist())), DOCUMENT_METHOD, n_resamples, confidence, seed, shape,
    )


def _as_sequences(losses: SequenceLosses) -> SequenceLosses:
    """The losses with their units unlabelled: each resampled on its own (a sequence, before documents were kept)."""
    return SequenceLosses(losses.clean, losses.zero, losses.sae, losses.kl_zero, losses.kl_sae, losses.n_ce, losses.n_kl)


def _unit_signature(units: SequenceLosses) -> tuple:
    """What must agree for one draw to mean the same text for every run: the units and the positions each scores."""
    documents = () if units.document is None else tuple(units.document.tolist())
    return len(units), documents, tuple(units.n_ce.tolist())


def final_sequence_losses(study: StudyData) -> dict[str, SequenceLosses]:
    """Each run's losses at its final checkpoint (per document part of a sequence, or per sequence in records
    made before documents were kept), where recorded."""
    found = {}
    for run in study.runs:
        try:
            record = run.details(max(run.steps)).get("ce_per_sequence")
        except FileNotFoundError:
            continue
        if record:
            found[run.name] = SequenceLosses.from_lists(record)
    return found


def final_variance_parts(study: StudyData) -> dict[str, VarianceParts]:
    """Each run's explained-variance sums per held-out document at its final checkpoint, where recorded."""
    found = {}
    for run in study.runs:
        try:
            record = run.details(max(run.steps)).get("ev_per_document")
        except FileNotFoundError:
            continue
        if record:
            found[run.name] = VarianceParts.from_lists(record)
    return found
