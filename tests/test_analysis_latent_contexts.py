"""The latent context store, against an independent computation and a run whose latents fire on known tokens."""

import numpy as np
import pytest
import torch
from formula_study import HELDOUT_TOKENS, MIX, STEPS, WIDTH, concept_of, write_latent_checkpoints, write_synthetic_study
from pydantic import ValidationError
from saes import perfect_sae

from taulib.analysis.latent_contexts import ContextSettings, ContextStoreError, LatentContexts, build_contexts, checkpoint_contexts
from taulib.analysis.latent_formation import FormationSettings, run_formation
from taulib.analysis.study_data import load_study
from taulib.plots.latent_contexts import contexts_html, latent_figure, latent_page, pages_index, redraw
from taulib.plots.save import save_pages

SETTINGS = ContextSettings(top_k=5, before=3, after=2, histogram_log10_min=-2, histogram_log10_max=0.5, histogram_bins=10)


def test_one_checkpoint_matches_a_direct_computation():
    """perfect_sae: latent i is ReLU(x_i), latent d + i is ReLU(−x_i); every number recomputed with numpy."""
    d, n, sequence = 4, 200, 20
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32) * 3
    x[:, 0] = -np.abs(x[:, 0])
    x[[41, 160], 0] = [1.5, 0.7]  # latent 0 fires on two tokens only: fewer than k
    x[60, 1] = 100.0  # beyond the last histogram edge: counted in the last bin
    out = checkpoint_contexts(perfect_sae(d), torch.from_numpy(x), sequence, SETTINGS.model_copy(update={"chunk_tokens": 37}))  # top-k merged over chunks
    f = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1)
    edges = np.linspace(SETTINGS.histogram_log10_min, SETTINGS.histogram_log10_max, SETTINGS.histogram_bins + 1)
    for latent in range(2 * d):
        fired = np.flatnonzero(f[:, latent] > 0)
        order = fired[np.argsort(-f[fired, latent], kind="stable")][: SETTINGS.top_k]
        expected_rows = np.full(SETTINGS.top_k, -1)
        expected_rows[: len(order)] = order
        np.testing.assert_array_equal(out["top_rows"][latent], expected_rows)
        np.testing.assert_allclose(out["top_values"][latent][: len(order)], f[order, latent], rtol=1e-6)
        assert out["firing"][latent] == len(fired)
        logs = np.clip(np.log10(f[fired, latent]), edges[0], edges[-1])
        np.testing.assert_array_equal(out["histogram"][latent], np.histogram(logs, edges)[0])
        for rank, row in enumerate(order):
            for offset, value in zip(range(-SETTINGS.before, SETTINGS.after + 1), out["window_values"][latent, rank], strict=True):
                position = row + offset
                if 0 <= position < n and position // sequence == row // sequence:
                    assert value == pytest.approx(f[position, latent], rel=1e-3, abs=1e-3)
                else:
                    assert np.isnan(value), (latent, row, offset)
    assert list(out["top_rows"][0][:3]) == [41, 160, -1]
    assert out["histogram"][1][-1] >= 1  # the 100.0


@pytest.fixture
def synthetic_run(tmp_path):
    outputs = write_synthetic_study(tmp_path / "outputs")
    token_ids = (np.arange(HELDOUT_TOKENS) * 37) % 1000 + 2  # every concept occurs, in a known order
    write_latent_checkpoints(outputs, "tightened", token_ids)
    return outputs, load_study(outputs, runs=["tightened"]).run("tightened"), token_ids


def words(ids):
    return [f"w{i}" for i in ids]


