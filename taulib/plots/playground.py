"""The τ playground's figures: the schedule's curves, a run's endpoints as it trains (with the track's arms at the
nearest L0 beside it), the learned-versus-true dictionary at a checkpoint, and a short language-model run.

Each figure is built once and redrawn in place (`draw_*`), so that a plotly FigureWidget keeps its view."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.groundtruth.endpoints import FEATURE_TYPES
from taulib.playground.comparison import Comparison
from taulib.playground.world_runs import CheckpointView, PlaygroundRun
from taulib.plots.style import PALETTE, finish, tokens_label
from taulib.schedules import SCHEDULE_KIND_SPECS, TauSchedule

SCHEDULE_POINTS = 201
FIGURE_WIDTH = 1050  # the width of a JupyterLab notebook's output area on a laptop screen
PLAYGROUND_COLOUR = "#000000"
# the training figure's panels and the playground's traces in them: (trace name, row key, panel)
TRAINING_PANELS = (
    "L0 (held out)",
    "explained variance",
    "MCC (mean matched cosine)",
    "true features recovered (cos > 0.9), by type",
    "ground-truth absorption",
    "firing F1 of recovered features",
)
PLAYGROUND_TRACES: tuple[tuple[str, str, int], ...] = (
    ("L0", "l0", 0),
    ("explained variance", "explained_variance", 1),
    ("MCC", "mcc", 2),
    *((f"recall: {kind}", f"recall_{kind}", 3) for kind in FEATURE_TYPES),
    ("absorption", "absorption", 4),
    ("F1", "f1", 5),
)
TYPE_DASH = {"parent": "solid", "child": "dash", "independent": "dot", "rare": "dashdot"}
COMPARED = (("l0", 0), ("mcc", 2), ("absorption", 4))  # what each arm's nearest run shows


def _cell(panel: int, columns: int = 3) -> dict[str, int]:
    return {"row": panel // columns + 1, "col": panel % columns + 1}


# ----------------------------------------------------------------------------- the schedule
def schedule_curves(schedule: TauSchedule, total_steps: int, points: int = SCHEDULE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(share of training, τ) at `points` optimiser steps of a run of `total_steps` (τ as the trainer sees it)."""
    steps = np.unique(np.linspace(0, total_steps - 1, min(points, total_steps)).round().astype(int))
    return steps / max(total_steps - 1, 1), np.array([schedule.at_step(int(s), total_steps) for s in steps])


def schedule_figure() -> go.Figure:
    figure = make_subplots(rows=1, cols=2, subplot_titles=("τ(t)", "penalty coefficient λ/τ(t), in units of λ"), horizontal_spacing=0.1)
    for column in (1, 2):
        figure.add_trace(go.Scatter(x=[], y=[], mode="lines", line={"color": PLAYGROUND_COLOUR, "width": 3}, showlegend=False), row=1, col=column)
        figure.update_xaxes(title_text="share of training", range=[0, 1], row=1, col=column)
        figure.update_yaxes(type="log", row=1, col=column)
    return finish(figure, "τ schedule", height=320, width=FIGURE_WIDTH)


def draw_schedule(figure: go.Figure, schedule: TauSchedule | None, total_steps: int, title: str) -> None:
    """The schedule's τ and coefficient curves (empty, with `title` saying why, for a refused schedule)."""
    if schedule is None:
        x, tau = np.array([]), np.array([])
    else:
        x, tau = schedule_curves(schedule, total_steps)
    with figure.batch_update():
        figure.data[0].x, figure.data[0].y = x, tau
        figure.data[1].x, figure.data[1].y = x, 1.0 / tau if len(tau) else tau
        figure.layout.title.text = title


