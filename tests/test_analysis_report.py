"""The matched-L0 comparison and the generated report, on a sweep written from formulas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from formula_study import AA_ARM, SWEEP_ARMS, SWEEP_SEEDS, SWEEP_TARGETS, sweep_metrics, write_synthetic_sweep
from scipy import stats

from taulib.analysis.intervals import Estimate
from taulib.analysis.matched import MatchedSettings, lower_bound_partner, run_table
from taulib.analysis.orthogonality import lower_bound_pairs
from taulib.analysis.report import _identity_claim, build_report, endpoints, headline_arm_of, identities_in_table, render_markdown
from taulib.analysis.study_data import load_study, planned_aa_controls
from taulib.study.run import NOTEBOOKS_DIR, REPORT_NOTEBOOK, execute_notebook

NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    outputs = write_synthetic_sweep(tmp_path_factory.mktemp("sweep"))
    study = load_study(outputs)
    arms = study.one_run_per_arm().runs
    names = {arm.name: arm.schedule_label for arm in arms}
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}
    table = run_table(study)
    report = build_report(table, "tightened", lower_bound_partner(study, "tightened"), "baseline", names, kinds=kinds)
    return outputs, study, table, report


def test_the_study_knows_its_sweep(sweep):
    _, study, table, _ = sweep
    assert study.is_sweep and study.l0_targets == list(SWEEP_TARGETS) and study.seeds == list(SWEEP_SEEDS)
    assert study.arm_names == list(SWEEP_ARMS)
    assert len(table) == len(SWEEP_ARMS) * len(SWEEP_TARGETS) * len(SWEEP_SEEDS)
    sliced = study.slice(30.0, 1)
    assert sliced.names == list(SWEEP_ARMS) and all(run.seed == 1 and run.l0_target == 30.0 for run in sliced.runs)
    # the floor pair is found although the calibrated λ differ
    assert [(low.name, high.name) for low, high in lower_bound_pairs(sliced)] == [("tightened", "higher_floor")]


def test_two_targets_leave_no_parabola_to_read_so_the_curvature_check_changes_nothing(sweep):
    _, _, _, report = sweep
    assert len(SWEEP_TARGETS) == 2 and "the frontier's curvature decides none of them" in report.frontier_sensitivity


def _frontier_value(arm: str, seed: int, target: float, column: str) -> float:
    """An independent reading of the frontier: the two runs' final (L0, value), a line through them in log L0."""
    points = [(sweep_metrics(arm, t, seed)["l0"].iloc[-1], sweep_metrics(arm, t, seed)[column].iloc[-1]) for t in SWEEP_TARGETS]
    (x0, y0), (x1, y1) = sorted(points)
    return y0 + (y1 - y0) * (np.log(target) - np.log(x0)) / (np.log(x1) - np.log(x0))


def test_comparison_numbers_match_an_independent_paired_computation(sweep):
    _, _, _, report = sweep
    checked = 0
    column = "final_alive_excess_mean_max_cosine"
    comparisons = [c for c in report.claims if c.kind == "comparison" and c.question == "orthogonality"]
    # the primary contrasts (the reference against plain L1 on the primary endpoint) are one Holm family, the rest another
    family = {role: sum(c.primary == role for c in comparisons) for role in (True, False)}
    assert report.primary_contrasts == ["baseline"] and family[True] == len(SWEEP_TARGETS)
    for claim in comparisons:
        if claim.column != column:
            continue
        target = claim.numbers["l0_target"]
        ours = np.array([_frontier_value("tightened", seed, target, "alive_excess_mean_max_cosine") for seed in SWEEP_SEEDS])
        theirs = np.array([_frontier_value(claim.other, seed, target, "alive_excess_mean_max_cosine") for seed in SWEEP_SEEDS])
        paired = stats.ttest_rel(ours, theirs)
        interval = paired.confidence_interval(0.95)
        assert claim.numbers["reference"] == pytest.approx(ours.mean())
        assert claim.numbers["difference"] == pytest.approx(ours.mean() - theirs.mean())
        assert (claim.numbers["difference_low"], claim.numbers["difference_high"]) == pytest.approx((interval.low, interval.high))
        assert claim.numbers["p"] == pytest.approx(paired.pvalue)
        assert claim.numbers["family"] == family[claim.primary] and claim.numbers["adjusted_p"] >= claim.numbers["p"]
        assert claim.verdict == "better"  # tightened ends 0.07 lower, seed noise 0.003
        assert claim.primary == (claim.other == "baseline")  # linear is a secondary contrast
        checked += 1
    assert checked == 2 * len(SWEEP_TARGETS)  # plain L1 and linear; the floor partner is compared under the lower bound alone
    assert not [c for c in report.claims if c.kind == "comparison" and c.other == "higher_floor" and c.question != "lower_bound"]


