"""The study's written verdict, generated from a sweep's numbers.

How a verdict is reached (each step guards against a way a difference could be produced by
something other than the schedule):

1. **Matched sparsity.** Every between-arm comparison at an L0 target reads each arm and seed's
   metric at exactly that L0, off the seed's frontier through its runs (taulib.analysis.frontier);
   cells the frontier cannot reach are shown as unmatched and left out.
2. **Paired over seeds.** Arms share the initialisation and batch order of a seed, so differences
   are taken seed by seed (paired t interval and p-value).
3. **Corrected.** Holm's adjustment within each question: the primary endpoint's comparisons (arms ×
   targets) as one family, the secondary endpoints' as another, so the primary verdict is not
   diluted; a direction is claimed only where the adjusted p-value is below 0.05, else the
   difference is unresolved, whatever its point estimate. Error is controlled per question (said
   in the report). The floor partner (cosine 0.3 → 0.1) is compared under the lower bound's
   question only, so no contrast is tested in two families. A direction that the frontier read as
   a parabola does not reproduce is unresolved. A comparison with a seed missing its
   value, or with no spread between seeds, is not tested ("no data"): the remaining seeds would be
   selected on the outcome, and a zero variance is no evidence.
4. **One primary endpoint per question** (`ENDPOINTS`), named in the report; the rest are secondary.
5. **Constant τ is plain L1 with λ/τ**: calibrated to the same L0 it must reproduce the plain-L1
   arm, so it is reported as an equivalence check and left out of the tallies and correlations.
6. **τ trajectory** correlations take one point per distinct schedule (the mean over its seeds),
   not one per run, with an exact permutation p-value.
7. **Out of range** metrics are said to be, and draw no verdict (absorption below the width at which
   SAE Bench's absorption is meaningful).

Every sentence is a `Claim`: its text quotes only numbers held in `Claim.numbers`.
`render_markdown` lays the claims and tables out as outputs/REPORT.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taulib.analysis.frontier import MATCH_TOLERANCE, FrontierShape, matched_table
from taulib.analysis.intervals import Estimate, paired_difference, t_interval
from taulib.analysis.latent_formation import seeds_needed
from taulib.analysis.matched import CENSORED_SUFFIX, ORTHOGONALITY_CONTEXT, MatchedSettings
from taulib.analysis.probe_bootstrap import PROBE_ERROR_COLUMNS, PROBE_METHOD
from taulib.analysis.sequence_bootstrap import DOCUMENT_METHOD, SEQUENCE_METHOD, ce_score_difference, explained_variance_difference, replicated_difference
from taulib.analysis.statistics import ALPHA, equivalence, holm, rank_correlation
from taulib.analysis.study_data import Run, StudyData, planned_aa_controls, planned_identities
from taulib.metrics.core.metric import VarianceParts
from taulib.metrics.downstream.metric import SequenceLosses
from taulib.provenance import git_commit
from taulib.schedules import SCHEDULE_KIND_SPECS

QUESTIONS = {
    "reconstruction": "Reconstruction at matched sparsity",
    "formation": "Early concept formation",
    "orthogonality": "Final feature orthogonality",
    "absorption": "Absorption-reduction speed",
    "trajectory": "τ trajectory vs performance",
    "lower_bound": "The lower bound's impact",
    "ground_truth": "Ground-truth disentanglement (synthetic model, known dictionary)",
}
# the ground-truth track's outputs beside the language model's (`make study` runs both; taulib.activations.synthetic)
GROUND_TRUTH_FOLDER = "synthetic"
# SAE Bench's absorption is meaningful on wide SAEs of large models (its authors: ~16k latents and up)
ABSORPTION_MIN_WIDTH = 16_384
# constant τ against plain L1: "equivalent" when the paired 90% interval of the explained-variance
# difference lies within ± this: what a 7–10% L0 offset alone moves explained variance on this study's
# frontier, inside the calibration's ±15% tolerance (docs/method.md says how it was read)
EQUIVALENCE_MARGIN = 0.005
TRAJECTORY_AXIS = "penalty_ramp"  # final λ/τ over its mean: how back-loaded the penalty was


@dataclass(frozen=True)
class Endpoint:
    """A run-table column compared between arms for one question."""

    question: str
    column: str
    label: str
    higher_is_better: bool
    primary: bool = False
    on_frontier: bool = True  # read at the exact L0 target off the frontier; False: matched by construction
    # a time to an event, which a run may not reach (or reach before it is measured): its censoring flag,
    # `<column>_censored` (taulib.analysis.matched), must be in the run table beside it, and a comparison
    # that any censored run weighs in is not tested (`_censored_readings`)
    time: bool = False


def endpoints(settings: MatchedSettings) -> list[Endpoint]:
    """Every compared endpoint, the primary one of each question first: the one list of what is tested."""
    fraction = f"{settings.fraction:.0%}"
    current = f"at current L0 = {settings.current_l0_multiple:g} × target"
    return [
        Endpoint("reconstruction", "final_explained_variance", "final explained variance", True, primary=True),
        Endpoint("reconstruction", "final_ce_loss_score", "final CE-loss score", True),
        # the dictionary without the shrinkage: an EV difference this one does not share was L1's shrinkage (taulib.metrics.support_refit)
        Endpoint("reconstruction", "final_support_refit_explained_variance", "final explained variance, active latents' coefficients refitted by least squares", True),
        Endpoint("formation", "formation_sae_top_1_accuracy", f"share of training to {fraction} of the post-warm-up rise of sparse-probing top-1 accuracy", False, primary=True, time=True),
        Endpoint("formation", "formation_k1_f1", f"share of training to {fraction} of the post-warm-up rise of first-letter k=1 F1", False, time=True),
        Endpoint("formation", "current_sae_top_1_accuracy", f"sparse-probing top-1 accuracy {current}", True, on_frontier=False),
        Endpoint("formation", "current_k1_f1", f"first-letter k=1 F1 {current}", True, on_frontier=False),
        Endpoint("formation", "latent_formation_median", "median share of training at which a final latent's decoder direction formed", False, time=True),
        Endpoint("formation", "latents_formed_by_25%", "share of final latents formed by 25% of training", True),
        Endpoint("formation", "latents_never_formed", "share of final latents not formed before the end", False),
        # what the dictionary adds to probing: over a random SAE of the same width at the same L0 (taulib.metrics.probing_baseline)
        Endpoint("formation", "final_sae_top_1_lift", "final sparse-probing top-1 accuracy over a random SAE's of the same width at the same L0", True),
        # against directions the run did not make: the other seeds' shared final latents (taulib.analysis.reference_formation)
        Endpoint("formation", "reference_formation_median", "median share of training at which a consensus direction of the other seeds formed in the run", False, time=True),
        Endpoint("formation", "reference_held_at_end", "share of the other seeds' consensus directions the run's final dictionary holds", True),
        Endpoint("orthogonality", "final_alive_excess_mean_max_cosine", "final mean max decoder cosine of alive latents over its random baseline", False, primary=True),
        Endpoint("orthogonality", "final_alive_near_duplicate_latent_fraction", "final near-duplicate alive latents (fraction)", False),
        Endpoint("orthogonality", "final_mean_max_cosine", "final mean max decoder cosine (all latents, dead included)", False),
        Endpoint("absorption", "absorption_settling", f"share of training to {fraction} of the post-warm-up fall of absorption (letters with a letter latent)", False, primary=True, time=True),
        Endpoint("lower_bound", "final_explained_variance", "final explained variance", True, primary=True),
        Endpoint("lower_bound", "final_ce_loss_score", "final CE-loss score", True),
        Endpoint("lower_bound", "final_alive_excess_mean_max_cosine", "final mean max decoder cosine of alive latents over its random baseline", False),
        Endpoint("lower_bound", "formation_sae_top_1_accuracy", f"share of training to {fraction} of the post-warm-up rise of sparse-probing top-1 accuracy", False, time=True),
        # the synthetic model only (taulib.metrics.ground_truth.metric): absent from a language model's run table
        Endpoint("ground_truth", "final_gt_recovered_fraction", "final share of true features recovered (best decoder cosine > 0.9)", True, primary=True),
        Endpoint("ground_truth", "final_gt_mean_max_cosine", "final mean over true features of the best decoder cosine", True),
        Endpoint("ground_truth", "gt_recovery_median", "median share of training to a true feature's recovery step (never recovered: 1)", False, time=True),
    ]


# the outcomes the τ trajectory is correlated with, the primary one first
TRAJECTORY_OUTCOMES = (
    ("final_explained_variance", "final explained variance"),
    ("final_ce_loss_score", "final CE-loss score"),
    ("final_alive_excess_mean_max_cosine", "final alive-latent decoder cosine over baseline"),
    ("final_sae_top_1_accuracy", "final sparse-probing top-1 accuracy"),
)
# shown beside the matched values (same frontier reading), never tested
CONTEXT_COLUMNS = ("final_l0", *(f"final_{c}" for c in ORTHOGONALITY_CONTEXT), "absorption_letters_formed", TRAJECTORY_AXIS)


@dataclass(frozen=True)
class Claim:
    question: str  # a key of QUESTIONS
    text: str
    numbers: dict[str, float]  # every number the text quotes, by name
    verdict: str  # better | worse | unresolved | no data | out of range (correlations: positive | negative; equivalence: equivalent | not shown equivalent)
    kind: str = "comparison"  # comparison | tally | correlation | equivalence | primary
    other: str | None = None  # the arm a comparison is against
    column: str = ""
    primary: bool = False


@dataclass
class Report:
    reference: str
    headline: str | None  # the arm the detailed sentences compare against (the plain-L1 baseline)
    names: dict[str, str]  # arm → readable name
    targets: list[float]
    seeds: list[int]
    claims: list[Claim] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # "question:column" → differences table (markdown-ready)
    matched: pd.DataFrame = field(default_factory=pd.DataFrame)  # per arm × seed × target: the frontier readings
    out_of_range: list[str] = field(default_factory=list)
    primary: dict[str, str] = field(default_factory=dict)  # question → its primary endpoint's label
    # the declared primary contrasts: the reference against these arms (plain L1 and the L1 warm-up) on each question's
    # primary endpoint carry its verdict, in a Holm family of their own; every other comparison is secondary
    primary_contrasts: list[str] = field(default_factory=list)
    ground_truth_source: str | None = None  # where the ground-truth verdict came from, when another study
    passages: pd.DataFrame = field(default_factory=pd.DataFrame)  # when each arm's current L0 passed the formation level
    regime: pd.DataFrame = field(default_factory=pd.DataFrame)  # how far each run got: late L0 drift, decoder cosine to init
    orthogonality_context: pd.DataFrame = field(default_factory=pd.DataFrame)  # dead fraction and baselines at matched L0
    frontier_sensitivity: str = ""  # whether reading the frontier as a parabola instead of a line changes a verdict

    def by_question(self, question: str) -> list[Claim]:
        return [claim for claim in self.claims if claim.question == question]


def _numbers(prefix: str, estimate: Estimate) -> dict[str, float]:
    return {prefix: estimate.value, f"{prefix}_low": estimate.low, f"{prefix}_high": estimate.high}


def _p(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2g}"


def constant_coefficient_arms(table: pd.DataFrame, kinds: dict[str, str], headline: str | None) -> list[str]:
    """Arms other than the plain-L1 one whose coefficient never moves (constant τ): equivalence checks."""
    constant = {name for name, spec in SCHEDULE_KIND_SPECS.items() if spec.constant_coefficient}
    return [arm for arm in dict.fromkeys(table["arm"]) if kinds.get(arm) in constant and arm != headline]


def identities_in_table(table: pd.DataFrame, kinds: dict[str, str], headline: str, planned: dict[str, str] | None = None) -> list[str]:
    """The headline arm's identity arms present in `table`. Which arms are identities is decided once, by the sweep
    (taulib.sweep.spec.identity_arms), and read here from its plan (`planned`, the identities of
    outputs/sweeps/plan.json): a constant arm that merely lost runs is not one. A study made before plan.json
    recorded them has no plan: then, constant-coefficient arms with fewer runs than the headline arm."""
    present = set(table["arm"])
    if planned is not None:
        return [arm for arm, twin in planned.items() if twin == headline and arm in present]
    runs = table["arm"].value_counts()
    return [arm for arm in constant_coefficient_arms(table, kinds, headline) if runs[arm] < runs.get(headline, 0)]


PENALTY_COLUMN_MARK = "l1_coefficient"  # columns holding λ/τ (taulib.analysis.orthogonality.tau_trajectory_summary)
PENALTY_REL_TOLERANCE = 1e-12  # a few double-precision ulps: (λ·τ)/τ against λ


def _identity_claim(table: pd.DataFrame, arm: str, headline: str, names: dict[str, str]) -> Claim:
    """Each run of an identity arm against the headline run of the same L0 target and seed: the same loss
    (λ/τ equal), so every final and early metric must be the same number; the largest difference otherwise.

    The penalty λ/τ itself is the one number computed differently on the two sides (λ·τ rounded, then
    divided by τ, against λ): it is compared up to double-precision rounding, which the float32
    training never sees."""
    columns = sorted(c for c in table.columns if c.startswith(("final_", "early_")) and pd.api.types.is_numeric_dtype(table[c]))
    compared, differences, texts = 0, {}, []
    for _, run in table[table["arm"] == arm].iterrows():
        twin = table[(table["arm"] == headline) & np.isclose(table["l0_target"], run["l0_target"]) & (table["seed"] == run["seed"])]
        if len(twin) != 1:
            continue
        compared += 1
        other = twin.iloc[0]
        for column in columns:
            a, b = float(run[column]), float(other[column])
            same = a == b or (math.isnan(a) and math.isnan(b)) or (PENALTY_COLUMN_MARK in column and math.isclose(a, b, rel_tol=PENALTY_REL_TOLERANCE))
            if not same:
                differences[column] = max(differences.get(column, 0.0), abs(a - b))
        texts.append(f"L0 target {run['l0_target']:g}, seed {int(run['seed'])}: λ = {run['l1_coefficient']:.6g} against {other['l1_coefficient']:.6g}")
    if compared == 0:
        verdict, outcome = "no data", "not testable (no plain-L1 run of the same target and seed)"
    elif not differences:
        verdict, outcome = "equivalent", f"identical in all {len(columns)} final and early metrics"
    else:
        verdict = "not shown equivalent"
        largest = ", ".join(f"{column} by {value:.2g}" for column, value in sorted(differences.items(), key=lambda item: -item[1])[:3])
        outcome = f"not identical: {len(differences)} of {len(columns)} metrics differ ({largest})"
    text = (
        f"{names[arm]} against {names[headline]} (the same penalty λ/τ, one identity run instead of a calibrated sweep; "
        f"{'; '.join(texts) or 'no pair'}): {outcome}."
    )
    numbers = {"runs": compared, "metrics": len(columns), "differing": len(differences), "max_difference_final_explained_variance": differences.get("final_explained_variance", 0.0)}
    return Claim("reconstruction", text, numbers, verdict, "equivalence", headline, "final_explained_variance")


class _Values:
    """Per arm, target and endpoint: the values over the study's seeds, aligned by seed (NaN where missing)."""

    def __init__(self, table: pd.DataFrame, matched: pd.DataFrame, seeds: list[int]) -> None:
        self.table, self.matched, self.seeds = table, matched, seeds

    def __call__(self, arm: str, target: float, endpoint: Endpoint | str) -> np.ndarray:
        column, on_frontier = (endpoint.column, endpoint.on_frontier) if isinstance(endpoint, Endpoint) else (endpoint, True)
        source = self.matched if on_frontier else self.table
        cell = source[(source["arm"] == arm) & np.isclose(source["l0_target"], target)]
        if cell["seed"].duplicated().any():
            raise ValueError(f"arm {arm!r} has two rows for one seed at L0 = {target:g}: each seed must be one run per target")
        by_seed = dict(zip(cell["seed"].astype(int), cell[column].astype(float), strict=True)) if column in cell else {}
        return np.array([by_seed.get(seed, math.nan) for seed in self.seeds], dtype=float)


