"""Figures of one checkpoint's state, built once and redrawn in place (a slider calls the draw function)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.analysis.checkpoint_state import cosine_histograms, density_bins, first_letter_latents, probing_latents
from taulib.analysis.study_data import Run, StudyData
from taulib.plots.style import arm_styles, finish, line

EVALUATED, NOT_EVALUATED = "#332288", "#BBBBBB"


def checkpoint_label(entry: dict[str, Any]) -> str:
    return f"step {int(entry['step']):,} · {int(entry['tokens']):,} tokens · τ = {float(entry['tau']):.3g}"


def checkpoint_state_figure() -> go.Figure:
    """Empty frame of the checkpoint-state view: first-letter latents on top, density and probing latents below."""
    figure = make_subplots(
        rows=2,
        cols=2,
        specs=[[{"colspan": 2}, None], [{}, {}]],
        row_heights=[0.42, 0.58],
        vertical_spacing=0.12,
        horizontal_spacing=0.2,
        subplot_titles=[
            "first letters: F1 of the single best latent (label: its index) and absorption",
            "latent firing density (held out)",
            "sparse probing: top-1 accuracy (label: the latent)",
        ],
    )
    figure.add_trace(go.Bar(name="k=1 latent F1", textposition="outside", textfont_size=9, cliponaxis=False), row=1, col=1)
    figure.add_trace(go.Scatter(name="absorption fraction", mode="markers", marker={"symbol": "diamond", "size": 9, "color": "#CC6677"}), row=1, col=1)
    figure.add_trace(go.Bar(name="latents", marker_color="#117733", showlegend=False), row=2, col=1)
    figure.add_trace(
        go.Bar(name="top-1 accuracy", orientation="h", marker_color="#DDAA33", textposition="inside", textfont_size=9, showlegend=False), row=2, col=2
    )
    figure.update_yaxes(range=[0, 1.05], title_text="F1 / absorption", row=1, col=1)
    figure.update_xaxes(title_text="first letter (grey: probe too weak to count)", row=1, col=1)
    figure.update_xaxes(title_text="log10 firing density", row=2, col=1)
    figure.update_yaxes(title_text="latents", row=2, col=1)
    figure.update_xaxes(range=[0.0, 1.0], title_text="top-1 accuracy (chance: 0.5)", row=2, col=2)
    figure.update_yaxes(tickfont_size=9, autorange="reversed", row=2, col=2)
    figure.update_layout(legend={"orientation": "h", "y": 1.06, "x": 0.5, "xanchor": "center"})
    return finish(figure, "checkpoint state", height=900)


def draw_checkpoint_state(figure: go.Figure, details: dict[str, Any], title: str) -> None:
    """Fill (or refill) a checkpoint_state_figure with one checkpoint's evaluation details."""
    letters = first_letter_latents(details)
    density = density_bins(details)
    probing = probing_latents(details)
    with figure.batch_update():
        if not letters.empty:
            figure.data[0].update(
                x=letters["letter"],
                y=letters["k1_f1"],
                text=[f"#{latent}" for latent in letters["k1_latent"]],
                marker_color=[EVALUATED if ok else NOT_EVALUATED for ok in letters["evaluated"]],
                customdata=letters[["probe_f1", "split_latents"]].to_numpy(),
                hovertemplate="%{x}: latent %{text}, F1 %{y:.3f}<br>probe F1 %{customdata[0]:.2f}<br>split latents: %{customdata[1]}<extra></extra>",
            )
            figure.data[1].update(x=letters["letter"], y=letters.get("absorption_fraction"))
        dead = density.attrs.get("dead", 0)
        figure.data[2].update(
            x=density["centre"], y=density["latents"], width=float(density["right"].iloc[0] - density["left"].iloc[0]) if len(density) else None
        )
        if not probing.empty:
            figure.data[3].update(
                y=probing["label"],
                x=probing["top_1_accuracy"],
                text=[f"#{latent}" for latent in probing["top_latent"]],
                hovertemplate="%{y}: %{x:.3f} with latent %{text}<extra></extra>",
            )
        figure.layout.annotations[1].text = f"latent firing density (held out; {dead} dead latents not drawn)"
        figure.layout.title.text = title


def draw_arm_checkpoint(figure: go.Figure, run: Run, step: int) -> None:
    """Draw one arm's checkpoint into a checkpoint_state_figure, titled with its step, tokens and τ."""
    entry = run.evaluation.set_index("step").loc[step].to_dict()
    draw_checkpoint_state(figure, run.details(step), f"{run.name}: {checkpoint_label({**entry, 'step': step})}")


def checkpoint_state_at(run: Run, step: int) -> go.Figure:
    """A stand-alone checkpoint-state figure of one arm at one checkpoint."""
    figure = checkpoint_state_figure()
    draw_arm_checkpoint(figure, run, step)
    return figure


def cosine_histogram_figure(study: StudyData) -> go.Figure:
    """Empty frame: one panel per arm, the SAE's max-cosine histogram against random unit vectors'."""
    styles = arm_styles(study.runs)
    cols = min(3, len(study.runs))
    rows = -(-len(study.runs) // cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=study.names, shared_xaxes=True, vertical_spacing=0.14)
    for index, arm in enumerate(study.runs):
        row, col = index // cols + 1, index % cols + 1
        figure.add_trace(
            go.Scatter(name="SAE decoder", mode="lines", line_shape="hvh", line=line(styles[arm.name]) | {"dash": "solid"}, showlegend=False), row=row, col=col
        )
        figure.add_trace(
            go.Scatter(name="random unit vectors", mode="lines", line_shape="hvh", line={"color": "grey", "dash": "dot"}, showlegend=index == 0),
            row=row,
            col=col,
        )
        figure.update_xaxes(title_text="max cosine to any other latent" if row == rows else None, range=[-0.05, 1.0], row=row, col=col)
        figure.update_yaxes(title_text="latents" if col == 1 else None, rangemode="tozero", row=row, col=col)
    figure.update_layout(legend={"orientation": "h", "y": -0.12 if rows > 1 else -0.25, "x": 0.5, "xanchor": "center"})
    return finish(figure, "max decoder cosine", height=330 * rows + 120)


def draw_cosine_histograms(figure: go.Figure, study: StudyData, steps: dict[str, int], title: str) -> None:
    """Redraw every arm's panel at its checkpoint `steps[arm]` (counts + 0.5 so empty bins sit on the log axis' floor)."""
    with figure.batch_update():
        for index, arm in enumerate(study.runs):
            table = cosine_histograms(arm.details(steps[arm.name]))
            figure.data[2 * index].update(x=table["centre"], y=table["sae"])
            figure.data[2 * index + 1].update(x=table["centre"], y=table["random"])
            figure.layout.annotations[index].text = f"{arm.name} (step {steps[arm.name]:,})"
        figure.layout.title.text = title
