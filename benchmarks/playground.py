"""How responsive the τ playground (notebooks/07_tau_playground) is on this CPU.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/playground.py
    .venv/bin/python benchmarks/playground.py --quick --results /tmp/results.md   # seconds
    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/playground.py --browser   # and as a user sees it, in JupyterLab

Timed in this process, as the notebook's kernel runs them (the browser's drawing of the figure comes on top):
- the default run: `Playground.train()` with the controls' defaults (tightened annealing, target L0 8, 262,144
  samples on the ground-truth track's default world; λ's search starting from the kept report's calibration), the
  first in a fresh process (the world and its samples are drawn then) and again (they are kept);
- the same with λ given (one run, no probes);
- a redraw of the schedule's curves when a slider moves, and of the dictionary view when the checkpoint slider moves;
- the language-model section's default run, when the study's activation cache is there (`make study` or notebook 01).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPOSITORY, RESULTS, markdown_table, provenance, write_section  # noqa: E402

QUICK_DESIGN = {
    "world": {"d_model": 16, "n_features": 24, "n_parents": 2, "children_per_parent": 3, "n_rare": 2, "mean_active_features": 3.0},
    "budgets": [4096, 8192],
    "batch_size": 128,
    "n_checkpoints": 5,
    "heldout_samples": 2048,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs after the first, and redraws of each kind ×10")
    parser.add_argument("--track-dir", type=Path, default=REPOSITORY / "outputs" / "ground_truth", help="a track to compare with (skipped when absent)")
    parser.add_argument("--quick", action="store_true", help="a tiny world and budget, one repeat (a smoke test)")
    parser.add_argument("--browser", action="store_true", help="also time the same in JupyterLab in Debian chromium, as a user sees it")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats <= 0:
        parser.error("--repeats must be positive")
    if args.quick:
        args.repeats = 1
    return args


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse(argv)
    started = time.perf_counter()
    from taulib.playground.ui import TAU_GRID, Playground  # noqa: PLC0415 (the import is part of a fresh kernel's cost)

    overrides = QUICK_DESIGN if args.quick else None
    settings = {"budget": 8192, "target_l0": 4.0} if args.quick else None
    playground = Playground(REPOSITORY / "parameters", args.track_dir, REPOSITORY / "docs" / "findings" / "ground_truth", overrides, settings)
    built = time.perf_counter() - started
    first = _timed(playground.train)
    run = playground.run
    assert run is not None, playground.summary
    again = [_timed(playground.train) for _ in range(args.repeats)]
    probes = len(playground.run.probes)
    playground.controls.sparsity.value = "λ"
    playground.controls.l1_coefficient.options = sorted(
        {*playground.controls.l1_coefficient.options, (f"{run.l1_coefficient:g}", run.l1_coefficient)}, key=lambda o: o[1]
    )
    playground.controls.l1_coefficient.value = run.l1_coefficient
    given = [_timed(playground.train) for _ in range(args.repeats)]
    taus = [t for t in TAU_GRID if t < 0.3][: 10 * args.repeats]
    schedule_redraws = [_timed(lambda t=t: setattr(playground.controls.tau_final, "value", t)) for t in taus]
    steps = playground.run.steps
    checkpoint_redraws = [
        _timed(lambda s=s: setattr(playground.checkpoint, "value", s)) for s in (steps * (1 + 10 * args.repeats // len(steps)))[: 10 * args.repeats]
    ]
    measured = {
        "build_s": built,
        "first_run_s": first,
        "run_s": statistics.median(again),
        "lambda_run_s": statistics.median(given),
        "probes": probes,
        "schedule_redraw_s": max(schedule_redraws),
        "checkpoint_redraw_s": max(checkpoint_redraws),
    }
    if args.browser:
        import tempfile  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="taulib-playground-") as scratch:
            measured |= _in_the_browser(args, Path(scratch))
    language_model_rows = _language_model(args)
    measured |= {f"language_model_{key}": value for key, value in language_model_rows.items() if isinstance(value, float)}
    world = run.design.world
    print(", ".join(f"{key} {value:.3g}" for key, value in measured.items()), flush=True)
    command = "python benchmarks/playground.py" + (" --quick" if args.quick else "") + (" --browser" if args.browser else "")
    body = provenance(command, ("torch", "plotly", "ipywidgets")) + "\n"
    body += (
        f"The playground's default ({world.n_features} true features in {world.d_model} dimensions, {run.settings.budget:,} samples, "
        f"tightened annealing at target L0 {run.settings.target_l0:g}: {probes} probe(s), final L0 {run.final_l0:.3g}), timed in the kernel's "
        "process; the browser's drawing comes on top. The goals: a default run under 20 s, a redraw under 1 s.\n\n"
    )
    body += markdown_table(
        ["what", "seconds"],
        [
            ["building the widgets (imports included)", built],
            ["the default run, first in a fresh process (the world and its samples drawn)", first],
            [f"the default run again (median of {args.repeats})", measured["run_s"]],
            [f"the same with λ given: one run, no probes (median of {args.repeats})", measured["lambda_run_s"]],
            [f"schedule curves redrawn as τ_final moves (slowest of {len(schedule_redraws)})", measured["schedule_redraw_s"]],
            [f"dictionary view redrawn as the checkpoint slider moves (slowest of {len(checkpoint_redraws)})", measured["checkpoint_redraw_s"]],
        ],
    )
    if args.browser:
        body += "\n\nIn JupyterLab (Debian chromium driven by Playwright, the notebook served on this machine), from the key press or click to the figure redrawn in the page, polled every 20 ms:\n\n"
        body += markdown_table(
            ["what", "median (s)", "slowest (s)"],
            [
                ["schedule curves redrawn as τ_final moves one step (6 moves)", *_median_max(measured, "schedule")],
                [
                    f"**train** pressed until the run, the arms beside it and the dictionary view are drawn ({args.repeats} runs)",
                    *_median_max(measured, "train"),
                ],
                ["dictionary view redrawn as the checkpoint slider moves one step (4 moves)", *_median_max(measured, "checkpoint")],
            ],
        )
    if "skipped" in language_model_rows:
        body += f"\n\nThe language-model section: not timed ({language_model_rows['skipped']}).\n"
    else:
        body += (
            f"\n\nThe language-model section's default ({language_model_rows['tokens']:,} tokens of the study's cache, "
            f"{language_model_rows['width']:,} latents, λ {language_model_rows['l1']:g}: final L0 {language_model_rows['final_l0']:.3g}, "
            f"explained variance {language_model_rows['explained_variance']:.3f}):\n\n"
        )
        body += markdown_table(
            ["what", "seconds"],
            [
                ["loading and scaling the cached activations", language_model_rows["load_s"]],
                ["the run, checkpoints scored", language_model_rows["run_s"]],
                ["the first latent's view: every latent's top contexts, the tokenizer loaded once for the data", language_model_rows["first_view_s"]],
                ["another latent's view", language_model_rows["next_view_s"]],
            ],
        )
    write_section("playground", "The τ playground: a run and a redraw on this CPU (`benchmarks/playground.py`)", body, args.results)
    return measured


def _in_the_browser(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """The same controls moved in JupyterLab (Debian chromium driven by Playwright, the suite's browser test's
    helpers): seconds from a key press or click to the figure redrawn in the page, as a user sees it."""
    import json  # noqa: PLC0415

    import nbformat  # noqa: PLC0415
    from papermill.iorw import load_notebook_node  # noqa: PLC0415
    from papermill.parameterize import parameterize_notebook  # noqa: PLC0415
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    sys.path.insert(0, str(REPOSITORY / "tests"))
    from test_browser import CHROMIUM, CHROMIUM_FLAGS, PLOTS_STATE, _button, _wait_for, jupyterlab_server, open_and_run_all  # noqa: PLC0415

    if not CHROMIUM.is_file():
        raise SystemExit(f"--browser: {CHROMIUM} not found (scripts/install.sh installs Debian chromium, or set BROWSER_PATH)")
    served = folder / "served"
    served.mkdir(parents=True)
    values = {
        "parameters_dir": str(REPOSITORY / "parameters"),
        "track_dir": str(args.track_dir),
        "kept_track_dir": str(REPOSITORY / "docs" / "findings" / "ground_truth"),
    }
    if args.quick:
        values |= {"design_overrides": QUICK_DESIGN, "playground_settings": {"budget": 8192, "target_l0": 4.0}}
    notebook = load_notebook_node(str(REPOSITORY / "notebooks" / "07_tau_playground.ipynb"))
    nbformat.write(parameterize_notebook(notebook, values), served / "07.ipynb")
    # every code cell has its execution count: Run All has finished
    RUN_FINISHED = "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].every(e => /\\[[0-9]+\\]/.test(e.textContent))"  # noqa: N806
    plots = lambda page: json.loads(page.evaluate(PLOTS_STATE))  # noqa: E731
    titled = lambda page, prefix: next((p for p in plots(page) if p["title"].startswith(prefix)), None)  # noqa: E731

    def timed(page, action, changed, what: str) -> float:
        """Seconds from `action` until `changed()` holds, polled every 20 ms (the resolution of these figures)."""
        started = time.perf_counter()
        action()
        while not changed():
            if time.perf_counter() - started > 120:
                raise TimeoutError(f"120 s without {what}")
            page.wait_for_timeout(20)
        return time.perf_counter() - started

    measured: dict[str, list[float]] = {"schedule": [], "train": [], "checkpoint": []}
    with jupyterlab_server(served, folder) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            open_and_run_all(page, url, "07.ipynb")
            _wait_for(page, lambda: titled(page, "cosine: tau_initial 0.3"), 120, "the schedule's curves")
            # every cell run: a busy kernel would answer the first move late, whatever the playground costs
            _wait_for(page, lambda: page.evaluate(RUN_FINISHED), 120, "the notebook's last cell")
            handle = lambda label: page.locator(".widget-slider", has=page.locator("label", has_text=label)).locator(".noUi-handle").first  # noqa: E731
            for key in ["ArrowLeft"] * 3 + ["ArrowRight"] * 3:
                before = titled(page, "cosine: tau_initial 0.3")["title"]
                handle("τ_final").focus()
                measured["schedule"].append(
                    timed(
                        page,
                        lambda key=key: page.keyboard.press(key),
                        lambda before=before: titled(page, "cosine: tau_initial 0.3")["title"] != before,
                        "τ redrawn",
                    )
                )
            for _ in range(args.repeats):
                seen = {"training": False}

                def finished(seen=seen) -> bool:
                    seen["training"] = seen["training"] or titled(page, "training:") is not None
                    return seen["training"] and titled(page, "cosine at λ") is not None and titled(page, "step ") is not None

                measured["train"].append(timed(page, lambda: _button(page, "train").click(), finished, "the run"))
            for _ in range(4):
                before = titled(page, "step ")["title"]
                handle("checkpoint").focus()
                measured["checkpoint"].append(
                    timed(
                        page, lambda: page.keyboard.press("ArrowLeft"), lambda before=before: titled(page, "step ")["title"] != before, "the dictionary redrawn"
                    )
                )
        finally:
            browser.close()
    print({key: [round(v, 3) for v in values] for key, values in measured.items()}, flush=True)
    return {
        **{f"browser_{key}_median_s": statistics.median(values) for key, values in measured.items()},
        **{f"browser_{key}_max_s": max(values) for key, values in measured.items()},
    }


def _median_max(measured: dict[str, float], key: str) -> list[float]:
    return [measured[f"browser_{key}_median_s"], measured[f"browser_{key}_max_s"]]


def _language_model(args: argparse.Namespace) -> dict[str, float | int | str]:
    """The language-model section's default run on the study's cache, when `make study` (or notebook 01) made one."""
    from taulib.config import ConfigError  # noqa: PLC0415
    from taulib.playground import language_model as lm  # noqa: PLC0415
    from taulib.playground.world_runs import tested_schedule  # noqa: PLC0415

    if args.quick:
        return {"skipped": "--quick"}
    settings = lm.language_model_settings({"schedule": tested_schedule(REPOSITORY / "parameters")})
    started = time.perf_counter()
    try:
        data = lm.load_language_model_data(REPOSITORY / "parameters", REPOSITORY / "outputs", settings)
    except ConfigError as error:
        return {"skipped": str(error).splitlines()[0]}
    loaded = time.perf_counter() - started
    run = lm.train_on_cache(settings, data)
    started = time.perf_counter()
    run.latent(run.most_active(1)[0])
    first_view = time.perf_counter() - started
    started = time.perf_counter()
    run.latent(run.most_active(2)[1])
    next_view = time.perf_counter() - started
    final = run.rows[-1]
    return {
        "load_s": loaded,
        "run_s": run.seconds,
        "first_view_s": first_view,
        "next_view_s": next_view,
        "tokens": settings.n_tokens,
        "width": run.sae.d_sae,
        "l1": run.l1_coefficient,
        "final_l0": final["l0"],
        "explained_variance": final["explained_variance"],
    }


if __name__ == "__main__":
    main()