# endpoints measured on the held-out text: their intervals include the text's sampling error where recorded
CE_TEXT_COLUMN, EV_TEXT_COLUMN = "final_ce_loss_score", "final_explained_variance"


def _comparison(
    values: _Values,
    endpoint: Endpoint,
    reference: str,
    other: str,
    target: float,
    sequence_losses: dict[str, SequenceLosses] | None = None,
    shape: FrontierShape = "linear",
    probing_replicates: dict[str, dict[str, np.ndarray]] | None = None,
    variance_parts: dict[str, VarianceParts] | None = None,
) -> dict:
    ours, theirs = values(reference, target, endpoint), values(other, target, endpoint)
    gap = None
    if sequence_losses and endpoint.column == CE_TEXT_COLUMN:
        gap = ce_score_difference(values.table, sequence_losses, reference, other, target, shape=shape)
    if variance_parts and endpoint.column == EV_TEXT_COLUMN:
        gap = explained_variance_difference(values.table, variance_parts, reference, other, target, shape=shape)
    if probing_replicates and endpoint.column in PROBE_ERROR_COLUMNS:
        points = dict(zip(values.table["run"], values.table[endpoint.column].astype(float), strict=True))
        replicates = {run: found[endpoint.column] for run, found in probing_replicates.items()}
        gap = replicated_difference(values.table, points, replicates, reference, other, target, endpoint.on_frontier, shape=shape, method=PROBE_METHOD)
    gap = gap if gap is not None else paired_difference(ours, theirs)
    if gap.n < len(values.seeds):
        # a missing value is an outcome (no rise, no settling, off the frontier), not a gap to close
        # by testing the seeds that remain: those are selected on the result
        gap = replace(gap, p_value=math.nan)
    censored = _censored_readings(values, endpoint, reference, other, target)
    if censored:
        # a censored time is a bound (formed before the window, or never): a t-test would take the bound for the value
        gap = replace(gap, p_value=math.nan)
    return {"endpoint": endpoint, "other": other, "target": target, "ours": t_interval(ours), "theirs": t_interval(theirs), "gap": gap, "censored": censored}