def test_every_number_in_a_claim_is_one_of_its_computed_numbers(sweep):
    _, _, _, report = sweep
    # endpoint labels carry settings (90% of the rise, 25% of training), not computed numbers
    endpoint_labels = [endpoint.label for endpoint in endpoints(MatchedSettings())]
    labels = sorted([*report.names.values(), *endpoint_labels], key=len, reverse=True) + ["95%", "90%", "k=1 F1", "top-1", "L0", "L1", "2 ×"]
    for claim in report.claims:
        allowed = set()
        for value in claim.numbers.values():
            allowed |= {f"{value:g}", str(int(value)) if float(value).is_integer() else ""}
            for digits in (2, 3):
                allowed |= set(NUMBER.findall(Estimate(value, value, value, 1, "t").format(digits)))
        text = claim.text
        for label in labels:
            text = text.replace(label, "")
        quoted = NUMBER.findall(text)
        assert set(quoted) <= allowed, (claim.text, set(quoted) - allowed)


def test_noise_is_reported_as_unresolved(sweep):
    _, _, _, report = sweep
    # explained variance is the same function of L0 for every arm: only seed noise separates them
    floor_ev = [c for c in report.claims if c.question == "lower_bound" and c.column == "final_explained_variance"]
    assert len(floor_ev) == len(SWEEP_TARGETS)
    assert all(c.verdict == "unresolved" and "inconclusive" in c.text for c in floor_ev)
    # the verdict is the primary contrasts' (against plain L1); the counts over every arm draw none
    primary = {(c.question, c.numbers["l0_target"]): c.verdict for c in report.claims if c.kind == "comparison" and c.primary}
    assert {primary[("orthogonality", t)] for t in SWEEP_TARGETS} == {"better"} and {primary[("reconstruction", t)] for t in SWEEP_TARGETS} == {"unresolved"}
    tallies = {c.column: c for c in report.claims if c.kind == "tally"}
    counted = tallies["final mean max decoder cosine of alive latents over its random baseline"]
    assert counted.verdict == "count" and counted.numbers["better"] == 2 * len(SWEEP_TARGETS) and "A count, not a verdict" in counted.text


def test_orthogonality_is_shown_beside_the_dead_fraction_and_both_baselines(sweep):
    _, _, _, report = sweep
    context = report.orthogonality_context
    assert list(context.index) == [report.names[arm] for arm in report.names] and len(context.columns) == 2
    assert all(cell.startswith("dead 0.0%; alive ") and "(random 0.250, covariance 0.300)" in cell for cell in context.to_numpy().ravel())


def test_late_l0_drift_reads_the_l0_at_nine_tenths_between_the_checkpoints_around_it():
    from taulib.analysis.matched import late_l0_drift

    drift, position = late_l0_drift(np.array([0, 50, 80, 100]), np.array([100.0, 60.0, 50.0, 40.0]))
    assert drift == pytest.approx(40 / 45 - 1) and position == 0.8  # L0 45 at 90 tokens, halfway from 50 to 40
    assert late_l0_drift(np.array([0, 90, 100]), np.array([9.0, 5.0, 5.0])) == (0.0, 0.9)  # settled
    assert all(np.isnan(late_l0_drift(np.array([95, 100]), np.array([5.0, 4.0]))))  # no checkpoint that early


