"""Figures of final feature orthogonality: near duplicates over training, the τ-floor ablation, τ trajectory vs outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.analysis.orthogonality import OUTCOME_METRICS
from taulib.analysis.study_data import Run, StudyData
from taulib.metrics.catalogue import label
from taulib.plots.style import arm_styles, finish, line, marker

LOWER_BOUND_PANELS: tuple[tuple[str, str], ...] = tuple(
    (column, label(column)) for column in ("l1_coefficient_effective", "l0", "explained_variance", "mean_max_cosine", "absorption_fraction", "sae_top_1_accuracy")
)


def near_duplicates_figure(study: StudyData, table: pd.DataFrame) -> go.Figure:
    """Near-duplicate latents and the mean max cosine over training, each arm against its random baseline."""
    styles = arm_styles(study.runs)
    figure = make_subplots(rows=1, cols=2, subplot_titles=["near-duplicate latents (cos > threshold with another)", label("mean_max_cosine")])
    for run in study.runs:
        rows = table[(table["arm"] == run.name) & (table["tokens"] > 0)]
        style = styles[run.name]
        common = {"legendgroup": run.name, "mode": "lines+markers", "line": line(style), "marker": marker(style, 5)}
        figure.add_trace(go.Scatter(x=rows["tokens"], y=rows["near_duplicate_latents"], name=run.name, **common), row=1, col=1)
        figure.add_trace(go.Scatter(x=rows["tokens"], y=rows["mean_max_cosine"], name=run.name, showlegend=False, **common), row=1, col=2)
    baseline = table[table["tokens"] > 0].groupby("tokens")["random_mean_max_cosine"].mean()
    figure.add_trace(
        go.Scatter(x=baseline.index, y=baseline.values, name="random unit vectors", mode="lines", line={"color": "grey", "dash": "dot"}), row=1, col=2
    )
    for col in (1, 2):
        figure.update_xaxes(type="log", title_text="tokens seen", row=1, col=col)
    figure.update_yaxes(title_text="latents", row=1, col=1)
    figure.update_yaxes(title_text="mean over latents of the max cosine", row=1, col=2)
    random_pairs = int(table["random_near_duplicate_pairs"].max())
    return finish(figure, f"Near duplicates over training (random unit vectors of the same shape: at most {random_pairs} near-duplicate pairs)", height=480)


def lower_bound_figure(study: StudyData, pairs: list[tuple[Run, Run]]) -> go.Figure:
    """The τ-floor ablation: each pair's two arms in the same panels (rows: pairs; columns: metrics over training)."""
    styles = arm_styles(study.runs)
    n_rows = max(len(pairs), 1)
    cols = len(LOWER_BOUND_PANELS)
    figure = make_subplots(
        rows=n_rows, cols=cols, subplot_titles=[title for _, title in LOWER_BOUND_PANELS] * n_rows, horizontal_spacing=0.045, vertical_spacing=0.18
    )
    for row, pair in enumerate(pairs, start=1):
        for arm in pair:
            style = styles[arm.name]
            for col, (column, _) in enumerate(LOWER_BOUND_PANELS, start=1):
                source = arm.training if column == "l1_coefficient_effective" else arm.evaluation
                if column not in source:
                    continue
                data = source[source["tokens"] > 0]
                figure.add_trace(
                    go.Scatter(
                        x=data["tokens"],
                        y=data[column],
                        name=f"{arm.name} (floor {arm.config.schedule.tau_final:g})",
                        legendgroup=arm.name,
                        showlegend=col == 1,
                        mode="lines" if column == "l1_coefficient_effective" else "lines+markers",
                        line=line(style),
                        marker=marker(style, 4),
                    ),
                    row=row,
                    col=col,
                )
                figure.update_xaxes(type="log", title_text="tokens seen", title_font_size=10, row=row, col=col)
    figure.update_layout(legend={"orientation": "h", "y": -0.18, "x": 0.5, "xanchor": "center"})
    if not pairs:
        figure.add_annotation(text="no pair of arms differs only in τ's floor", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return finish(figure, "Lower-bound ablation: the same schedule with a lower and a higher τ floor", height=380 * n_rows + 100, width=1500)


def trajectory_vs_outcome_figure(study: StudyData, table: pd.DataFrame, x: str = "mean_l1_coefficient", outcomes: dict[str, str] | None = None) -> go.Figure:
    """One point per arm: a summary of its τ trajectory (default: mean λ/τ over training) against each final metric."""
    outcomes = {k: v for k, v in (OUTCOME_METRICS if outcomes is None else outcomes).items() if k in table}
    styles = arm_styles(study.runs)
    cols = min(4, len(outcomes))
    rows = -(-len(outcomes) // cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=list(outcomes.values()), horizontal_spacing=0.07, vertical_spacing=0.16)
    for index, (column, title) in enumerate(outcomes.items()):
        row, col = index // cols + 1, index % cols + 1
        for arm, values in table.iterrows():
            style = styles[str(arm)]
            figure.add_trace(
                go.Scatter(
                    x=[values[x]],
                    y=[values[column]],
                    name=str(arm),
                    legendgroup=str(arm),
                    showlegend=index == 0,
                    mode="markers",
                    marker=marker(style, 12),
                    hovertemplate=f"{arm}<br>{values['schedule']}<br>{x}: %{{x:.3g}}<br>{title}: %{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
        figure.update_xaxes(type="log", title_text=x.replace("_", " ").replace("l1 coefficient", "λ/τ"), row=row, col=col)
        if column == "l0":
            figure.update_yaxes(type="log", row=row, col=col)
    spread = table[x].to_numpy(dtype=float)
    note = "" if np.ptp(spread) > 0 else " (every arm has the same value: no spread to compare)"
    return finish(figure, f"τ trajectory against final performance, one point per arm{note}", height=340 * rows + 60, width=1400)
