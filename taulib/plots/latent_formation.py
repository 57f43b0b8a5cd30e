"""When each latent formed (the share of a run's final latents formed by each point of training) and how
reproducible the dictionary is across seeds over training."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.analysis.latent_formation import STABILITY_THRESHOLDS, formation_positions
from taulib.analysis.study_data import StudyData
from taulib.plots.style import arm_styles, finish, line


def formation_curves(study: StudyData, records: dict[str, dict[str, Any] | None], threshold: float) -> go.Figure:
    """One step curve per arm: the share of final latents whose matched cosine to their final self
    stays ≥ `threshold` from that share of training on, over the latents that say something about
    formation (alive at the end, moved from their initial direction), as the report counts them
    (taulib.analysis.latent_formation). The dotted line is the share a random dictionary of the
    same shape reaches (the null)."""
    styles = arm_styles(study.runs)
    figure = go.Figure()
    nulls = []
    for run in study.runs:
        record = records.get(run.name)
        if record is None:
            continue
        tokens = np.asarray(record["tokens"], dtype=float)
        formed, considered = formation_positions(record)
        if not considered.any():
            continue
        positions = tokens / tokens[-1]
        shares = [(formed[considered] <= position).mean() for position in positions]
        figure.add_trace(go.Scatter(x=positions, y=shares, mode="lines+markers", line=line(styles[run.name]) | {"shape": "hv"}, name=run.name))
        nulls.append(record["random_share_at_threshold"])
    if nulls:
        figure.add_hline(y=float(np.mean(nulls)), line={"dash": "dot", "color": "grey"}, annotation_text="random dictionaries")
    figure.update_xaxes(title="share of training", range=[0, 1.02])
    figure.update_yaxes(title=f"share of final latents formed (matched cos ≥ {threshold:g} to the end)", range=[0, 1.02])
    return finish(figure, "When each latent formed", height=450, width=900)


def stability_figure(study: StudyData, table: pd.DataFrame) -> go.Figure:
    """Seed stability over training (taulib.analysis.latent_formation.stability_over_training): per arm,
    the PW-MCC between its seeds' dictionaries and the share of latents matched at cos ≥ each
    threshold, mean over seed pairs, with random dictionaries of the same shape dotted."""
    styles = arm_styles(study.runs)
    by_arm = {run.arm: styles[run.name] for run in study.runs}  # the table's rows are arms, the study's may be runs
    titles = ["PW-MCC (mean matched cosine)", *[f"share matched at cos ≥ {t:g}" for t in STABILITY_THRESHOLDS]]
    figure = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
    columns = ["pw_mcc", *[f"share_matched_{t:g}" for t in STABILITY_THRESHOLDS]]
    groups = table.groupby("arm", sort=False) if not table.empty else []
    for arm_name, rows in groups:
        style = by_arm[arm_name]
        for col, column in enumerate(columns, start=1):
            figure.add_trace(
                go.Scatter(x=rows["position"], y=rows[column], mode="lines+markers", line=line(style), name=arm_name, legendgroup=arm_name, showlegend=col == 1),
                row=1,
                col=col,
            )
            figure.add_hline(y=float(rows[f"random_{column}"].iloc[0]), line={"dash": "dot", "color": "grey"}, row=1, col=col)
    figure.update_xaxes(title="share of training", range=[0, 1.02])
    figure.update_yaxes(range=[0, 1.02])
    return finish(figure, "Stability across seeds over training (the seeds of one arm matched to each other; dotted: random dictionaries)", height=420)
