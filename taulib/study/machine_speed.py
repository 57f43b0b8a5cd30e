"""This machine's speed at the plan's shapes: short timings of the real code, cached per machine.

Each measurement times the code a study runs (a training step, one checkpoint's model-free metrics,
the language model's forward, a notebook's start, a figure export) at the plan's own shapes, capped
where the cost grows linearly, and returns seconds per unit (a step, a token, a checkpoint…) for
taulib.study.cost to multiply by the plan's sizes. Results are cached per machine (taulib.timing.SpeedCache),
so a second `taulib sweep` or `study` on the same machine measures nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from taulib.metrics.family import timing_sae
from taulib.timing import once, timed

LATENT_CONTEXT_TOKENS_CAP = 8192  # the context store's encoding is timed on at most this many tokens, then scaled
FIGURES_PER_NOTEBOOK = 5  # the analysis notebooks' figures: 03 writes six, 04 four
# the common words an absorption prompt's in-context examples are made of, for its token count
PROMPT_WORDS = ("apple", "house", "river", "green", "table", "music", "stone", "water", "light", "dream", "chair", "money")


# ----------------------------------------------------------------------------- the measurements
def sae_step_seconds(d_model: int, width: int, batch: int, compute_dtype: str, threads: int | None = None) -> float:
    """One dense training step (forward, hand-written backward, Adam, decoder renorm): the early steps;
    later steps of a sparse SAE may take the faster sparse path. `threads`: the run's training.threads."""
    from taulib.sae import SparseAutoencoder
    from taulib.train.trainer import optimiser_step

    torch.manual_seed(0)
    sae = SparseAutoencoder(d_model, width)
    optimiser = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)
    x = torch.randn(batch, d_model)
    dtype = torch.bfloat16 if compute_dtype == "bfloat16" else torch.float32
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        return timed(lambda: optimiser_step(sae, optimiser, x, 1e-3, 1e-4, dtype, 0.0))
    finally:
        torch.set_num_threads(default_threads)


def latent_contexts_seconds(d_model: int, width: int, heldout_tokens: int, sequence_length: int) -> float:
    """One checkpoint of a run's latent context store (notebook 06): encoding the held-out tokens with
    top-k and histograms (timed on at most LATENT_CONTEXT_TOKENS_CAP tokens, scaled to all), the windows
    of context (a cost per latent, whatever the tokens) and matching to the final SAE (Hungarian)."""
    from taulib.analysis.latent_contexts import ContextSettings, checkpoint_contexts, window_activations
    from taulib.metrics.latent_formation import match_latents

    n, settings = min(heldout_tokens, LATENT_CONTEXT_TOKENS_CAP), ContextSettings()
    sae, x = timing_sae(d_model, width), torch.randn(n, d_model)
    top_rows = torch.from_numpy(checkpoint_contexts(sae, x, sequence_length, settings)["top_rows"]).long()
    whole = timed(lambda: checkpoint_contexts(sae, x, sequence_length, settings))
    windows = timed(lambda: window_activations(sae, x, top_rows, sequence_length, settings, n))
    other = timing_sae(d_model, width)
    with torch.no_grad():
        other.W_dec.copy_(torch.randn(width, d_model))
    matching = once(lambda: match_latents(sae.W_dec, other.W_dec))
    return max(whole - windows, 0.0) * heldout_tokens / n + windows + matching


def synthetic_dictionary_seconds(config: Any) -> float:
    """The synthetic model's dictionary (the coherence steps): once per cache, as generated."""
    from taulib.activations.synthetic import true_dictionary

    return once(lambda: true_dictionary(config))


SYNTHETIC_SAMPLES_TIMED = 16_384


def synthetic_seconds_per_sample(config: Any) -> float:
    from taulib.activations.synthetic import synthetic_samples

    directions = torch.nn.functional.normalize(torch.randn(config.n_features, config.d_model), dim=1)
    generator = torch.Generator().manual_seed(0)
    return timed(lambda: synthetic_samples(config, directions, SYNTHETIC_SAMPLES_TIMED, generator)) / SYNTHETIC_SAMPLES_TIMED