def _censored_readings(values: _Values, endpoint: Endpoint, reference: str, other: str, target: float) -> int:
    """How many of the two arms' seed readings of a time endpoint rest on a censored run (read off the
    frontier, any run with weight in the reading counts); 0 for an endpoint that is not a time. A time
    endpoint measured without its censoring flag is an error, not an uncensored time."""
    if not endpoint.time:
        return 0
    flag = replace(endpoint, column=endpoint.column + CENSORED_SUFFIX)
    if flag.column not in values.table:
        if endpoint.column in values.table:
            raise ValueError(f"the time endpoint {endpoint.column!r} has no {flag.column!r} beside it: its censored runs cannot be told apart")
        return 0
    readings = np.concatenate([values(reference, target, flag), values(other, target, flag)])
    return int(np.sum(np.abs(readings[np.isfinite(readings)]) > 1e-9))


_SAMPLE_ERROR = {
    SEQUENCE_METHOD: " (its interval includes the evaluation text's sampling error, sequences resampled)",
    DOCUMENT_METHOD: " (its interval includes the evaluation text's sampling error, documents resampled)",
    PROBE_METHOD: " (its interval includes the probing test set's sampling error)",
}


def _verdict(gap: Estimate, adjusted_p: float, higher_is_better: bool) -> str:
    if not math.isfinite(gap.value) or not math.isfinite(adjusted_p):
        return "no data"
    if adjusted_p >= ALPHA:
        return "unresolved"
    return "better" if (gap.value > 0) == higher_is_better else "worse"


def _comparison_claim(item: dict, adjusted_p: float, family: int, reference: str, names: dict[str, str], primary: bool = False) -> Claim:
    endpoint: Endpoint = item["endpoint"]
    gap, ours, theirs, target = item["gap"], item["ours"], item["theirs"], item["target"]
    verdict = _verdict(gap, adjusted_p, endpoint.higher_is_better)
    censored = item.get("censored", 0)
    meaning = {
        "better": f"{names[reference]} is {'higher' if gap.value > 0 else 'lower'}, which is better",
        "worse": f"{names[reference]} is {'higher' if gap.value > 0 else 'lower'}, which is worse",
        "unresolved": "not resolved after correction (inconclusive)",
        "no data": f"not testable: {censored} of the seed readings rest on a censored time (formed before the window, or never) (inconclusive)"
        if censored
        else "not testable: a seed without a value, or no spread between seeds (inconclusive)",
    }[verdict]
    text = (
        f"At L0 = {target:g}, {endpoint.label}: {names[reference]} {ours.format()}, {names[item['other']]} {theirs.format()}; "
        f"paired difference {gap.format()} over {gap.n} seeds{_SAMPLE_ERROR.get(gap.method, '')}, "
        f"p = {_p(gap.p_value)}, Holm-adjusted p = {_p(adjusted_p)} "
        f"(family of {family}): {meaning}."
    )
    numbers = {"l0_target": target, **_numbers("reference", ours), **_numbers("other", theirs), **_numbers("difference", gap)}
    numbers |= {"pairs": gap.n, "p": gap.p_value, "adjusted_p": adjusted_p, "family": family, "censored": censored}
    return Claim(endpoint.question, text, numbers, verdict, "comparison", item["other"], endpoint.column, primary)


def _out_of_range_claim(item: dict, width: int, reference: str, names: dict[str, str]) -> Claim:
    """No verdict, but what was measured: each arm's reading and their paired difference, unadjusted (no p-value:
    outside a metric's valid range a difference says nothing about the question)."""
    endpoint: Endpoint = item["endpoint"]
    gap, ours, theirs, target = item["gap"], item["ours"], item["theirs"], item["target"]
    measured = (
        f"measured {names[reference]} {ours.format()}, {names[item['other']]} {theirs.format()}, paired difference {gap.format()} over {gap.n} seeds"
        if math.isfinite(gap.value)
        else "no paired reading (not measured over training, or a seed without a value)"
    )
    text = f"At L0 = {target:g}, {endpoint.label}: out of range ({_narrow(width)}); {measured}; no verdict."
    numbers = {"l0_target": target, "width": width, "min_width": ABSORPTION_MIN_WIDTH, **_numbers("reference", ours), **_numbers("other", theirs)}
    numbers |= {**_numbers("difference", gap), "pairs": gap.n}
    return Claim(endpoint.question, text, numbers, "out of range", "comparison", item["other"], endpoint.column, endpoint.primary)


def _narrow(width: int) -> str:
    return f"{width:,} latents, below the ~{ABSORPTION_MIN_WIDTH:,} at which SAE Bench's absorption is meaningful"


def tally_claim(question: str, label: str, claims: list[Claim], reference_name: str, primary: bool) -> Claim:
    """How the reference fared over every compared arm and target for one endpoint, after correction: a count, not a
    verdict. The comparisons share the reference's runs (one set of seeds against each arm), so they are not independent
    pieces of evidence, and no overall direction is drawn from them; the primary contrasts carry the question's verdict."""
    counts = {verdict: sum(claim.verdict == verdict for claim in claims) for verdict in ("better", "worse", "unresolved", "no data", "out of range")}
    total = len(claims)
    if counts["out of range"] == total:
        return Claim(question, f"{label}: out of range at this scale; no verdict.", {"comparisons": total}, "out of range", "tally", column=label, primary=primary)
    text = (
        f"{label}: over {total} comparisons (arms × L0 targets, Holm-corrected), {reference_name} was better in "
        f"{counts['better']}, worse in {counts['worse']}, and unresolved in {counts['unresolved']}"
        + (f"; {counts['no data']} could not be tested (a seed without a value, a censored time, or no spread)" if counts["no data"] else "")
        + f". A count, not a verdict: the comparisons reuse {reference_name}'s runs."
    )
    numbers = {"comparisons": total, **{k.replace(" ", "_"): v for k, v in counts.items() if k != "out of range"}}
    return Claim(question, text, numbers, "count", "tally", column=label, primary=primary)