def test_a_store_finds_the_tokens_each_latent_fires_on_and_follows_it_back(synthetic_run):
    outputs, arm, token_ids = synthetic_run
    settings = ContextSettings(top_k=4)
    folder = build_contexts(arm, outputs, settings, token_strings=words, show_progress=False)
    store = LatentContexts(folder)
    concepts = concept_of(token_ids)
    final = STEPS[-1]
    for latent in (0, 5, WIDTH - 1):
        view = store.latent(latent, final)
        assert view.shown == latent and view.matched_cosine == pytest.approx(1.0)
        # the final latent fires exactly on its concept's tokens, at 3·1 − 1 = 2
        assert view.density == pytest.approx(np.mean(concepts == latent))
        assert len(view.contexts) == min(4, int(np.sum(concepts == latent)))
        for context in view.contexts:
            assert concepts[context.row] == latent and context.value == pytest.approx(2.0, abs=0.01)
            assert context.tokens[context.centre] == f"w{token_ids[context.row]}"
        assert view.histogram.sum() == np.sum(concepts == latent)
        assert view.histogram[np.searchsorted(view.edges, 2.0) - 1] == view.histogram.sum()
    # before the final checkpoint the latents sit one slot along: followed by direction, latent j is
    # slot j + 1 and still fires on concept j; by index, slot j holds concept j − 1's direction
    late = STEPS[-2]  # a = 0.95
    matched, by_index = store.latent(7, late, "matched"), store.latent(7, late, "index")
    assert matched.shown == 8 and by_index.shown == 7
    assert {concepts[c.row] for c in matched.contexts} == {7}
    assert {concepts[c.row] for c in by_index.contexts} == {6}
    assert np.all(store.partner[:, 2:-1] == ((np.arange(WIDTH) + 1) % WIDTH)[:, None])  # a ≥ 0.5: the known slots
    # matched cosines rise to 1; formation agrees with run_formation's own matching of the saved decoders
    cosines = store.cosines(7)
    assert cosines[-1] == pytest.approx(1.0) and np.all(np.diff(cosines[2:]) > 0)
    record = run_formation(arm, FormationSettings())
    assert store.formation_step.tolist() == record["formation_step"]
    # cos(normalise(0.2·r + 0.8·c), c) > 0.9 for any random r (r·c ~ ±0.1 in 128 dimensions), ≈ 0.7 at a = 0.5
    assert set(store.formation_step.tolist()) == {STEPS[MIX.index(0.8)]}
    assert store.latent_lists(3)["earliest formed"] == [0, 1, 2]


def test_a_store_is_built_once_per_configuration(synthetic_run):
    outputs, arm, _ = synthetic_run
    folder = build_contexts(arm, outputs, SETTINGS, token_strings=words, show_progress=False)
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert len([name for name in stamps if name.startswith("step_")]) == len(STEPS)
    assert build_contexts(arm, outputs, SETTINGS, token_strings=lambda ids: pytest.fail("rebuilt"), show_progress=False) == folder
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == stamps
    other = build_contexts(arm, outputs, SETTINGS.model_copy(update={"top_k": 2}), token_strings=words, show_progress=False)
    assert other != folder and LatentContexts(other).latent(3, STEPS[-1]).contexts.__len__() == 2
    assert not list(folder.glob(".*.tmp"))


def test_the_browser_figure_and_page_show_the_checkpoint(synthetic_run):
    outputs, arm, _ = synthetic_run
    store = LatentContexts(build_contexts(arm, outputs, SETTINGS, token_strings=words, show_progress=False))
    figure = latent_figure(store, 7, STEPS[-1])
    assert figure.data[2].x[0] == pytest.approx(1.0) and figure.data[2].y[0] == pytest.approx(1.0)  # the marker at the end
    assert f"step {STEPS[-1]:,}" in figure.layout.title.text and "formed at step 10" in figure.layout.title.text
    view = redraw(figure, store, 7, STEPS[1])
    assert figure.data[2].x[0] == pytest.approx(STEPS[1] / STEPS[-1]) and figure.data[2].y[0] == pytest.approx(store.cosines(7)[1])
    assert len(figure.data) == 3 and sum(1 for a in figure.layout.annotations if a.text.startswith("formed")) == 1
    page = contexts_html(store.latent(7, STEPS[-1]))
    assert page.count('class="latent-context"') == 5 and "outline" in page and f'data-step="{STEPS[-1]}"' in page
    assert contexts_html(view) != page
    embedded = latent_page(store, 7, [STEPS[0], STEPS[-1]])
    assert embedded.count("Plotly.newPlot") == 2 and len(embedded) > 1_000_000  # plotly.js once, in the page
    linked = latent_page(store, 7, [STEPS[0], STEPS[-1]], plotlyjs="directory")
    folder = outputs / "figures"
    written = save_pages({"latent_7": linked, "index": pages_index({"tightened": [("latent 7", "latent_7.html")]})}, folder)
    assert [path.name for path in written] == ["plotly.min.js", "latent_7.html", "index.html"]
    assert 'src="plotly.min.js"' in (folder / "latent_7.html").read_text() and len(linked) < 200_000
    assert 'href="latent_7.html"' in (folder / "index.html").read_text()