def model_speeds(model_config: Any, context_length: int) -> dict[str, float]:
    """Loading the language model, its forward up to the layer, and the rest of its forward (the later blocks
    and the logits: what the spliced CE/KL runs per checkpoint), per token.

    Timed on the model itself (it is loaded for the purpose: seconds for the study's default model)."""
    from taulib.activations.extraction import ResidualReader
    from taulib.activations.models import load_language_model
    from taulib.metrics.absorption.metric import AbsorptionSettings, icl_prompt
    from taulib.metrics.downstream.metric import SplicedModel, downstream_metrics, splice_reference
    from taulib.metrics.downstream.settings import DownstreamParameters
    from taulib.precision import resolve_autocast
    from taulib.sae import identity_sae

    started = time.perf_counter()
    loaded = load_language_model(model_config)
    load_seconds = time.perf_counter() - started
    autocast = resolve_autocast(model_config.autocast, model_config.device)
    reader, spliced = ResidualReader(loaded, autocast), SplicedModel(loaded, autocast)
    generator = torch.Generator().manual_seed(0)
    batch = 8
    ids = torch.randint(1000, 20000, (batch, context_length), generator=generator)
    truncated = timed(lambda: reader(ids, torch.ones_like(ids)), max_repeats=3) / ids.numel()
    # a checkpoint's share of the spliced CE/KL: the later blocks from the cached residual, then its losses,
    # on a batch of the evaluation's size, as taulib.metrics.downstream.metric runs them (its reference made first)
    rows = ids[: DownstreamParameters.model_fields["batch_size"].default]
    reference = splice_reference(spliced, rows, len(rows))
    sae = identity_sae(loaded.d_model)  # logits as a trained SAE's are (a random SAE's can be extreme, and slower to exponentiate)
    after_layer = timed(lambda: downstream_metrics(spliced, rows, [sae], len(rows), reference=reference), max_repeats=3) / rows.numel()
    import random

    settings = AbsorptionSettings()
    prompts = [icl_prompt(word, list(PROMPT_WORDS), random.Random(i), settings) for i, word in enumerate(PROMPT_WORDS)]
    prompt_tokens = sum(len(loaded.tokenizer(prompt).input_ids) for prompt in prompts) / len(prompts)
    return {
        "load": load_seconds,
        "truncated_per_token": truncated,
        "after_layer_per_token": after_layer,
        "absorption_prompt_tokens": prompt_tokens,
    }


def model_speeds_from_matmuls(model_config: Any, context_length: int) -> dict[str, float]:
    """A model too large to load for a timing: its forward's matmul FLOPs (2 per parameter and token) at
    the rate of one block-shaped matmul on its device and dtype; the load is not counted."""
    from taulib.activations.models import TORCH_DTYPES, model_footprint, resolve_layer

    footprint = model_footprint(model_config)
    d, tokens = footprint.d_model, 4 * context_length
    device, dtype = torch.device(model_config.device), TORCH_DTYPES[model_config.dtype]
    a, b = torch.randn(tokens, d, device=device, dtype=dtype), torch.randn(d, 4 * d, device=device, dtype=dtype)

    def matmul() -> None:
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    per_flop = timed(matmul) / (2 * tokens * d * 4 * d)
    embeddings = footprint.vocab_size * d
    per_block = (footprint.n_parameters - embeddings) / footprint.n_layers
    layers = resolve_layer(model_config, footprint.n_layers) + 1
    return {
        "load": 0.0,
        "truncated_per_token": 2 * per_block * layers * per_flop,
        "after_layer_per_token": 2 * (per_block * (footprint.n_layers - layers) + embeddings) * per_flop,  # later blocks and the unembedding
        "absorption_prompt_tokens": 90.0,  # the template with ten in-context examples, as the default model tokenises it
    }


def notebook_seconds() -> float:
    """A papermill notebook that imports what the study's notebooks import: a kernel's fixed cost."""
    import nbformat

    from taulib.study.executors import execute_notebook

    cell = (
        "import plotly.graph_objects\nimport taulib.study.run, taulib.metrics.evaluate, taulib.analysis.study_data, taulib.plots.save\n"
        # the metric families (imported with their registry, taulib.metrics.families): every notebook imports them
        "import taulib.metrics.downstream.metric, taulib.metrics.absorption.metric, taulib.metrics.probing.metric, taulib.activations.models\n"
        "import taulib.analysis.report, taulib.analysis.latent_formation, taulib.plots.training, taulib.plots.state, taulib.plots.widgets\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        notebook = Path(folder) / "probe.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(notebook))
        started = time.perf_counter()
        execute_notebook(notebook, Path(folder) / "out.ipynb", {})
        return time.perf_counter() - started


def figures_seconds() -> float:
    """Writing one analysis notebook's figures (HTML with plotly.js, PNG through one kaleido session)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from taulib.plots.save import save_figures

    def panels() -> go.Figure:  # shaped like the analysis figures: a grid of panels, a line per arm in each
        figure = make_subplots(rows=3, cols=3)
        for panel in range(9):
            for arm in range(4):
                figure.add_trace(go.Scatter(x=list(range(20)), y=[(arm + 1) * j for j in range(20)], mode="lines+markers"), row=panel // 3 + 1, col=panel % 3 + 1)
        return figure

    figures = {f"f{i}": panels() for i in range(FIGURES_PER_NOTEBOOK)}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        save_figures(figures, folder)
        return time.perf_counter() - started
