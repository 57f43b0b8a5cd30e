"""The ground-truth track's report: `REPORT.md`, `summary.json` and figures in the track's folder.

It leads with the verdicts on the two speed questions (primary contrasts, Holm-corrected), then per arm,
budget and target the speed and level summaries with intervals over replicates, the A/A control, the
dose-response families, which language-model proxies track the truth, every unmatched cell, and the
track's cost. The language model's report (taulib.analysis.report) puts this section first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from taulib import atomic
from taulib.analysis.findings import replace_marked_block
from taulib.analysis.intervals import Estimate, t_interval
from taulib.analysis.statistics import ALPHA
from taulib.groundtruth import analysis as gta
from taulib.groundtruth.endpoints import FEATURE_TYPES
from taulib.groundtruth.track import AGAIN, PLAIN, TIGHTENED, WARMUP
from taulib.provenance import cpu_kind

REPORT_FILE = "REPORT.md"
SUMMARY_FILE = "summary.json"
SUMMARY_COLUMNS = ("recovery_time", "share_time", "mcc_area", "final_mcc", "final_recall", "absorption_area", "final_absorption", "final_explained_variance")


@dataclass(frozen=True)
class TrackReport:
    record: dict[str, Any]
    runs: pd.DataFrame
    table: pd.DataFrame  # matched
    contrasts: list[gta.Contrast]
    aa: list[gta.Contrast]
    dose: list[gta.DoseResponse]
    proxies: list[gta.ProxyCheck]
    summary: pd.DataFrame

    @property
    def budgets(self) -> list[int]:
        return sorted(int(b) for b in self.runs["budget"].unique())

    @property
    def targets(self) -> list[float]:
        return [float(t) for t in self.record["config"]["l0_targets"]]


def analyse_track(root: Path) -> TrackReport:
    record = atomic.read_json(root / "track.json")
    runs = gta.load_runs(root)
    runs["seed_stability"] = gta.seed_stability(runs)
    config = record["config"]
    targets = [float(t) for t in config["l0_targets"]]
    table = gta.matched(runs, targets)
    budgets = sorted(int(b) for b in runs["budget"].unique())
    arms = [arm["name"] for arm in record["arms"] if arm["role"] == "study"]
    contrasts = gta.question_contrasts(table, arms, budgets, targets)
    aa = gta.aa_contrasts(table, budgets, targets)
    dose = gta.dose_response(table, record["identities"], config["tau_initial_family"], config["tau_final_family"], targets)
    proxies = gta.proxy_checks(runs)
    summary = gta.arm_summary(table, SUMMARY_COLUMNS)
    return TrackReport(record, runs, table, contrasts, aa, dose, proxies, summary)


# ----------------------------------------------------------------------------- text
def _fmt(estimate: Estimate, digits: int = 3) -> str:
    return estimate.format(digits)


def current_l0_rows(report: TrackReport) -> list[dict[str, Any]]:
    """Each primary arm's current L0 a quarter, half and three quarters into training, at the full budget and the first
    L0 target (read at matched final L0; mean over replicates): how far apart in sparsity the arms train."""
    cell = report.table[(report.table["budget"] == max(report.budgets)) & np.isclose(report.table["l0_target"], report.targets[0])]
    rows = []
    for arm in (PLAIN, TIGHTENED, WARMUP):
        mine = cell[cell["arm"] == arm]
        rows.append(
            {"arm": arm, "l0_target": report.targets[0]} | {f"{q:g}": float(np.nanmean(mine[f"l0_current_{q:g}"])) for q in gta.CURRENT_L0_FRACTIONS[:-1]}
        )
    return rows


def sparsity_sentence(rows: list[dict[str, Any]]) -> str:
    """What the speed verdicts compare: arms matched in *final* L0 that train at different sparsity."""
    fractions = [key for key in rows[0] if key not in ("arm", "l0_target")]
    listed = "; ".join(f"{_short(row['arm'])} " + ", ".join(f"{row[q]:.0f}" for q in fractions) for row in rows)
    return (
        f"These verdicts compare arms matched in *final* L0; along training they are not: at final L0 {rows[0]['l0_target']:g} (full budget), "
        f"the current L0 {', '.join(f'{float(q):.0%}' for q in fractions)} into training is {listed}. A faster rise of MCC under annealing is "
        "formation while the SAE is far denser than plain L1's, not at equal sparsity; at matched current L0 the arms' runs seldom overlap."
    )


def headline(report: TrackReport, question: str) -> str:
    """One sentence per question from its primary family only: per reference arm, the (budget, target) cells where
    tightened is resolved better or worse, each with its difference and interval; the rest unresolved."""
    primary = [c for c in report.contrasts if c.family == f"{question}: primary"]
    tested = [c for c in primary if math.isfinite(c.estimate.p_value)]
    if not any(c.verdict != "unresolved" for c in primary):
        return f"unresolved: none of the {len(tested)} primary contrasts (tightened against plain L1 and against the L1 warm-up, every budget and target) is resolved after Holm."
    parts = []
    for reference in dict.fromkeys(c.reference for c in primary):
        cells = [c for c in primary if c.reference == reference]
        said = []
        for verdict in ("better", "worse"):
            chosen = [c for c in cells if c.verdict == verdict]
            if chosen:
                where = ", ".join(f"{c.budget:,} samples at L0 {c.target:g}: {_fmt(c.estimate)}" for c in chosen)
                said.append(f"**{verdict}** in {len(chosen)} ({where})")
        unresolved = sum(c.verdict == "unresolved" for c in cells)
        said.append(f"unresolved in {unresolved}" if unresolved else "")
        parts.append(f"against {_short(reference)}, tightened is " + ", ".join(p for p in said if p) + f" of {len(cells)} budget × target cells")
    return "; ".join(parts) + " (difference [95% CI], tightened minus the reference)."


def primary_table(rows: list[dict[str, Any]]) -> list[str]:
    """The primary contrasts as a markdown table, from their summary rows (`Contrast.row`)."""
    lines = ["| question | tightened against | budget | L0 | difference [95% CI] | replicates | Holm p | verdict |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        interval = Estimate(*(math.nan if row[k] is None else row[k] for k in ("difference", "low", "high")), row["pairs"], "paired t").format()
        holm_p = "n/a" if row["holm_p"] is None else f"{row['holm_p']:.3g}"
        lines.append(
            f"| {row['question']} ({row['endpoint']}) | {_short(row['reference'])} | {row['budget']:,} | {row['l0_target']:g} | {interval} | {row['pairs']} | {holm_p} | {row['verdict']} |"
        )
    return lines


def lead_section(root: Path, report_link: str | None = None) -> str | None:
    """The section that leads the language model's report: the track's verdicts on formation and absorption speed
    with intervals and the A/A control, read from its kept summary.json (None when the track has not run)."""
    path = root / SUMMARY_FILE
    if not path.is_file():
        return None
    summary = atomic.read_json(path)
    link = report_link or str(root / REPORT_FILE)
    lines = [
        "## Ground truth first: does tightened annealing make features form faster?",
        "",
        f"From the ground-truth track ([its report]({link})): the arms on hierarchical worlds whose features are known, "
        "read at matched final L0, paired over replicates (world × training seed), Holm within each question.",
        "",
    ]
    lines += [f"- **{text}** {summary['headlines'][question]}" for question, text in gta.QUESTIONS.items()]
    tested, resolved = summary["aa_tested"], sum(row["verdict"] != "unresolved" for row in summary["aa"])
    state = (
        "not tested (no matched cell)" if not tested else f"**resolved on {resolved}** (a difference where there is none)" if resolved else "unresolved on all"
    )
    lines.append(f"- **A/A control** (plain L1 against its own second calibration): {state} of {tested} contrasts.")
    lines += ["", *primary_table([row for row in summary["contrasts"] if row["family"].endswith(": primary")])]
    lines += ["", sparsity_sentence(summary["current_l0"]), ""]
    return "\n".join(lines)


def _short(arm: str) -> str:
    return {PLAIN: "plain L1", WARMUP: "the L1 warm-up", TIGHTENED: "tightened", AGAIN: "plain L1 (A/A)"}.get(arm, arm)


def markdown(report: TrackReport, level: int = 1) -> str:
    h = "#" * level
    config = report.record["config"]
    world = config["world"]
    lines = [
        f"{h} Ground truth: does tightened annealing make features form faster?",
        "",
        f"Hierarchical worlds (taulib.groundtruth.world): {world['n_features']:,} true features in {world['d_model']} dimensions — "
        f"{world['n_parents']} parents with {world['children_per_parent']} mutually exclusive children each (depth {world['hierarchy_depth']}), "
        f"{world['n_rare']} rare features, correlated groups of {world['correlation_group_size']} (ρ {world['correlation']:g}), "
        f"children at cosine {world['child_cosine_low']:g}–{world['child_cosine_high']:g} to their parent, true L0 {world['mean_active_features']:g}, "
        f"{world['dense_variance_share']:.0%} of the variance dense (low-rank background and noise). "
        f"{len(config['world_seeds'])} worlds × {len(config['training_seeds'])} training seeds = {len(config['world_seeds']) * len(config['training_seeds'])} paired replicates; "
        f"SAE width {config['width_ratio']:g}× the true features; budgets {', '.join(f'{b:,}' for b in report.budgets)} samples; "
        f"endpoints read at matched final L0 {', '.join(f'{t:g}' for t in report.targets)} off each arm's calibrated runs (two per target).",
        "",
        f"{h}# Verdicts (primary contrasts, paired over replicates, Holm within each question, α = {ALPHA})",
        "",
    ]
    for question, text in gta.QUESTIONS.items():
        primary = next(e for e in gta.ENDPOINTS if e.question == question and e.primary)
        lines.append(f"- **{text}** Primary endpoint: {primary.label}. {headline(report, question)}")
    aa_resolved = [c for c in report.aa if c.verdict != "unresolved"]
    aa_tested = [c for c in report.aa if math.isfinite(c.estimate.p_value)]
    lines.append(
        "- **A/A control** (plain L1 calibrated a second time, its grid between the first's): "
        + (
            "**not tested**: no A/A cell was matched"
            if not aa_tested
            else "unresolved on every endpoint, budget and target"
            if not aa_resolved
            else f"**RESOLVED on {len(aa_resolved)} of {len(aa_tested)}** — the machinery finds a difference where there is none: "
            + ", ".join(f"{c.endpoint.column} (budget {c.budget:,}, L0 {c.target:g})" for c in aa_resolved)
        )
        + f" ({len(aa_tested)} contrasts tested)."
    )
    lines += ["", *primary_table([_finite(c.row()) for c in report.contrasts if c.family.endswith(": primary")])]
    lines += ["", sparsity_sentence(current_l0_rows(report))]
    lines += ["", f"{h}# Per arm, budget and target (mean over replicates [95% t interval])", ""]
    labels = {e.column: e.label for e in gta.ENDPOINTS} | {"final_explained_variance": "final explained variance"}
    lines += [f"- `{c}`: {labels.get(c, c)}" for c in SUMMARY_COLUMNS]
    lines.append("")
    header = "| arm | budget | L0 | matched | " + " | ".join(SUMMARY_COLUMNS) + " |"
    lines += [header, "|" + "---|" * (4 + len(SUMMARY_COLUMNS))]
    for _, row in report.summary.sort_values(["budget", "l0_target", "arm"]).iterrows():
        cells = [row["arm"], f"{row['budget']:,}", f"{row['l0_target']:g}", f"{row['matched']}/{row['replicates']}"] + [_fmt(row[c]) for c in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    full = max(report.budgets)
    lines += ["", f"{h}# Recovery and firing F1 by feature type (full budget, mean over replicates [95% t interval])", ""]
    lines += ["Absorption acts on parents (their latents fall silent) and on children (their latents take the parent's direction).", ""]
    type_columns = [f"final_{kind}_{feature}" for kind in ("recall", "f1") for feature in FEATURE_TYPES]
    lines += ["| arm | L0 | " + " | ".join(type_columns) + " |", "|" + "---|" * (2 + len(type_columns))]
    for (arm, target), cell in report.table[report.table["budget"] == full].groupby(["arm", "l0_target"]):
        lines.append(
            f"| {arm} | {target:g} | " + " | ".join(_fmt(t_interval(cell[c].to_numpy(dtype=float))) if c in cell else "n/a" for c in type_columns) + " |"
        )
    lines += ["", f"{h}# Every contrast", "", "Difference = arm − reference (paired over replicates); verdict from the Holm-adjusted p of its family.", ""]
    lines += [
        "| family | endpoint | arm | reference | budget | L0 | difference [95% CI] | pairs | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.contrasts + report.aa:
        lines.append(
            f"| {c.family} | {c.endpoint.column} | {c.arm} | {c.reference} | {c.budget:,} | {c.target:g} | {_fmt(c.estimate)} | {c.estimate.n} | {c.adjusted_p:.3g} | {c.verdict} |"
        )
    lines += ["", f"{h}# τ trajectory and the floor (dose-response, full budget)", ""]
    lines.append("Per replicate, endpoint = a + b·x + c·x² with x = log τ (centred); b and c tested over replicates, Holm within each family.")
    lines.append("")
    for d in report.dose:
        members = ", ".join(f"{t:g}" for t in d.members)
        lines.append(f"- {d.family} ({members}), {d.endpoint.column} at L0 {d.target:g}: {d.reading()}")
    lines += ["", f"{h}# Do the language model's proxies track the truth? (full-budget runs)", ""]
    lines.append(
        "Spearman ρ over runs, and partial on log final L0 (sparsity moves both); 95% cluster-bootstrap intervals over replicates. A proxy *tracks* when the partial ρ's interval excludes 0 on the expected side."
    )
    lines.append("")
    lines += ["| proxy | ground truth | expected | ρ | partial ρ | tracks |", "|---|---|---|---|---|---|"]
    for p in report.proxies:
        lines.append(
            f"| {p.proxy} | {p.truth} | {'+' if p.expected_sign > 0 else '−'} | {_fmt(p.rho)} | {_fmt(p.partial_rho)} | {'yes' if p.tracks else 'no'} |"
        )
    unmatched = report.table[report.table["match"] == "unmatched"]
    lines += ["", f"{h}# Unmatched cells", ""]
    if unmatched.empty:
        lines.append("None: every (arm, replicate, budget, target) was read between two runs of its grid.")
    else:
        lines.append(f"{len(unmatched)} of {len(report.table)} cells: no two runs of the arm's grid bracket the target; they are left out of every contrast.")
        for (arm, budget, target), cell in unmatched.groupby(["arm", "budget", "l0_target"]):
            lines.append(f"- {arm}, budget {budget:,}, L0 {target:g}: {', '.join(sorted(cell['replicate']))}")
    identities = report.record.get("identities", {})
    lines += ["", f"{h}# Identities and cost", ""]
    same = sorted(f"{name} = {arm}" for name, arm in identities.items() if name != arm)
    lines.append("Not trained, by identity (the same runs): " + ("; ".join(same) if same else "none") + ".")
    seconds = report.record.get("seconds_this_session")
    runs_seconds = float(report.runs.get("seconds", pd.Series(dtype=float)).sum()) if "seconds" in report.runs else math.nan
    lines.append(
        f"{len(report.runs)} grid runs (plus the calibration probes of the first replicate); wall time of the last session "
        + (f"{seconds / 60:.1f} min" if seconds else "n/a")
        + f" on {cpu_kind()}."
        + (f" Training and scoring, summed over runs: {runs_seconds / 60:.1f} min." if math.isfinite(runs_seconds) else "")
    )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures
def curves(root: Path, report: TrackReport, column: str, target: float) -> go.Figure:
    """Each primary arm's `column` over training at the full budget: per replicate the grid run whose final L0
    is nearest the target, averaged over replicates."""
    from taulib.plots.style import PALETTE, finish

    full = report.runs[report.runs["budget"] == max(report.budgets)]
    figure = go.Figure()
    for i, arm in enumerate((PLAIN, AGAIN, TIGHTENED, WARMUP)):
        series = []
        for _, group in full[full["arm"] == arm].groupby("replicate"):
            nearest = group.iloc[int(np.argmin(np.abs(np.log(group["final_l0"].clip(lower=1e-6) / target))))]
            checkpoints = atomic.read_json(Path(nearest["path"]))["checkpoints"]
            series.append(pd.Series([c[column] for c in checkpoints], index=[c["tokens"] for c in checkpoints]))
        if series:
            mean = pd.concat(series, axis=1).mean(axis=1)
            figure.add_trace(go.Scatter(x=mean.index, y=mean.values, name=_short(arm), mode="lines+markers", line={"color": PALETTE[i]}))
    figure.update_xaxes(title="training samples")
    figure.update_yaxes(title=column)
    return finish(figure, f"Ground truth: {column} over training (full budget, run nearest L0 {target:g}, mean over replicates)", 450, 900)


def write_report(root: Path, png: bool = True) -> TrackReport:
    """Analyse the track in `root` and write REPORT.md, summary.json and its figures there."""
    from taulib.plots.save import save_figures

    report = analyse_track(root)
    atomic.write_text(root / REPORT_FILE, markdown(report))
    summary = {
        "headlines": {question: headline(report, question) for question in gta.QUESTIONS},
        "contrasts": [c.row() for c in report.contrasts],
        "aa": [c.row() for c in report.aa],
        "aa_unresolved_everywhere": any(math.isfinite(c.estimate.p_value) for c in report.aa) and all(c.verdict == "unresolved" for c in report.aa),
        "aa_tested": sum(math.isfinite(c.estimate.p_value) for c in report.aa),
        "current_l0": current_l0_rows(report),
        "dose_response": [
            {
                "family": d.family,
                "endpoint": d.endpoint.column,
                "l0_target": d.target,
                "slope": d.slope.value,
                "slope_holm_p": d.adjusted_slope_p,
                "curvature": d.curvature.value,
                "curvature_holm_p": d.adjusted_curvature_p,
            }
            for d in report.dose
        ],  # fmt: skip
        "proxies": [
            {
                "proxy": p.proxy,
                "truth": p.truth,
                "rho": p.rho.value,
                "partial_rho": p.partial_rho.value,
                "low": p.partial_rho.low,
                "high": p.partial_rho.high,
                "tracks": p.tracks,
            }
            for p in report.proxies
        ],
        "runs": len(report.runs),
        "seconds": report.record.get("seconds_this_session"),
    }
    atomic.write_json(root / SUMMARY_FILE, _finite(summary))
    target = report.targets[0]
    figures = {f"ground_truth_{column}": curves(root, report, column, target) for column in ("mcc", "recall", "absorption")}
    save_figures(figures, root / "figures", png=png)
    return report


def _finite(value: Any) -> Any:
    """JSON has no NaN: None in its place."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _finite(value.item())
    return value


