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
# # 03 · Early concept formation
#
# How fast does each arm form its features? Every checkpoint of every arm was evaluated on held-out
# data by `02_train`; this notebook only reads those tables (`outputs/<run>/evaluation/`), draws
# them and wires the checkpoint slider. The computations live in `taulib.analysis`.
#
# * every metric against tokens seen (log axis), with τ(t) and λ/τ(t) alongside;
# * when each concept metric had formed, measured from the end of the warm-up, and its value when the
#   run's current L0 fell through a matched level (the report's formation measures, `taulib.analysis.matched`);
# * absorption-reduction speed: absorption over the letters that have a latent, and when it settled;
#   each first letter's k=1 F1 over training;
# * when each latent formed: its decoder direction matched back through the checkpoints, split by
#   how often it fires; and how reproducible each arm's dictionary is across seeds over training;
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
fraction_of_final = 0.9  # formed: this share of the post-warm-up change, kept to the end
current_l0_multiple = 2.0  # matched current sparsity: where the run's L0 falls through this × its target
absorption_min_k1_f1 = 0.5  # absorption speed over letters whose best single latent reaches this F1
slider_arm = None  # default: the first arm

# %%
from pathlib import Path

import pandas as pd
from IPython.display import display

from taulib.analysis.latent_formation import FormationSettings, formation_by_frequency, run_formation, stability_over_training
from taulib.analysis.matched import MatchedSettings, formation_table
from taulib.analysis.study_data import load_study
from taulib.plots.latent_formation import formation_curves, stability_figure
from taulib.plots.save import save_figures
from taulib.plots.state import checkpoint_state_at
from taulib.plots.training import absorption_speed_figure, formation_figure, letter_formation_figure, metrics_over_training
from taulib.plots.widgets import CheckpointBrowser

study = load_study(outputs_dir).slice(l0_target, seed)  # one run per arm
figures_dir = Path(figures_dir) if figures_dir else Path(outputs_dir) / "figures"
figures = {}
print(study.slice_label or "one run per arm", "·", "arms:", ", ".join(f"{run.name} [{run.schedule_label}]" for run in study.runs))

# %% [markdown]
# ## Every metric against tokens seen

# %%
figures["03_metrics_over_training"] = metrics_over_training(study)
figures["03_metrics_over_training"]

# %% [markdown]
# ## When each concept metric formed
# From the first checkpoint after the learning-rate warm-up (and an L1 warm-up's ramp): the point of
# training after which the metric has covered 90% of its change to its final level (the mean of the
# last three checkpoints) and stays there. "before": formed by the window's start; "never": censored
# at the end, an outcome the report keeps. Right: the metric when the run's current L0 first fell
# through 2 × its target, so that arms are compared at the same sparsity rather than the same step
# (an annealed arm early in training runs at a fraction of its final penalty).

# %%
settings = MatchedSettings(fraction=fraction_of_final, current_l0_multiple=current_l0_multiple, absorption_min_k1_f1=absorption_min_k1_f1, latent_formation=None)
formation = formation_table(study, settings)
figures["03_formation"] = formation_figure(study, formation, fraction_of_final)
display(formation.style.format(precision=3, thousands=","))
figures["03_formation"]

# %% [markdown]
# ## Absorption-reduction speed
# Absorption averaged over the letters whose best single latent detects them (k=1 F1 ≥ 0.5 at the
# end): where no latent detects a letter there is nothing to absorb. Right: when it had fallen 90% of
# its post-warm-up fall and stayed there; "never" counts runs whose absorption does not settle.

# %%
figures["03_absorption_speed"] = absorption_speed_figure(study, formation, settings)
figures["03_absorption_speed"]

# %% [markdown]
# ## Each letter's k=1 F1 over training
# The letters behind the mean k=1 F1 curve (the report's `formation_k1_f1`): for every first letter, the F1 of
# the single latent that best detects it, at every checkpoint. A letter in brackets has too weak a
# ground-truth probe to count; a marker shows when the letter's curve had covered 90% of its post-warm-up
# rise (× where that time is censored: formed before the window, or never).

# %%
figures["03_letter_formation"] = letter_formation_figure(study, settings)
figures["03_letter_formation"]

# %% [markdown]
# ## When each latent formed
# Every latent of a run's final SAE is matched to its counterpart at every checkpoint (Hungarian, on
# decoder directions); it has formed from the checkpoint on which its matched cosine stays ≥ 0.9 to
# the end. The curve is the share of final latents formed by each point of training; the dotted line
# is what two random dictionaries of the same shape reach (taulib.analysis.latent_formation).

# %%
formation_settings = FormationSettings()
latent_records = {run.name: run_formation(run, formation_settings) for run in study.runs}
figures["03_latent_formation"] = formation_curves(study, latent_records, formation_settings.threshold)
figures["03_latent_formation"]

# %% [markdown]
# Split by how often a latent fires at the end: rare latents see fewer gradient updates, so an arm
# that keeps more of them can look slower to form without any latent forming later. Median formation
# (share of training; never formed counts as 1) per third of the final firing density.

# %%
display(pd.concat({arm: formation_by_frequency(record) for arm, record in latent_records.items()}).style.format(precision=3))

# %% [markdown]
# ## Stability across seeds
# The seeds of one arm (at this L0 target) matched to each other at every checkpoint: is the same
# dictionary found from another initialisation and batch order, and from when? The report tests the
# final checkpoint's difference between arms (`05_report`). Needs a sweep with two or more seeds.

# %%
all_runs = load_study(outputs_dir)
stability = stability_over_training(all_runs, study.runs[0].l0_target)
figures["03_seed_stability"] = stability_figure(all_runs, stability)
figures["03_seed_stability"]

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
