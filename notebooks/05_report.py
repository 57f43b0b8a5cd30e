# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · The study report: arms compared at matched sparsity
#
# Reads a sweep (every arm × final-L0 target × seed, `make study`) and writes `outputs/REPORT.md`
# with its figures. Each question is answered at every L0 target: early concept formation, final
# orthogonality, absorption-reduction speed, τ trajectory against performance, and the lower
# bound's impact. Arms are compared at exactly matched L0 (read off each seed's frontier), paired
# over seeds, Holm-corrected within each question, with one primary endpoint per question. Every
# sentence of the report is generated from the numbers (`taulib.analysis.report`).

# %% tags=["parameters"]
outputs_dir = "../outputs"
figures_dir = None  # default: <outputs_dir>/figures
report_path = None  # default: <outputs_dir>/REPORT.md
ground_truth_dir = None  # the synthetic model's study, whose ground-truth verdict goes beside this one; default: <outputs_dir>/synthetic
ground_truth_track_dir = None  # the ground-truth track, whose verdicts lead the report; default: <outputs_dir>/ground_truth
kept_report_dir = None  # the kept report (README quotes it) this study's code is compared with; default: docs/findings/language_model
save_png = True
reference_arm = "cosine_0.3_to_0.05_tightened"  # the schedule under test
headline_arm = None  # the detailed sentences compare against it; default: the plain-L1 arm
early_position = 0.1  # the early Pareto figure: the checkpoint nearest this fraction of training
fraction_of_final = 0.9  # formation: the share of the change from the end of warm-up to the end
current_l0_multiple = 2.0  # formation at matched current sparsity: where the current L0 is this × the target
absorption_min_k1_f1 = 0.5  # absorption speed: letters whose best single latent reaches this F1

# %%
import os
from pathlib import Path

from IPython.display import Markdown, display

from taulib import atomic
from taulib.analysis.findings import LANGUAGE_MODEL, REPOSITORY, code_comparison, run_commits
from taulib.analysis.latent_formation import stability_comparison_table, stability_comparisons, stability_table
from taulib.analysis.matched import MatchedSettings, lower_bound_partner, run_table
from taulib.analysis.probe_bootstrap import probe_replicates
from taulib.analysis.report import (
    GROUND_TRUTH_FOLDER,
    build_report,
    ground_truth_report,
    headline_arm_of,
    markdown_table,
    render_markdown,
    report_summary,
    sparsity_table,
    study_context,
    wall_time_line,
    with_ground_truth,
)
from taulib.analysis.sequence_bootstrap import final_sequence_losses, final_variance_parts
from taulib.analysis.study_data import load_study, planned_aa_controls, planned_identities
from taulib.groundtruth.report import lead_section
from taulib.plots.pareto import pareto_figure
from taulib.plots.save import save_figures
from taulib.plots.style import arm_styles

outputs = Path(outputs_dir)
figures_dir = Path(figures_dir) if figures_dir else outputs / "figures"
report_path = Path(report_path) if report_path else outputs / "REPORT.md"
study = load_study(outputs)
one_per_arm = study.one_run_per_arm()  # the arms' configurations and styles (any target and seed: some runs may have failed)
settings = MatchedSettings(
    early_position=early_position, fraction=fraction_of_final, current_l0_multiple=current_l0_multiple, absorption_min_k1_f1=absorption_min_k1_f1
)
table = run_table(study, settings)
names = {run.name: run.schedule_label for run in one_per_arm.runs}
kinds = {run.name: run.config.schedule.kind for run in one_per_arm.runs}
if headline_arm is None:
    headline_arm = headline_arm_of(one_per_arm.runs, reference_arm)
floor_partner = lower_bound_partner(study, reference_arm) if reference_arm in names else None
print(f"{len(table)} runs; arms: {', '.join(names)}; L0 targets {study.l0_targets}; seeds {study.seeds}")
table.groupby(["arm", "l0_target"])[["final_l0", "final_explained_variance", "l1_coefficient"]].mean()