def orthogonality_context_table(matched: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """What moves the orthogonality endpoints besides the schedule, at each matched L0 (means over
    seeds): the dead fraction, the alive latents' mean max decoder cosine, and its two baselines."""
    columns = ("final_dead_fraction", "final_alive_mean_max_cosine", "final_alive_random_mean_max_cosine", "final_alive_covariance_mean_max_cosine")
    if not all(column in matched for column in columns):
        return pd.DataFrame()
    rows = {}
    for arm, group in matched.groupby("arm", sort=False):
        cells = {}
        for target, cell in group.groupby("l0_target"):
            dead, alive, isotropic, covariance = (float(cell[column].mean()) for column in columns)
            cells[f"L0 = {target:g}"] = f"dead {dead:.1%}; alive {alive:.3f} (random {isotropic:.3f}, covariance {covariance:.3f})"
        rows[names.get(arm, arm)] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def passage_table(table: pd.DataFrame, names: dict[str, str], settings: MatchedSettings) -> pd.DataFrame:
    """When each arm's current L0 first fell through current_l0_multiple × the target: the
    comparisons at matched current L0 set SAEs side by side that had trained this long."""
    rows = {}
    for arm, group in table.groupby("arm", sort=False):
        cells = {}
        for target, cell in group.groupby("l0_target"):
            position = t_interval(cell["current_l0_position"])
            cells[f"L0 = {target:g}"] = position.format(2) if math.isfinite(position.value) else "never (or already below at warm-up's end)"
        rows[names.get(arm, arm)] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def regime_table(table: pd.DataFrame, names: dict[str, str], probing_replicates: dict[str, dict[str, np.ndarray]] | None = None) -> pd.DataFrame:
    """How far each run got (seeds in order): its L0 drift over the last tenth of training (near 0: near its
    equilibrium at the end; a verdict between arms still moving compares them mid-flight), its final decoder's cosine
    to its initialisation, the median over latents weighted by firing frequency (near 1: the dictionary is inherited
    from the random start, not learned), with the unweighted median beside it, and its final sparse-probing lift over a
    random SAE at the same L0 with the probing test set's 95% interval where recorded (an interval spanning 0: the
    test set cannot tell the dictionary from a random one)."""
    rows = {}
    for arm, group in table.groupby("arm", sort=False):
        cells = {}
        for target, cell in group.groupby("l0_target"):
            cell = cell.sort_values("seed")
            drift = ", ".join(f"{value:+.1%}" for value in cell["l0_drift_late"])
            cells[f"L0 = {target:g}: L0 drift"] = drift
            if "final_decoder_init_cosine_weighted_median" in cell and cell["final_decoder_init_cosine_weighted_median"].notna().any():
                weighted = ", ".join(f"{value:.2f}" for value in cell["final_decoder_init_cosine_weighted_median"])
                median = ", ".join(f"{value:.2f}" for value in cell["final_decoder_init_cosine_median"])
                cells[f"L0 = {target:g}: decoder cosine to init"] = f"{weighted} (unweighted {median})"
            if "final_sae_top_1_lift" in cell and cell["final_sae_top_1_lift"].notna().any():
                lifts = [_lift_cell(value, (probing_replicates or {}).get(run, {}).get("final_sae_top_1_lift")) for run, value in zip(cell["run"], cell["final_sae_top_1_lift"], strict=True)]
                cells[f"L0 = {target:g}: probing lift"] = ", ".join(lifts)
        rows[names.get(arm, arm)] = cells
    return pd.DataFrame.from_dict(rows, orient="index").fillna("—")


def _lift_cell(value: float, replicates: np.ndarray | None) -> str:
    if not math.isfinite(value):
        return "n/a"
    if replicates is None or not np.isfinite(replicates).any():
        return f"{value:+.3f}"
    low, high = np.nanpercentile(replicates, [2.5, 97.5])
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def settling_claim(table: pd.DataFrame, settings: MatchedSettings) -> Claim:
    """How many runs' absorption settled, never settled, or had no letter latent to measure: counted, never dropped."""
    runs = len(table)
    # runs evaluated with absorption at the final checkpoint only have no speed: counted apart, never as "never settled"
    timed = table[table["absorption_speed_measured"].astype(bool)] if "absorption_speed_measured" in table else table
    untimed = runs - len(timed)
    without = int((timed["absorption_letters_formed"] == 0).sum())
    measured = timed[timed["absorption_letters_formed"] > 0]
    settled = int(measured["absorption_settles"].sum())
    never = len(measured) - settled
    text = (
        f"Absorption speed over letters whose best single latent reaches k=1 F1 {settings.absorption_min_k1_f1:g}: of {runs} runs, {settled} settled, "
        f"{never} never settled (absorption did not fall after warm-up) and {without} had no such letter; runs that never settle "
        "stay in this count and out of the means."
    )
    if untimed:
        text += f" {untimed} runs measured absorption at the final checkpoint only (evaluation.absorption.checkpoints): no speed to time."
    numbers = {"runs": runs, "settled": settled, "never_settled": never, "without_letters": without, "not_timed": untimed, "min_k1_f1": settings.absorption_min_k1_f1}
    return Claim("absorption", text, numbers, "unresolved" if never or without else "no data", "count")


def _schedule_points(table: pd.DataFrame, matched: pd.DataFrame, arms: list[str], target: float, outcome: str) -> tuple[np.ndarray, np.ndarray]:
    """One point per schedule: its penalty ramp and the matched outcome, each the mean over its seeds; a schedule
    with a seed unmatched has no point (a mean over the matched seeds alone would be selected on the outcome)."""
    ramp = table.groupby("arm")[TRAJECTORY_AXIS].mean()
    complete_mean = lambda values: values.mean() if values.notna().all() else math.nan  # noqa: E731
    cell = matched[np.isclose(matched["l0_target"], target)].groupby("arm")[outcome].agg(complete_mean) if outcome in matched else pd.Series(dtype=float)
    return np.array([ramp.get(arm, math.nan) for arm in arms]), np.array([cell.get(arm, math.nan) for arm in arms])


def build_report(
    table: pd.DataFrame,
    reference: str,
    floor_partner: str | None,
    headline: str | None = None,
    names: dict[str, str] | None = None,
    settings: MatchedSettings | None = None,
    kinds: dict[str, str] | None = None,
    sequence_losses: dict[str, SequenceLosses] | None = None,
    frontier_shape: FrontierShape = "linear",
    probing_replicates: dict[str, dict[str, np.ndarray]] | None = None,
    identities: dict[str, str] | None = None,
    aa_controls: dict[str, str] | None = None,
    variance_parts: dict[str, VarianceParts] | None = None,
) -> Report:
    """Every claim of the report, from the run table of a sweep (taulib.analysis.matched.run_table).

    `kinds` maps each arm to its schedule kind (to find the constant-coefficient arms); `headline`
    is the plain-L1 arm the detailed sentences and the equivalence check compare against;
    `sequence_losses` (taulib.analysis.sequence_bootstrap.final_sequence_losses) lets the CE-loss
    comparisons include the evaluation text's sampling error (and `variance_parts`,
    taulib.analysis.sequence_bootstrap.final_variance_parts, the explained variance's), and `probing_replicates`
    (taulib.analysis.probe_bootstrap.probe_replicates) lets the probing endpoints' include the probing
    test set's. The report is built on the linear
    frontier reading and checked against the quadratic one (`frontier_sensitivity`). `identities`: the identity arms
    the sweep planned (`planned_identities`), the one source of which arms are identity checks; `aa_controls` the A/A
    control it planned (`planned_aa_controls`): compared with the arm it repeats on every endpoint, apart from the questions."""
    settings = settings or MatchedSettings()
    # an identity arm's one run (taulib.sweep.spec) is checked against its plain-L1 twin, then leaves the table:
    # it has no frontier of its own to match on
    identity_claims = []
    if headline is not None:
        for arm in identities_in_table(table, kinds or {}, headline, identities):
            identity_claims.append(_identity_claim(table, arm, headline, {a: a for a in table["arm"]} | (names or {})))
            table = table[table["arm"] != arm]
    arms = list(dict.fromkeys(table["arm"]))
    if reference not in arms:
        raise ValueError(f"reference arm {reference!r} is not in the study; arms: {', '.join(arms)}")
    if headline is not None and headline not in arms:
        raise ValueError(f"headline arm {headline!r} is not in the study; arms: {', '.join(arms)}")
    names = {arm: arm for arm in arms} | (names or {})
    kinds = kinds or {}
    targets = sorted(float(t) for t in table["l0_target"].dropna().unique())
    seeds = sorted(int(s) for s in table["seed"].unique())
    all_endpoints = endpoints(settings)
    frontier_columns = {e.column for e in all_endpoints if e.on_frontier} | {c for c, _ in TRAJECTORY_OUTCOMES} | set(CONTEXT_COLUMNS)
    frontier_columns = sorted(frontier_columns | {c + CENSORED_SUFFIX for c in frontier_columns})  # a censored run taints any reading it weighs in
    matched = matched_table(table, [c for c in frontier_columns if c in table], shape=frontier_shape)
    report = Report(reference, headline, names, targets, seeds, matched=matched)
    report.primary = {e.question: e.label for e in all_endpoints if e.primary}
    report.primary_contrasts = primary_contrast_arms(arms, kinds, reference, headline)
    values = _Values(table, matched, seeds)
    aa_controls = {aa: original for aa, original in (aa_controls or {}).items() if aa in arms and original in arms}
    if aa_controls:
        report.claims += aa_claims(values, all_endpoints, aa_controls, targets, names, sequence_losses, frontier_shape, probing_replicates, variance_parts)
        # the A/A control is matched like an arm (report.matched keeps it) but answers none of the questions
        table = table[~table["arm"].isin(list(aa_controls))]
        arms = [arm for arm in arms if arm not in aa_controls]
    equivalents = constant_coefficient_arms(table, kinds, headline)
    # the floor partner is compared under the lower bound's question alone: one contrast, one Holm family
    compared = [arm for arm in arms if arm not in (reference, floor_partner) and arm not in equivalents]
    # a verdict the frontier's curvature decides is no verdict: read the frontier as a parabola too, and
    # every direction that changes there is reported unresolved (frontier_sensitivity lists them)
    curved = None
    if frontier_shape == "linear":
        curved = build_report(
            table, reference, floor_partner, headline, names, settings, kinds, sequence_losses, "quadratic", probing_replicates, identities, aa_controls, variance_parts
        )
    curved_verdicts = {_verdict_key(c): c.verdict for c in curved.claims if c.kind == "comparison"} if curved is not None else {}
    changed: list[tuple[Claim, str]] = []
    width = int(table["width"].min()) if "width" in table else 0
    if width < ABSORPTION_MIN_WIDTH:
        timed = "absorption_speed_measured" not in table or bool(table["absorption_speed_measured"].astype(bool).any())
        measured = "absorption is measured over training and each comparison below states what it measured" if timed else "absorption is measured at the final checkpoint only (evaluation.absorption.checkpoints), its speed not at all"
        report.out_of_range.append(f"Absorption-reduction speed: {_narrow(width)}; {measured}, and draws no verdict.")

    for question in ("reconstruction", "formation", "orthogonality", "absorption", "lower_bound", "ground_truth"):
        question_endpoints = [e for e in all_endpoints if e.question == question]
        if question == "ground_truth" and not any(e.column in table for e in question_endpoints):
            continue  # a language model's study: its ground truth comes from the synthetic study (with_ground_truth)
        partners = [floor_partner] if question == "lower_bound" else compared
        if question == "lower_bound" and floor_partner is None:
            continue
        items = [
            _comparison(values, e, reference, other, target, sequence_losses, frontier_shape, probing_replicates, variance_parts)
            for e in question_endpoints
            for other in partners
            for target in targets
        ]
        out_of_range = question == "absorption" and width < ABSORPTION_MIN_WIDTH
        # the primary family: the question's primary endpoint in its declared contrasts (the lower bound's: its one partner)
        contrasts = set(partners) if question == "lower_bound" else set(report.primary_contrasts)

        def is_primary(item: dict, contrasts: set[str] = contrasts) -> bool:
            return item["endpoint"].primary and item["other"] in contrasts

        adjusted, family = _holm_by_role(items, is_primary, lambda item, skip=out_of_range: math.nan if skip else item["gap"].p_value)
        claims = [
            _out_of_range_claim(item, width, reference, names)
            if out_of_range
            else _comparison_claim(item, p, size, reference, names, is_primary(item))
            for item, p, size in zip(items, adjusted, family, strict=True)
        ]
        for index, claim in enumerate(claims):
            other_verdict = curved_verdicts.get(_verdict_key(claim))
            if claim.verdict in ("better", "worse") and other_verdict in ("better", "worse", "unresolved") and other_verdict != claim.verdict:
                changed.append((claim, other_verdict))
                claims[index] = _curvature_decided(claim, other_verdict)
        report.claims += claims
        for endpoint in question_endpoints:
            own = [c for c in claims if c.column == endpoint.column]
            if question != "lower_bound":
                report.claims.append(tally_claim(question, endpoint.label, own, names[reference], endpoint.primary))
            report.tables[f"{question}:{endpoint.column}"] = differences_table(own, partners, targets, names)

    report.claims.append(settling_claim(table, settings))
    report.passages = passage_table(table, names, settings)
    report.regime = regime_table(table, names, probing_replicates)
    report.orthogonality_context = orthogonality_context_table(matched, names)
    report.claims += _trajectory_claims(table, matched, [arm for arm in arms if arm not in equivalents], targets)
    if headline is not None:
        for arm in equivalents:
            for target in targets:
                report.claims.append(_equivalence_claim(values, arm, headline, target, names))
    report.claims += identity_claims
    if curved is not None:
        report.frontier_sensitivity = frontier_sensitivity(report, changed)
    return report


def aa_claims(
    values: _Values,
    all_endpoints: list[Endpoint],
    aa_controls: dict[str, str],
    targets: list[float],
    names: dict[str, str],
    sequence_losses: dict[str, SequenceLosses] | None,
    frontier_shape: FrontierShape,
    probing_replicates: dict[str, dict[str, np.ndarray]] | None,
    variance_parts: dict[str, VarianceParts] | None = None,
) -> list[Claim]:
    """The A/A control against the arm it repeats, by the report's own machinery, on every endpoint the runs measured
    and at every target, one Holm family; then one summary claim: unresolved everywhere, or which comparisons resolved
    (the machinery finds a difference where there is none). Kind "aa"; the summary's verdict is "unresolved" or "resolved"."""
    columns = set(values.table.columns)
    measured = {endpoint.column: endpoint for endpoint in all_endpoints if endpoint.column in columns}  # an endpoint two questions share: once
    items = [
        _comparison(values, endpoint, original, aa, target, sequence_losses, frontier_shape, probing_replicates, variance_parts) | {"reference": original}
        for aa, original in aa_controls.items()
        for endpoint in measured.values()
        for target in targets
    ]
    adjusted = holm([item["gap"].p_value for item in items])
    size = int(np.isfinite(adjusted).sum())
    claims = [
        replace(_comparison_claim(item, float(p), size, item["reference"], names), question="aa", kind="aa")
        for item, p in zip(items, adjusted, strict=True)
    ]
    resolved = [c for c in claims if c.verdict in ("better", "worse")]
    tested = sum(math.isfinite(c.numbers["adjusted_p"]) for c in claims)
    controls = ", ".join(f"{names[aa]} against {names[original]}" for aa, original in aa_controls.items())
    if not tested:
        text, verdict = f"A/A control ({controls}): not tested, no comparison had a value for every seed.", "no data"
    elif not resolved:
        text, verdict = f"A/A control ({controls}): unresolved on all {tested} comparisons tested (Holm over them), as it should be.", "unresolved"
    else:
        listed = "; ".join(f"{c.column} at L0 {c.numbers['l0_target']:g} ({c.numbers['difference']:+.4g}, adjusted p {_p(c.numbers['adjusted_p'])})" for c in resolved)
        text = (
            f"A/A control ({controls}): **RESOLVED on {len(resolved)} of {tested}** comparisons: the machinery finds a difference "
            f"where there is none, so verdicts on these endpoints are not to be trusted at this design: {listed}."
        )
        verdict = "resolved"
    summary = Claim("aa", text, {"tested": tested, "resolved": len(resolved)}, verdict, "aa_summary")
    return [summary, *claims]


def report_summary(report: Report) -> dict[str, Any]:
    """What a reader of the claims (report_claims.json) needs besides them: the arms' names, the reference, the
    targets and seeds, each question's primary endpoint and the primary contrasts; notebook 05 writes it beside the
    claims as report_summary.json (taulib.analysis.findings reads both)."""
    return {
        "commit": git_commit(),  # of the code that wrote the report (the runs record their own)
        "reference": report.reference,
        "headline": report.headline,
        "names": report.names,
        "targets": report.targets,
        "seeds": report.seeds,
        "questions": [[key, title] for key, title in QUESTIONS.items()],  # a list: JSON written with sorted keys keeps their order
        "primary": report.primary,
        "primary_contrasts": report.primary_contrasts,
        "out_of_range": report.out_of_range,
        "matching": matching_summary(report),
    }


def primary_contrast_arms(arms: list[str], kinds: dict[str, str], reference: str, headline: str | None) -> list[str]:
    """The arms the reference is declared to be compared with first: plain L1 (the headline) and the L1 warm-up, the
    two practices the question is about; whichever of them the study has."""
    warmups = [arm for arm in arms if kinds.get(arm) == "l1_warmup" and arm != reference]
    return [arm for arm in [headline, *warmups] if arm is not None and arm in arms and arm != reference]


def _verdict_key(claim: Claim) -> tuple:
    return (claim.question, claim.column, claim.other, claim.numbers.get("l0_target"))


def _curvature_decided(claim: Claim, curved_verdict: str) -> Claim:
    """A direction that the parabola reading does not reproduce: unresolved, saying why."""
    text = claim.text.rsplit(": ", 1)[0] + f": not resolved: the direction depends on the frontier's curvature (read off a parabola: {curved_verdict}) (inconclusive)."
    return replace(claim, text=text, verdict="unresolved", numbers=claim.numbers | {"curvature_decided": 1})


def frontier_sensitivity(linear: Report, changed: list[tuple[Claim, str]]) -> str:
    """Which directions change when every matched value is read off a parabola through the three nearest
    runs (in log L0) instead of the line between the two bracketing runs: those are reported unresolved."""
    tested = [c for c in linear.claims if c.kind == "comparison" and c.verdict not in ("out of range", "no data")]
    resolved = [c for c in tested if c.verdict in ("better", "worse")]
    head = (
        f"Read off a parabola through the three nearest runs (in log L0) instead of the line between the two that bracket the target, "
        f"{len(resolved)} resolved direction{'s' if len(resolved) != 1 else ''} of {len(tested)} tested comparisons "
        f"({sum(c.primary for c in resolved)} primary) hold"
    )
    if not changed:
        return head + ": the frontier's curvature decides none of them."
    listed = "; ".join(
        f"{linear.names.get(claim.other or '', claim.other)} at L0 = {claim.numbers['l0_target']:g}, `{claim.column}`: {claim.verdict} → {verdict}" for claim, verdict in changed
    )
    return head + f"; {len(changed)} more did not, and are reported unresolved: {listed}."


def with_ground_truth(report: Report, ground_truth: Report, source: str) -> Report:
    """A language model's report with the synthetic model's ground-truth verdict beside it: the same arms, the same
    statistics (matched L0, paired over seeds, Holm within the question), from that study's own runs."""
    report.claims += [claim for claim in ground_truth.claims if claim.question == "ground_truth"]
    report.tables |= {key: frame for key, frame in ground_truth.tables.items() if key.startswith("ground_truth:")}
    report.ground_truth_source = f"{source} (L0 targets {', '.join(f'{t:g}' for t in ground_truth.targets)}; seeds {', '.join(map(str, ground_truth.seeds))})"
    return report


def ground_truth_report(folder: Path, reference: str, settings: MatchedSettings | None = None) -> Report | None:
    """The ground-truth verdict of the synthetic study in `folder` (None when no study finished there)."""
    from taulib.analysis.matched import run_table
    from taulib.analysis.study_data import load_study

    if not (Path(folder) / "study_summary.json").is_file():
        return None
    study = load_study(folder)
    table = run_table(study, settings)
    if "final_gt_recovered_fraction" not in table:
        raise ValueError(f"{folder}: not a study of the synthetic model (its runs have no ground-truth metrics)")
    arms = study.one_run_per_arm().runs
    names = {arm.name: arm.schedule_label for arm in arms}
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}
    headline = headline_arm_of(arms, reference)
    return build_report(
        table, reference, None, headline, names, settings, kinds, identities=planned_identities(folder), aa_controls=planned_aa_controls(folder)
    )


