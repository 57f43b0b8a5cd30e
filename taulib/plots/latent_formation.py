"""When each latent formed: the share of a run's final latents formed by each point of training."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from taulib.analysis.study_data import StudyData
from taulib.plots.style import arm_styles, finish, line


def formation_curves(study: StudyData, records: dict[str, dict[str, Any] | None], threshold: float) -> go.Figure:
    """One step curve per arm: the share of final latents whose matched cosine to their final self
    stays ≥ `threshold` from that share of training on (taulib.analysis.latent_formation). The
    dotted line is the share a random dictionary of the same shape reaches (the null)."""
    styles = arm_styles(study.arms)
    figure = go.Figure()
    nulls = []
    for arm in study.arms:
        record = records.get(arm.name)
        if record is None:
            continue
        tokens = np.asarray(record["tokens"], dtype=float)
        at_step = dict(zip(record["steps"], tokens / tokens[-1], strict=True))
        formed = np.array([at_step[step] for step in record["formation_step"]])
        positions = tokens / tokens[-1]
        shares = [(formed <= position).mean() for position in positions]
        figure.add_trace(go.Scatter(x=positions, y=shares, mode="lines+markers", line=line(styles[arm.name]) | {"shape": "hv"}, name=arm.name))
        nulls.append(record["random_share_at_threshold"])
    if nulls:
        figure.add_hline(y=float(np.mean(nulls)), line={"dash": "dot", "color": "grey"}, annotation_text="random dictionaries")
    figure.update_xaxes(title="share of training", range=[0, 1.02])
    figure.update_yaxes(title=f"share of final latents formed (matched cos ≥ {threshold:g} to the end)", range=[0, 1.02])
    return finish(figure, "When each latent formed", height=450, width=900)
