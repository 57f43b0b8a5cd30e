"""The study's written verdict, generated from a sweep's numbers.

Every sentence is a `Claim` built from computed estimates: the text quotes only numbers held in
`Claim.numbers` (formatted by `Estimate.format`), and its verdict word follows from the interval
(a difference whose 95% interval includes 0 is reported as unresolved, never as a direction).
`render_markdown` lays the claims and tables out as outputs/REPORT.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from taulib.analysis.intervals import Estimate, bootstrap_interval, spearman, t_interval
from taulib.analysis.matched import FORMATION_METRICS, ORTHOGONALITY_METRICS, PARETO_METRICS, MatchedSettings, Metric, cell_values, difference
from taulib.analysis.study_data import StudyData

RECONSTRUCTION_COLUMNS = ("explained_variance", "ce_loss_score")

QUESTIONS = {
    "reconstruction": "Reconstruction at matched sparsity",
    "formation": "Early concept formation",
    "orthogonality": "Final feature orthogonality",
    "absorption": "Absorption-reduction speed",
    "trajectory": "τ trajectory vs performance",
    "lower_bound": "The lower bound's impact",
}


@dataclass(frozen=True)
class Claim:
    question: str  # a key of QUESTIONS
    text: str
    numbers: dict[str, float]  # every number the text quotes, by name
    verdict: str  # better | worse | unresolved | no data (for correlations: positive | negative | unresolved)
    kind: str = "comparison"  # comparison (two arms at one target) | tally (over arms and targets) | correlation
    other: str | None = None  # the arm a comparison is against


@dataclass(frozen=True)
class Comparison:
    """One question's metric, compared between a reference arm and the others at every L0 target."""

    question: str
    column: str  # a run_table column
    label: str
    higher_is_better: bool


@dataclass
class Report:
    reference: str
    headline: str | None  # the arm the detailed sentences compare against (the plain-L1 baseline)
    names: dict[str, str]  # arm → readable name
    targets: list[float]
    seeds: list[int]
    claims: list[Claim] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # question → differences table (markdown-ready)

    def by_question(self, question: str) -> list[Claim]:
        return [claim for claim in self.claims if claim.question == question]


def _comparisons(settings: MatchedSettings) -> list[Comparison]:
    # the Pareto curves' reconstruction axes, read where the arms' L0 is matched: at the end
    reconstruction = [
        Comparison("reconstruction", f"final_{m.column}", f"final {m.label}", m.higher_is_better) for m in PARETO_METRICS if m.column in RECONSTRUCTION_COLUMNS
    ]
    formation = [
        Comparison("formation", f"formation_{m.column}", f"share of training to {settings.fraction:.0%} of final {m.label}", False) for m in FORMATION_METRICS
    ]
    early = [Comparison("formation", f"early_{m.column}", f"{m.label} at the early checkpoint", m.higher_is_better) for m in FORMATION_METRICS]
    orthogonality = [Comparison("orthogonality", f"final_{m.column}", f"final {m.label}", m.higher_is_better) for m in ORTHOGONALITY_METRICS]
    absorption = [
        Comparison("absorption", "absorption_area", f"{settings.absorption_metric.replace('_', ' ')} averaged over log tokens", False),
        Comparison("absorption", f"final_{settings.absorption_metric}", f"final {settings.absorption_metric.replace('_', ' ')}", False),
    ]
    return [*reconstruction, *formation, *early, *orthogonality, *absorption]


def _verdict(estimate: Estimate, higher_is_better: bool) -> str:
    if not math.isfinite(estimate.value) or not estimate.defined:
        return "no data"
    if not estimate.excludes_zero:
        return "unresolved"
    return "better" if (estimate.value > 0) == higher_is_better else "worse"


def _numbers(prefix: str, estimate: Estimate) -> dict[str, float]:
    return {f"{prefix}": estimate.value, f"{prefix}_low": estimate.low, f"{prefix}_high": estimate.high}


