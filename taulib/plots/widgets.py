"""ipywidgets that scrub training checkpoints: a slider (and an arm picker) redrawing a plotly FigureWidget."""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go

from taulib.analysis.orthogonality import checkpoint_at_position
from taulib.analysis.study_data import Arm, StudyData
from taulib.plots.state import checkpoint_state_at, cosine_histogram_figure, draw_arm_checkpoint, draw_cosine_histograms


def _options(arm: Arm) -> list[tuple[str, int]]:
    return [(f"{int(row.step):,} ({int(row.tokens):,} tokens)", int(row.step)) for row in arm.evaluation.itertuples()]


class CheckpointBrowser:
    """Pick an arm, slide over its checkpoints: first-letter latents, density and probing latents redraw."""

    def __init__(self, study: StudyData, arm: str | None = None, step: int | None = None) -> None:
        self.study = study
        first = study.arm(arm) if arm else study.arms[0]
        step = step if step is not None else first.steps[-1]
        # the widget starts from a drawn figure: changes made before its view exists do not reach the browser
        self.figure = go.FigureWidget(checkpoint_state_at(first, step))
        self.arm_picker = widgets.Dropdown(options=study.names, value=first.name, description="arm")
        self.slider = widgets.SelectionSlider(options=_options(first), value=step, description="step", continuous_update=False, layout={"width": "700px"})
        self.slider.style.description_width = "initial"
        self._switching_arm = False
        self.arm_picker.observe(self._arm_changed, names="value")
        self.slider.observe(lambda change: self._switching_arm or self.draw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.arm_picker, self.slider]), self.figure])

    @property
    def arm(self) -> Arm:
        return self.study.arm(self.arm_picker.value)

    def _arm_changed(self, change: dict) -> None:
        """Show the new arm at the same fraction of training as the old one (arms may differ in length)."""
        old = self.study.arm(change["old"])
        position = self.slider.value / max(old.steps[-1], 1)
        self._switching_arm = True  # new options reset the value: draw once, at the end
        try:
            self.slider.options = _options(self.arm)
            self.slider.value = checkpoint_at_position(self.arm, position)
        finally:
            self._switching_arm = False
        self.draw()

    def draw(self) -> None:
        draw_arm_checkpoint(self.figure, self.arm, self.slider.value)


class CosineBrowser:
    """Slide along training: every arm's max-cosine histogram against random vectors, at the same progress."""

    def __init__(self, study: StudyData, reference: str | None = None) -> None:
        self.study = study
        self.reference = study.arm(reference) if reference else max(study.arms, key=lambda arm: len(arm.steps))
        self.slider = widgets.SelectionSlider(
            options=_options(self.reference), value=self.reference.steps[-1], description="step", continuous_update=False, layout={"width": "700px"}
        )
        self.figure = cosine_histogram_figure(study)
        self.draw()  # into the plain figure first: changes made before a widget's view exists do not reach the browser
        self.figure = go.FigureWidget(self.figure)
        self.slider.observe(lambda change: self.draw(), names="value")
        self.widget = widgets.VBox([self.slider, self.figure])

    def steps(self) -> dict[str, int]:
        position = self.slider.value / max(self.reference.steps[-1], 1)
        return {arm.name: checkpoint_at_position(arm, position) for arm in self.study.arms}

    def draw(self) -> None:
        entry = self.reference.evaluation.set_index("step").loc[self.slider.value]
        label = f"step {self.slider.value:,} of {self.reference.name} ({int(entry['tokens']):,} tokens)"
        draw_cosine_histograms(self.figure, self.study, self.steps(), f"max decoder cosine at {label} (τ differs per arm)")
