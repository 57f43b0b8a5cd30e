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
# # 07 · τ playground
#
# What does a schedule you have in mind do? Set it here and watch it train, in seconds, on the
# ground-truth world whose features are known (`taulib.groundtruth`, the track that answers the
# study's question), then on the language model's cached activations.
#
# * **Schedule:** kind, τ_initial, τ_final, anneal fraction; sparsity as a target final L0 (λ is found by
#   probes, as the track calibrates its arms) or as λ itself. The τ(t) and λ/τ(t) curves redraw as the
#   controls move; a schedule the study would refuse (a rising τ) is refused here with the study's message.
# * **Train:** trains exactly as the ground-truth track trains an arm (`taulib.playground.world_runs`) with a
#   progress bar; every checkpoint's L0, explained variance, MCC, true features recovered by type,
#   absorption and F1 are drawn as they are scored. The track's own arms (from `make study`) on the same
#   world and replicate are drawn beside it, each at its run nearest the playground run's final L0.
# * **Checkpoint slider:** the decoder against the true dictionary (features grouped parent → children,
#   latents in the order of their matched feature; absorption shows as a child's latent leaning on its
#   parent's row) and which parents are absorbed.
# * **Keep:** writes the schedule as an arm file in `parameters/`, validated as the study validates, so
#   `make study` runs it as a new arm (and the ground-truth track too).
#
# Timings on a 2-core CPU: benchmarks/RESULTS.md, "The τ playground".

# %% tags=["parameters"]
parameters_dir = "../parameters"
track_dir = "../outputs/ground_truth"  # the ground-truth track's runs (`make study`), drawn beside a playground run
kept_track_dir = "../docs/findings/ground_truth"  # the kept report's calibration: where λ's search starts without a track
outputs_dir = "../outputs"  # the language model's activation caches (`make study`, or notebook 01)
design_overrides = {}  # the track's design changed for the playground, e.g. {"world": {"n_features": 256}}
playground_settings = {}  # the ground-truth controls' starting values (taulib.playground.world_runs.PlaygroundSettings)
language_model_settings = {}  # the language-model controls' (taulib.playground.language_model.LanguageModelSettings)
language_model_profile = "default"  # the sweep profile whose caches the language-model section reads
train_now = False  # train once with the controls' defaults as the notebook runs (a headless run: papermill)
figures_dir = None  # where a headless run saves its figures (default: <outputs_dir>/figures)
save_png = True

# %%
from pathlib import Path

from IPython.display import display

from taulib.playground.ui import LanguageModelPlayground, Playground
from taulib.sweep.spec import SWEEP_FILE, load_sweep

playground = Playground(parameters_dir, track_dir, kept_track_dir=kept_track_dir, design_overrides=design_overrides, settings=playground_settings)
display(playground.widget)

# %% [markdown]
# ## The same schedule on the language model
# A short run on the study's cached activations (the first tokens of the cache, the study's SAE width and
# learning rate): L0 and explained variance over training, then a latent's top-activating held-out contexts
# (pick one of the most active, or type an index). Seconds to a minute: a look at the schedule's early
# behaviour on real activations, not one of the study's runs.

# %%
sweep_file = Path(parameters_dir) / SWEEP_FILE
language_model_overrides = load_sweep(parameters_dir, language_model_profile).overrides if sweep_file.is_file() else {}
language_model = LanguageModelPlayground(parameters_dir, outputs_dir, language_model_overrides, settings=language_model_settings)
display(language_model.widget)

# %% [markdown]
# ## A headless run
# With `train_now` (papermill), both sections train once with the defaults and the figures are saved.

# %%
if train_now:
    from taulib.plots.save import save_figures

    run = playground.train()
    print(playground.summary)
    lm_run = language_model.train()
    print(language_model.summary)
    figures = {"07_playground_schedule": playground.schedule_plot, "07_playground_training": playground.training_plot, "07_playground_dictionary": playground.similarity_plot}
    if lm_run is not None:
        figures["07_playground_language_model"] = language_model.plot
    folder = Path(figures_dir) if figures_dir else Path(outputs_dir) / "figures"
    print("saved:", ", ".join(str(p) for p in save_figures(figures, folder, png=save_png)))
