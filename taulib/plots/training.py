"""Figures of early concept formation: every metric against tokens seen (with τ(t) and λ/τ(t)), when each
metric formed after warm-up and at a matched current L0, and how fast absorption falls."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.analysis.formation import formed_letter_absorption, letter_k1_f1
from taulib.analysis.matched import FORMATION_METRICS, MatchedSettings, warmup_end_tokens
from taulib.analysis.study_data import StudyData
from taulib.metrics.catalogue import label
from taulib.plots.style import arm_styles, finish, line, marker, tokens_label

OVER_TRAINING_COLUMNS = ("l0", "explained_variance", "ce_loss_score", "sae_top_1_accuracy", "absorption_fraction", "full_absorption_rate", "mean_max_cosine", "tau", "l1_coefficient_effective")
# titled as the metric families declare their columns (taulib/metrics/<family>/settings.py)
OVER_TRAINING_PANELS: tuple[tuple[str, str], ...] = tuple((column, label(column)) for column in OVER_TRAINING_COLUMNS)
SCHEDULE_COLUMNS = ("tau", "l1_coefficient_effective")  # drawn from the training log (every logged step)


def _grid(n: int, columns: int = 3) -> tuple[int, int]:
    return math.ceil(n / columns), min(n, columns)


def metrics_over_training(study: StudyData, panels: tuple[tuple[str, str], ...] = OVER_TRAINING_PANELS) -> go.Figure:
    """One panel per metric, one line per arm, tokens seen on a log axis (the 0-token initial SAE is not drawn)."""
    styles = arm_styles(study.runs)
    panels = tuple((column, title) for column, title in panels if column in SCHEDULE_COLUMNS or any(column in run.evaluation for run in study.runs))
    rows, cols = _grid(len(panels))
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=[title for _, title in panels], horizontal_spacing=0.07, vertical_spacing=0.1)
    for index, (column, title) in enumerate(panels):
        row, col = index // cols + 1, index % cols + 1
        for run in study.runs:
            style = styles[run.name]
            if column in SCHEDULE_COLUMNS:
                log = run.training[run.training["tokens"] > 0]
                trace = go.Scatter(x=log["tokens"], y=log[column], mode="lines", line=line(style))
            elif column in run.evaluation:
                table = run.evaluation[run.evaluation["tokens"] > 0]
                trace = go.Scatter(x=table["tokens"], y=table[column], mode="lines+markers", line=line(style), marker=marker(style, 5))
            else:
                continue
            trace.update(
                name=run.name,
                legendgroup=run.name,
                showlegend=index == 0,
                hovertemplate=f"{run.name}<br>%{{x:.3s}} tokens<br>{title}: %{{y:.4g}}<extra></extra>",
            )
            figure.add_trace(trace, row=row, col=col)
        figure.update_xaxes(type="log", title_text="tokens seen" if row == rows else None, row=row, col=col)
        if column in ("l0", "l1_coefficient_effective"):
            figure.update_yaxes(type="log", row=row, col=col)
    return finish(figure, "Every metric against tokens seen (held-out evaluation of each checkpoint; τ and λ/τ from the training log)", height=330 * rows)


def _run_label(table: pd.DataFrame, run: str) -> str:
    arm = str(table.loc[run, "arm"])
    return arm if table["arm"].tolist().count(arm) == 1 else str(run)


def formation_figure(study: StudyData, table: pd.DataFrame, fraction: float = 0.9) -> go.Figure:
    """Left: when each metric had formed (the report's formation_time, as a fraction of training, from the
    first checkpoint after warm-up), censored runs at 1 and labelled "never"; right: each metric's value
    when the run's current L0 first fell through the matched level (`taulib.analysis.matched.formation_table`)."""
    styles = arm_styles(study.runs)
    metrics = [m for m in FORMATION_METRICS if table[f"formation_{m.column}"].notna().any()]  # a metric the study did not evaluate is left out
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=[f"formed: {fraction:.0%} of the post-warm-up change, kept to the end", "value at a matched current L0"]
    )
    for run, row in table.iterrows():
        arm = study.run(str(run))
        style = styles[arm.name]
        name = _run_label(table, str(run))
        formed = [float(row[f"formation_{m.column}"]) for m in metrics]
        start = float(row["formation_start_position"])
        figure.add_trace(
            go.Bar(
                x=[m.label for m in metrics],
                y=formed,
                name=name,
                legendgroup=name,
                marker_color=style.color,
                text=["never" if v >= 1.0 else ("before" if v <= start else f"{v:.2f}") for v in formed],
                textposition="outside",
                hovertemplate=f"{name}<br>%{{x}}: formed at %{{y:.3f}} of training (window from {start:.3f})<extra></extra>",
            ),
            row=1,
            col=1,
        )
        current = [float(row[f"current_{m.column}"]) for m in metrics]
        position = float(row["current_l0_position"])
        figure.add_trace(
            go.Bar(
                x=[m.label for m in metrics],
                y=current,
                name=name,
                legendgroup=name,
                showlegend=False,
                marker_color=style.color,
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}} when L0 fell through {row['current_l0_level']:.3g} "
                f"(at {position:.3f} of training)<extra></extra>",
            ),
            row=1,
            col=2,
        )
    figure.update_yaxes(range=[0, 1.12], title_text="fraction of training", row=1, col=1)
    figure.update_yaxes(title_text="value", row=1, col=2)
    figure.update_layout(barmode="group")
    resolution = float(table["grid_resolution"].max())
    return finish(
        figure,
        f"Formation after warm-up (resolved to {resolution:.2f} of training by the checkpoint grid); "
        "'never': censored at the end, 'before': formed by the first post-warm-up checkpoint",
        height=520,
    )


