"""One latent at one checkpoint: its top-activating contexts (HTML), its activation histogram and
density, and its matched cosine to its final self over training with the checkpoint marked."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from taulib.analysis.latent_contexts import Follow, LatentContexts, LatentView
from taulib.plots.style import PALETTE, finish, tokens_label

HIGHLIGHT = (204, 102, 119)  # the palette's rose (#CC6677): tokens shaded by the latent's activation


def _token_text(token: str) -> str:
    """A token as it reads in running text: newlines and tabs shown, spaces kept."""
    return html.escape(token.replace("\n", "⏎").replace("\t", "⇥"))


def contexts_html(view: LatentView, title: str = "") -> str:
    """The latent's top contexts, one a line: every token shaded by the latent's activation there
    (relative to the top activation shown), the top token outlined, its activation at the left."""
    top = max((context.value for context in view.contexts), default=0.0)
    lines = []
    for context in view.contexts:
        spans = []
        for index, (token, value) in enumerate(zip(context.tokens, context.values, strict=True)):
            alpha = 0.0 if not np.isfinite(value) or top <= 0 else max(0.0, min(1.0, value / top))
            style = f"background: rgba({HIGHLIGHT[0]}, {HIGHLIGHT[1]}, {HIGHLIGHT[2]}, {alpha:.2f});"
            if index == context.centre:
                style += " outline: 2px solid #332288; font-weight: bold;"
            spans.append(f'<span class="latent-token" style="{style}" title="{value:.3g}">{_token_text(token)}</span>')
        lines.append(
            f'<div class="latent-context" data-row="{context.row}"><span class="latent-value">{context.value:8.3f}</span> '
            f'<span class="latent-text">{"".join(spans)}</span></div>'
        )
    if not lines:
        lines.append('<div class="latent-context latent-silent">fires on no held-out token at this checkpoint</div>')
    heading = f"<div class='latent-heading'>{html.escape(title)}</div>" if title else ""
    return (
        f'<div class="latent-contexts" data-latent="{view.latent}" data-step="{view.step}" data-shown="{view.shown}" '
        f'style="font-family: monospace; white-space: pre-wrap; line-height: 1.7;">{heading}{"".join(lines)}</div>'
    )


def view_title(store: LatentContexts, view: LatentView, follow: Follow = "matched") -> str:
    column = store.steps.index(view.step)
    formed = int(store.formation_step[view.latent])
    shown = f"its matched latent {view.shown}" if follow == "matched" else f"latent {view.shown} (same index)"
    formed_text = "not before the end" if formed == store.steps[-1] else f"at step {formed:,}"
    return (
        f"{store.manifest['run']} · final latent {view.latent} at step {view.step:,} ({tokens_label(store.manifest['tokens'][column])} tokens): "
        f"{shown}, decoder cos {view.matched_cosine:.3f} to the final latent; formed {formed_text}; fires on {view.density:.3%} of held-out tokens"
    )


def latent_figure(store: LatentContexts, latent: int, step: int, follow: Follow = "matched") -> go.Figure:
    """Left: the shown latent's histogram of positive activations at this checkpoint (log bins) with
    its firing density. Right: the final latent's decoder cosine to the latent shown at every
    checkpoint, the current one marked, the formation threshold and step drawn."""
    view = store.latent(latent, step, follow)
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.45, 0.55],
        subplot_titles=(f"activations > 0 (fires on {view.density:.3%} of held-out tokens)", "decoder cosine to its final self"),
    )
    _draw(figure, store, view, follow)
    figure.update_xaxes(title="activation", type="log", row=1, col=1)
    figure.update_yaxes(title="held-out tokens", row=1, col=1)
    figure.update_xaxes(title="share of training", range=[-0.02, 1.02], row=1, col=2)
    figure.update_yaxes(title="cosine", range=[min(-0.05, float(np.min(store.cosines(latent, follow))) - 0.05), 1.05], row=1, col=2)
    figure.update_layout(showlegend=False)
    return finish(figure, view_title(store, view, follow), height=380, width=1200)


def _draw(figure: go.Figure, store: LatentContexts, view: LatentView, follow: Follow) -> None:
    """Fill (or refill, for a FigureWidget) the two panels' traces and marks for `view`."""
    edges = view.edges
    centres = np.sqrt(edges[:-1] * edges[1:])
    tokens = np.asarray(store.manifest["tokens"], dtype=float)
    share = tokens / tokens[-1]
    cosines = store.cosines(view.latent, follow)
    column = store.steps.index(view.step)
    formed = int(store.formation_step[view.latent])
    threshold = float(store.manifest["formation_threshold"])
    histogram = go.Bar(x=centres, y=view.histogram, width=np.diff(edges), marker={"color": PALETTE[1]}, name="activations")
    curve = go.Scatter(x=share, y=cosines, mode="lines+markers", line={"color": PALETTE[0]}, name="cosine", text=[f"step {s:,}" for s in store.steps])
    ring = {"size": 16, "color": PALETTE[1], "symbol": "circle-open", "line": {"width": 3}}
    current = go.Scatter(x=[share[column]], y=[cosines[column]], mode="markers", marker=ring, name="this checkpoint")
    if len(figure.data) == 3:  # a redraw: update in place so a FigureWidget keeps its view
        with figure.batch_update():
            for old, new in zip(figure.data, (histogram, curve, current), strict=True):
                old.update(x=new.x, y=new.y)
            figure.data[0].update(width=histogram.width)
            figure.data[1].update(text=curve.text)
    else:
        figure.add_trace(histogram, row=1, col=1)
        figure.add_trace(curve, row=1, col=2)
        figure.add_trace(current, row=1, col=2)
    figure.layout.shapes = ()
    figure.layout.annotations = [a for a in figure.layout.annotations if a.text and not a.text.startswith(("formed", "threshold"))]
    # shapes with explicit axis references: add_hline/add_vline cannot be re-added to a redrawn subplot figure
    figure.add_shape(type="line", xref="x2 domain", x0=0, x1=1, yref="y2", y0=threshold, y1=threshold, line={"dash": "dot", "color": "grey"})
    figure.add_annotation(xref="x2 domain", x=0.0, yref="y2", y=threshold, text=f"threshold {threshold:g}", showarrow=False, xanchor="left", yanchor="bottom")
    if formed != store.steps[-1]:
        x = float(share[store.steps.index(formed)])
        figure.add_shape(type="line", xref="x2", x0=x, x1=x, yref="y2 domain", y0=0, y1=1, line={"dash": "dash", "color": PALETTE[2]})
        figure.add_annotation(xref="x2", x=x, yref="y2 domain", y=0.02, text=f"formed (step {formed:,})", showarrow=False, xanchor="left", yanchor="bottom")


