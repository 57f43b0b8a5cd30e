"""Pareto curves of a sweep: each SAE metric against L0, one line per arm through its L0 targets,
every seed drawn as a faint point and the mean over seeds with its 95% interval on both axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.analysis.intervals import t_interval
from taulib.analysis.matched import PARETO_METRICS, Metric
from taulib.plots.style import ArmStyle, finish, line, marker

LOG_TICKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def pareto_figure(
    table: pd.DataFrame, styles: dict[str, ArmStyle], stage: str = "final", metrics: tuple[Metric, ...] = PARETO_METRICS, title: str = ""
) -> go.Figure:
    """`stage` is "final" or "early" (the run table's final_* / early_* columns)."""
    columns = 3
    rows = -(-len(metrics) // columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[m.label + (" ↑" if m.higher_is_better else " ↓") for m in metrics],
        horizontal_spacing=0.07,
        vertical_spacing=0.16,
    )
    for index, metric in enumerate(metrics):
        row, col = index // columns + 1, index % columns + 1
        x_column, y_column = f"{stage}_l0", f"{stage}_{metric.column}"
        for arm, group in table.groupby("arm", sort=False):
            style = styles[arm]
            figure.add_trace(
                go.Scatter(
                    x=group[x_column],
                    y=group[y_column],
                    mode="markers",
                    marker=marker(style, 5) | {"opacity": 0.35},
                    name=arm,
                    legendgroup=arm,
                    showlegend=False,
                    hovertext=group["run"],
                    hoverinfo="text+x+y",
                ),
                row=row,
                col=col,
            )
            cells = []
            for _, cell in group.groupby("l0_target"):
                x, y = t_interval(cell[x_column]), t_interval(cell[y_column])
                cells.append((x.value, x.value - x.low, y.value, y.value - y.low))
            cells_array = np.array(sorted(cells)) if cells else np.empty((0, 4))
            figure.add_trace(
                go.Scatter(
                    x=cells_array[:, 0],
                    y=cells_array[:, 2],
                    mode="lines+markers",
                    line=line(style),
                    marker=marker(style, 8),
                    error_x={"type": "data", "array": np.nan_to_num(cells_array[:, 1]), "thickness": 1},
                    error_y={"type": "data", "array": np.nan_to_num(cells_array[:, 3]), "thickness": 1},
                    name=arm,
                    legendgroup=arm,
                    showlegend=index == 0,
                ),
                row=row,
                col=col,
            )
        # ticks at round L0 values, written out (plotly's log axis otherwise labels 20, 30 … as "2", "3")
        figure.update_xaxes(type="log", title_text=f"{stage} L0", tickvals=LOG_TICKS, ticktext=[f"{t:g}" for t in LOG_TICKS], row=row, col=col)
    return finish(figure, title or f"{stage.capitalize()} metrics against L0 (mean and 95% interval over seeds; faint: single seeds)", height=360 * rows + 120)