# %% [markdown]
# ## Pareto curves: every metric against L0, final and early
# One line per arm through its L0 targets (mean and 95% interval over seeds); the faint points
# are single seeds. "Early" is each run's checkpoint nearest `early_position` of training.

# %%
styles = arm_styles(one_per_arm.runs)
figures = {
    "05_pareto_final": pareto_figure(table, styles, "final"),
    "05_pareto_early": pareto_figure(table, styles, "early", title=f"Metrics against L0 at the early checkpoint (~{early_position:.0%} of training)"),
}
figures["05_pareto_final"]

# %%
figures["05_pareto_early"]

# %% [markdown]
# ## The claims
# Built from the run table above; `claims.json` beside the report holds every quoted number.

# %%
# the evaluation samples' own error: the held-out text's (documents resampled, for the CE-loss score and the explained
# variance) and the probing test sets' (bootstraps shared by every run)
report = build_report(
    table,
    reference_arm,
    floor_partner,
    headline_arm,
    names,
    settings,
    kinds,
    final_sequence_losses(study),
    probing_replicates=probe_replicates(study, settings),
    identities=planned_identities(outputs),  # the identity arms as the sweep planned them (outputs/sweeps/plan.json)
    aa_controls=planned_aa_controls(outputs),  # and its A/A control
    variance_parts=final_variance_parts(study),
)
# the ground-truth verdict: this study's own when it is the synthetic model's, else its study's beside this one
ground_truth_dir = Path(ground_truth_dir) if ground_truth_dir else outputs / GROUND_TRUTH_FOLDER
ground_truth = ground_truth_report(ground_truth_dir, reference_arm, settings) if not any(c.question == "ground_truth" for c in report.claims) else None
if ground_truth is not None:
    report = with_ground_truth(report, ground_truth, str(ground_truth_dir))
plan_path = outputs / "sweeps" / "plan.json"
tolerance = atomic.read_json(plan_path)["tolerance"] if plan_path.is_file() else None
sparsity = sparsity_table(report, table, tolerance)
display(Markdown(markdown_table(sparsity, "arm")))

# %%
summary_path = outputs / "study_summary.json"
summary = atomic.read_json(summary_path) if summary_path.is_file() else {}
wall_time = wall_time_line(summary)
context = study_context(study, table, summary, early_position)
# whether this study's training and evaluation code is the kept report's (docs/findings/language_model), which README quotes
context["code"] = code_comparison(run_commits(outputs), Path(kept_report_dir) if kept_report_dir else REPOSITORY / "docs" / "findings" / LANGUAGE_MODEL)
save_figures(figures, figures_dir, png=save_png)
extension = "png" if save_png else "html"
figures_link = Path(os.path.relpath(figures_dir.resolve(), report_path.parent.resolve())).as_posix()
figure_links = {name: f"{figures_link}/{name}.{extension}" for name in figures}
stability = stability_table(study, names)  # seeds of one arm matched to each other at the end
stability_comparison = stability_comparison_table(stability_comparisons(study, report.reference), names)
# the ground-truth track's verdicts lead the report (taulib.groundtruth; `make study` runs it first)
track_dir = Path(ground_truth_track_dir) if ground_truth_track_dir else outputs / "ground_truth"
track_link = Path(os.path.relpath((track_dir / "REPORT.md").resolve(), report_path.parent.resolve())).as_posix()
lead = lead_section(track_dir, track_link)
markdown = render_markdown(report, context, figure_links, sparsity, wall_time, stability, stability_comparison, lead)
atomic.write_text(report_path, markdown)
atomic.write_json(report_path.with_name("report_claims.json"), [claim.__dict__ for claim in report.claims])
atomic.write_json(report_path.with_name("report_summary.json"), report_summary(report))
print(f"wrote {report_path} ({len(report.claims)} claims)")

# %%
display(Markdown(markdown))