def headline_arm_of(arms: Iterable[Run], reference: str) -> str | None:
    """The plain-L1 arm (not its A/A repeat): the detailed sentences compare against it, and constant τ is its
    equivalence check rather than a compared arm."""
    return next((arm.name for arm in arms if arm.config.schedule.spec.plain and arm.name != reference and arm.aa_of is None), None)


def _holm_by_role(items: list[Any], is_primary: Callable[[Any], bool], p_of: Callable[[Any], float]) -> tuple[list[float], list[int]]:
    """Holm within the primary endpoint's tests and, apart, within the secondary ones: the primary
    verdict is not diluted by the secondaries. Returns each item's adjusted p and its family's size."""
    adjusted, family = [math.nan] * len(items), [0] * len(items)
    for role in (True, False):
        members = [i for i, item in enumerate(items) if bool(is_primary(item)) == role]
        corrected = holm([p_of(items[i]) for i in members])
        size = int(np.isfinite(corrected).sum())
        for i, p in zip(members, corrected, strict=True):
            adjusted[i], family[i] = float(p), size
    return adjusted, family


def _trajectory_claims(table: pd.DataFrame, matched: pd.DataFrame, arms: list[str], targets: list[float]) -> list[Claim]:
    items = []
    for index, (outcome, label) in enumerate(TRAJECTORY_OUTCOMES):
        for target in targets:
            x, y = _schedule_points(table, matched, arms, target, outcome)
            items.append((outcome, label, target, rank_correlation(x, y), index == 0))
    adjusted, family = _holm_by_role(items, lambda item: item[4], lambda item: item[3].p_value)
    claims = []
    for (outcome, label, target, estimate, primary), p, size in zip(items, adjusted, family, strict=True):
        if not math.isfinite(estimate.value):
            verdict, meaning = "unresolved", "too few schedules or no spread (inconclusive)"
        elif not (math.isfinite(p) and p < ALPHA):
            verdict, meaning = "unresolved", "not resolved after correction (inconclusive)"
        else:
            verdict = "positive" if estimate.value > 0 else "negative"
            meaning = f"schedules with a more back-loaded penalty ended with {'higher' if estimate.value > 0 else 'lower'} {label}"
        text = (
            f"At L0 = {target:g}, over {estimate.n} distinct schedules (one point each, the mean over its seeds), Spearman ρ between the "
            f"penalty ramp and {label} is {_p(estimate.value)}, permutation p = {_p(estimate.p_value)}, Holm-adjusted p = {_p(p)} (family of {size}): {meaning}."
        )
        numbers = {"l0_target": target, "schedules": estimate.n, "rho": estimate.value, "p": estimate.p_value, "adjusted_p": p, "family": size}
        claims.append(Claim("trajectory", text, numbers, verdict, "correlation", column=outcome, primary=primary))
    return claims


