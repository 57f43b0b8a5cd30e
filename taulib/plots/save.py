"""Writing figures so they can be read without a kernel: standalone HTML (plotly.js embedded) and PNG."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from taulib import atomic


def save_pages(pages: dict[str, str], folder: str | Path) -> list[Path]:
    """Write `<name>.html` for every page (HTML text), each atomically; pages that link plotly.js
    from their folder (`include_plotlyjs="directory"`) get one shared plotly.min.js beside them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if any('src="plotly.min.js"' in page for page in pages.values()):
        from plotly.offline import get_plotlyjs

        atomic.write_text(folder / "plotly.min.js", get_plotlyjs())
        written.append(folder / "plotly.min.js")
    for name, page in pages.items():
        atomic.write_text(folder / f"{name}.html", page)
        written.append(folder / f"{name}.html")
    return written


def save_figures(figures: dict[str, go.Figure], folder: str | Path, png: bool = True, scale: float = 1.0) -> list[Path]:
    """Write `<name>.html` and `<name>.png` for every figure; each file appears complete or not at all.

    The PNGs are rendered in one kaleido session (one browser start for all of them). A
    FigureWidget is written as the plain figure it shows.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {name: go.Figure(figure) for name, figure in figures.items()}
    written = []
    for name, figure in plain.items():
        html = pio.to_html(figure, include_plotlyjs=True, full_html=True)
        atomic.write_text(folder / f"{name}.html", html)
        written.append(folder / f"{name}.html")
    if png and plain:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".png-") as scratch:
            paths = [Path(scratch) / f"{name}.png" for name in plain]
            figures_list = list(plain.values())
            # kaleido renders at 700 × 500 unless told: use each figure's own layout size
            widths = [figure.layout.width or 1200 for figure in figures_list]
            heights = [figure.layout.height or 600 for figure in figures_list]
            pio.write_images(figures_list, paths, format="png", scale=scale, width=widths, height=heights)
            for name, path in zip(plain, paths, strict=True):
                shutil.move(str(path), folder / f"{name}.png")  # same filesystem: an atomic rename
                written.append(folder / f"{name}.png")
    return written