def test_the_report_shows_how_far_each_run_got(sweep):
    """Every run's late L0 drift and final decoder cosine to initialisation, seeds in order, as the run table has them."""
    _, _, table, report = sweep
    regime = report.regime
    assert list(regime.index) == [report.names[arm] for arm in report.names]
    run = table.sort_values(["arm", "l0_target", "seed"]).iloc[0]
    cell = table[(table["arm"] == run["arm"]) & (table["l0_target"] == run["l0_target"])].sort_values("seed")
    assert regime.loc[report.names[run["arm"]], f"L0 = {run['l0_target']:g}: L0 drift"] == ", ".join(f"{v:+.1%}" for v in cell["l0_drift_late"])
    assert regime.loc[report.names[run["arm"]], f"L0 = {run['l0_target']:g}: decoder cosine to init"].startswith(
        ", ".join(f"{v:.2f}" for v in cell["final_decoder_init_cosine_weighted_median"])
    )
    np.testing.assert_allclose(table["final_decoder_init_cosine_weighted_median"], 0.45)  # the formula's end
    assert (table["l0_drift_late"] <= 0).all() and (table["l0_drift_late"] > -0.5).all()  # L0 still falls towards its end
    assert "## How far training went" in render_markdown(report, {}, {}, pd.DataFrame(), "")


def test_absorption_is_out_of_range_on_narrow_saes(sweep):
    _, _, _, report = sweep
    absorption = [c for c in report.by_question("absorption") if c.kind != "count"]
    assert absorption and {c.verdict for c in absorption} == {"out of range"}
    assert any("Absorption-reduction speed" in line for line in report.out_of_range)
    # no verdict, but what was measured: both arms' readings and their paired difference, with no p-value
    compared = [c for c in absorption if c.kind == "comparison"]
    assert compared and all("measured" in c.text and "no verdict" in c.text and "p =" not in c.text for c in compared)
    for claim in compared:
        numbers = claim.numbers
        assert np.isfinite(numbers["difference"]) and numbers["pairs"] == 3
        # every seed paired: the mean paired difference is the difference of the two arms' means
        assert numbers["difference"] == pytest.approx(numbers["reference"] - numbers["other"], abs=1e-12)
        assert numbers["difference_low"] <= numbers["difference"] <= numbers["difference_high"]


def test_formation_is_timed_after_warm_up_and_compared_at_current_sparsity(sweep):
    _, _, table, report = sweep
    # the synthetic curves approach their end exponentially; tightened (time constant 3 steps) forms before linear (30)
    tightened, linear = (table[table["arm"] == arm]["formation_sae_top_1_accuracy"] for arm in ("tightened", "linear"))
    assert tightened.max() < linear.min()
    assert (table["formation_start_position"] == 0.1).all()  # a 5-step warm-up of 100 steps: the first checkpoint after it is step 10
    # tightened had formed by the window's start: its time is a bound (censored), so the paired t-test, which would
    # take the bound for the value, is not run; linear's times are observed
    assert (table[table["arm"] == "tightened"]["formation_sae_top_1_accuracy_censored"] == 1).all()
    assert (table[table["arm"] == "linear"]["formation_sae_top_1_accuracy_censored"] == 0).all()
    against_linear = [c for c in report.by_question("formation") if c.column == "formation_sae_top_1_accuracy" and c.kind == "comparison" and c.other == "linear"]
    assert against_linear and all(c.verdict == "no data" and "censored time" in c.text for c in against_linear)


KEPT_GROUND_TRUTH = Path(__file__).resolve().parents[1] / "docs" / "findings" / "ground_truth"