def _equivalence_claim(values: _Values, arm: str, headline: str, target: float, names: dict[str, str]) -> Claim:
    ours, theirs = values(arm, target, "final_explained_variance"), values(headline, target, "final_explained_variance")
    check = equivalence(ours, theirs, EQUIVALENCE_MARGIN)
    identical = check.difference.n == len(values.seeds) and bool(np.all(ours == theirs))
    if identical:  # the same computation, seed for seed (calibration gave both the same λ/τ): equivalence by identity
        verdict, outcome = "equivalent", "identical in every seed"
    elif check.difference.n < len(values.seeds) or not check.difference.high - check.difference.low > 1e-12:
        # as the comparisons: a missing seed is selected on the outcome, and a zero-width interval is no evidence
        verdict, outcome = "no data", "not testable (a seed without a value, or no spread between seeds)"
    else:
        verdict = "equivalent" if check.equivalent else "not shown equivalent"
        outcome = f"{verdict} within ±{EQUIVALENCE_MARGIN:g}"
    text = (
        f"At L0 = {target:g}, {names[arm]} against {names[headline]} (the same penalty, λ/τ constant), final explained variance: "
        f"paired difference {check.difference.format()} (90% interval, {check.difference.n} seeds): {outcome}."
    )
    numbers = {"l0_target": target, **_numbers("difference", check.difference), "pairs": check.difference.n, "margin": EQUIVALENCE_MARGIN}
    return Claim("reconstruction", text, numbers, verdict, "equivalence", headline, "final_explained_variance")


MARKS = {"better": "✓", "worse": "✗", "unresolved": "·", "no data": "–", "out of range": "n/a"}