# ----------------------------------------------------------------------------- the kept findings
PROVENANCE_FILE = "provenance.json"
README_BEGIN, README_END = "<!-- BEGIN ground-truth findings (generated from docs/findings/ground_truth) -->", "<!-- END ground-truth findings -->"


def readme_block(kept: Path, link: str) -> str:
    """README's ground-truth findings, generated from a kept report (`kept`: its summary.json and provenance.json;
    `link`: the kept REPORT.md as README links it). tests/test_docs.py checks README against it."""
    summary = atomic.read_json(kept / SUMMARY_FILE)
    stamp = atomic.read_json(kept / PROVENANCE_FILE)
    lines = [
        README_BEGIN,
        f"**Ground truth first** ([the kept report]({link}): commit {stamp['commit'][:10]}, {stamp['cpu']}, {stamp['date']}, "
        f"`{stamp['command']}`). The arms on hierarchical worlds of known features, read at matched final L0, paired over "
        "replicates (world × training seed), Holm within each question:",
        "",
    ]
    lines += [f"- **{text}** {summary['headlines'][question]}" for question, text in gta.QUESTIONS.items()]
    resolved = sum(row["verdict"] != "unresolved" for row in summary["aa"])
    lines.append(
        "- **A/A control** (plain L1 against its own second calibration): "
        + (
            f"unresolved on all {summary['aa_tested']} contrasts."
            if summary["aa_unresolved_everywhere"]
            else f"resolved on {resolved} of {summary['aa_tested']} contrasts."
        )
    )
    lines.append(f"- **Sparsity along training**: {sparsity_sentence(summary['current_l0'])}")
    tracking = [f"{p['proxy']} → {p['truth']}: {'tracks' if p['tracks'] else 'does not track'}" for p in summary["proxies"]]
    lines.append(f"- **The language model's proxies on this ground truth**: {'; '.join(tracking)}.")
    lines.append(README_END)
    return "\n".join(lines)


def replace_readme_block(readme: Path, block: str) -> None:
    replace_marked_block(readme, README_BEGIN, README_END, block)