def comparison_claim(table: pd.DataFrame, comparison: Comparison, reference: str, other: str, target: float, names: dict[str, str]) -> Claim:
    """'At L0 ≈ T, <metric>: A x [l, h] (L0 …), B y [l, h] (L0 …); A − B d [l, h]: <verdict in words>.'"""
    ours, theirs = t_interval(cell_values(table, reference, target, comparison.column)), t_interval(cell_values(table, other, target, comparison.column))
    our_l0, their_l0 = t_interval(cell_values(table, reference, target, "final_l0")), t_interval(cell_values(table, other, target, "final_l0"))
    gap = difference(table, comparison.column, reference, other, target)
    verdict = _verdict(gap, comparison.higher_is_better)
    meaning = {
        "better": f"{names[reference]} is {'higher' if gap.value > 0 else 'lower'}, which is better",
        "worse": f"{names[reference]} is {'higher' if gap.value > 0 else 'lower'}, which is worse",
        "unresolved": "the interval includes 0, so these seeds do not resolve a difference (inconclusive)",
        "no data": "too few finite values for an interval (inconclusive)",
    }[verdict]
    text = (
        f"At L0 ≈ {target:g}, {comparison.label}: {names[reference]} {ours.format()} (final L0 {our_l0.format()}), "
        f"{names[other]} {theirs.format()} (final L0 {their_l0.format()}); difference {gap.format()} "
        f"(Welch 95%, {ours.n} and {theirs.n} seeds): {meaning}."
    )
    numbers = {
        "l0_target": target,
        **_numbers("reference", ours),
        **_numbers("other", theirs),
        **_numbers("reference_l0", our_l0),
        **_numbers("other_l0", their_l0),
    }
    numbers |= _numbers("difference", gap) | {"reference_seeds": ours.n, "other_seeds": theirs.n}
    return Claim(comparison.question, text, numbers, verdict, "comparison", other)


def tally_claim(question: str, label: str, claims: list[Claim], reference_name: str) -> Claim:
    """How the reference fared over every arm and target for one metric."""
    counts = {verdict: sum(claim.verdict == verdict for claim in claims) for verdict in ("better", "worse", "unresolved", "no data")}
    total = len(claims)
    text = (
        f"{label}: over {total} comparisons (arms × L0 targets), {reference_name} was better in {counts['better']}, "
        f"worse in {counts['worse']}, and unresolved in {counts['unresolved'] + counts['no data']}."
    )
    if counts["better"] == 0 and counts["worse"] == 0:
        overall = "unresolved"
        text += " The evidence is inconclusive."
    elif counts["worse"] == 0 and counts["better"] > total / 2:
        overall = "better"
    elif counts["better"] == 0 and counts["worse"] > total / 2:
        overall = "worse"
    else:
        overall = "unresolved"
        text += " The evidence is mixed or mostly unresolved: no overall verdict."
    return Claim(question, text, {"comparisons": total, **{k.replace(" ", "_"): v for k, v in counts.items()}}, overall, "tally")


def correlation_claim(table: pd.DataFrame, target: float, metric: Metric, seed: int = 0) -> Claim:
    """Spearman ρ over the runs at one target between the penalty ramp and a final outcome, bootstrapped over runs."""
    rows = table[np.isclose(table["l0_target"], target)][["penalty_ramp", f"final_{metric.column}"]].dropna()
    estimate = bootstrap_interval((rows["penalty_ramp"].to_numpy(), rows[f"final_{metric.column}"].to_numpy()), spearman, paired=True, seed=seed)
    if not estimate.defined or not math.isfinite(estimate.value):
        verdict, meaning = "unresolved", "too few runs or no spread (inconclusive)"
    elif not estimate.excludes_zero:
        verdict, meaning = "unresolved", "the interval includes 0: no resolved association (inconclusive)"
    else:
        verdict = "positive" if estimate.value > 0 else "negative"
        direction = "higher" if estimate.value > 0 else "lower"
        goodness = "better" if (estimate.value > 0) == metric.higher_is_better else "worse"
        meaning = f"runs with a more back-loaded penalty ended with {direction} {metric.label} ({goodness})"
    how = " (bootstrap 95%)" if estimate.defined else ""
    text = f"At L0 ≈ {target:g}, over {estimate.n} runs, Spearman ρ between the penalty ramp and final {metric.label} is {estimate.format(2)}{how}: {meaning}."
    return Claim("trajectory", text, {"l0_target": target, "runs": estimate.n, **_numbers("rho", estimate)}, verdict, "correlation")