# ----------------------------------------------------------------------------- a run as it trains
def training_figure() -> go.Figure:
    figure = make_subplots(rows=2, cols=3, subplot_titles=TRAINING_PANELS, horizontal_spacing=0.07, vertical_spacing=0.14)
    for name, key, panel in PLAYGROUND_TRACES:
        kind = key.removeprefix("recall_")
        line = {"color": PLAYGROUND_COLOUR, "width": 3, "dash": TYPE_DASH.get(kind, "solid")}
        figure.add_trace(
            go.Scatter(x=[], y=[], mode="lines+markers", name=name, line=line, marker={"size": 5}, legendgroup="playground", showlegend=panel == 3),
            **_cell(panel),
        )
    for panel in range(len(TRAINING_PANELS)):
        figure.update_xaxes(title_text="training samples", **_cell(panel))
    figure.update_yaxes(type="log", **_cell(0))
    finish(figure, "press train", height=700, width=FIGURE_WIDTH)
    figure.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0})
    return figure


def reset_training(figure: go.Figure, title: str) -> None:
    """Empty curves for a new run; the arms drawn beside the last run go (they were chosen at its L0)."""
    with figure.batch_update():
        figure.data = figure.data[: len(PLAYGROUND_TRACES)]
        for trace in figure.data:
            trace.x, trace.y = [], []
        figure.layout.title.text = title


def append_checkpoint(figure: go.Figure, row: dict[str, Any], title: str | None = None) -> None:
    """One more checkpoint on the playground's curves."""
    with figure.batch_update():
        for trace, (_, key, _) in zip(figure.data, PLAYGROUND_TRACES, strict=False):
            value = row[key]
            trace.x = (*trace.x, row["tokens"])
            trace.y = (*trace.y, value if value is not None and math.isfinite(value) else None)
        if title is not None:
            figure.layout.title.text = title


def _dash(kind: str | None) -> str:
    spec = SCHEDULE_KIND_SPECS.get(kind or "")
    return spec.dash if spec is not None else "solid"


def draw_comparison(figure: go.Figure, comparison: Comparison, kinds: dict[str, str]) -> None:
    """Each arm's run nearest the playground's L0 (L0, MCC, absorption), replacing those drawn before; `kinds` maps
    an arm to its schedule kind (its dash)."""
    with figure.batch_update():
        figure.data = figure.data[: len(PLAYGROUND_TRACES)]
        for index, arm in enumerate(comparison.runs):
            colour = PALETTE[(index + 1) % len(PALETTE)]
            tokens = [row["tokens"] for row in arm.checkpoints]
            for key, panel in COMPARED:
                figure.add_trace(
                    go.Scatter(
                        x=tokens,
                        y=[row[key] for row in arm.checkpoints],
                        mode="lines",
                        name=f"{arm.arm} (final L0 {arm.final_l0:.3g})",
                        line={"color": colour, "width": 1.5, "dash": _dash(kinds.get(arm.arm))},
                        opacity=0.8,
                        legendgroup=arm.arm,
                        showlegend=panel == 0,
                    ),
                    **_cell(panel),
                )


# ----------------------------------------------------------------------------- the dictionary at a checkpoint
def feature_order(parent: np.ndarray, feature_type: tuple[str, ...]) -> np.ndarray:
    """True features grouped as the hierarchy is: each parent followed by its children, then the independent, then the rare."""
    order: list[int] = []
    for p in (i for i, kind in enumerate(feature_type) if kind == "parent"):
        order += [p, *np.flatnonzero(parent == p).tolist()]
    order += [i for i, kind in enumerate(feature_type) if kind == "independent"]
    order += [i for i, kind in enumerate(feature_type) if kind == "rare"]
    placed = set(order)
    return np.array(order + [i for i in range(len(feature_type)) if i not in placed])  # deeper levels, if any


