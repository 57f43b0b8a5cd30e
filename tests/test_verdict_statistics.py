"""The pieces behind a verdict, each on a constructed case whose answer is known: matching on the
frontier, paired differences, Holm's correction, equivalence, schedule-level correlation, formation
with a direction, and absorption that never settles."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from taulib.analysis.formation import at_current_l0, formation_time
from taulib.analysis.frontier import matched_table, read_at_l0
from taulib.analysis.intervals import paired_difference, welch_difference
from taulib.analysis.report import Endpoint, _comparison, _Values
from taulib.analysis.statistics import equivalence, holm, rank_correlation

SEEDS = [0, 1, 2]
TARGETS = [20.0, 50.0, 100.0]


def ev_at(l0: float) -> float:
    """A frontier: explained variance rising 0.046 per unit of ln L0 (the slope seen on the default study)."""
    return 0.6 + 0.046 * math.log(l0)


def frontier_runs(arm: str, offset: float, seed_noise: float = 0.0005) -> list[dict]:
    """An arm's runs at the three targets, every one landing `offset` (relative) away from its target."""
    rng = np.random.default_rng(zlib.crc32(arm.encode()))
    rows = []
    for seed in SEEDS:
        for target in TARGETS:
            l0 = target * (1 + offset) * (1 + rng.normal(0, 0.01))
            rows.append({"arm": arm, "seed": seed, "l0_target": target, "final_l0": l0, "final_explained_variance": ev_at(l0) + rng.normal(0, seed_noise)})
    return rows


def test_read_at_l0_interpolates_in_log_l0_and_refuses_what_it_cannot_reach():
    l0s, values = [10.0, 40.0], [1.0, 3.0]
    assert read_at_l0(l0s, values, 20.0).value == pytest.approx(2.0)  # log-midpoint of 10 and 40
    assert read_at_l0(l0s, values, 20.0).status == "bracketed"
    near = read_at_l0(l0s, values, 40.6)  # 1.5% beyond the densest run: extrapolated along the line
    assert near.status == "near" and near.value == pytest.approx(1.0 + 2.0 * math.log(4.06) / math.log(4.0))
    far = read_at_l0(l0s, values, 45.0)  # 12.5% beyond: unmatched, no value
    assert far.status == "unmatched" and math.isnan(far.value)


def test_a_missing_middle_run_on_a_curved_frontier_is_a_gap_not_a_reading_across_it():
    """Runs planned at L0 targets 20, 50 and 100 on a frontier curved in log L0; seed 1's middle run failed. Read across
    the gap, the line between its 20 and 100 runs misses the curve at 50 by a seed-sized amount and would pass for a
    difference; it is reported as a gap instead, and every other cell is read as before."""

    def curved(l0: float) -> float:
        return 0.9 - 0.04 * (math.log(l0) - math.log(50.0)) ** 2 - 0.03 * math.log(100.0 / l0)

    rows = [
        {"arm": "a", "seed": seed, "l0_target": target, "final_l0": target * 1.03, "final_explained_variance": curved(target * 1.03)}
        for seed in SEEDS
        for target in TARGETS
        if not (seed == 1 and target == 50.0)
    ]
    across = read_at_l0([20.6, 103.0], [curved(20.6), curved(103.0)], 50.0)  # what a reading without the grid does
    assert across.status == "bracketed" and curved(50.0) - across.value > 0.02  # the fill is off by far more than seed noise
    gap = read_at_l0([20.6, 103.0], [curved(20.6), curved(103.0)], 50.0, slots=[20.0, 100.0], grid=TARGETS)
    assert gap.status == "gap" and math.isnan(gap.value) and (gap.lower_l0, gap.upper_l0) == (20.6, 103.0)
    matched = matched_table(pd.DataFrame(rows), ["final_explained_variance"])
    cell = lambda seed, target: matched[(matched["seed"] == seed) & (matched["l0_target"] == target)].iloc[0]  # noqa: E731
    assert cell(1, 50.0)["match"] == "gap" and math.isnan(cell(1, 50.0)["final_explained_variance"])
    assert cell(0, 50.0)["match"] == "bracketed" and cell(0, 50.0)["final_explained_variance"] == pytest.approx(curved(50.0), abs=2e-3)
    # at 100 the reading would also lean on the missing run (the lower bracket): a gap too, where the other seeds bracket it
    assert cell(1, 100.0)["match"] == "gap" and cell(0, 100.0)["match"] == "bracketed"
    from taulib.analysis.report import missing_runs

    assert missing_runs(matched, TARGETS) == [("a", 1, 50.0, "L0 50, L0 100")]