def differences_table(claims: list[Claim], others: list[str], targets: list[float], names: dict[str, str]) -> pd.DataFrame:
    """reference − arm, paired mean [95% CI] with its Holm-corrected mark, arms × targets."""
    rows = {}
    for other in others:
        cells = {}
        for target in targets:
            claim = next((c for c in claims if c.other == other and c.numbers.get("l0_target") == target), None)
            if claim is None or claim.verdict == "out of range":
                cells[f"L0 = {target:g}"] = MARKS["out of range"]
                continue
            gap = Estimate(claim.numbers["difference"], claim.numbers["difference_low"], claim.numbers["difference_high"], int(claim.numbers["pairs"]), "paired t")
            cells[f"L0 = {target:g}"] = f"{gap.format()} {MARKS[claim.verdict]}"
        rows[names[other]] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


# ----------------------------------------------------------------------------- markdown
def markdown_table(frame: pd.DataFrame, index_label: str = "") -> str:
    header = "| " + " | ".join([index_label, *map(str, frame.columns)]) + " |"
    rule = "|" + "---|" * (len(frame.columns) + 1)
    body = ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)]
    return "\n".join([header, rule, *body])


def sparsity_table(report: Report, table: pd.DataFrame, tolerance: float | None) -> pd.DataFrame:
    """Every run's achieved final L0 by arm and target (seeds in order), its λ, and how each seed's
    value at the target was read off the frontier (b: bracketed, n: within 2%, u: unmatched, g: unmatched, a planned run
    missing between the runs around it)."""
    codes = {"bracketed": "b", "near": "n", "unmatched": "u", "gap": "g"}
    rows = {}
    for arm, group in table.groupby("arm", sort=False):
        cells = {}
        for target, cell in group.groupby("l0_target"):
            cell = cell.sort_values("seed")
            runs = ", ".join(f"{l0:.1f}" for l0 in cell["final_l0"])
            matched = report.matched[(report.matched["arm"] == arm) & np.isclose(report.matched["l0_target"], target)].sort_values("seed")
            reading = "".join(codes[m] for m in matched["match"])
            off = "" if tolerance is None or all(abs(cell["final_l0"] / target - 1) <= tolerance) else " (a run outside the calibration tolerance)"
            # an arm without a frontier (an identity run) is not read at the target: its exact λ instead of a reading
            lam, read = (f"{cell['l1_coefficient'].iloc[0]:.4g}", f" [{reading}]") if reading else (f"{cell['l1_coefficient'].iloc[0]:.6g}", " (identity run, not matched)")
            cells[f"L0 = {target:g}"] = f"λ {lam}: {runs}{read}{off}"
        rows[report.names.get(arm, arm)] = cells
    return pd.DataFrame.from_dict(rows, orient="index").fillna("—")


def matching_summary(report: Report) -> str:
    counts = report.matched["match"].value_counts()
    summary = (
        f"Of {len(report.matched)} arm × seed × target cells, {counts.get('bracketed', 0)} were read between two runs bracketing the target, "
        f"{counts.get('near', 0)} extrapolated from a run within {MATCH_TOLERANCE:.0%} of it, and {counts.get('unmatched', 0) + counts.get('gap', 0)} "
        "could not be matched (left out of every comparison)"
    )
    if counts.get("gap", 0):
        summary += f", {counts['gap']} of them because a planned run between the runs around the target is missing"
    missing = missing_runs(report.matched, report.targets)
    if not missing:
        return summary + "."
    listed = "; ".join(f"{report.names.get(arm, arm)}, seed {seed}, L0 target {target:g} (cells it would have fed: {fed})" for arm, seed, target, fed in missing)
    return summary + f". Planned runs with no result (failed, removed, or never calibrated): {listed}."


def missing_runs(matched: pd.DataFrame, targets: list[float]) -> list[tuple[str, int, float, str]]:
    """Each (arm, seed, target) of the matched cells whose own run is missing, with the cells it would have fed: its
    own target's and those now unmatched for a gap across it."""
    found = []
    if matched.empty or "run_l0" not in matched:
        return found
    for (arm, seed), cells in matched.groupby(["arm", "seed"], sort=False):
        absent = cells[~np.isfinite(cells["run_l0"].to_numpy(dtype=float))]
        for target in absent["l0_target"]:
            position = targets.index(float(target)) if float(target) in targets else -1
            near = {targets[k] for k in (position - 1, position, position + 1) if 0 <= k < len(targets)}
            fed = cells[cells["l0_target"].isin(near) & (cells["match"] == "gap")]["l0_target"]
            found.append((str(arm), int(seed), float(target), ", ".join(f"L0 {t:g}" for t in sorted(set(fed.tolist()) | {float(target)}))))
    return found


def wall_time_line(summary: dict) -> str:
    """The study's wall time as study_summary.json records it (the report is written before the analyses end)."""
    if "seconds" not in summary:
        return "not recorded (no study_summary.json)"
    track = f"the ground-truth track {summary['ground_truth_seconds'] / 60:.1f} min, " if summary.get("ground_truth") else ""
    return (
        f"{summary['seconds'] / 60:.1f} min to the end of the runs ({track}extraction {summary.get('extraction_seconds', 0) / 60:.1f} min, "
        f"λ calibration {summary.get('calibration_seconds', 0) / 60:.1f} min, the rest training and evaluating the runs); "
        "the analysis notebooks follow"
    )


def _runs_line(table: pd.DataFrame, study: StudyData) -> str:
    """How many runs, as arms × targets × seeds, and the arms with fewer (identity runs, failures)."""
    counts = table["arm"].value_counts()
    full = len(study.l0_targets) * len(study.seeds)
    fewer = [f"{arm}: {counts.get(arm, 0)}" for arm in study.arm_names if counts.get(arm, 0) < full]
    swept = len(study.arm_names) - len(fewer)
    return f"{len(table)} ({swept} arms × {len(study.l0_targets)} L0 targets × {len(study.seeds)} seeds" + (f"; fewer: {', '.join(fewer)}" if fewer else "") + ")"


def study_context(study: StudyData, table: pd.DataFrame, summary: dict, early_position: float) -> dict[str, str]:
    """The report's header lines: what was run, on what, and how finely the checkpoints resolve time."""
    example = study.runs[0].config
    layer = example.model.layer if example.model.layer is not None else "(the middle one)"
    start = table["formation_start_position"].max()
    resolution = table["grid_resolution"].max()
    return {
        "source": f"`{study.outputs_root}`",
        "profile": str(summary.get("profile") or "default"),
        "runs": _runs_line(table, study),
        "model": f"{example.model.name}, residual stream after block {layer}",
        "SAE": f"{example.sae.width:,} latents, {example.training.n_tokens:,} training tokens, batch {example.training.batch_size}, {int(table['checkpoints'].max())} checkpoints",
        "checkpoint grid": (
            f"the initialisation, then from the warm-up's end half log-spaced, half evenly spaced; formation is timed from the first checkpoint after warm-up (at most {start:.1%} of training), "
            f"and after it no two checkpoints are more than {resolution:.1%} of training apart: times are resolved to that"
        ),
        "early Pareto figure": f"the checkpoint nearest {early_position:.0%} of training (arms differ in sparsity there; it is not compared)",
    }


def _stability_power(table: pd.DataFrame | None, seeds: int) -> str:
    """What the seed-stability table can resolve: with n seeds the smallest permutation p is 2/2ⁿ, and Holm over its
    m tests multiplies the smallest by m."""
    tests = int(table.notna().to_numpy().sum()) if table is not None and not table.empty else 0
    needed = seeds_needed(tests)
    verdict = "so it can resolve a large enough difference" if seeds >= needed else "so no difference can be resolved here, whatever its size"
    return (
        f"With n seeds the smallest attainable p is 2/2ⁿ, and Holm over this table's {tests} tests multiplies the smallest by {tests}: "
        f"resolving any of them needs at least {needed} seeds at α = {ALPHA:g}; this study has {seeds}, {verdict}."
    )