def latent_order(view: CheckpointView, features: np.ndarray) -> np.ndarray:
    """Latents in the order of the true features they are matched to (as SAELens' plot_sae_feature_similarity orders
    them), then the unmatched ones by the position of the feature they point at most."""
    matched = [int(view.latent[f]) for f in features if view.latent[f] >= 0]
    rest = np.setdiff1d(np.arange(view.cosines.shape[1]), matched)
    position = np.empty(len(features), dtype=int)
    position[features] = np.arange(len(features))
    rest = rest[np.argsort(position[view.cosines[:, rest].argmax(axis=0)], kind="stable")] if len(rest) else rest
    return np.array(matched + rest.tolist(), dtype=int)


def similarity_figure() -> go.Figure:
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.2,
        subplot_titles=("decoder rows against true directions (cosine)", "absorption by parent"),
    )
    figure.add_trace(
        go.Heatmap(z=[[0.0]], zmin=-1, zmax=1, colorscale="RdBu", reversescale=True, colorbar={"title": "cos", "x": 0.5, "len": 0.9, "thickness": 14}),
        row=1,
        col=1,
    )
    figure.add_trace(go.Bar(x=[], y=[], marker={"color": PALETTE[1]}, showlegend=False), row=1, col=2)
    figure.update_xaxes(title_text="SAE latents, in the order of their matched true feature", row=1, col=1)
    figure.update_yaxes(title_text="true features: each parent, then its children; independent; rare", autorange="reversed", row=1, col=1)
    figure.update_xaxes(title_text="parent feature", type="category", row=1, col=2)
    figure.update_yaxes(title_text="share of co-firing samples absorbed", range=[0, 1], row=1, col=2)
    return finish(figure, "", height=560, width=FIGURE_WIDTH)


def draw_similarity(figure: go.Figure, run: PlaygroundRun, step: int) -> None:
    """The checkpoint's cosines between true features and decoder rows (both ordered), and each parent's absorption rate."""
    assert run.truth is not None
    view = run.at_step(step)
    features = feature_order(run.truth.parent, run.truth.feature_type)
    latents = latent_order(view, features)
    z = view.cosines[np.ix_(features, latents)].round(2)
    parents = sorted(view.parent_absorption)
    rates = [view.parent_absorption[p] for p in parents]
    absorbed = sum(rate > 0 for rate in rates)
    row = view.row
    with figure.batch_update():
        figure.data[0].z = z
        figure.data[1].x, figure.data[1].y = [str(p) for p in parents], rates
        figure.layout.title.text = (
            f"step {step:,} ({tokens_label(row['tokens'])} samples), τ {row['tau']:.3g}: MCC {row['mcc']:.3f}, "
            f"{row['recall']:.0%} of true features recovered; {absorbed} of {len(parents)} parents absorbed at all, absorption {row['absorption']:.3f}"
        )
        figure.layout.annotations[1].text = f"absorption by parent ({absorbed} of {len(parents)} above 0)"


# ----------------------------------------------------------------------------- a short language-model run
def language_model_figure() -> go.Figure:
    figure = make_subplots(rows=1, cols=2, subplot_titles=("L0 (held out)", "explained variance (held out)"), horizontal_spacing=0.1)
    for column in (1, 2):
        figure.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", line={"color": PLAYGROUND_COLOUR, "width": 3}, showlegend=False), row=1, col=column)
        figure.update_xaxes(title_text="training tokens", row=1, col=column)
    figure.update_yaxes(type="log", row=1, col=1)
    return finish(figure, "press train", height=340, width=FIGURE_WIDTH)


def append_language_model_row(figure: go.Figure, row: dict[str, float], title: str | None = None) -> None:
    with figure.batch_update():
        for trace, key in zip(figure.data, ("l0", "explained_variance"), strict=True):
            trace.x, trace.y = (*trace.x, row["tokens"]), (*trace.y, row[key])
        if title is not None:
            figure.layout.title.text = title


def reset_language_model(figure: go.Figure, title: str) -> None:
    with figure.batch_update():
        for trace in figure.data:
            trace.x, trace.y = [], []
        figure.layout.title.text = title
