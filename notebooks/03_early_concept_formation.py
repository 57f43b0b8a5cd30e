# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %%

# %% [markdown]
# # 03 · Early concept formation
#
# How fast does each arm form its features? Every checkpoint of every arm was evaluated on held-out
# data by `02_train`; this notebook only reads those tables (`outputs/<run>/evaluation/`), draws
# them and wires the checkpoint slider. The computations live in `taulib.analysis`.
#
# * every metric against tokens seen (log axis), with τ(t) and λ/τ(t) alongside;
# * time to 90% of the final value for L0, explained variance, sparse-probing accuracy and absorption;
# * absorption-reduction speed: the mean absorption over log-tokens (the normalised area under the
#   curve) and the first checkpoint from which it stays below a threshold;
# * a slider over checkpoints redrawing one arm's state: the latent that carries each first letter,
#   the firing-density histogram and the best sparse-probing latents.
#
# Every figure is also written to `outputs/figures/` as HTML and PNG.

# %% tags=["parameters"]
outputs_dir = "../outputs"
figures_dir = None  # default: <outputs_dir>/figures
l0_target = None  # a sweep's runs at this final-L0 target (default: the middle one); the matched comparison is 05_report
seed = None  # … and this seed (default: the first)
save_png = True
fraction_of_final = 0.9
absorption_metric = "absorption_fraction"
absorption_threshold = 0.05
slider_arm = None  # default: the first arm

# %%
from pathlib import Path

from IPython.display import display

from taulib.analysis.formation import FORMATION_METRICS, formation_table
from taulib.analysis.latent_formation import FormationSettings, run_formation
from taulib.analysis.study_data import load_study
from taulib.plots.latent_formation import formation_curves
from taulib.plots.save import save_figures
from taulib.plots.state import checkpoint_state_at
from taulib.plots.training import absorption_speed_figure, metrics_over_training, time_to_final_figure
from taulib.plots.widgets import CheckpointBrowser

study = load_study(outputs_dir).slice(l0_target, seed)  # one run per arm
figures_dir = Path(figures_dir) if figures_dir else Path(outputs_dir) / "figures"
figures = {}
print(study.slice_label or "one run per arm", "·", "arms:", ", ".join(f"{arm.name} [{arm.schedule_label}]" for arm in study.arms))

# %% [markdown]
# ## Every metric against tokens seen

# %%
figures["03_metrics_over_training"] = metrics_over_training(study)
figures["03_metrics_over_training"]

# %% [markdown]
# ## Time to 90% of the final value
# Tokens seen when each curve has covered 90% of its change from the initial SAE to the final one
# (first crossing, linear between checkpoints, so resolved to the log-spaced checkpoint grid). An
# arm whose τ keeps annealing to the last step approaches its final L0 late by construction.

# %%
formation = formation_table(study, fraction=fraction_of_final, absorption_metric=absorption_metric, absorption_threshold=absorption_threshold)
figures["03_time_to_final"] = time_to_final_figure(study, formation, FORMATION_METRICS, fraction_of_final)
display(formation.style.format(precision=3, thousands=","))
figures["03_time_to_final"]

# %% [markdown]
# ## Absorption-reduction speed
# Lower mean over log-tokens = less absorption over training (early as much as late); "below from"
# = the first checkpoint from which the metric stays under the threshold.

# %%
figures["03_absorption_speed"] = absorption_speed_figure(study, formation, absorption_metric, absorption_threshold)
figures["03_absorption_speed"]

# %% [markdown]
# ## When each latent formed
# Every latent of a run's final SAE is matched to its counterpart at every checkpoint (Hungarian, on
# decoder directions); it has formed from the checkpoint on which its matched cosine stays ≥ 0.9 to
# the end. The curve is the share of final latents formed by each point of training; the dotted line
# is what two random dictionaries of the same shape reach (taulib.analysis.latent_formation).

# %%
formation_settings = FormationSettings()
latent_records = {arm.name: run_formation(arm, formation_settings) for arm in study.arms}
figures["03_latent_formation"] = formation_curves(study, latent_records, formation_settings.threshold)
figures["03_latent_formation"]

# %% [markdown]
# ## One checkpoint's state
# Pick an arm and slide over its checkpoints. Top: for each first letter, the F1 of the single
# latent that best detects it and that latent's index (grey letters have too weak a ground-truth
# probe to count), with the letter's absorption. Bottom: the held-out firing-density histogram and,
# per probing task, the top-1 accuracy and its latent.

# %%
browser = CheckpointBrowser(study, arm=slider_arm)
browser.widget

# %%
# static copies for outputs/figures: the shown arm's first trained checkpoint and its last
arm = browser.arm
for label, step in (("early", arm.steps[min(1, len(arm.steps) - 1)]), ("final", arm.steps[-1])):
    figures[f"03_checkpoint_state_{label}"] = checkpoint_state_at(arm, step)

# %%
written = save_figures(figures, figures_dir, png=save_png)
print(f"{len(written)} files written to {figures_dir}")