def test_report_notebook_writes_the_report(sweep, tmp_path):
    outputs, _, _, report = sweep
    notebook = tmp_path / "05_report.ipynb"
    execute_notebook(
        NOTEBOOKS_DIR / REPORT_NOTEBOOK,
        notebook,
        {
            "outputs_dir": str(outputs),
            "figures_dir": str(outputs / "figures"),
            "save_png": False,
            "reference_arm": "tightened",
            "ground_truth_track_dir": str(KEPT_GROUND_TRUTH),  # the kept track's summary: its verdicts open the report
        },
    )
    text = (outputs / "REPORT.md").read_text()
    assert text.index("## Ground truth first") < text.index("## The language model") < text.index("## Matched sparsity")
    for title in (
        "Matched sparsity",
        "Out of range at this scale",
        "Early concept formation",
        "Final feature orthogonality",
        "Absorption-reduction speed",
        "τ trajectory vs performance",
        "The lower bound's impact",
    ):
        assert f"## {title}" in text
    claims = json.loads((outputs / "report_claims.json").read_text())
    assert len(claims) == len(report.claims)
    sentences = [line[2:] for line in text.splitlines() if line.startswith("- At L0") or " comparisons (arms × L0 targets" in line]
    assert sentences and set(sentences) <= {claim["text"] for claim in claims}  # every sentence is a generated claim
    assert "inconclusive" in text and "Primary endpoint:" in text and "Holm-adjusted p" in text
    assert (outputs / "figures" / "05_pareto_final.html").is_file() and "figures/05_pareto_final.html" in text


def test_a_failed_run_leaves_its_arm_in_the_report(sweep, tmp_path):
    """The runs 03/04 show by default (middle target, first seed) are missing for two arms, the floor
    pair's high one among them: the report still compares every arm, the floor pair included."""
    import shutil

    outputs = tmp_path / "outputs"
    shutil.copytree(sweep[0], outputs, ignore=shutil.ignore_patterns("figures", "REPORT.md", "report_claims.json"))
    target, seed = SWEEP_TARGETS[len(SWEEP_TARGETS) // 2], SWEEP_SEEDS[0]
    summary = json.loads((outputs / "study_summary.json").read_text())
    for run in summary["runs"]:
        if run["sweep"]["arm"] in ("baseline", "higher_floor") and run["sweep"]["l0_target"] == target and run["seed"] == seed:
            run["status"] = "failed"
    (outputs / "study_summary.json").write_text(json.dumps(summary))
    study = load_study(outputs)
    assert len(study.runs) == len(SWEEP_ARMS) * len(SWEEP_TARGETS) * len(SWEEP_SEEDS) - 2
    assert study.one_run_per_arm().names == list(SWEEP_ARMS) and lower_bound_partner(study, "tightened") == "higher_floor"
    sliced = study.slice()  # what 03 and 04 show: the arms without that run are named
    assert sliced.names == ["tightened", "linear"] and sliced.slice_label.endswith("no such run for baseline, higher_floor")
    execute_notebook(
        NOTEBOOKS_DIR / REPORT_NOTEBOOK,
        tmp_path / "05_report.ipynb",
        {"outputs_dir": str(outputs), "figures_dir": str(outputs / "figures"), "save_png": False, "reference_arm": "tightened"},
    )
    claims = json.loads((outputs / "report_claims.json").read_text())
    others = {claim["other"] for claim in claims if claim.get("other")}
    assert {"baseline", "higher_floor"} <= others
    assert any(claim["question"] == "lower_bound" for claim in claims)
    # the missing runs are listed with the cells they would have fed, none of which was read across them
    report_text = (outputs / "REPORT.md").read_text()
    assert "Planned runs with no result (failed, removed, or never calibrated)" in report_text
    assert report_text.count(f", seed {seed}, L0 target {target:g} (cells it would have fed: L0 {target:g}") == 2  # both arms' runs


def test_a_direction_the_frontier_curvature_decides_is_reported_unresolved(sweep, monkeypatch):
    """Where the parabola reading of the frontier reverses a direction the line reading resolved, the report
    says unresolved, in the claim, its tally and its table, and lists it (the sweep's two targets leave no
    parabola, so the quadratic reading is made to reverse the orthogonality primary here)."""
    import taulib.analysis.report as report_module

    _, study, table, _ = sweep
    column = "final_alive_excess_mean_max_cosine"
    original = report_module.matched_table

    def reversed_when_curved(frame, columns, shape="linear"):
        matched = original(frame, columns, shape=shape)
        if shape == "quadratic":
            mine = matched["arm"] == "tightened"
            matched.loc[mine, column] = 1.0 + 0.001 * matched.loc[mine, "seed"]  # far worse than every arm, with spread
        return matched

    monkeypatch.setattr(report_module, "matched_table", reversed_when_curved)
    arms = study.one_run_per_arm().runs
    names = {arm.name: arm.schedule_label for arm in arms}
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}
    report = build_report(table, "tightened", lower_bound_partner(study, "tightened"), "baseline", names, kinds=kinds)
    primary = [c for c in report.claims if c.kind == "comparison" and c.column == column and c.question == "orthogonality"]
    assert primary and all(c.verdict == "unresolved" and c.numbers.get("curvature_decided") == 1 for c in primary)
    assert all("depends on the frontier's curvature (read off a parabola: worse)" in c.text for c in primary)
    tally = next(c for c in report.claims if c.kind == "tally" and c.question == "orthogonality" and c.primary)
    assert tally.verdict == "count" and tally.numbers["better"] == 0
    decided = [c for c in report.claims if c.numbers.get("curvature_decided") == 1]  # the lower bound's question reads the same column
    assert f"{len(decided)} more did not, and are reported unresolved" in report.frontier_sensitivity
    table_cells = report.tables[f"orthogonality:{column}"].to_numpy().ravel()
    assert all(cell.endswith("·") for cell in table_cells)


