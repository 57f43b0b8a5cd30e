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
# # 02 · Train and evaluate one SAE arm
#
# Trains the SAE of one parameter file on its cached activations with the annealed penalty
# (λ/τ(t))·‖f‖₁, logging metrics and saving log-spaced checkpoints under `outputs/<run_name>/`,
# then evaluates every checkpoint (core, spliced CE/KL, orthogonality, absorption, sparse probing)
# into `outputs/<run_name>/evaluation/metrics.csv`. Re-running resumes an interrupted run or
# evaluation, and returns at once for a finished one. `papermill` executes this notebook once per
# parameter file (`make study`).

# %% tags=["parameters"]
params_file = "../parameters/cosine_0.3_to_0.05_tightened.yaml"
outputs_dir = "../outputs"
overrides = {}
show_progress = True

# %%
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.config import load_run_config
from taulib.metrics.catalogue import label
from taulib.study.run import evaluate_study_run, train_run
from taulib.train.trainer import read_metrics

config = load_run_config(params_file, overrides)
run_dir = Path(outputs_dir) / config.run_name
print(config.run_name, "-", config.description)
config.schedule

# %%
summary = train_run(params_file, outputs_dir, overrides, show_progress=show_progress)
summary["final"]

# %% [markdown]
# ## Training curves

# %%
metrics = read_metrics(run_dir)
# the training log's columns, measured on each training batch (not the held-out metrics below)
panels = [("l0", "L0 (training batch)"), ("explained_variance", "explained variance (training batch)"), ("mse", "MSE"), ("dead_fraction", "dead fraction"), ("tau", "τ"), ("l1_coefficient_effective", "λ/τ")]
figure = make_subplots(rows=2, cols=3, subplot_titles=[title for _, title in panels])
for index, (column, title) in enumerate(panels):
    figure.add_trace(go.Scatter(x=metrics["tokens"], y=metrics[column], name=title, mode="lines"), row=index // 3 + 1, col=index % 3 + 1)
    figure.update_xaxes(title_text="tokens seen", type="log", row=index // 3 + 1, col=index % 3 + 1)
figure.update_layout(height=560, showlegend=False, title=f"{config.run_name}: training metrics")
figure

# %% [markdown]
# ## Evaluation of every checkpoint
# Held-out metrics per checkpoint (cached): the table the analysis notebooks read.

# %%
evaluation = evaluate_study_run(params_file, outputs_dir, overrides, show_progress=show_progress)
evaluation.tail(3).T

# %%
panels = [(column, label(column)) for column in ("l0", "explained_variance", "ce_loss_score", "mean_max_cosine", "absorption_fraction", "sae_top_1_accuracy") if column in evaluation]
figure = make_subplots(rows=2, cols=3, subplot_titles=[title for _, title in panels])
for index, (column, title) in enumerate(panels):
    checkpoints = evaluation[evaluation["tokens"] > 0]  # the log axis has no room for step 0
    figure.add_trace(go.Scatter(x=checkpoints["tokens"], y=checkpoints[column], name=title, mode="lines+markers"), row=index // 3 + 1, col=index % 3 + 1)
    figure.update_xaxes(title_text="tokens seen", type="log", row=index // 3 + 1, col=index % 3 + 1)
figure.update_layout(height=560, showlegend=False, title=f"{config.run_name}: held-out metrics per checkpoint")
figure