def redraw(figure: go.Figure, store: LatentContexts, latent: int, step: int, follow: Follow = "matched") -> LatentView:
    """Redraw a figure made by `latent_figure` for another latent or checkpoint; returns the view shown."""
    view = store.latent(latent, step, follow)
    with figure.batch_update():
        _draw(figure, store, view, follow)
        figure.layout.title.text = view_title(store, view, follow)
        figure.layout.annotations[0].text = f"activations > 0 (fires on {view.density:.3%} of held-out tokens)"
        figure.update_yaxes(range=[min(-0.05, float(np.min(store.cosines(latent, follow))) - 0.05), 1.05], row=1, col=2)
    return view


def latent_page(store: LatentContexts, latent: int, steps: list[int] | None = None, follow: Follow = "matched", plotlyjs: bool | str = True) -> str:
    """A standalone HTML page for one latent: at each of `steps` (default: every checkpoint) its
    figure and top contexts, newest first; readable without a kernel. `plotlyjs`: True embeds
    plotly.js once; "directory" links a plotly.min.js beside the page (taulib.plots.save.save_pages)."""
    import plotly.io as pio

    steps = steps or store.steps
    parts = []
    for index, step in enumerate(sorted(steps, reverse=True)):
        view = store.latent(latent, step, follow)
        figure = pio.to_html(latent_figure(store, latent, step, follow), include_plotlyjs=plotlyjs if index == 0 else False, full_html=False)
        parts.append(f"<section>{figure}{contexts_html(view)}</section><hr>")
    title = html.escape(f"{store.manifest['run']} · final latent {latent}")
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body><h2>{title}</h2>{''.join(parts)}</body></html>"


def pages_index(links: dict[str, list[tuple[str, str]]]) -> str:
    """A page linking the latent pages: per run, (label, file name) pairs."""
    sections = []
    for run, entries in links.items():
        items = "".join(f'<li><a href="{html.escape(name)}">{html.escape(label)}</a></li>' for label, name in entries)
        sections.append(f"<h3>{html.escape(run)}</h3><ul>{items}</ul>")
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Latents</title></head><body><h2>Latents over training</h2>{''.join(sections)}</body></html>"
