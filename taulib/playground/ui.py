"""The τ playground's widgets (notebooks/07_tau_playground): schedule controls whose curves redraw as they move,
a train button with a progress bar and live endpoints, a checkpoint slider over the learned-versus-true
dictionary, the track's arms at the nearest L0, "keep" to write the schedule as an arm file, and the same
controls on the language model's cached activations."""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

from taulib.config import ConfigError, ScheduleConfig
from taulib.playground import comparison as compare
from taulib.playground import language_model as lm
from taulib.playground import world_runs as wr
from taulib.playground.controls import controls_of, schedule_mapping, validated_schedule
from taulib.playground.keep import keep_schedule, same_schedule
from taulib.plots import playground as plots
from taulib.plots.latent_contexts import contexts_html
from taulib.plots.style import tokens_label
from taulib.progress import progress_bar
from taulib.schedules import schedule_kinds

BUDGETS = (16_384, 65_536, 131_072, 262_144, 524_288)
LANGUAGE_MODEL_TOKENS = (16_384, 32_768, 65_536, 131_072, 262_144)
WIDE = {"width": "420px"}


# round values on a log scale, so that a kept arm file says τ 0.3, not 0.301995 (a log slider's nearest step)
TAU_GRID = (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
LAMBDA_GRID = tuple(round(m * 10.0**e, 6) for e in range(-4, 1) for m in (1, 1.5, 2, 3, 5, 7)) + (10.0,)


def _log_slider(label: str, grid: tuple[float, ...], value: float, style: dict[str, str]) -> widgets.SelectionSlider:
    """A slider over `grid`, with `value` added when it is not on it (a settings file's own value is kept exactly)."""
    options = sorted({*grid, float(value)})
    return widgets.SelectionSlider(
        options=[(f"{v:g}", v) for v in options], value=float(value), description=label, continuous_update=True, style=style, layout=WIDE
    )


def _message(text: str, ok: bool = True) -> str:
    colour = "#117733" if ok else "#CC3311"
    return (
        f'<pre class="playground-message" data-ok="{str(ok).lower()}" style="color: {colour}; white-space: pre-wrap; margin: 2px 0;">{html.escape(text)}</pre>'
    )


class ProbeProgress:
    """One progress bar (with its ETA) per probe in `output`, the figure reset as each probe starts, and the
    button disabled while training runs: what both playgrounds show while a run trains."""

    def __init__(self, output: widgets.Output, button: widgets.Button, total_steps: int, reset: Callable[[str], None]) -> None:
        self.output, self.button, self.total_steps, self.reset = output, button, total_steps, reset
        self.bar: Any = None
        self.last_step = 0

    def start(self, label: str) -> None:
        self.close()
        self.reset(f"training: {label}")
        with self.output:
            self.bar = progress_bar(total=self.total_steps, desc=label, unit="step")
        self.last_step = 0

    def advance(self, step: int) -> None:
        self.bar.update(step - self.last_step)
        self.last_step = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ProbeProgress:
        self.output.clear_output()
        self.button.disabled = True
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
        self.button.disabled = False


class ScheduleControls:
    """Kind, τ_initial, τ_final, anneal fraction and sparsity (target L0 or λ): the schedule as an arm file's mapping."""

    def __init__(self, schedule: dict[str, Any], target_l0: float | None, l1_coefficient: float) -> None:
        style = {"description_width": "110px"}
        self.kind = widgets.Dropdown(options=schedule_kinds(), value=schedule["kind"], description="kind", style=style)
        self.tau_initial = _log_slider("τ_initial", TAU_GRID, schedule.get("tau_initial", 0.3), style)
        self.tau_final = _log_slider("τ_final", TAU_GRID, schedule.get("tau_final", 0.05), style)
        self.anneal_fraction = widgets.FloatSlider(
            schedule.get("anneal_fraction", 1.0), min=0.05, max=1.0, step=0.05, description="anneal fraction", style=style, layout=WIDE
        )
        self.sparsity = widgets.ToggleButtons(
            options=["target L0", "λ"], value="target L0" if target_l0 is not None else "λ", description="sparsity", style=style
        )
        self.target_l0 = widgets.FloatSlider(target_l0 or 8.0, min=1.0, max=128.0, step=0.5, description="target L0", style=style, layout=WIDE)
        self.l1_coefficient = _log_slider("λ", LAMBDA_GRID, l1_coefficient, style)
        self.kind.observe(lambda _: self._enable(), names="value")
        self.sparsity.observe(lambda _: self._enable(), names="value")
        self._enable()

    @property
    def schedule_widgets(self) -> list[widgets.Widget]:
        return [self.kind, self.tau_initial, self.tau_final, self.anneal_fraction]

    def _enable(self) -> None:
        used = controls_of(self.kind.value) or ()
        for name in ("tau_initial", "tau_final", "anneal_fraction"):
            getattr(self, name).disabled = name not in used
        self.target_l0.disabled = self.sparsity.value != "target L0"
        self.l1_coefficient.disabled = self.sparsity.value != "λ"

    def mapping(self) -> dict[str, Any]:
        return schedule_mapping(self.kind.value, self.tau_initial.value, self.tau_final.value, self.anneal_fraction.value)

    def schedule(self) -> ScheduleConfig:
        """The schedule, validated as a parameter file's (ConfigError with the study's message)."""
        return validated_schedule(self.mapping())

    def sparsity_values(self) -> dict[str, float | None]:
        if self.sparsity.value == "target L0":
            return {"target_l0": float(self.target_l0.value), "l1_coefficient": None}
        return {"target_l0": None, "l1_coefficient": float(self.l1_coefficient.value)}

    def observe(self, callback: Any) -> None:
        for control in self.schedule_widgets:
            control.observe(lambda _: callback(), names="value")

    def box(self) -> widgets.Widget:
        return widgets.VBox(
            [
                widgets.HBox([self.kind, self.sparsity]),
                widgets.HBox([self.tau_initial, self.target_l0]),
                widgets.HBox([self.tau_final, self.l1_coefficient]),
                self.anneal_fraction,
            ]
        )


class Playground:
    """The ground-truth world's playground: build it, then display `.widget`."""

    def __init__(
        self,
        parameters_dir: str | Path,
        track_dir: str | Path,
        kept_track_dir: str | Path | None = None,
        design_overrides: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.parameters_dir = Path(parameters_dir)
        self.track_dir = Path(track_dir)
        self.kept_track_dir = Path(kept_track_dir) if kept_track_dir is not None else None
        self.base_overrides = dict(design_overrides or {})
        self.design = wr.load_design(self.parameters_dir, self.base_overrides)
        initial = wr.playground_settings({"schedule": wr.tested_schedule(self.parameters_dir)} | (settings or {}))
        self.run: wr.PlaygroundRun | None = None
        self.summary = ""  # the last run's outcome, as plain text
        self.comparison: compare.Comparison | None = None
        self.controls = ScheduleControls(initial.schedule.model_dump(), initial.target_l0, initial.l1_coefficient or 0.2)
        style = {"description_width": "110px"}
        budgets = sorted({*BUDGETS, *self.design.budgets, initial.budget})
        self.budget = widgets.Dropdown(options=[(f"{b:,} samples", b) for b in budgets], value=initial.budget, description="budget", style=style)
        self.world_seed = widgets.BoundedIntText(initial.world_seed, min=0, max=10_000, description="world seed", style=style)
        self.training_seed = widgets.BoundedIntText(initial.training_seed, min=0, max=10_000, description="training seed", style=style)
        world = self.design.world
        self.world_knobs = {
            "n_features": widgets.BoundedIntText(world.n_features, min=2, max=8192, description="true features", style=style),
            "d_model": widgets.BoundedIntText(world.d_model, min=2, max=2048, description="dimensions", style=style),
            "n_parents": widgets.BoundedIntText(world.n_parents, min=0, max=4096, description="parents", style=style),
            "children_per_parent": widgets.BoundedIntText(world.children_per_parent, min=0, max=64, description="children each", style=style),
            "mean_active_features": widgets.BoundedFloatText(world.mean_active_features, min=0.5, max=256, description="true L0", style=style),
        }
        self.schedule_plot = go.FigureWidget(plots.schedule_figure())
        self.schedule_message = widgets.HTML()
        self.train_button = widgets.Button(description="train", button_style="primary", icon="play")
        self.progress = widgets.Output()
        self.status = widgets.HTML()
        self.training_plot = go.FigureWidget(plots.training_figure())
        self.checkpoint = widgets.SelectionSlider(
            options=[("—", 0)], value=0, description="checkpoint", continuous_update=False, disabled=True, layout={"width": "800px"}
        )
        self.similarity_plot = go.FigureWidget(plots.similarity_figure())
        self.keep_name = widgets.Text(description="arm name", placeholder="e.g. cosine_0.3_to_0.02_lower_floor", style=style, layout=WIDE)
        self.keep_button = widgets.Button(description="keep", icon="save")
        self.keep_message = widgets.HTML()
        self.controls.observe(self.redraw_schedule)
        self.budget.observe(lambda _: self.redraw_schedule(), names="value")
        self.train_button.on_click(lambda _: self.train())
        self.checkpoint.observe(lambda change: self.show_checkpoint(change["new"]) if self.run is not None else None, names="value")
        self.keep_button.on_click(lambda _: self.keep())
        world_box = widgets.Accordion([widgets.VBox([*self.world_knobs.values(), self.world_seed, self.training_seed])], titles=("world and seeds",))
        self.widget = widgets.VBox(
            [
                widgets.HTML("<h3>Schedule</h3>"),
                widgets.HBox([self.controls.box(), widgets.VBox([self.budget, world_box])]),
                self.schedule_message,
                self.schedule_plot,
                widgets.HTML("<h3>Train on the ground-truth world</h3>"),
                widgets.HBox([self.train_button, self.status]),
                self.progress,
                self.training_plot,
                widgets.HTML("<h3>The dictionary at a checkpoint</h3>"),
                self.checkpoint,
                self.similarity_plot,
                widgets.HTML("<h3>Keep the schedule as an arm of the study</h3>"),
                widgets.HBox([self.keep_name, self.keep_button]),
                self.keep_message,
            ]
        )
        self.redraw_schedule()

    # ------------------------------------------------------------------ controls
    def design_now(self) -> Any:
        """The track's design with the world knobs' values (the base design when they are unchanged)."""
        world = {key: control.value for key, control in self.world_knobs.items()}
        if all(getattr(self.design.world, key) == value for key, value in world.items()):
            return self.design
        merged = {**self.base_overrides, "world": {**self.base_overrides.get("world", {}), **world}}
        return wr.load_design(self.parameters_dir, merged)

    def settings(self) -> wr.PlaygroundSettings:
        values = {
            "schedule": self.controls.schedule().model_dump(),
            **self.controls.sparsity_values(),
            "budget": self.budget.value,
            "world_seed": self.world_seed.value,
            "training_seed": self.training_seed.value,
        }
        return wr.playground_settings(values)

    def redraw_schedule(self) -> None:
        total = max(self.budget.value // self.design.batch_size, 1)
        try:
            schedule = self.controls.schedule()
        except ConfigError as error:
            plots.draw_schedule(self.schedule_plot, None, total, "refused: this schedule is not one the study accepts")
            self.schedule_message.value = _message(str(error), ok=False)
            self.train_button.disabled = True
            return
        self.train_button.disabled = False
        self.schedule_message.value = ""
        mapping = self.controls.mapping()
        described = ", ".join(f"{k} {v:g}" for k, v in mapping.items() if k != "kind") or "no τ"
        plots.draw_schedule(self.schedule_plot, schedule.to_schedule(), total, f"{schedule.kind}: {described} · {total:,} steps")

    # ------------------------------------------------------------------ training
    def _start_coefficient(self, design: Any, settings: wr.PlaygroundSettings) -> float | None:
        for folder in (self.track_dir, self.kept_track_dir):
            if folder is not None and (start := wr.start_from_track(wr.read_track_record(folder), design, settings)) is not None:
                return start
        return None

    def train(self) -> wr.PlaygroundRun | None:
        """Train with the controls' values, drawing every checkpoint as it is scored; then the checkpoint view and the comparison."""
        try:
            settings, design = self.settings(), self.design_now()
        except ConfigError as error:
            self.status.value = _message(str(error), ok=False)
            return None
        started = time.perf_counter()
        progress = ProbeProgress(
            self.progress, self.train_button, settings.budget // design.batch_size, lambda title: plots.reset_training(self.training_plot, title)
        )

        def on_probe(number: int, l1: float) -> None:
            progress.start(f"probe {number} of ≤{design.calibration_probes}, λ {l1:.3g}" if settings.target_l0 is not None else f"λ {l1:.3g}")

        def on_checkpoint(view: wr.CheckpointView) -> None:
            progress.advance(view.step)
            plots.append_checkpoint(self.training_plot, view.row)

        self.status.value = _message("training …")
        self.checkpoint.disabled = True
        try:
            with progress:
                run = wr.train_on_world(
                    settings, design, on_checkpoint=on_checkpoint, on_probe=on_probe, start_coefficient=self._start_coefficient(design, settings)
                )
        except (ConfigError, FloatingPointError) as error:
            self.status.value = _message(str(error), ok=False)
            return None
        self.run = run
        seconds = time.perf_counter() - started
        final = run.record["summary"]
        probes = f"{len(run.probes)} probe(s) to target L0 {settings.target_l0:g}; " if settings.target_l0 is not None else ""
        title = (
            f"{settings.schedule.kind} at λ {run.l1_coefficient:.3g} ({probes}final L0 {run.final_l0:.3g}): MCC {final['final_mcc']:.3f}, "
            f"recovered {final['final_recall']:.0%}, absorption {final['final_absorption']:.3f}, MCC area {final['mcc_area']:.3f}"
        )
        self.summary = f"trained in {seconds:.1f} s: {title}"
        self.status.value = _message(self.summary)
        self.compare()
        self.summary += f"\ncompared with {self.comparison.note if self.comparison else 'nothing'}"
        self.training_plot.layout.title.text = title
        self.checkpoint.options = [(f"{view.step:,} ({tokens_label(view.row['tokens'])} samples)", view.step) for view in run.checkpoints]
        self.checkpoint.value = run.steps[-1]
        self.checkpoint.disabled = False
        self.show_checkpoint(run.steps[-1])
        return run

    def show_checkpoint(self, step: int) -> None:
        assert self.run is not None
        plots.draw_similarity(self.similarity_plot, self.run, step)

    def compare(self) -> compare.Comparison:
        """The track's arms at the nearest L0 beside the playground run (a note in the status when there are none)."""
        assert self.run is not None
        self.comparison = compare.nearest_arm_runs(self.track_dir, self.run)
        record = wr.read_track_record(self.track_dir) or {}
        kinds = {arm["name"]: arm["schedule"]["kind"] for arm in record.get("arms", [])}
        plots.draw_comparison(self.training_plot, self.comparison, kinds)
        self.status.value += _message(f"compared with {self.comparison.note}", ok=bool(self.comparison.runs))
        return self.comparison

    # ------------------------------------------------------------------ keep
    def keep(self) -> Path | None:
        """Write the schedule as an arm file of the parameter folder (refused, with the study's message, as the study would)."""
        name = self.keep_name.value.strip()
        if not name:
            self.keep_message.value = _message("give the arm a name first", ok=False)
            return None
        try:
            twins = same_schedule(self.controls.mapping(), self.parameters_dir)
        except ConfigError:
            twins = []  # keep_schedule refuses it below, with the study's message
        try:
            path = keep_schedule(self.controls.mapping(), name, self.parameters_dir)
        except ConfigError as error:
            self.keep_message.value = _message(str(error), ok=False)
            return None
        note = f"; its schedule is also {', '.join(twins)}'s, so the study trains it twice" if twins else ""
        self.keep_message.value = _message(f"kept as {path}: `python -m taulib sweep` lists it, and the study and the ground-truth track run it{note}")
        return path


class LanguageModelPlayground:
    """The same schedule controls on the study's cached language-model activations: a short run, then any latent's contexts."""

    def __init__(
        self, parameters_dir: str | Path, outputs_dir: str | Path, overrides: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> None:
        self.parameters_dir, self.outputs_dir, self.overrides = Path(parameters_dir), Path(outputs_dir), overrides
        initial = lm.language_model_settings({"schedule": wr.tested_schedule(self.parameters_dir)} | (settings or {}))
        self.initial = initial
        self.data: lm.LanguageModelData | None = None
        self.run: lm.LanguageModelRun | None = None
        self.summary = ""
        self.controls = ScheduleControls(initial.schedule.model_dump(), initial.target_l0, initial.l1_coefficient or 0.02)
        style = {"description_width": "110px"}
        self.n_tokens = widgets.Dropdown(
            options=[(f"{n:,} tokens", n) for n in sorted({*LANGUAGE_MODEL_TOKENS, initial.n_tokens})],
            value=initial.n_tokens,
            description="budget",
            style=style,
        )
        self.train_button = widgets.Button(description="train on the language model", button_style="primary", icon="play", layout={"width": "240px"})
        self.progress = widgets.Output()
        self.status = widgets.HTML()
        self.plot = go.FigureWidget(plots.language_model_figure())
        self.latent = widgets.Combobox(placeholder="a latent's index", description="latent", style=style, ensure_option=False)
        self.contexts = widgets.HTML()
        self.train_button.on_click(lambda _: self.train())
        self.latent.observe(lambda change: self.show_latent(change["new"]), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.controls.box(), self.n_tokens]),
                widgets.HBox([self.train_button, self.status]),
                self.progress,
                self.plot,
                self.latent,
                self.contexts,
            ]
        )

    def train(self) -> lm.LanguageModelRun | None:
        try:
            values = {"schedule": self.controls.schedule().model_dump(), **self.controls.sparsity_values(), "n_tokens": self.n_tokens.value}
            settings = lm.language_model_settings({**self.initial.model_dump(), **values})
            if self.data is None or self.data.train.shape[0] < settings.n_tokens:
                self.data = lm.load_language_model_data(self.parameters_dir, self.outputs_dir, settings, self.overrides)
        except ConfigError as error:
            self.summary = str(error)
            self.status.value = _message(self.summary, ok=False)
            return None
        data = self.data if self.data.train.shape[0] == settings.n_tokens else dataclasses.replace(self.data, train=self.data.train[: settings.n_tokens])
        progress = ProbeProgress(
            self.progress, self.train_button, settings.n_tokens // data.config.training.batch_size, lambda title: plots.reset_language_model(self.plot, title)
        )

        def on_probe(number: int, l1: float) -> None:
            progress.start(f"λ {l1:.3g}" + (f" (probe {number} of ≤{settings.max_probes})" if settings.target_l0 is not None else ""))

        def on_checkpoint(row: dict[str, float]) -> None:
            progress.advance(int(row["step"]))
            plots.append_language_model_row(self.plot, row)

        try:
            with progress:
                run = lm.train_on_cache(settings, data, on_checkpoint=on_checkpoint, on_probe=on_probe)
        except (ConfigError, FloatingPointError) as error:
            self.status.value = _message(str(error), ok=False)
            return None
        self.run = run
        final = run.rows[-1]
        summary = (
            f"λ {run.l1_coefficient:.3g}: final L0 {final['l0']:.3g}, explained variance {final['explained_variance']:.3f}, dead {final['dead_share']:.1%}"
        )
        self.plot.layout.title.text = summary
        self.summary = f"trained in {run.seconds:.1f} s on {settings.n_tokens:,} tokens: {summary}"
        self.status.value = _message(self.summary)
        most_active = run.most_active(20)
        self.latent.options = [str(i) for i in most_active]
        self.latent.value = str(most_active[0])
        self.show_latent(self.latent.value)
        return run

    def show_latent(self, value: str) -> None:
        if self.run is None or not value.strip():
            return
        try:
            view = self.run.latent(int(value))
        except (ValueError, IndexError) as error:
            self.contexts.value = _message(f"latent {value!r}: {error}", ok=False)
            return
        self.contexts.value = contexts_html(view, f"latent {view.latent}: fires on {view.density:.2%} of held-out tokens (top contexts at the end of the run)")