def test_a_censored_formation_time_is_not_tested(sweep):
    """Two arms whose formation times are observed are compared; once one seed's run never formed (its time
    a bound at the end of training), every comparison whose reading rests on it is not tested, and says why."""
    _, study, table, _ = sweep
    arms = study.one_run_per_arm().runs
    names = {arm.name: arm.schedule_label for arm in arms}
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}

    def linear_against_higher_floor(frame):
        report = build_report(frame, "linear", None, "baseline", names, kinds=kinds)
        return [c for c in report.claims if c.kind == "comparison" and c.column == "formation_sae_top_1_accuracy" and c.other == "higher_floor"]

    table = table.copy()  # higher_floor's times made observed (some of its seeds had formed by the window's start)
    floor, linear = table["arm"] == "higher_floor", table["arm"] == "linear"
    table.loc[floor, "formation_sae_top_1_accuracy"] = table.loc[linear, "formation_sae_top_1_accuracy"].to_numpy() + [0.05, 0.07, 0.06, 0.05, 0.08, 0.06][: int(floor.sum())]
    table.loc[floor, "formation_sae_top_1_accuracy_censored"] = 0.0
    observed = linear_against_higher_floor(table)
    assert observed and all(c.verdict in ("better", "worse", "unresolved") and c.numbers["censored"] == 0 for c in observed)
    censored = table.copy()
    mine = (censored["arm"] == "linear") & (censored["seed"] == 0)
    censored.loc[mine, "formation_sae_top_1_accuracy"] = 1.0
    censored.loc[mine, "formation_sae_top_1_accuracy_censored"] = 1.0
    untested = linear_against_higher_floor(censored)
    assert untested and all(c.verdict == "no data" and c.numbers["censored"] >= 1 and "censored time" in c.text for c in untested)