def render_markdown(
    report: Report,
    context: dict[str, str],
    figures: dict[str, str],
    sparsity: pd.DataFrame,
    wall_time: str,
    stability: pd.DataFrame | None = None,
    stability_comparison: pd.DataFrame | None = None,
    lead: str | None = None,
) -> str:
    """REPORT.md: `lead` first (the ground-truth track's verdicts, taulib.groundtruth.report.lead_section), the
    method, then the question-by-question verdict with its claims, tables and figures; `stability` and
    `stability_comparison` (taulib.analysis.latent_formation.stability_table and stability_comparison_table) go
    with early concept formation."""
    ref = report.names[report.reference]
    compared = sorted({c.other for c in report.claims if c.kind == "comparison" and c.question != "lower_bound" and c.other}, key=list(report.names).index)
    lines = [
        "# τ-annealed SAEs at matched sparsity: study report",
        "",
        f"Generated by `notebooks/05_report` from {context.get('source', 'the study outputs')}. Every number below is computed from the runs.",
        "",
        *([lead, "", "## The language model", ""] if lead else []),
        "How to read it: every comparison is made at exactly the L0 target, each arm and seed read off its own frontier of runs "
        "(interpolated in log L0); differences are paired over seeds (arms share a seed's initialisation and batch order), "
        "with 95% paired t intervals; p-values are Holm-corrected within each question, the primary contrasts' tests (the reference "
        "against plain L1 and the L1 warm-up on the primary endpoint, at every target) as one family and every other comparison as "
        "another; the primary contrasts carry the question's verdict, and the counts over all arms are a summary, not evidence "
        "(they reuse the reference's runs); a direction is claimed only where the "
        f"corrected p is below {ALPHA:g}, else the difference is unresolved. Error is controlled per question, not across them: "
        "with six questions, a false primary verdict somewhere in the report is more likely than 5%. Each question names one primary endpoint. "
        "A direction that changes when the frontier is read as a parabola instead of a line is reported unresolved. "
        "A comparison with a seed missing its value (no rise, no settling, off the frontier) or with no spread between seeds is not tested. "
        "Constant τ is plain L1 with λ/τ: it is an equivalence check, left out of the counts and correlations.",
        "",
        f"- Reference arm: **{ref}**; compared with {', '.join(report.names[a] for a in compared)}.",
        f"- Final held-out L0 targets: {', '.join(f'{t:g}' for t in report.targets)}; seeds: {', '.join(map(str, report.seeds))}.",
        *[f"- {key}: {value}" for key, value in context.items() if key != "source"],
        f"- Wall time: {wall_time}",
        "",
        "## Matched sparsity",
        "",
        "λ was calibrated per arm and target (taulib.sweep.calibration); every seed reuses it. Each run's achieved final L0 (seeds in order), "
        "and how each seed's value at the target was read (b: between two runs bracketing it, n: within 2% of a run, u: unmatched):",
        "",
        markdown_table(sparsity, "arm"),
        "",
        matching_summary(report),
        "",
        *([report.frontier_sensitivity, ""] if report.frontier_sensitivity else []),
    ]
    if not report.regime.empty:
        lines += [
            "## How far training went",
            "",
            "Each run (seeds in order): its held-out L0 drift over the last 10% of training (final L0 over the L0 at 90% of its tokens, "
            "read between the checkpoints around that point, minus 1; far from 0, the run was still moving when it was compared), and "
            "its final decoder's cosine to its initialisation, the median over latents weighted by each latent's held-out firing "
            "frequency (near 1, the dictionary the tokens use is the random start's, not a learned one), the unweighted median beside it; "
            "and its final sparse-probing top-1 accuracy over a random SAE's of the same width at the same L0, with the 95% interval "
            "of the probing test set's sampling error where recorded (an interval across 0: the test set does not tell this "
            "dictionary from a random one).",
            "",
            markdown_table(report.regime, "arm"),
            "",
        ]
    aa = report.by_question("aa")
    if aa:
        lines += ["## The A/A control", ""]
        lines += [
            "The plain-L1 arm swept a second time as an arm of its own, calibrated independently, and compared with it by the same "
            "machinery (frontier reading, pairing over seeds, Holm over every comparison below). There is no difference to find: "
            "a resolved comparison is a false alarm of the design.",
            "",
        ]
        lines += [f"- {c.text}" for c in aa if c.kind == "aa_summary"]
        flagged = [c for c in aa if c.kind == "aa" and c.verdict in ("better", "worse")]
        lines += [f"- resolved: {c.text}" for c in flagged] + [""]
    if report.out_of_range:
        lines += ["## Out of range at this scale", "", *[f"- {line}" for line in report.out_of_range], ""]
    for name, path in figures.items():
        if "pareto" in name:
            lines += [f"![{name}]({path})", ""]
    for key, title in QUESTIONS.items():
        claims = report.by_question(key)
        lines += [f"## {title}", ""]
        if key in report.primary:
            lines += [f"Primary endpoint: **{report.primary[key]}**.", ""]
        if key == "trajectory":
            lines += ["Primary endpoint: **Spearman ρ between the penalty ramp and final explained variance**, over distinct schedules.", ""]
        if key == "ground_truth" and report.ground_truth_source:
            lines += [f"From the synthetic model's study, {report.ground_truth_source}: the same arms on a stream of known sparse features.", ""]
        if not claims:
            empty = {
                "lower_bound": "No pair of arms in this study differs only in τ's floor.",
                "ground_truth": "The flat synthetic world's sweep (no hierarchy) did not run; the hierarchical ground-truth track's verdicts open this "
                "report when it has run (`python -m taulib groundtruth`). The flat world's sweep: `python -m taulib study --profile synthetic --outputs outputs/synthetic`.",
            }
            lines += [empty.get(key, "No data."), ""]
            continue
        primary = [c for c in claims if c.kind == "comparison" and c.primary]
        if primary:
            against = " and ".join(report.names[a] for a in dict.fromkeys(c.other for c in primary if c.other))
            lines += [f"**The verdict: the primary contrasts**, {ref} against {against} on the primary endpoint, one Holm family:", ""]
            lines += [f"- **{c.verdict}** ({report.names.get(c.other or '', c.other)}): {c.text}" for c in primary] + [""]
        tallies = [c for c in claims if c.kind == "tally"]
        if tallies:
            lines += [f"**Counts**, {ref} against every compared arm (a summary, not evidence):", ""] + [f"- {claim.text}" for claim in tallies] + [""]
        for table_key, frame in report.tables.items():
            question, column = table_key.split(":", 1)
            if question == key:
                lines += [f"{ref} minus each arm, `{column}` (paired, 95%; ✓ better, ✗ worse, · unresolved after correction):", "", markdown_table(frame, "arm"), ""]
        details = [c for c in claims if c.kind not in ("tally", "equivalence")]
        if key in ("reconstruction", "formation", "orthogonality", "absorption") and report.headline is not None:
            details = [c for c in details if c.other == report.headline]
            lines += [f"Against {report.names[report.headline]}:", ""]
        lines += [f"- {claim.text}" for claim in details] + [""]
        context_tables = {
            "orthogonality": [
                (
                    "Beside it, at each matched L0 (means over seeds): the dead fraction, the alive latents' mean max decoder cosine, and the "
                    "same for as many random directions, isotropic and drawn from the activations' covariance:",
                    report.orthogonality_context,
                )
            ],
            "formation": [
                (
                    "When each arm's current L0 first fell to the formation level (share of training, mean [95% CI] over seeds): "
                    "the comparisons at matched current L0 set SAEs side by side that had trained this long.",
                    report.passages,
                ),
                (
                    "Seed stability at the final checkpoint: the seeds of one arm matched to each other (Hungarian, on decoder directions), "
                    "mean over seed pairs, against two random dictionaries of the same shape:",
                    stability if stability is not None else pd.DataFrame(),
                ),
                (
                    f"Seed stability against {ref}: each arm's PW-MCC minus {ref}'s (mean over seed pairs; 'more stable' is the row's arm), exact permutation test with the arm labels swapped "
                    "within seeds (seed pairs share seeds, so no t-test), Holm-corrected over this table. " + _stability_power(stability_comparison, len(report.seeds)),
                    stability_comparison if stability_comparison is not None else pd.DataFrame(),
                ),
            ],
        }
        for caption, frame in context_tables.get(key, []):
            if not frame.empty:
                lines += [caption, "", markdown_table(frame, "arm"), ""]
        equivalences = [c for c in claims if c.kind == "equivalence"]
        if equivalences:
            lines += ["Equivalence check (constant τ is plain L1 with λ/τ):", ""] + [f"- {claim.text}" for claim in equivalences] + [""]
    return "\n".join(lines).rstrip() + "\n"
