"""One colour and line style per arm, the same in every figure of a study."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from taulib.analysis.study_data import Run

# colour-blind-safe, dark enough on white (Paul Tol's "muted" scheme)
PALETTE = ("#332288", "#CC6677", "#117733", "#DDAA33", "#88CCEE", "#AA4499", "#44AA99", "#999933", "#882255", "#661100")
TEMPLATE = "plotly_white"


@dataclass(frozen=True)
class ArmStyle:
    color: str
    dash: str
    symbol: str


SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down", "pentagon", "hexagon")


def arm_styles(arms: tuple[Run, ...] | list[Run]) -> dict[str, ArmStyle]:
    """Colour by position, dash by schedule kind, marker symbol by position (distinguishable in greyscale too)."""
    return {
        arm.name: ArmStyle(PALETTE[i % len(PALETTE)], arm.config.schedule.spec.dash, SYMBOLS[i % len(SYMBOLS)])
        for i, arm in enumerate(arms)
    }


def tokens_label(value: float) -> str:
    """3 significant digits with an SI suffix: 7680 → '7.68k', 1.5e6 → '1.50M'; 'n/a' for NaN."""
    if value != value:  # NaN
        return "n/a"
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.3g}"


def line(style: ArmStyle, width: float = 2.0) -> dict:
    return {"color": style.color, "dash": style.dash, "width": width}


def marker(style: ArmStyle, size: int = 6) -> dict:
    return {"color": style.color, "symbol": style.symbol, "size": size}


def finish(figure: go.Figure, title: str, height: int, width: int = 1200) -> go.Figure:
    figure.update_layout(template=TEMPLATE, title={"text": title, "x": 0.01}, height=height, width=width, legend={"tracegroupgap": 2})
    return figure
