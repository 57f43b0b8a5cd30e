"""Figures, their files and the checkpoint widgets, on a study written from formulas (no model)."""

import dataclasses
import struct

import numpy as np
import plotly.graph_objects as go
import pytest
from formula_study import ARMS, BATCH, LETTERS, STEPS, write_synthetic_study

from taulib.analysis.formation import formation_time, formed_letter_absorption, letter_k1_f1
from taulib.analysis.matched import formation_table, warmup_end_tokens
from taulib.analysis.orthogonality import lower_bound_pairs, near_duplicates_over_training, trajectory_vs_outcome
from taulib.analysis.study_data import load_study
from taulib.plots.orthogonality import lower_bound_figure, near_duplicates_figure, trajectory_vs_outcome_figure
from taulib.plots.save import save_figures
from taulib.plots.state import checkpoint_state_at, cosine_histogram_figure, draw_cosine_histograms
from taulib.plots.style import arm_styles, tokens_label
from taulib.plots.training import absorption_speed_figure, formation_figure, letter_formation_figure, metrics_over_training
from taulib.plots.widgets import CheckpointBrowser, CosineBrowser


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return load_study(write_synthetic_study(tmp_path_factory.mktemp("synthetic") / "outputs"))


def _traces_by_arm(figure: go.Figure) -> dict[str, list[go.Scatter]]:
    traces: dict[str, list] = {}
    for trace in figure.data:
        traces.setdefault(trace.legendgroup or trace.name, []).append(trace)
    return traces


def test_arms_get_distinct_styles(study):
    styles = arm_styles(study.runs)
    assert len({(s.color, s.symbol) for s in styles.values()}) == len(ARMS)
    assert styles["baseline"].dash == "dot" and styles["tightened"].dash == "solid"
    assert [tokens_label(v) for v in (7680, 1.5e6, 12.0, float("nan"))] == ["7.68k", "1.5M", "12", "n/a"]


def test_metrics_over_training_draws_every_arm_in_every_panel_on_a_log_axis(study):
    figure = metrics_over_training(study)
    by_arm = _traces_by_arm(figure)
    assert set(by_arm) == set(ARMS)
    assert all(len(traces) == 9 for traces in by_arm.values())  # 7 metrics + τ + λ/τ
    assert all(min(trace.x) > 0 for trace in figure.data)  # the 0-token initial SAE is off the log axis
    assert figure.layout.xaxis.type == "log" and figure.layout.xaxis7.title.text == "tokens seen"
    tightened_l0 = next(t for t in by_arm["tightened"] if t.yaxis == "y")
    assert list(tightened_l0.y) == pytest.approx(list(study.run("tightened").evaluation["l0"][1:]))


def test_formation_and_absorption_figures_carry_the_table(study):
    table = formation_table(study)
    figure = formation_figure(study, table)
    formed = [trace for trace in figure.data if trace.xaxis == "x"]
    assert [trace.name for trace in formed] == list(ARMS)
    assert formed[1].x == ("sparse probing, top-1 accuracy",)  # the synthetic study has no k=1 F1 column: left out, not drawn as a gap
    assert list(formed[1].y) == pytest.approx([table.loc["tightened", "formation_sae_top_1_accuracy"]])
    speed = absorption_speed_figure(study, table)
    settled = [trace for trace in speed.data if trace.type == "bar"][0]
    assert list(settled.y) == pytest.approx(list(table["absorption_settling"]), nan_ok=True)
    letters = [formed_letter_absorption(study.run(name), 0.5)[0] for name in ARMS]
    assert all(len(chosen) == 20 for chosen in letters)  # the synthetic study's letters with a passing probe, all detected at the end
    assert all(text.endswith("· 20 letters") for text in settled.text)


def test_orthogonality_figures(study):
    duplicates = near_duplicates_figure(study, near_duplicates_over_training(study))
    assert {t.name for t in duplicates.data} == set(ARMS) | {"random unit vectors"}
    assert "at most 0 near-duplicate pairs" in duplicates.layout.title.text  # computed from the random baseline
    ablation = lower_bound_figure(study, lower_bound_pairs(study))
    assert {t.legendgroup for t in ablation.data} == {"tightened", "higher_floor"}
    trajectory = trajectory_vs_outcome_figure(study, trajectory_vs_outcome(study))
    assert len(trajectory.data) == len(ARMS) * 7 and trajectory.layout.xaxis.type == "log"