def test_a_censored_median_formation_is_not_tested_and_a_time_endpoint_needs_its_censoring_flag(sweep):
    """The median latent's formation time is a time: once half a run's latents never formed, its median is the end of
    training, a bound, and a comparison resting on it is not tested. A time endpoint whose flag is missing is an error."""
    _, study, table, _ = sweep
    arms = study.one_run_per_arm().runs
    names = {arm.name: arm.schedule_label for arm in arms}
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}
    timed = [e.column for e in endpoints(MatchedSettings()) if e.time and e.column in table]
    assert "latent_formation_median" in timed and all(f"{column}_censored" in table for column in timed)  # every time with its flag

    def linear_against_higher_floor(frame):
        report = build_report(frame, "linear", None, "baseline", names, kinds=kinds)
        return [c for c in report.claims if c.kind == "comparison" and c.column == "latent_formation_median" and c.other == "higher_floor"]

    table = table.copy()
    floor, linear = table["arm"] == "higher_floor", table["arm"] == "linear"
    table.loc[linear, "latent_formation_median"] = 0.4 + 0.01 * np.arange(int(linear.sum()))
    table.loc[floor, "latent_formation_median"] = 0.6 + 0.01 * np.arange(int(floor.sum()))[::-1]
    table.loc[floor | linear, "latent_formation_median_censored"] = 0.0
    observed = linear_against_higher_floor(table)
    assert observed and all(c.verdict in ("better", "worse", "unresolved") and c.numbers["censored"] == 0 for c in observed)
    assert any(c.verdict == "better" for c in observed)  # 0.2 earlier on every seed: resolved
    censored = table.copy()
    mine = (censored["arm"] == "higher_floor") & (censored["seed"] == 1)
    censored.loc[mine, "latent_formation_median"] = 1.0
    censored.loc[mine, "latent_formation_median_censored"] = 1.0
    untested = linear_against_higher_floor(censored)
    assert untested and all(c.verdict == "no data" and c.numbers["censored"] >= 1 and "censored time" in c.text for c in untested)
    with pytest.raises(ValueError, match="'latent_formation_median' has no 'latent_formation_median_censored'"):
        build_report(table.drop(columns="latent_formation_median_censored"), "linear", None, "baseline", names, kinds=kinds)


def _identity_table(difference: float = 0.0, penalty: float = 1.446):
    """Plain L1 over two targets × two seeds (λ = 1.446), and one identity run of constant τ = 0.3 at (50, seed 0),
    its λ 0.4338 = 0.3 × 1.446, its final λ/τ `penalty`."""
    rows = [
        {
            "arm": "plain",
            "l0_target": t,
            "seed": s,
            "l1_coefficient": 1.446,
            "final_explained_variance": 0.7 + t / 1000 + s / 100,
            "final_l0": t * 1.01,
            "early_l0": 300.0,
            "final_l1_coefficient": 1.446,
        }
        for t in (20.0, 50.0)
        for s in (0, 1)
    ]
    twin = dict(rows[2])  # plain at L0 50, seed 0
    rows.append(
        twin | {"arm": "constant", "l1_coefficient": 0.4338, "final_explained_variance": twin["final_explained_variance"] + difference, "final_l1_coefficient": penalty}
    )
    return pd.DataFrame(rows)


def test_a_constant_arm_with_one_run_is_an_identity_check_against_its_plain_l1_twin():
    kinds = {"plain": "none", "constant": "constant"}
    same = _identity_table()
    assert identities_in_table(same, kinds, "plain") == ["constant"]
    claim = _identity_claim(same, "constant", "plain", {"plain": "plain L1", "constant": "constant τ"})
    assert claim.verdict == "equivalent" and claim.kind == "equivalence" and "identical in all 4" in claim.text
    assert claim.numbers["runs"] == 1 and claim.numbers["differing"] == 0
    # the identity run's λ/τ as the trainer computes it: 0.4338 / 0.3 is 1.4460000000000002, one ulp from 1.446
    assert 0.4338 / 0.3 != 1.446
    rounded = _identity_claim(_identity_table(penalty=0.4338 / 0.3), "constant", "plain", {"plain": "plain L1", "constant": "constant τ"})
    assert rounded.verdict == "equivalent"
    other_penalty = _identity_claim(_identity_table(penalty=1.4461), "constant", "plain", {"plain": "plain L1", "constant": "constant τ"})
    assert other_penalty.verdict == "not shown equivalent" and "final_l1_coefficient" in other_penalty.text
    off = _identity_claim(_identity_table(1e-6), "constant", "plain", {"plain": "plain L1", "constant": "constant τ"})
    assert off.verdict == "not shown equivalent" and "final_explained_variance" in off.text
    assert off.numbers["max_difference_final_explained_variance"] == pytest.approx(1e-6)
    # swept like the others (as many runs as plain L1): the paired equivalence test instead, not this
    full = same[same["arm"] == "plain"].assign(arm="constant")
    assert identities_in_table(pd.concat([same[same["arm"] == "plain"], full], ignore_index=True), kinds, "plain") == []


