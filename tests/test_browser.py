"""A real browser (Debian chromium driven by Playwright) opens the analysis notebook served by Voila,
moves the checkpoint slider and sees the figure redraw. Saves a screenshot of the result."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from synthetic_study import write_synthetic_study

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
    port = _free_port()
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}
    command = [sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", "03.ipynb"]
    log = (tmp_path / "voila.log").open("w")
    server = subprocess.Popen(command, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}voila/static/none", timeout=2)  # any answer means up; no kernel is started
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"voila did not start:\n{(tmp_path / 'voila.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


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