def test_an_l0_offset_inside_the_old_tolerance_produces_no_verdict():
    """Two arms on the same frontier, one landing 12% denser than every target (inside the old ±15%):
    compared run by run, the denser arm 'wins' explained variance; read off the frontier it does not."""
    runs = pd.DataFrame(frontier_runs("denser", 0.12) + frontier_runs("on_target", 0.0))
    endpoint = Endpoint("reconstruction", "final_explained_variance", "final explained variance", True)
    target = 50.0
    # the old comparison: each arm's run calibrated for the target, as it landed
    cell = runs[runs["l0_target"] == target]
    naive = welch_difference(cell[cell["arm"] == "denser"]["final_explained_variance"], cell[cell["arm"] == "on_target"]["final_explained_variance"])
    assert naive.excludes_zero and naive.value == pytest.approx(0.046 * math.log(1.12), rel=0.3)
    # the frontier comparison: the same SAEs, read at exactly L0 = 50
    matched = matched_table(runs, ["final_explained_variance"])
    assert set(matched[matched["l0_target"] == target]["match"]) == {"bracketed"}
    # every run of the denser arm lands above its target: the sparsest target is beyond its frontier
    assert set(matched[(matched["arm"] == "denser") & (matched["l0_target"] == 20.0)]["match"]) == {"unmatched"}
    gap = _comparison(_Values(runs, matched, SEEDS), endpoint, "denser", "on_target", target)["gap"]
    assert not gap.excludes_zero and abs(gap.value) < 0.002
    assert gap.p_value > 0.05


def test_a_true_difference_survives_holm_among_nulls():
    rng = np.random.default_rng(3)
    n = 5
    nulls = [stats.ttest_rel(rng.normal(0, 1, n), rng.normal(0, 1, n)).pvalue for _ in range(20)]
    real = paired_difference(rng.normal(1.0, 0.05, n), rng.normal(0, 0.05, n))
    adjusted = holm([real.p_value, *nulls])
    assert adjusted[0] < 0.05  # 1 σ against 0.07 of noise: resolved after correcting for 21 tests


def test_holm_removes_a_false_positive_among_many_nulls_and_matches_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.5, 0.2, math.nan] + [0.6] * 14)  # 0.01 alone would be "significant" uncorrected
    adjusted = holm(p)
    m = 19  # NaN is no test
    assert adjusted[0] == pytest.approx(min(1, m * 0.01)) and adjusted[0] > 0.05
    assert math.isnan(adjusted[5])
    order = np.argsort(p[np.isfinite(p)])
    assert np.all(np.diff(adjusted[np.isfinite(p)][order]) >= 0)  # monotone in the raw p-values
    assert holm([0.001, 0.02])[1] == pytest.approx(0.02) and holm([0.001, 0.02])[0] == pytest.approx(0.002)


def test_pairing_removes_a_shared_seed_effect_that_hides_a_difference_unpaired():
    rng = np.random.default_rng(7)
    seed_effect = rng.normal(0, 0.05, 5)  # what a seed's initialisation and batch order do to both arms alike
    a = 0.80 + seed_effect + 0.01 + rng.normal(0, 0.001, 5)
    b = 0.80 + seed_effect + rng.normal(0, 0.001, 5)
    assert not welch_difference(a, b).excludes_zero
    paired = paired_difference(a, b)
    assert paired.excludes_zero and paired.value == pytest.approx(0.01, abs=0.002)
    assert paired.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert (paired.low, paired.high) == pytest.approx(tuple(stats.ttest_rel(a, b).confidence_interval(0.95)))


def test_paired_difference_drops_incomplete_pairs_and_does_not_test_without_spread():
    estimate = paired_difference([1.0, 2.0, math.nan, 4.0], [0.5, 1.0, 1.0, math.nan])
    assert estimate.n == 2 and estimate.value == pytest.approx((0.5 + 1.0) / 2)
    constant = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # the same difference in every pair
    assert constant.value == pytest.approx(0.5) and math.isnan(constant.p_value)


