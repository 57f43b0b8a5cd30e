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

# %%

# %% [markdown]
# # 04 · Feature orthogonality
#
# Are the arms' decoder directions more orthogonal at the end of training, and does the τ schedule
# matter? Reads the per-checkpoint evaluations of every arm (`outputs/<run>/evaluation/`); the
# computations live in `taulib.analysis.orthogonality`.
#
# * each arm's histogram of max decoder cosine (to any other latent) against random unit vectors of
#   the same shape, with a slider along training;
# * near-duplicate latents (cosine above the evaluation's threshold) over training;
# * the lower-bound ablation: the same schedule with τ's floor at 0.05 and at 0.1, side by side;
# * τ trajectory against final performance, one point per arm.
#
# Every figure is also written to `outputs/figures/` as HTML and PNG.

# %% tags=["parameters"]
outputs_dir = "../outputs"
figures_dir = None  # default: <outputs_dir>/figures
l0_target = None  # a sweep's runs at this final-L0 target (default: the middle one); the matched comparison is 05_report
seed = None  # … and this seed (default: the first)
save_png = True
trajectory_axis = "mean_l1_coefficient"  # or late_mean_l1_coefficient, final_l1_coefficient, mean_tau, tau_final

# %%
from pathlib import Path

from IPython.display import display

from taulib.analysis.orthogonality import lower_bound_pairs, near_duplicates_over_training, trajectory_vs_outcome
from taulib.analysis.study_data import load_study
from taulib.plots.orthogonality import lower_bound_figure, near_duplicates_figure, trajectory_vs_outcome_figure
from taulib.plots.save import save_figures
from taulib.plots.state import cosine_histogram_figure, draw_cosine_histograms
from taulib.plots.widgets import CosineBrowser

study = load_study(outputs_dir).slice(l0_target, seed)  # one run per arm
figures_dir = Path(figures_dir) if figures_dir else Path(outputs_dir) / "figures"
figures = {}
print(study.slice_label or "one run per arm", "·", "arms:", ", ".join(f"{run.name} [{run.schedule_label}]" for run in study.runs))

# %% [markdown]
# ## Max decoder cosine against random vectors
# Slide along training (the step is the reference arm's; every arm shows its checkpoint at the
# same fraction of training). A distribution to the right of the random one means latents share
# directions; a bump near 1 means near duplicates.

# %%
browser = CosineBrowser(study)
browser.widget

# %%
final_histograms = cosine_histogram_figure(study)
draw_cosine_histograms(final_histograms, study, {run.name: run.steps[-1] for run in study.runs}, "max decoder cosine of the final SAEs against random unit vectors")
figures["04_max_cosine_final"] = final_histograms

# %% [markdown]
# ## Near duplicates over training

# %%
duplicates = near_duplicates_over_training(study)
figures["04_near_duplicates"] = near_duplicates_figure(study, duplicates)
display(duplicates.groupby("arm", sort=False).last()[["tokens", "near_duplicate_latents", "near_duplicate_pairs", "random_near_duplicate_pairs", "mean_max_cosine", "random_mean_max_cosine"]])
figures["04_near_duplicates"]

# %% [markdown]
# ## Lower-bound ablation
# Pairs of arms that differ only in τ's floor (here cosine 0.3 → 0.05 against 0.3 → 0.1). The floor
# sets the final penalty λ/τ_final, so the lower floor ends sparser; the orthogonality and absorption
# differences should be read with that L0 difference in mind.

# %%
pairs = lower_bound_pairs(study)
print("pairs:", [(low.name, high.name) for low, high in pairs] or "none in this study")
figures["04_lower_bound"] = lower_bound_figure(study, pairs)
figures["04_lower_bound"]

# %% [markdown]
# ## τ trajectory against final performance
# One point per arm. The x axis summarises the trajectory as the penalty the SAE felt: λ/τ(t)
# averaged over training (set `trajectory_axis` for another summary).

# %%
trajectory = trajectory_vs_outcome(study)
display(trajectory.style.format(precision=4))
figures["04_trajectory_vs_outcome"] = trajectory_vs_outcome_figure(study, trajectory, x=trajectory_axis)
figures["04_trajectory_vs_outcome"]

# %%
written = save_figures(figures, figures_dir, png=save_png)
print(f"{len(written)} files written to {figures_dir}")