def differences_table(
    table: pd.DataFrame, comparison: Comparison, reference: str, others: list[str], targets: list[float], names: dict[str, str]
) -> pd.DataFrame:
    """reference − arm, mean [95% CI], arms × targets, with ✓ (better), ✗ (worse), · (unresolved)."""
    marks = {"better": "✓", "worse": "✗", "unresolved": "·", "no data": "–"}
    rows = {}
    for other in others:
        cells = {}
        for target in targets:
            gap = difference(table, comparison.column, reference, other, target)
            cells[f"L0 ≈ {target:g}"] = f"{gap.format()} {marks[_verdict(gap, comparison.higher_is_better)]}"
        rows[names[other]] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def build_report(
    table: pd.DataFrame,
    reference: str,
    floor_partner: str | None,
    headline: str | None = None,
    names: dict[str, str] | None = None,
    settings: MatchedSettings | None = None,
) -> Report:
    """Every claim of the report, from the run table of a sweep (taulib.analysis.matched.run_table)."""
    settings = settings or MatchedSettings()
    arms = list(dict.fromkeys(table["arm"]))
    if reference not in arms:
        raise ValueError(f"reference arm {reference!r} is not in the study; arms: {', '.join(arms)}")
    names = {arm: arm for arm in arms} | (names or {})
    targets = sorted(float(t) for t in table["l0_target"].dropna().unique())
    if headline is not None and headline not in arms:
        raise ValueError(f"headline arm {headline!r} is not in the study; arms: {', '.join(arms)}")
    report = Report(reference, headline, names, targets, sorted(int(s) for s in table["seed"].unique()))
    others = [arm for arm in arms if arm != reference]

    for comparison in _comparisons(settings):
        claims = [comparison_claim(table, comparison, reference, other, target, names) for other in others for target in targets]
        report.claims += claims
        report.claims.append(tally_claim(comparison.question, comparison.label, claims, names[reference]))
        report.tables[f"{comparison.question}:{comparison.column}"] = differences_table(table, comparison, reference, others, targets, names)

    for metric in PARETO_METRICS:
        for target in targets:
            report.claims.append(correlation_claim(table, target, metric))

    if floor_partner is not None:
        floor_comparisons = [Comparison("lower_bound", f"final_{m.column}", f"final {m.label}", m.higher_is_better) for m in PARETO_METRICS]
        floor_comparisons += [c for c in _comparisons(settings) if c.question in ("formation", "absorption") and not c.column.startswith("final_")]
        for comparison in floor_comparisons:
            claims = [
                comparison_claim(
                    table, Comparison("lower_bound", comparison.column, comparison.label, comparison.higher_is_better), reference, floor_partner, target, names
                )
                for target in targets
            ]
            report.claims += claims
    return report


# ----------------------------------------------------------------------------- markdown
def markdown_table(frame: pd.DataFrame, index_label: str = "") -> str:
    header = "| " + " | ".join([index_label, *map(str, frame.columns)]) + " |"
    rule = "|" + "---|" * (len(frame.columns) + 1)
    body = ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)]
    return "\n".join([header, rule, *body])


def calibration_table(table: pd.DataFrame, names: dict[str, str], tolerance: float | None) -> pd.DataFrame:
    """λ and the achieved final L0 (mean [CI] over seeds) of every arm at every target."""
    rows = {}
    for arm, group in table.groupby("arm", sort=False):
        cells = {}
        for target, cell in group.groupby("l0_target"):
            l0 = t_interval(cell["final_l0"])
            off = "" if tolerance is None or abs(l0.value / target - 1) <= tolerance else " (outside tolerance)"
            cells[f"L0 ≈ {target:g}"] = f"λ {cell['l1_coefficient'].iloc[0]:.4g}: {l0.format()}{off}"
        rows[names.get(arm, arm)] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def wall_time_line(summary: dict) -> str:
    """The study's wall time as study_summary.json records it (the report is written before the analyses end)."""
    if "seconds" not in summary:
        return "not recorded (no study_summary.json)"
    return (
        f"{summary['seconds'] / 60:.1f} min to the end of the runs (extraction {summary.get('extraction_seconds', 0) / 60:.1f} min, "
        f"λ calibration {summary.get('calibration_seconds', 0) / 60:.1f} min, the rest training and evaluating the runs); "
        "the analysis notebooks follow"
    )