def test_equivalence_of_two_arms_that_are_the_same_penalty():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 0.02, 3)
    same = equivalence(0.8 + seed_effect + rng.normal(0, 1e-4, 3), 0.8 + seed_effect, margin=0.005)
    assert same.equivalent
    apart = equivalence(0.81 + seed_effect, 0.8 + seed_effect + rng.normal(0, 1e-4, 3), margin=0.005)
    assert not apart.equivalent and "not shown equivalent" in apart.describe()


def test_rank_correlation_over_schedules_has_an_exact_permutation_p_value():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    perfect = rank_correlation(x, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert perfect.value == pytest.approx(1.0) and perfect.n == 6
    assert perfect.p_value == pytest.approx(2 / math.factorial(6))  # the two orderings as extreme as this one
    assert math.isnan(rank_correlation([1.0, 2.0], [3.0, 4.0]).value)  # two schedules: no correlation to speak of


def test_formation_of_a_falling_metric_needs_the_falling_direction():
    tokens = np.array([0, 10, 20, 40, 60, 80, 100], dtype=float)
    falling = np.array([5.0, 5.0, 4.0, 2.0, 1.2, 1.0, 1.0])  # absorption: forms by falling, from the post-warm-up 5.0
    # the final level is the mean of the last three checkpoints (1.0667); the fall from 5.0 is 3.9333
    level = (1.2 + 1.0 + 1.0) / 3
    target = 5.0 - 0.9 * (5.0 - level)
    assert formation_time(tokens, falling, 10, -1) == pytest.approx(40 + 20 * (2.0 - target) / (2.0 - 1.2))
    assert formation_time(tokens, falling, 10, 1) == 100  # read as a rise, it never forms: censored at the end
    # warm-up excluded: a jump inside it (initialisation → warm-up end) is formation before the window, not after it
    jump = np.array([0.0, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert formation_time(tokens, jump, 10, 1) == 10


def test_value_at_current_l0_reads_the_passage_through_the_level():
    tokens = np.array([0, 10, 20, 40], dtype=float)
    l0 = np.array([300.0, 200.0, 50.0, 25.0])
    values = np.array([0.0, 0.2, 0.6, 0.8])
    passage, value = at_current_l0(tokens, l0, values, 100.0, start_tokens=10)
    weight = math.log(200 / 100) / math.log(200 / 50)  # halfway in log L0
    assert passage == pytest.approx(10 + weight * 10) and value == pytest.approx(0.2 + weight * 0.4)
    assert all(math.isnan(v) for v in at_current_l0(tokens, l0, values, 10.0, start_tokens=10))  # never that sparse
    assert all(math.isnan(v) for v in at_current_l0(tokens, l0, values, 300.0, start_tokens=10))  # already below at the start


def test_runs_whose_absorption_never_settles_are_counted_not_dropped():
    from taulib.analysis.matched import MatchedSettings
    from taulib.analysis.report import settling_claim

    table = pd.DataFrame(
        {
            "absorption_letters_formed": [4, 4, 4, 0],
            "absorption_settles": [True, False, False, False],
            "absorption_settling": [0.3, math.nan, math.nan, math.nan],
        }
    )
    claim = settling_claim(table, MatchedSettings())
    assert claim.numbers == {"runs": 4, "settled": 1, "never_settled": 2, "without_letters": 1, "not_timed": 0, "min_k1_f1": 0.5}
    assert "2 never settled" in claim.text and "1 had no such letter" in claim.text
    # runs whose absorption was measured at the final checkpoint only are not "never settled": they were not timed
    untimed = pd.concat([table, table.assign(absorption_settles=False, absorption_settling=math.nan)], ignore_index=True)
    untimed["absorption_speed_measured"] = [True] * 4 + [False] * 4
    claim = settling_claim(untimed, MatchedSettings())
    assert claim.numbers == {"runs": 8, "settled": 1, "never_settled": 2, "without_letters": 1, "not_timed": 4, "min_k1_f1": 0.5}
    assert "4 runs measured absorption at the final checkpoint only" in claim.text


def test_the_ce_score_interval_includes_the_evaluation_texts_error():
    """Two arms that differ only in text-dependent noise of the spliced loss, nearly the same in every
    seed: a t interval over seeds sees almost no spread and calls a difference; with the text's error
    there is none."""
    from taulib.analysis.sequence_bootstrap import ce_score_difference
    from taulib.metrics.downstream.metric import SequenceLosses

    rng = np.random.default_rng(0)
    n_sequences, tokens = 60, 100.0
    text_noise = rng.normal(0, 0.5, n_sequences) - 0.03  # per sequence, shared by every seed of arm "a"

    def losses(extra: np.ndarray) -> SequenceLosses:
        ones = np.ones(n_sequences)
        return SequenceLosses(2 * tokens * ones, 10 * tokens * ones, (3 + extra) * tokens, ones, ones, tokens * ones, tokens * ones)

    runs, recorded = [], {}
    for seed in SEEDS:
        seed_jitter = 1e-4 * (seed - 1)  # what a seed changes: tiny next to the text's noise
        for arm, extra in (("a", text_noise + seed_jitter), ("b", np.zeros(n_sequences))):
            name = f"{arm}{seed}"
            runs.append({"run": name, "arm": arm, "seed": seed, "l0_target": 50.0, "final_l0": 50.0})
            recorded[name] = losses(extra)
    runs = pd.DataFrame(runs)
    scores = {name: value.metrics().ce_loss_score for name, value in recorded.items()}
    naive = paired_difference([scores[f"a{s}"] for s in SEEDS], [scores[f"b{s}"] for s in SEEDS])
    assert naive.p_value < 0.01  # the seeds barely disagree
    estimate = ce_score_difference(runs, recorded, "a", "b", 50.0)
    per_sequence = -text_noise / 8  # score = (10 − 3 − noise) / 8 per sequence, and all sequences weigh alike
    assert estimate.value == pytest.approx(per_sequence.mean(), abs=1e-4)
    # the text's standard error of a mean of 60 sequences, widened by t(2)
    half = stats.t.ppf(0.975, 2) * per_sequence.std(ddof=1) / math.sqrt(n_sequences)
    assert estimate.high - estimate.value == pytest.approx(half, rel=0.15)
    assert estimate.low < 0 < estimate.high and estimate.p_value > 0.05
    # a run without its per-sequence losses: no estimate (the report falls back to the paired t interval)
    assert ce_score_difference(runs, {k: v for k, v in recorded.items() if k != "a0"}, "a", "b", 50.0) is None


def test_the_text_is_redrawn_by_document_where_documents_are_known():
    """The same text noise, but every 6 sequences are one document (their noise shared): resampled by document the
    interval is that of 10 units, √6 times as wide as the sequences' bootstrap would make it, and says so."""
    from taulib.analysis.sequence_bootstrap import DOCUMENT_METHOD, SEQUENCE_METHOD, ce_score_difference
    from taulib.metrics.downstream.metric import SequenceLosses

    rng = np.random.default_rng(0)
    n_documents, per_document, tokens = 10, 6, 100.0
    document = np.repeat(np.arange(n_documents), per_document)
    text_noise = rng.normal(0, 0.5, n_documents)[document]

    def losses(extra: np.ndarray, documents: np.ndarray | None) -> SequenceLosses:
        ones = np.ones(len(document))
        return SequenceLosses(2 * tokens * ones, 10 * tokens * ones, (3 + extra) * tokens, ones, ones, tokens * ones, tokens * ones, document=documents)

    runs = pd.DataFrame([{"run": f"{arm}{s}", "arm": arm, "seed": s, "l0_target": 50.0, "final_l0": 50.0} for s in SEEDS for arm in "ab"])
    estimates = {}
    for documents in (document, None):
        recorded = {f"a{s}": losses(text_noise + 1e-4 * s, documents) for s in SEEDS} | {f"b{s}": losses(np.zeros(len(document)), documents) for s in SEEDS}
        estimates[documents is not None] = ce_score_difference(runs, recorded, "a", "b", 50.0)
    by_document, by_sequence = estimates[True], estimates[False]
    assert by_document.method == DOCUMENT_METHOD and by_sequence.method == SEQUENCE_METHOD
    assert by_document.value == pytest.approx(by_sequence.value)
    document_scores = -text_noise[::per_document] / 8
    half = stats.t.ppf(0.975, 2) * document_scores.std(ddof=1) / math.sqrt(n_documents)
    assert by_document.high - by_document.value == pytest.approx(half, rel=0.2)
    assert (by_document.high - by_document.low) / (by_sequence.high - by_sequence.low) == pytest.approx(math.sqrt(per_document), rel=0.2)


def test_the_explained_variance_interval_includes_the_held_out_texts_error():
    """Arms that differ by document-dependent reconstruction error alone: with the documents redrawn the difference is
    unresolved; the parts' totals must agree (the same tokens) for an estimate."""
    from taulib.analysis.sequence_bootstrap import DOCUMENT_METHOD, explained_variance_difference
    from taulib.metrics.core.metric import VarianceParts

    rng = np.random.default_rng(1)
    n_documents = 12
    total, tokens, noise = np.full(n_documents, 100.0), np.full(n_documents, 500.0), rng.normal(0, 10, n_documents)
    runs = pd.DataFrame([{"run": f"{arm}{s}", "arm": arm, "seed": s, "l0_target": 50.0, "final_l0": 50.0} for s in SEEDS for arm in "ab"])
    parts = {f"a{s}": VarianceParts(np.arange(n_documents), 20.0 + noise + 1e-3 * s, total, tokens) for s in SEEDS}
    parts |= {f"b{s}": VarianceParts(np.arange(n_documents), np.full(n_documents, 20.0), total, tokens) for s in SEEDS}
    estimate = explained_variance_difference(runs, parts, "a", "b", 50.0)
    assert estimate.method == DOCUMENT_METHOD and estimate.value == pytest.approx(-noise.mean() / 100, abs=1e-4)
    half = stats.t.ppf(0.975, 2) * (noise / 100).std(ddof=1) / math.sqrt(n_documents)
    assert estimate.high - estimate.value == pytest.approx(half, rel=0.2) and estimate.p_value > 0.05
    other_tokens = parts | {"b0": VarianceParts(np.arange(n_documents), np.full(n_documents, 20.0), total, tokens + 1)}
    assert explained_variance_difference(runs, other_tokens, "a", "b", 50.0) is None


def test_a_missing_value_is_never_read_across_from_the_runs_around_it():
    reading = read_at_l0([20.0, 50.0, 100.0], [0.2, math.nan, 0.4], 50.0)
    assert reading.status == "unmatched" and math.isnan(reading.value)
    # the missing run is not one the target is read from: the others still serve
    assert read_at_l0([20.0, 50.0, 100.0], [0.2, 0.3, math.nan], 30.0).value == pytest.approx(0.2 + 0.1 * math.log(1.5) / math.log(2.5))


def test_formation_time_reads_formed_before_the_window_early_and_never_formed_late():
    from taulib.analysis.formation import formation_time

    tokens = np.array([0, 10, 20, 40, 60, 80, 100], dtype=float)
    rng = np.random.default_rng(0)
    # formed inside the warm-up (by token 10), flat with noise after it: formed at the window's start,
    # not at whatever checkpoint the noise last dipped (the unguarded time reads it as late, or NaN)
    early = np.array([0.5, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]) + rng.normal(0, 0.01, 7)
    assert formation_time(tokens, early, 10, 1) == 10
    # never rises at all, or falls: never formed, censored at the end (an outcome, not a missing value)
    assert formation_time(tokens, np.full(7, 0.5) + rng.normal(0, 0.01, 7), 10, 1) == 100
    assert formation_time(tokens, np.array([0.5, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5]), 10, 1) == 100
    # a clean rise: the settled crossing of 90% of the way to the mean of the last three checkpoints
    rising = np.array([0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8])
    assert formation_time(tokens, rising, 10, 1) == pytest.approx(40 + 20 * (0.9 * 0.3 - 0.2) / 0.1)
    # a falling metric (absorption) forms by falling
    assert formation_time(tokens, 1 - rising, 10, -1) == pytest.approx(40 + 20 * (0.9 * 0.3 - 0.2) / 0.1)


def test_the_quadratic_frontier_reading_is_exact_on_a_parabola_where_the_line_is_not():
    a, b, c = 0.5, 0.05, -0.01  # a concave frontier in x = ln L0
    l0s = np.array([10.0, 20.0, 50.0, 100.0])
    x = np.log(l0s)
    values = a + b * x + c * x**2
    at = math.log(30.0)
    truth = a + b * at + c * at**2
    linear, curved = read_at_l0(l0s, values, 30.0), read_at_l0(l0s, values, 30.0, shape="quadratic")
    assert curved.value == pytest.approx(truth) and curved.status == linear.status == "bracketed"
    # the chord of a concave frontier lies below it, by c·(at − x₀)(x₁ − at) between its two runs
    assert linear.value - truth == pytest.approx(c * (at - math.log(20.0)) * (math.log(50.0) - at))
    # the same matched/unmatched decision: a target beyond the tolerance stays unmatched
    assert math.isnan(read_at_l0(l0s, values, 120.0, shape="quadratic").value)
    # fewer than three runs with a value: the line is all there is
    assert read_at_l0([10.0, 40.0, 80.0], [1.0, 3.0, math.nan], 20.0, shape="quadratic").value == pytest.approx(2.0)


def test_frontier_sensitivity_names_every_verdict_the_curvature_changes():
    from taulib.analysis.report import Claim, Report, frontier_sensitivity

    claims = [
        Claim("reconstruction", "", {"l0_target": t}, v, "comparison", "plain", "final_explained_variance", primary=True)
        for t, v in zip([20.0, 50.0, 100.0], ["better", "unresolved", "worse"], strict=True)
    ]
    report = Report("tightened", "plain", {"tightened": "tightened", "plain": "plain L1"}, [20.0, 50.0, 100.0], SEEDS, claims)
    same = frontier_sensitivity(report, [])
    assert "2 resolved directions of 3 tested comparisons (2 primary) hold" in same and "decides none" in same
    downgraded = Claim("reconstruction", "", {"l0_target": 50.0}, "better", "comparison", "plain", "final_explained_variance", primary=True)
    flipped = frontier_sensitivity(report, [(downgraded, "unresolved")])
    assert "1 more did not, and are reported unresolved: plain L1 at L0 = 50, `final_explained_variance`: better → unresolved" in flipped


def test_a_direction_the_curvature_decides_is_reported_unresolved(monkeypatch):
    """A comparison resolved on the line between the bracketing runs but not on the parabola through three
    runs is no verdict: the claim, its tally and its table say unresolved, and the sensitivity line names it."""
    import taulib.analysis.report as report_module
    from taulib.analysis.report import _curvature_decided

    claim = report_module.Claim(
        "reconstruction", "At L0 = 50, final explained variance: …, p = 0.001, Holm-adjusted p = 0.003 (family of 5): tightened is higher, which is better.",
        {"l0_target": 50.0}, "better", "comparison", "plain", "final_explained_variance", primary=True,
    )
    decided = _curvature_decided(claim, "unresolved")
    assert decided.verdict == "unresolved" and decided.numbers["curvature_decided"] == 1
    assert decided.text.endswith("not resolved: the direction depends on the frontier's curvature (read off a parabola: unresolved) (inconclusive).")
    assert "Holm-adjusted p = 0.003" in decided.text  # the numbers stay, the direction goes


@pytest.mark.parametrize("shape", ["linear", "quadratic"])
def test_bootstrap_weights_read_the_frontier_as_the_matched_table_does(shape):
    """The CE and probing intervals read each replicate with weights over the runs; with a run missing its
    value they must give the matched table's own reading (the same runs, the same parabola or line)."""
    from taulib.analysis.sequence_bootstrap import frontier_weights

    l0s = np.array([12.0, 21.0, 48.0, 95.0])
    values = np.array([0.70, math.nan, 0.86, 0.91])
    for target in (20.0, 50.0, 90.0):
        reading = read_at_l0(l0s, values, target, shape=shape).value
        weights = frontier_weights(l0s, target, shape, np.isfinite(values))
        if math.isnan(reading):
            assert weights is None
        else:
            assert weights is not None and weights[1] == 0 and float(np.nansum(weights * np.nan_to_num(values))) == pytest.approx(reading)


# ----------------------------------------------------------------------------- each statistic feeds its verdict
# The tests above check each statistic against its definition; these check the wiring: a statistic that fails
# (here: one that never rejects, or one that is skipped) changes the verdicts the report states from it, so no
# verdict is decided elsewhere and merely decorated with the statistic.
def _synthetic_report(tmp_path, **kwargs):
    from formula_study import write_synthetic_sweep

    from taulib.analysis.matched import lower_bound_partner, run_table
    from taulib.analysis.report import build_report
    from taulib.analysis.study_data import load_study

    study = load_study(write_synthetic_sweep(tmp_path / "sweep"))
    arms = study.one_run_per_arm().runs
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}
    return build_report(run_table(study), "tightened", lower_bound_partner(study, "tightened"), "baseline", kinds=kinds, **kwargs)


def _verdicts(report, kind: str) -> dict:
    return {(c.question, c.column, c.other, c.numbers.get("l0_target")): c.verdict for c in report.claims if c.kind == kind}


@pytest.mark.parametrize("statistic", ["paired_difference", "holm"])
def test_a_failed_paired_t_or_holm_changes_the_comparison_verdicts(tmp_path, monkeypatch, statistic):
    import taulib.analysis.report as report_module

    sound = _verdicts(_synthetic_report(tmp_path / "sound"), "comparison")
    assert "better" in sound.values()  # tightened's lower cosines are resolved
    never_rejects = {
        "paired_difference": lambda a, b: replace_p(paired_difference(a, b), 1.0),
        "holm": lambda p_values: np.where(np.isfinite(np.asarray(p_values, dtype=float)), 1.0, math.nan),
    }[statistic]
    monkeypatch.setattr(report_module, statistic, never_rejects)
    failed = _verdicts(_synthetic_report(tmp_path / "failed"), "comparison")
    assert failed.keys() == sound.keys() and "better" not in failed.values()


def replace_p(estimate, p_value: float):
    from dataclasses import replace

    return replace(estimate, p_value=p_value)


def test_a_failed_permutation_test_changes_the_trajectory_verdicts(tmp_path, monkeypatch):
    import taulib.analysis.report as report_module

    sound = _verdicts(_synthetic_report(tmp_path / "sound"), "correlation")
    monkeypatch.setattr(report_module, "rank_correlation", lambda x, y: replace_p(rank_correlation(x, y), 0.0))  # rejects everything
    failed = _verdicts(_synthetic_report(tmp_path / "failed"), "correlation")
    assert failed.keys() == sound.keys() and failed != sound


def test_a_failed_sequence_bootstrap_changes_the_ce_verdict(monkeypatch):
    """The CE-loss score's verdict rests on the bootstrap over the evaluation text: with it, the constructed difference
    that is only the text's noise is unresolved; were the bootstrap to fail (no estimate), the paired t over seeds would
    resolve it. So the bootstrap decides that verdict."""
    import taulib.analysis.report as report_module
    from taulib.analysis.report import Endpoint, _comparison, _Values
    from taulib.analysis.sequence_bootstrap import ce_score_difference
    from taulib.metrics.downstream.metric import SequenceLosses

    rng = np.random.default_rng(0)
    n_sequences, tokens = 60, 100.0
    text_noise = rng.normal(0, 0.5, n_sequences) - 0.03
    ones = np.ones(n_sequences)
    runs, recorded = [], {}
    for seed in SEEDS:
        for arm, extra in (("a", text_noise + 1e-4 * (seed - 1)), ("b", np.zeros(n_sequences))):
            name = f"{arm}{seed}"
            recorded[name] = SequenceLosses(2 * tokens * ones, 10 * tokens * ones, (3 + extra) * tokens, ones, ones, tokens * ones, tokens * ones)
            runs.append({"run": name, "arm": arm, "seed": seed, "l0_target": 50.0, "final_l0": 50.0, "final_ce_loss_score": recorded[name].metrics().ce_loss_score})
    table = pd.DataFrame(runs)
    values = _Values(table, matched_table(table, ["final_ce_loss_score"]), SEEDS)
    endpoint = Endpoint("reconstruction", "final_ce_loss_score", "CE-loss score", higher_is_better=True, primary=True)
    with_bootstrap = _comparison(values, endpoint, "a", "b", 50.0, sequence_losses=recorded)["gap"]
    assert with_bootstrap.p_value > 0.05 and ce_score_difference(table, recorded, "a", "b", 50.0) is not None
    monkeypatch.setattr(report_module, "ce_score_difference", lambda *args, **kwargs: None)
    without = _comparison(values, endpoint, "a", "b", 50.0, sequence_losses=recorded)["gap"]
    assert without.p_value < 0.05  # the seeds alone barely disagree: a difference that is only the text's noise
