"""A real browser (Debian chromium driven by Playwright) opens the analysis notebook served by Voila,
moves the checkpoint slider and sees the figure redraw. Saves a screenshot of the result."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from formula_study import write_synthetic_study
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from taulib.study.run import NOTEBOOKS_DIR

pytestmark = pytest.mark.notebook

CHROMIUM = Path(os.environ.get("BROWSER_PATH", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the checkpoint browser's figure: the plotly graph inside the widget box that also holds the slider
FIGURE_STATE = """() => {
  const box = [...document.querySelectorAll('.widget-vbox')].find(b => b.querySelector('.widget-slider') && b.querySelector('.js-plotly-plot'));
  if (!box) return null;
  const plot = box.querySelector('.js-plotly-plot');
  if (!plot.data || !plot.layout) return null;
  return JSON.stringify({title: plot.layout.title && plot.layout.title.text, y: plot.data[0].y});
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(name: str, arguments: list[str], cwd: Path, env: dict[str, str], ready_path: str, log_path: Path) -> Iterator[str]:
    """`python -m <arguments>` serving on a free port (`{port}` in the arguments), yielded as its URL
    once `ready_path` answers (any HTTP answer counts); stopped, and its log closed, on exit."""
    port = _free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", *(a.format(port=port) for a in arguments)], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}{ready_path}", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        try:
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture
def voila_notebook(tmp_path):
    """Notebook 03 with its parameters pointing at a synthetic study, served by Voila on a free port."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the set-up (scripts/install.sh) installs Debian chromium, or set BROWSER_PATH")
    outputs = write_synthetic_study(tmp_path / "outputs")
    served = tmp_path / "served"
    served.mkdir()
    notebook = load_notebook_node(str(NOTEBOOKS_DIR / "03_early_concept_formation.ipynb"))  # papermill's reader adds the metadata it needs
    parameters = {"outputs_dir": str(outputs), "figures_dir": str(tmp_path / "figures"), "save_png": False, "slider_arm": "tightened"}
    nbformat.write(parameterize_notebook(notebook, parameters), served / "03.ipynb")
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}
    arguments = ["voila", "--no-browser", "--port={port}", "--Voila.ip=127.0.0.1", "03.ipynb"]
    # a static path: any answer means up, and no kernel is started
    with _server("voila", arguments, served, env, "voila/static/none", tmp_path / "voila.log") as url:
        yield url


def _wait_for(page, predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(250)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_moving_the_checkpoint_slider_redraws_the_figure(voila_notebook, tmp_path):
    from playwright.sync_api import sync_playwright

    screenshot = Path(os.environ.get("TAULIB_SCREENSHOT_DIR", tmp_path)) / "checkpoint_slider.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)  # a fresh temporary profile
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(voila_notebook, timeout=180_000)  # Voila answers once every cell has run
            drawn = lambda: (s := page.evaluate(FIGURE_STATE)) and json.loads(s)["title"].startswith("tightened") and s  # noqa: E731
            before = json.loads(_wait_for(page, drawn, 120, "the checkpoint figure to render the tightened arm"))
            assert before["title"].startswith("tightened: step 100 ") and len(before["y"]) == 26
            handle = page.locator(".widget-slider .noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowLeft")  # one checkpoint back: step 100 → 30
            after = json.loads(
                _wait_for(page, lambda: (s := page.evaluate(FIGURE_STATE)) and json.loads(s)["title"] != before["title"] and s, 60, "the redraw")
            )
            handle.scroll_into_view_if_needed()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert after["title"].startswith("tightened: step 30 "), after["title"]
    assert after["y"] != before["y"]  # the first-letter F1 bars changed with the checkpoint
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


# ----------------------------------------------------------------------------- the latent browser in JupyterLab
# the latent browser: the contexts it shows (step, latent shown, text) and its figure's checkpoint marker
LATENT_STATE = """() => {
  const shown = document.querySelector('.widget-html .latent-contexts');
  const box = [...document.querySelectorAll('.widget-vbox')].find(b => b.querySelector('.latent-contexts') && b.querySelector('.js-plotly-plot'));
  if (!shown || !box) return null;
  const plot = box.querySelector('.js-plotly-plot');
  if (!plot.data || plot.data.length < 3) return null;
  return JSON.stringify({step: shown.dataset.step, shown: shown.dataset.shown, text: shown.innerText, marker: [plot.data[2].x[0], plot.data[2].y[0]]});
}"""
WORDS = "the river rose over the old stone bridge while children ran along the bank calling to the boats below".split()


@pytest.fixture
def jupyterlab_notebook(tmp_path):
    """Notebook 06 with its parameters pointing at a synthetic study whose `tightened` run has
    checkpoints, a held-out cache and a built context store, in a JupyterLab server (headless,
    no token) rooted in a temporary folder on a free port."""
    import numpy as np
    from formula_study import HELDOUT_TOKENS, write_latent_checkpoints

    from taulib.analysis.latent_contexts import ContextSettings, build_contexts
    from taulib.analysis.study_data import load_study

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the set-up (scripts/install.sh) installs Debian chromium, or set BROWSER_PATH")
    outputs = write_synthetic_study(tmp_path / "outputs")
    write_latent_checkpoints(outputs, "tightened", (np.arange(HELDOUT_TOKENS) * 37) % 1000 + 2)
    # built here with words for token ids, so the notebook finds it and loads no tokenizer
    build_contexts(load_study(outputs).run("tightened"), outputs, ContextSettings(), token_strings=lambda ids: [f" {WORDS[i % len(WORDS)]}" for i in ids])
    served = tmp_path / "served"
    served.mkdir()
    notebook = load_notebook_node(str(NOTEBOOKS_DIR / "06_latents.ipynb"))
    parameters = {"outputs_dir": str(outputs), "figures_dir": str(tmp_path / "figures"), "save_png": False, "pages_per_list": 1}
    nbformat.write(parameterize_notebook(notebook, parameters), served / "06.ipynb")
    with jupyterlab_server(served, tmp_path) as url:
        yield url, tmp_path


@contextlib.contextmanager
def jupyterlab_server(served: Path, scratch: Path) -> Iterator[str]:
    """JupyterLab (headless, no token) rooted in `served` on a free port, its configuration and log under `scratch`; its URL."""
    env = {
        **os.environ,
        "JUPYTER_PREFER_ENV_PATH": "1",
        "JUPYTER_CONFIG_DIR": str(scratch / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "jupyter-runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "jupyter-workspaces"),
        "IPYTHONDIR": str(scratch / "ipython"),
    }
    arguments = [
        "jupyterlab", "--no-browser", "--port={port}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={served}",
        "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root", "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    with _server("jupyter lab", arguments, served, env, "api/status", scratch / "jupyterlab.log") as url:
        yield url


RUN_STARTED = "() => [...document.querySelectorAll('.jp-InputArea-prompt')].some(e => /\\[[0-9*]+\\]/.test(e.textContent))"


def _run_all_cells(page) -> None:
    """Run > Run All Cells, again until a cell has started: the entry is disabled (and its menu stays
    open) while the notebook is not yet the active panel with a connected kernel."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            page.keyboard.press("Escape")  # a menu left open by the last try
            page.locator(".jp-Notebook .jp-Cell").first.click(timeout=5_000)  # make the notebook the active panel
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click(timeout=5_000)
            entry = page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel", has_text="Run All Cells").first
            entry.click(timeout=5_000)
        except PlaywrightError:
            continue
        started = time.monotonic()
        while time.monotonic() < started + 10:
            if page.evaluate(RUN_STARTED):
                return
            page.wait_for_timeout(250)
    pytest.fail("Run All Cells did not start the notebook")


def open_and_run_all(page, url: str, notebook: str) -> None:
    """Open `notebook` in the JupyterLab at `url`, wait for its kernel, and run all its cells."""
    page.goto(f"{url}lab/tree/{notebook}", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    _wait_for(page, lambda: page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0, 60, "the kernel to start")
    _run_all_cells(page)


def test_jupyterlab_runs_the_latent_notebook_and_the_checkpoint_slider_changes_the_contexts(jupyterlab_notebook):
    from playwright.sync_api import sync_playwright

    url, tmp_path = jupyterlab_notebook
    screenshot = Path(os.environ.get("TAULIB_SCREENSHOT_DIR", tmp_path)) / "latent_browser.png"
    state = lambda page: (s := page.evaluate(LATENT_STATE)) and json.loads(s)  # noqa: E731
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            open_and_run_all(page, url, "06.ipynb")
            try:
                before = _wait_for(page, lambda: (s := state(page)) and s["step"] == "100" and s, 90, "the latent browser to show the final checkpoint")
            except BaseException:
                page.screenshot(path=str(screenshot), full_page=True)
                print(f"screenshot: {screenshot}\n{page.locator('.jp-Notebook').inner_text()[-3000:]}")
                raise
            handle = page.locator(".widget-slider .noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            page.keyboard.press("ArrowLeft")  # one checkpoint back: step 100 → 30
            after = _wait_for(page, lambda: (s := state(page)) and s["step"] != before["step"] and s["marker"] != before["marker"] and s, 60, "the redraw")
            page.screenshot(path=str(screenshot), full_page=True)
            outputs_text = page.locator(".jp-Notebook").inner_text()
        finally:
            browser.close()
    assert "Traceback" not in outputs_text and "Error" not in outputs_text, outputs_text[-2000:]
    assert before["shown"] == "0" and before["marker"] == [1, pytest.approx(1.0)]  # latent 0 is itself at the end: cosine 1
    # at step 30 the latents sat one slot along: the browser follows latent 0's direction into slot 1
    assert after["step"] == "30" and after["shown"] == "1"
    assert after["marker"][0] == pytest.approx(0.3) and after["marker"][1] < 1
    assert after["text"] != before["text"]  # the activations shown changed with the checkpoint
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


# ----------------------------------------------------------------------------- the τ playground in JupyterLab
# every plotly figure on the page: its title, its first trace's y and its number of traces
PLOTS_STATE = """() => JSON.stringify([...document.querySelectorAll('.js-plotly-plot')].filter(p => p.layout && p.data).map(p => ({
  title: (p.layout.title && p.layout.title.text) || '', y: Array.from((p.data[0] && p.data[0].y) || []), traces: p.data.length})))"""


@pytest.fixture
def playground_notebook(tmp_path):
    """Notebook 07 on the tiny ground-truth design, beside a tiny track of it, in a JupyterLab server; keep writes
    into a copy of the parameter folder."""
    import shutil

    from tiny_track import ONE_REPLICATE

    from taulib.groundtruth import track

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the set-up (scripts/install.sh) installs Debian chromium, or set BROWSER_PATH")
    parameters = tmp_path / "parameters"
    shutil.copytree(NOTEBOOKS_DIR.parent / "parameters", parameters)
    track.run_track(parameters, tmp_path / "ground_truth", ONE_REPLICATE | {"workers": 1}, show_progress=False)
    served = tmp_path / "served"
    served.mkdir()
    notebook = load_notebook_node(str(NOTEBOOKS_DIR / "07_tau_playground.ipynb"))
    values = {
        "parameters_dir": str(parameters),
        "track_dir": str(tmp_path / "ground_truth"),
        "kept_track_dir": None,
        "outputs_dir": str(tmp_path / "outputs"),
        "design_overrides": ONE_REPLICATE,
        "playground_settings": {"target_l0": 4.0, "budget": 8192},
    }
    nbformat.write(parameterize_notebook(notebook, values), served / "07.ipynb")
    with jupyterlab_server(served, tmp_path) as url:
        yield url, tmp_path, parameters


def _button(page, label: str):
    return page.locator("button.jupyter-button", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")).first


def _plot(page, prefix: str) -> dict | None:
    """The figure whose title starts with `prefix` (None until one does)."""
    return next((p for p in json.loads(page.evaluate(PLOTS_STATE)) if p["title"].startswith(prefix)), None)


def test_jupyterlab_playground_redraws_trains_scrubs_keeps_and_refuses_a_rising_tau(playground_notebook):
    from playwright.sync_api import sync_playwright

    from taulib.config import load_run_config

    url, tmp_path, parameters = playground_notebook
    screenshots = Path(os.environ.get("TAULIB_SCREENSHOT_DIR", tmp_path))
    screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            open_and_run_all(page, url, "07.ipynb")
            try:
                curve = _wait_for(page, lambda: _plot(page, "cosine: tau_initial 0.3, tau_final 0.05"), 90, "the schedule's curves")
            except BaseException:
                page.screenshot(path=str(screenshots / "playground.png"), full_page=True)
                print(f"screenshot: {screenshots / 'playground.png'}\n{page.locator('.jp-Notebook').inner_text()[-3000:]}")
                raise
            slider = lambda label: page.locator(".widget-slider", has=page.locator("label", has_text=label)).locator(".noUi-handle").first  # noqa: E731
            # τ_final one step down: the τ curve redraws, ending lower
            slider("τ_final").focus()
            page.keyboard.press("ArrowLeft")
            moved = _wait_for(page, lambda: (p := _plot(page, "cosine: tau_initial 0.3, tau_final")) and p["y"] != curve["y"] and p, 30, "the τ curve to redraw")
            assert moved["y"][0] == pytest.approx(0.3) and moved["y"][-1] < curve["y"][-1]
            page.screenshot(path=str(screenshots / "playground_schedule.png"), full_page=True)

            # train: the metric figure fills, checkpoint by checkpoint, and the track's arms are drawn beside it
            _button(page, "train").click()
            trained = _wait_for(page, lambda: (p := _plot(page, "cosine at λ")) and p["traces"] > 9 and p, 120, "the run and the arms beside it")
            assert len(trained["y"]) == 5  # L0 at every checkpoint of the tiny design
            dictionary = _wait_for(page, lambda: _plot(page, "step "), 30, "the dictionary view")
            page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
            page.screenshot(path=str(screenshots / "playground_trained.png"), full_page=True)

            # one checkpoint back: the dictionary view redraws
            slider("checkpoint").focus()
            page.keyboard.press("ArrowLeft")
            scrubbed = _wait_for(page, lambda: (p := _plot(page, "step ")) and p["title"] != dictionary["title"] and p, 30, "the dictionary view to redraw")
            page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
            page.screenshot(path=str(screenshots / "playground_checkpoint.png"), full_page=True)

            # keep: an arm file the study accepts
            name = page.locator(".widget-text", has=page.locator("label", has_text="arm name")).locator("input")
            name.fill("cosine_0.3_to_0.04_playground")
            _button(page, "keep").click()
            _wait_for(page, lambda: "kept as" in page.locator(".jp-Notebook").inner_text(), 30, "the kept message")

            # a rising τ: refused with the study's message, in the curves' place and when kept
            slider("τ_final").focus()
            page.keyboard.press("End")
            _wait_for(page, lambda: _plot(page, "refused"), 30, "the refusal")
            name.fill("rising")
            _button(page, "keep").click()
            refusals = lambda: page.locator(".playground-message[data-ok='false']", has_text="anneals τ downwards").count()  # noqa: E731
            _wait_for(page, lambda: refusals() >= 2, 30, "the keep refusal")
            page.locator(".playground-message[data-ok='false']").last.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshots / "playground_refused.png"), full_page=True)
            outputs_text = page.locator(".jp-Notebook").inner_text()
        finally:
            browser.close()
    assert "Traceback" not in outputs_text, outputs_text[-2000:]
    assert scrubbed["title"].startswith("step ") and dictionary["title"] != scrubbed["title"]
    kept = load_run_config(parameters / "cosine_0.3_to_0.04_playground.yaml")
    assert kept.schedule.model_dump() == {"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.04, "anneal_fraction": 0.8}  # one step down from 0.05
    assert not (parameters / "rising.yaml").exists()
    print(f"screenshots: {screenshots}")
