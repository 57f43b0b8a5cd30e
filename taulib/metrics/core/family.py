"""The core family's work: L0, explained variance, dead and dense latents on the held-out sample."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.activations.models import load_tokenizer
from taulib.config import SYNTHETIC_MODEL
from taulib.corpus import iter_documents
from taulib.corpus.stream import stream_documents
from taulib.metrics.core.metric import density_histogram, reconstruction_metrics_many, variance_by_document
from taulib.metrics.core.settings import DECLARATION
from taulib.metrics.family import DOWNSTREAM_CHUNK, Chunk, Costs, Family, MemoryPart, RunInputs, timing_sae
from taulib.timing import timed

CORE_TOKENS_CAP = 4096  # the core metrics are timed on at most this many held-out tokens, then scaled
HELDOUT_DOCUMENTS_FILE = "heldout_documents.safetensors"
# the synthetic model draws every sample independently: any block of them is an independent unit of the held-out
# sample, and blocks of this many keep the final record small (256 units for the default 16,384 tokens)
SYNTHETIC_BLOCK = 64

if TYPE_CHECKING:
    from taulib.activations.models import LoadedModel
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder


class Core(Family):
    declaration = DECLARATION

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        # a language model's held-out text is drawn as documents: the unit its sampling error is bootstrapped in
        return () if config.model.name == SYNTHETIC_MODEL else (HELDOUT_DOCUMENTS_FILE,)

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool, inputs_key: dict[str, Any]) -> None:
        self.documents(config, lambda: loaded.tokenizer, folder)

    def documents(self, config: RunConfig, tokenizer: Callable[[], Any], folder: Path) -> torch.Tensor:
        """The document of each held-out token: the held-out cache holds the packed stream's first tokens
        (taulib.corpus.stream), so this is a second of tokenising, done once per inputs folder (`tokenizer` is
        asked for only then)."""
        path = folder / HELDOUT_DOCUMENTS_FILE
        if not path.is_file():
            cap = config.activations.max_document_tokens
            documents = stream_documents(iter_documents("heldout", seed=0), tokenizer(), config.activations.heldout_tokens, max_document_tokens=cap)
            folder.mkdir(parents=True, exist_ok=True)
            with atomic.atomic_path(path) as tmp:
                save_file({"documents": torch.from_numpy(documents)}, str(tmp))
        return load_file(str(path))["documents"]

    def load(self, run: RunInputs) -> Any:
        """The document of each held-out token evaluated (a synthetic model's: a block of SYNTHETIC_BLOCK samples)."""
        if run.config.model.name == SYNTHETIC_MODEL:
            return torch.arange(len(run.heldout)) // SYNTHETIC_BLOCK
        tokenizer = (lambda: run.model.tokenizer) if run.model is not None else (lambda: load_tokenizer(run.config.model))
        documents = self.documents(run.config, tokenizer, run.data_folder)
        if len(documents) < len(run.heldout):
            raise ValueError(f"{run.data_folder / HELDOUT_DOCUMENTS_FILE}: documents for {len(documents)} held-out tokens, {len(run.heldout)} evaluated")
        return documents[: len(run.heldout)]

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        # the one metric that scales with the held-out tokens runs where the SAE trained; the rest are small
        device = torch.device(run.config.training.device)
        on_device = saes if device.type == "cpu" else [copy.deepcopy(sae).to(device) for sae in saes]
        for index, (core, density) in enumerate(reconstruction_metrics_many(on_device, run.heldout, dense_threshold=self.parameters(run.config).dense_threshold)):
            chunk.scalars[index] |= core.as_dict()
            chunk.details[index]["density_histogram"] = density_histogram(density)
            chunk.details[index]["latent_density"] = density.tolist()  # per latent: which are alive, for per-latent analyses
            chunk.density[index] = density
        if state is not None and chunk.final_step in chunk.steps:  # the final checkpoint, where verdicts are drawn
            index = chunk.steps.index(chunk.final_step)
            parts = variance_by_document(on_device[index], run.heldout, state)
            chunk.scalars[index] |= parts.bootstrap_interval(seed=chunk.final_step)
            chunk.details[index]["ev_per_document"] = parts.to_lists()

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        tokens, width = self.parameters(config).tokens, config.sae.width
        return tokens * costs.measured(f"core_chunk|d{d_model}|w{width}", lambda: core_seconds_per_token(d_model, width, tokens))

    def evaluation_memory(self, config: RunConfig, d_model: int, vocab_size: int) -> dict[str, MemoryPart]:
        sample = min(self.parameters(config).tokens, config.activations.heldout_tokens) * d_model * 4
        return {"held-out sample (float32)": MemoryPart(sample, "lower evaluation.core.tokens")}

    def plan_problems(self, config: RunConfig, source: str) -> list[str]:
        tokens, heldout = self.parameters(config).tokens, config.activations.heldout_tokens
        if tokens <= heldout:
            return []
        return [
            f"{source}: fields 'evaluation.core.tokens' ({tokens:,}) and 'activations.heldout_tokens' ({heldout:,}): "
            f"the evaluation reads more held-out activations than are extracted; set evaluation.core.tokens <= {heldout:,} "
            f"or activations.heldout_tokens >= {tokens:,}"
        ]


def core_seconds_per_token(d_model: int, width: int, tokens: int) -> float:
    """One checkpoint's core metrics per held-out token, evaluated in a chunk of checkpoints as the evaluation does."""
    tokens = min(tokens, CORE_TOKENS_CAP)
    sae, x = timing_sae(d_model, width), torch.randn(tokens, d_model)
    return timed(lambda: reconstruction_metrics_many([sae] * DOWNSTREAM_CHUNK, x)) / (tokens * DOWNSTREAM_CHUNK)


FAMILY = Core()