def absorption_speed_figure(study: StudyData, table: pd.DataFrame, settings: MatchedSettings | None = None) -> go.Figure:
    """Left: absorption over training, averaged over the letters whose best single latent reaches
    k=1 F1 `absorption_min_k1_f1` at the end (where there is a letter latent to absorb); right: when it
    had settled (the report's absorption_settling), "never" for a run whose absorption does not settle."""
    settings = settings or MatchedSettings(latent_formation=None)
    styles = arm_styles(study.runs)
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        subplot_titles=[f"absorption over letters with a latent (k=1 F1 ≥ {settings.absorption_min_k1_f1:g})", "settled (fraction of training)"],
    )
    for run in table.index:
        arm = study.run(str(run))
        style = styles[arm.name]
        name = _run_label(table, str(run))
        letters, curve = formed_letter_absorption(arm, settings.absorption_min_k1_f1)
        tokens = arm.evaluation.sort_values("step")["tokens"].to_numpy(dtype=float)
        keep = (tokens > 0) & np.isfinite(curve)
        figure.add_trace(
            go.Scatter(
                x=tokens[keep], y=curve[keep], name=f"{name} ({len(letters)} letters)", legendgroup=name, mode="lines+markers", line=line(style), marker=marker(style, 5)
            ),
            row=1,
            col=1,
        )
    settling = table["absorption_settling"].astype(float)
    figure.add_trace(
        go.Bar(
            x=[_run_label(table, str(run)) for run in table.index],
            y=settling.values,
            marker_color=[styles[study.run(str(run)).name].color for run in table.index],
            text=[
                "final checkpoint only" if not timed else "no letter latent" if not math.isfinite(v) else ("settles" if settles else "never") + f" · {n} letters"
                for v, settles, n, timed in zip(
                    settling.values, table["absorption_settles"], table["absorption_letters_formed"], table.get("absorption_speed_measured", [True] * len(table)), strict=True
                )
            ],
            textposition="outside",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    figure.update_xaxes(type="log", title_text="tokens seen", row=1, col=1)
    figure.update_yaxes(title_text="absorption fraction", row=1, col=1)
    figure.update_yaxes(range=[0, 1.12], title_text="fraction of training", row=1, col=2)
    figure.update_xaxes(tickangle=30, row=1, col=2)
    return finish(figure, f"Absorption-reduction speed: {settings.fraction:.0%} of the post-warm-up fall, kept to the end", height=520)


def letter_formation_figure(study: StudyData, settings: MatchedSettings | None = None) -> go.Figure:
    """Each first letter's k=1 F1 over training, one heatmap per arm (letters down, checkpoints across, shared colour
    scale); a letter whose ground-truth probe fails is greyed in its label and left out of the metric's mean. A
    marker shows when each evaluated letter's curve had formed (the report's rule for the mean curve); × marks a
    censored time (formed before the window, or never). Runs without per-checkpoint absorption are named in the title."""
    settings = settings or MatchedSettings(latent_formation=None)
    drawn = [(run, letter_k1_f1(run)) for run in study.runs]
    missing = [run.name for run, curves in drawn if curves is None]
    drawn = [(run, curves) for run, curves in drawn if curves is not None]
    if not drawn:
        return finish(go.Figure(), "Each letter's k=1 F1 over training: no run has absorption details", height=300)
    figure = make_subplots(rows=1, cols=len(drawn), subplot_titles=[run.name for run, _ in drawn], shared_yaxes=True, horizontal_spacing=0.02)
    for col, (run, curves) in enumerate(drawn, start=1):
        labels = [letter if evaluated else f"({letter})" for letter, evaluated in zip(curves.letters, curves.evaluated, strict=True)]
        columns = list(range(len(curves.tokens)))  # checkpoint positions, labelled by tokens seen (labels may round alike)
        figure.update_xaxes(tickvals=columns, ticktext=[tokens_label(tokens) for tokens in curves.tokens], tickangle=60, row=1, col=col)
        figure.add_trace(
            go.Heatmap(
                z=curves.k1_f1,
                x=columns,
                y=labels,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == len(drawn),
                colorbar={"title": "k=1 F1"},
                customdata=np.broadcast_to([tokens_label(tokens) for tokens in curves.tokens], curves.k1_f1.shape),
                hovertemplate="letter %{y}<br>%{customdata} tokens<br>k=1 F1 %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        formed = curves.formation(warmup_end_tokens(run), settings.fraction, settings.formation_min_change)
        shown = formed[formed["evaluated"] & np.isfinite(formed["formed_tokens"])]
        nearest = [int(np.argmin(np.abs(curves.tokens - tokens))) for tokens in shown["formed_tokens"]]
        figure.add_trace(
            go.Scatter(
                x=nearest,
                y=list(shown.index),
                mode="markers",
                marker={"symbol": ["x" if censored else "circle-open" for censored in shown["censored"]], "color": "white", "size": 7},
                name="formed (nearest checkpoint)",
                showlegend=col == 1,
                text=[tokens_label(tokens) for tokens in shown["formed_tokens"]],
                hovertemplate="letter %{y}: formed at %{text} tokens<extra></extra>",
            ),
            row=1,
            col=col,
        )
    title = f"Each first letter's k=1 F1 over training ({settings.fraction:.0%} of its post-warm-up rise marked)"
    if missing:
        title += f"; no per-checkpoint absorption: {', '.join(missing)}"
    figure.update_yaxes(autorange="reversed")
    return finish(figure, title, height=640)
