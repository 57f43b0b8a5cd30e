"""The core family's work: L0, explained variance, dead and dense latents on the held-out sample."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from taulib.metrics.core.metric import density_histogram, reconstruction_metrics_many
from taulib.metrics.core.settings import DECLARATION
from taulib.metrics.family import DOWNSTREAM_CHUNK, Chunk, Costs, Family, MemoryPart, RunInputs, timing_sae
from taulib.timing import timed

CORE_TOKENS_CAP = 4096  # the core metrics are timed on at most this many held-out tokens, then scaled

if TYPE_CHECKING:
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder


class Core(Family):
    declaration = DECLARATION

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        # the one metric that scales with the held-out tokens runs where the SAE trained; the rest are small
        device = torch.device(run.config.training.device)
        on_device = saes if device.type == "cpu" else [copy.deepcopy(sae).to(device) for sae in saes]
        for index, (core, density) in enumerate(reconstruction_metrics_many(on_device, run.heldout, dense_threshold=self.parameters(run.config).dense_threshold)):
            chunk.scalars[index] |= core.as_dict()
            chunk.details[index]["density_histogram"] = density_histogram(density)
            chunk.details[index]["latent_density"] = density.tolist()  # per latent: which are alive, for per-latent analyses
            chunk.density[index] = density

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