def test_bad_input_is_refused_before_any_work(synthetic_run, tmp_path):
    outputs, arm, _ = synthetic_run
    with pytest.raises(ValidationError, match="must exceed"):
        ContextSettings(histogram_log10_min=1, histogram_log10_max=0)
    (arm.run_dir / "checkpoints" / "step_0000003" / "sae.safetensors").unlink()
    with pytest.raises(ContextStoreError, match=r"no saved SAE for checkpoint\(s\) \[3\]"):
        build_contexts(arm, outputs, SETTINGS, token_strings=words)
    assert not (arm.run_dir / "latent_contexts").exists()
    with pytest.raises(ContextStoreError, match="no complete context store"):
        LatentContexts(tmp_path)


def test_a_store_refuses_latents_and_steps_it_does_not_have(synthetic_run):
    outputs, arm, _ = synthetic_run
    store = LatentContexts(build_contexts(arm, outputs, SETTINGS, token_strings=words, show_progress=False))
    with pytest.raises(IndexError, match="out of range"):
        store.latent(WIDTH, STEPS[-1])
    with pytest.raises(KeyError, match="no checkpoint at step 2"):
        store.latent(0, 2)


def test_the_widget_redraws_contexts_and_marker_with_the_slider_and_latent(synthetic_run):
    from taulib.plots.widgets import LatentBrowser

    outputs, arm, _ = synthetic_run
    study = load_study(outputs)
    store = LatentContexts(build_contexts(arm, outputs, SETTINGS, token_strings=words, show_progress=False))
    browser = LatentBrowser(study, {"tightened": store}, lists={"tightened": {"chosen": [9]}})
    assert browser.arm_picker.options == ("tightened",) and browser.latent_box.value == 0  # the earliest formed (ties: lowest index)
    final_html, final_marker = browser.contexts.value, browser.figure.data[2].x[0]
    browser.slider.value = STEPS[0]
    assert browser.contexts.value != final_html and 'data-step="0"' in browser.contexts.value
    assert browser.figure.data[2].x[0] == 0.0 != final_marker
    assert browser.figure.data[2].y[0] == pytest.approx(store.cosines(0)[0])
    browser.list_picker.value = 9
    assert browser.latent_box.value == 9 and 'data-latent="9"' in browser.contexts.value
    browser.follow.value = "index"
    assert 'data-shown="9"' in browser.contexts.value and browser.figure.data[1].y[0] == pytest.approx(store.index_cosine[9, 0])
    with pytest.raises(KeyError, match="not in the study"):
        LatentBrowser(study, {"nowhere": store})


def test_a_synthetic_model_run_shows_each_sample_alone_named_by_its_largest_true_feature(tmp_path):
    """The ground-truth track's held-out samples are independent and have no text: a context is the sample
    alone, its "token" the largest firing true feature (the cache's token id), and no tokenizer is loaded."""
    import pandas as pd

    from taulib.activations.cache import activation_spec, cache_folder, load_cache
    from taulib.activations.synthetic import ensure_synthetic_activations
    from taulib.analysis.study_data import Run
    from taulib.config import RunConfig
    from taulib.sae import SAEMetadata, save_sae

    config = RunConfig.model_validate(
        {
            "run_name": "synthetic_run",
            "model": {"name": "synthetic", "synthetic": {"d_model": 16, "n_features": 32}},
            "activations": {"n_tokens": 512, "heldout_tokens": 512, "shard_tokens": 512},
            "sae": {"width": 32},
        }
    )
    outputs = tmp_path / "outputs"
    ensure_synthetic_activations(config, outputs, show_progress=False)
    steps = [0, 10]
    for step in steps:
        sae = perfect_sae(16)  # 32 latents: each coordinate's positive and negative half
        save_sae(sae, outputs / "synthetic_run" / "checkpoints" / f"step_{step:07d}", SAEMetadata(16, 32, model_name="synthetic", layer=0))
    arm = Run("synthetic_run", outputs / "synthetic_run", config, pd.DataFrame({"step": steps, "tokens": [0, 2560]}), pd.DataFrame())
    store = LatentContexts(build_contexts(arm, outputs, SETTINGS, show_progress=False))
    spec = activation_spec(config, "heldout", 0)
    token_ids = load_cache(cache_folder(outputs, spec), spec).token_ids.numpy()
    view = store.latent(3, steps[-1])
    assert len(view.contexts) == SETTINGS.top_k
    for context in view.contexts:
        assert len(context.tokens) == 1 and context.centre == 0
        expected = "no feature" if token_ids[context.row] < 0 else f"feature {token_ids[context.row]}"
        assert context.tokens == [expected]
