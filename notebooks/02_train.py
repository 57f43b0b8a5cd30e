# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train one SAE arm
#
# Trains the SAE of one parameter file on its cached activations with the annealed penalty
# (λ/τ(t))·‖f‖₁, logging metrics and saving log-spaced checkpoints under `outputs/<run_name>/`.
# Re-running resumes an interrupted run, and returns at once for a finished one.
# `papermill` executes this notebook once per parameter file (`make study`).

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
from taulib.study import train_run
from taulib.trainer import read_metrics

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
panels = [("l0", "L0"), ("explained_variance", "explained variance"), ("mse", "MSE"), ("dead_fraction", "dead fraction"), ("tau", "τ"), ("l1_coefficient_effective", "λ/τ")]
figure = make_subplots(rows=2, cols=3, subplot_titles=[title for _, title in panels])
for index, (column, title) in enumerate(panels):
    figure.add_trace(go.Scatter(x=metrics["tokens"], y=metrics[column], name=title, mode="lines"), row=index // 3 + 1, col=index % 3 + 1)
    figure.update_xaxes(title_text="tokens seen", type="log", row=index // 3 + 1, col=index % 3 + 1)
figure.update_layout(height=560, showlegend=False, title=f"{config.run_name}: training metrics")
figure