def test_cosine_histograms_redraw_per_checkpoint(study):
    figure = cosine_histogram_figure(study)
    draw_cosine_histograms(figure, study, {name: 0 for name in ARMS}, "start")
    first = list(figure.data[0].y)
    draw_cosine_histograms(figure, study, {name: 100 for name in ARMS}, "end")
    assert list(figure.data[0].y) != first and sum(figure.data[0].y) == sum(first) == 128
    assert figure.layout.annotations[0].text == "baseline (step 100)"


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_save_figures_writes_standalone_html_and_png_at_the_layout_size(study, tmp_path):
    figure = checkpoint_state_at(study.run("tightened"), 10)
    written = save_figures({"state": figure}, tmp_path / "figures")
    assert sorted(p.name for p in written) == ["state.html", "state.png"]
    html = (tmp_path / "figures" / "state.html").read_text()
    assert len(html) > 1_000_000 and '<script src="http' not in html  # plotly.js embedded: opens offline
    assert _png_size(tmp_path / "figures" / "state.png") == (figure.layout.width, figure.layout.height)
    assert (tmp_path / "figures" / "state.png").stat().st_size > 20_000  # drawn, not blank
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["state.html", "state.png"]  # no scratch left


def test_checkpoint_browser_redraws_on_slider_and_arm_change(study):
    browser = CheckpointBrowser(study, arm="tightened")
    assert browser.slider.value == STEPS[-1] and "step 100" in browser.figure.layout.title.text
    final_f1 = list(browser.figure.data[0].y)
    browser.slider.value = 3
    assert list(browser.figure.data[0].y) != final_f1 and "step 3 ·" in browser.figure.layout.title.text
    assert list(browser.figure.data[2].x) != []  # density drawn
    browser.arm_picker.value = "linear"  # keeps the position along training
    assert browser.slider.value == 3 and browser.figure.layout.title.text.startswith("linear")


def test_cosine_browser_moves_every_arm_along_training(study):
    browser = CosineBrowser(study)
    end = [list(trace.y) for trace in browser.figure.data]
    browser.slider.value = 0
    assert [list(trace.y) for trace in browser.figure.data][0] != end[0]
    assert browser.steps() == {name: 0 for name in ARMS}


def test_each_letters_k1_f1_over_training_is_read_from_every_checkpoint(study):
    """The formula study's letter i has k=1 F1 min(1, step/100 + 0.01·i) at every checkpoint, and a passing
    ground-truth probe unless i is a multiple of 5."""
    run = study.run("tightened")
    curves = letter_k1_f1(run)
    steps = np.array(STEPS, dtype=float)
    assert curves.letters == list(LETTERS)
    np.testing.assert_allclose(curves.tokens, steps * BATCH)
    expected = np.minimum(1.0, steps[None, :] / 100 + 0.01 * np.arange(26)[:, None])
    np.testing.assert_allclose(curves.k1_f1, expected)
    assert curves.evaluated.tolist() == [i % 5 != 0 for i in range(26)]
    # each letter timed by the report's rule for the mean curve, from the first post-warm-up checkpoint
    start = warmup_end_tokens(run)
    formed = curves.formation(start)
    for i, letter in enumerate(LETTERS):
        own = formation_time(steps * BATCH, expected[i], start, 1)
        assert formed.loc[letter, "formed_tokens"] == pytest.approx(own)
        assert formed.loc[letter, "final_k1_f1"] == pytest.approx(expected[i, -1])
    figure = letter_formation_figure(study)
    heatmaps = [trace for trace in figure.data if trace.type == "heatmap"]
    assert len(heatmaps) == len(ARMS)
    np.testing.assert_allclose(np.asarray(heatmaps[0].z, dtype=float), expected)
    markers = [trace for trace in figure.data if trace.type == "scatter"]
    assert all(len(trace.y) == sum(curves.evaluated) for trace in markers)  # the evaluated letters only


def test_a_run_without_absorption_details_has_no_letter_curves(study, tmp_path):
    run = study.run("baseline")
    bare = dataclasses.replace(run, run_dir=tmp_path / "not_evaluated")
    assert letter_k1_f1(bare) is None