def test_identity_arms_are_the_ones_the_sweep_planned_not_the_ones_with_fewer_runs():
    """A constant-τ arm that lost runs is still an arm of the comparison when the sweep did not plan it as an identity
    check; one the sweep planned is an identity check however many runs it has. The plan (outputs/sweeps/plan.json) says."""
    kinds = {"plain": "none", "constant": "constant"}
    table = _identity_table()
    assert identities_in_table(table, kinds, "plain", planned={}) == []  # planned as an arm: one run left is not an identity
    assert identities_in_table(table, kinds, "plain", planned={"constant": "plain"}) == ["constant"]
    assert identities_in_table(table, kinds, "plain") == ["constant"]  # without a plan: the old rule, by run counts


def test_the_planned_identities_are_read_from_the_sweeps_plan(tmp_path):
    from taulib.analysis.study_data import planned_identities

    assert planned_identities(tmp_path) is None
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "plan.json").write_text(json.dumps({"identities": {"constant_0.3": "baseline_plain_l1"}, "runs": []}))
    assert planned_identities(tmp_path) == {"constant_0.3": "baseline_plain_l1"}


def test_the_aa_control_is_compared_with_its_arm_on_every_endpoint_and_answers_no_question(tmp_path):
    """baseline's A/A control (the same formulas, its own seed noise, its own λ) is unresolved everywhere; it is
    matched like an arm but is neither compared, nor an equivalence arm, nor the headline."""
    outputs = write_synthetic_sweep(tmp_path / "aa", aa=True)
    study = load_study(outputs)
    arms = study.one_run_per_arm().runs
    names = {arm.name: arm.schedule_label for arm in arms}
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}
    assert planned_aa_controls(outputs) == {AA_ARM: "baseline"} and names[AA_ARM] == names["baseline"] + " again (A/A)"
    assert headline_arm_of(arms, "tightened") == "baseline"
    table = run_table(study)
    report = build_report(table, "tightened", None, "baseline", names, kinds=kinds, aa_controls=planned_aa_controls(outputs))
    aa = [c for c in report.claims if c.kind == "aa"]
    measured = {e.column for e in endpoints(MatchedSettings()) if e.column in table}
    assert {c.column for c in aa} == measured and len(aa) == len(measured) * len(SWEEP_TARGETS)
    assert all(c.other == AA_ARM and c.verdict in ("unresolved", "no data") for c in aa)
    tested = [c for c in aa if c.verdict == "unresolved"]
    assert tested and all(c.numbers["family"] == len(tested) for c in tested)  # one Holm family over every A/A comparison
    [summary] = [c for c in report.claims if c.kind == "aa_summary"]
    assert summary.verdict == "unresolved" and f"unresolved on all {len(tested)}" in summary.text
    assert all(c.other != AA_ARM for c in report.claims if c.kind in ("comparison", "equivalence"))
    assert AA_ARM in set(report.matched["arm"])
    markdown = render_markdown(report, {}, {}, pd.DataFrame(), "")
    assert "## The A/A control" in markdown and summary.text in markdown


def test_an_aa_control_that_differs_is_reported_loudly(sweep):
    """The risk the control exists for: a difference where none should be. Declared as baseline's A/A control,
    tightened (which ends with lower cosines and forms faster) is resolved, and the summary names where."""
    _, study, table, _ = sweep
    arms = study.one_run_per_arm().runs
    names = {arm.name: arm.schedule_label for arm in arms}
    kinds = {arm.name: arm.config.schedule.kind for arm in arms}
    report = build_report(table, "linear", None, "baseline", names, kinds=kinds, aa_controls={"tightened": "baseline"})
    [summary] = [c for c in report.claims if c.kind == "aa_summary"]
    assert summary.verdict == "resolved" and "RESOLVED on" in summary.text and "final_alive_excess_mean_max_cosine" in summary.text
    assert summary.numbers["resolved"] >= 1 and not any(c.other == "tightened" for c in report.claims if c.kind == "comparison")
