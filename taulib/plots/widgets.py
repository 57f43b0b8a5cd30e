"""ipywidgets that scrub training checkpoints: a slider (and an arm picker) redrawing a plotly FigureWidget."""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go

from taulib.analysis.latent_contexts import LatentContexts
from taulib.analysis.orthogonality import checkpoint_at_position
from taulib.analysis.study_data import Run, StudyData
from taulib.plots.latent_contexts import contexts_html, latent_figure, redraw
from taulib.plots.state import checkpoint_state_at, cosine_histogram_figure, draw_arm_checkpoint, draw_cosine_histograms


def _options(run: Run) -> list[tuple[str, int]]:
    return [(f"{int(row.step):,} ({int(row.tokens):,} tokens)", int(row.step)) for row in run.evaluation.itertuples()]


class CheckpointBrowser:
    """Pick an arm, slide over its checkpoints: first-letter latents, density and probing latents redraw."""

    def __init__(self, study: StudyData, arm: str | None = None, step: int | None = None) -> None:
        self.study = study
        first = study.run(arm) if arm else study.runs[0]
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
    def arm(self) -> Run:
        return self.study.run(self.arm_picker.value)

    def _arm_changed(self, change: dict) -> None:
        """Show the new arm at the same fraction of training as the old one (arms may differ in length)."""
        old = self.study.run(change["old"])
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
        self.reference = study.run(reference) if reference else max(study.runs, key=lambda arm: len(arm.steps))
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
        return {run.name: checkpoint_at_position(run, position) for run in self.study.runs}

    def draw(self) -> None:
        entry = self.reference.evaluation.set_index("step").loc[self.slider.value]
        label = f"step {self.slider.value:,} of {self.reference.name} ({int(entry['tokens']):,} tokens)"
        draw_cosine_histograms(self.figure, self.study, self.steps(), f"max decoder cosine at {label} (τ differs per arm)")


class LatentBrowser:
    """Pick a run and a latent of its final SAE (by index, or from a list: earliest / latest formed,
    most active, matched across seeds), slide over checkpoints: the latent's top contexts with the
    activating tokens highlighted, its activation histogram and density, and its decoder cosine to
    its final self with the checkpoint marked, redraw. `stores`: each run's built context store;
    `lists`: per run, named lists of latents beside the store's own."""

    def __init__(
        self,
        study: StudyData,
        stores: dict[str, LatentContexts],
        lists: dict[str, dict[str, list[int]]] | None = None,
        arm: str | None = None,
        latent: int | None = None,
    ) -> None:
        if not stores:
            raise ValueError("no context store to browse: build one per run with taulib.analysis.latent_contexts.build_contexts")
        unknown = sorted(set(stores) - set(study.names))
        if unknown:
            raise KeyError(f"stores for runs not in the study: {', '.join(unknown)}")
        self.study, self.stores, self.extra_lists = study, stores, lists or {}
        first = arm or next(name for name in study.names if name in stores)
        store = stores[first].preload()
        if latent is None:  # the earliest-formed latent, else the first
            latent = next(iter(self._lists(first)["earliest formed"]), 0)
        self.arm_picker = widgets.Dropdown(options=[name for name in study.names if name in stores], value=first, description="run")
        self.list_picker = widgets.Dropdown(options=self._list_options(first), value=None, description="from", layout={"width": "360px"})
        self.latent_box = widgets.BoundedIntText(value=latent, min=0, max=store.width - 1, description="latent", layout={"width": "160px"})
        self.follow = widgets.ToggleButtons(options=[("matched direction", "matched"), ("same index", "index")], value="matched", description="follow")
        self.slider = widgets.SelectionSlider(
            options=_options(study.run(first)), value=store.steps[-1], description="step", continuous_update=False, layout={"width": "700px"}
        )
        for control in (self.arm_picker, self.list_picker, self.latent_box, self.follow, self.slider):
            control.style.description_width = "initial"
        self.figure = go.FigureWidget(latent_figure(store, latent, store.steps[-1]))  # drawn before its view exists
        self.contexts = widgets.HTML(contexts_html(store.latent(latent, store.steps[-1])))
        self._quiet = False
        self.arm_picker.observe(self._arm_changed, names="value")
        self.list_picker.observe(self._list_changed, names="value")
        for control in (self.latent_box, self.follow, self.slider):
            control.observe(lambda change: self._quiet or self.draw(), names="value")
        controls = widgets.VBox([widgets.HBox([self.arm_picker, self.list_picker, self.latent_box]), widgets.HBox([self.follow]), self.slider])
        self.widget = widgets.VBox([controls, self.figure, self.contexts])

    @property
    def store(self) -> LatentContexts:
        return self.stores[self.arm_picker.value]

    def _lists(self, run: str) -> dict[str, list[int]]:
        return self.stores[run].latent_lists() | self.extra_lists.get(run, {})

    def _list_options(self, run: str) -> list[tuple[str, int]]:
        return [(f"{name}: {latent}", latent) for name, latents in self._lists(run).items() for latent in latents]

    def _list_changed(self, change: dict) -> None:
        if change["new"] is not None:
            self.latent_box.value = change["new"]

    def _arm_changed(self, change: dict) -> None:
        old = self.study.run(change["old"])
        position = self.slider.value / max(old.steps[-1], 1)
        self._quiet = True
        try:
            self.store.preload()
            self.list_picker.options, self.list_picker.value = self._list_options(self.arm_picker.value), None
            self.latent_box.max = self.store.width - 1
            self.slider.options = _options(self.study.run(self.arm_picker.value))
            self.slider.value = checkpoint_at_position(self.study.run(self.arm_picker.value), position)
        finally:
            self._quiet = False
        self.draw()

    def draw(self) -> None:
        view = redraw(self.figure, self.store, self.latent_box.value, self.slider.value, self.follow.value)
        self.contexts.value = contexts_html(view)
