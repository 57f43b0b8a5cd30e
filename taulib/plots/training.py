"""Figures of early concept formation: every metric against tokens seen, with τ(t) and λ/τ(t)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.analysis.formation import below_threshold_column
from taulib.analysis.study_data import StudyData
from taulib.plots.style import arm_styles, finish, line, marker, tokens_label

OVER_TRAINING_PANELS: tuple[tuple[str, str], ...] = (
    ("l0", "L0 (held out)"),
    ("explained_variance", "explained variance"),
    ("ce_loss_score", "CE-loss score (spliced)"),
    ("sae_top_1_accuracy", "sparse probing, top-1 accuracy"),
    ("absorption_fraction", "absorption fraction"),
    ("full_absorption_rate", "full-absorption rate"),
    ("mean_max_cosine", "mean max decoder cosine"),
    ("tau", "τ(t)"),
    ("l1_coefficient_effective", "λ/τ(t)"),
)
SCHEDULE_COLUMNS = ("tau", "l1_coefficient_effective")  # drawn from the training log (every logged step)


def _grid(n: int, columns: int = 3) -> tuple[int, int]:
    return math.ceil(n / columns), min(n, columns)


def metrics_over_training(study: StudyData, panels: tuple[tuple[str, str], ...] = OVER_TRAINING_PANELS) -> go.Figure:
    """One panel per metric, one line per arm, tokens seen on a log axis (the 0-token initial SAE is not drawn)."""
    styles = arm_styles(study.arms)
    panels = tuple((column, title) for column, title in panels if column in SCHEDULE_COLUMNS or any(column in arm.evaluation for arm in study.arms))
    rows, cols = _grid(len(panels))
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=[title for _, title in panels], horizontal_spacing=0.07, vertical_spacing=0.1)
    for index, (column, title) in enumerate(panels):
        row, col = index // cols + 1, index % cols + 1
        for arm in study.arms:
            style = styles[arm.name]
            if column in SCHEDULE_COLUMNS:
                log = arm.training[arm.training["tokens"] > 0]
                trace = go.Scatter(x=log["tokens"], y=log[column], mode="lines", line=line(style))
            elif column in arm.evaluation:
                table = arm.evaluation[arm.evaluation["tokens"] > 0]
                trace = go.Scatter(x=table["tokens"], y=table[column], mode="lines+markers", line=line(style), marker=marker(style, 5))
            else:
                continue
            trace.update(
                name=arm.name,
                legendgroup=arm.name,
                showlegend=index == 0,
                hovertemplate=f"{arm.name}<br>%{{x:.3s}} tokens<br>{title}: %{{y:.4g}}<extra></extra>",
            )
            figure.add_trace(trace, row=row, col=col)
        figure.update_xaxes(type="log", title_text="tokens seen" if row == rows else None, row=row, col=col)
        if column in ("l0", "l1_coefficient_effective"):
            figure.update_yaxes(type="log", row=row, col=col)
    return finish(figure, "Every metric against tokens seen (held-out evaluation of each checkpoint; τ and λ/τ from the training log)", height=330 * rows)


def time_to_final_figure(study: StudyData, table: pd.DataFrame, metric_titles: dict[str, str], fraction: float = 0.9) -> go.Figure:
    """Grouped bars: for each metric, the tokens each arm needs to cover `fraction` of its change to the final value."""
    styles = arm_styles(study.arms)
    percent = int(round(fraction * 100))
    figure = go.Figure()
    for arm, row in table.iterrows():
        columns = [f"tokens_to_{percent}pct_{metric}" for metric in metric_titles]
        values = [row.get(column, np.nan) for column in columns]
        figure.add_trace(
            go.Bar(
                x=list(metric_titles.values()),
                y=values,
                name=str(arm),
                marker_color=styles[str(arm)].color,
                text=[tokens_label(v) for v in values],
                textposition="outside",
                hovertemplate=f"{arm}<br>%{{x}}: %{{y:.3s}} tokens<extra></extra>",
            )
        )
    total = float(table["total_tokens"].max())
    figure.add_hline(
        y=total, line={"color": "grey", "dash": "dot"}, annotation_text=f"end of training: {tokens_label(total)} tokens", annotation_position="bottom right"
    )
    times = table[[f"tokens_to_{percent}pct_{metric}" for metric in metric_titles if f"tokens_to_{percent}pct_{metric}" in table]].to_numpy(dtype=float)
    positive = times[np.isfinite(times) & (times > 0)]
    low = positive.min() / 3 if positive.size else total / 1000
    figure.update_yaxes(type="log", range=[np.log10(low), np.log10(total * 1.6)], title_text=f"tokens seen to reach {percent}% of the final value")
    figure.update_layout(barmode="group")
    return finish(figure, f"Time to {percent}% of final (first crossing; linear between checkpoints); no bar: the metric does not change", height=520)


def absorption_speed_figure(study: StudyData, table: pd.DataFrame, metric: str = "absorption_fraction", threshold: float = 0.05) -> go.Figure:
    """Left: the absorption curves with the threshold; right: their mean over log-tokens (normalised area)."""
    styles = arm_styles(study.arms)
    figure = make_subplots(
        rows=1, cols=2, column_widths=[0.62, 0.38], subplot_titles=[f"{metric} per checkpoint", "mean over log10(tokens) (area under the curve)"]
    )
    for arm in study.arms:
        style = styles[arm.name]
        data = arm.evaluation[arm.evaluation["tokens"] > 0]
        if metric not in data:
            continue
        figure.add_trace(
            go.Scatter(x=data["tokens"], y=data[metric], name=arm.name, legendgroup=arm.name, mode="lines+markers", line=line(style), marker=marker(style, 5)),
            row=1,
            col=1,
        )
    figure.add_hline(y=threshold, line={"color": "grey", "dash": "dot"}, annotation_text=f"threshold {threshold:g}", row=1, col=1)
    area = table[f"{metric}_mean_over_log_tokens"]
    below = table[below_threshold_column(metric, threshold)]
    figure.add_trace(
        go.Bar(
            x=list(area.index),
            y=area.values,
            marker_color=[styles[name].color for name in area.index],
            text=[f"below from {tokens_label(b)}" if np.isfinite(b) else "never below" for b in below.values],
            textposition="outside",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    figure.update_xaxes(type="log", title_text="tokens seen", row=1, col=1)
    figure.update_yaxes(title_text=metric, row=1, col=1)
    figure.update_yaxes(title_text=f"mean {metric}", row=1, col=2)
    figure.update_xaxes(tickangle=30, row=1, col=2)
    return finish(figure, f"Absorption-reduction speed: {metric} over training, threshold {threshold:g}", height=520)