def study_context(study: StudyData, table: pd.DataFrame, summary: dict, early_position: float) -> dict[str, str]:
    """The report's header lines: what was run, on what, and where "early" fell."""
    example = study.arms[0].config
    layer = example.model.layer if example.model.layer is not None else "(the middle one)"
    early = ", ".join(f"{p:.1%}" for p in sorted(table["early_position"].round(3).unique()))
    return {
        "source": f"`{study.outputs_root}`",
        "profile": str(summary.get("profile") or "default"),
        "runs": f"{len(table)} ({len(study.arm_names)} arms × {len(study.l0_targets)} L0 targets × {len(study.seeds)} seeds)",
        "model": f"{example.model.name}, residual stream after block {layer}",
        "SAE": f"{example.sae.width:,} latents, {example.training.n_tokens:,} training tokens, batch {example.training.batch_size}, {example.training.n_checkpoints} checkpoints",
        "early checkpoint": f"nearest {early_position:.0%} of training (at {early} of training)",
    }


def render_markdown(report: Report, context: dict[str, str], figures: dict[str, str], calibration: pd.DataFrame, wall_time: str) -> str:
    """REPORT.md: the question-by-question verdict with its claims, tables and figures."""
    ref = report.names[report.reference]
    lines = [
        "# τ-annealed SAEs at matched sparsity: study report",
        "",
        f"Generated by `notebooks/05_report` from {context.get('source', 'the study outputs')}. Every number below is computed from the runs;",
        "intervals are 95%: t intervals over seeds for means, Welch intervals for differences, percentile",
        "bootstrap over runs for correlations. A difference whose interval includes 0 is reported as unresolved.",
        "",
        f"- Reference arm: **{ref}**; compared with {', '.join(report.names[a] for a in report.names if a != report.reference)}.",
        f"- Final held-out L0 targets: {', '.join(f'{t:g}' for t in report.targets)}; seeds: {', '.join(map(str, report.seeds))}.",
        *[f"- {key}: {value}" for key, value in context.items() if key != "source"],
        f"- Wall time: {wall_time}",
        "",
        "## Matched sparsity",
        "",
        "λ was calibrated per arm so that every arm ends at the same final L0 (taulib.calibration). Achieved final L0, mean [95% CI] over seeds:",
        "",
        markdown_table(calibration, "arm"),
        "",
    ]
    for name, path in figures.items():
        if "pareto" in name:
            lines += [f"![{name}]({path})", ""]
    for key, title in QUESTIONS.items():
        claims = report.by_question(key)
        lines += [f"## {title}", ""]
        if not claims:
            lines += ["No pair of arms in this study differs only in τ's floor." if key == "lower_bound" else "No data.", ""]
            continue
        tallies = [c for c in claims if c.kind == "tally"]
        if tallies:
            lines += [f"**Summary**, {ref} against every other arm:", ""] + [f"- {claim.text}" for claim in tallies] + [""]
        for table_key, frame in report.tables.items():
            question, column = table_key.split(":", 1)
            if question == key:
                lines += [f"{ref} minus each arm, `{column}` (✓ better, ✗ worse, · unresolved):", "", markdown_table(frame, "arm"), ""]
        details = [c for c in claims if c.kind != "tally"]
        if key in ("reconstruction", "formation", "orthogonality", "absorption") and report.headline is not None:
            details = [c for c in details if c.other == report.headline]
            lines += [f"Against {report.names[report.headline]}:", ""]
        lines += [f"- {claim.text}" for claim in details] + [""]
    return "\n".join(lines).rstrip() + "\n"
