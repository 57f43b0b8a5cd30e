"""The orthogonality family's work: decoder max-cosine statistics against random baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from taulib.metrics.family import Chunk, Costs, Family, RunInputs, timing_sae
from taulib.metrics.orthogonality.metric import covariance_factor, orthogonality_metrics
from taulib.metrics.orthogonality.settings import DECLARATION
from taulib.timing import once

if TYPE_CHECKING:
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

COSINE_HISTOGRAM_EDGES = np.linspace(-0.2, 1.0, 61)


def _histogram(values: np.ndarray) -> list[int]:
    return np.histogram(np.clip(values, COSINE_HISTOGRAM_EDGES[0], COSINE_HISTOGRAM_EDGES[-1]), bins=COSINE_HISTOGRAM_EDGES)[0].astype(int).tolist()


class Orthogonality(Family):
    declaration = DECLARATION

    def load(self, run: RunInputs) -> Any:
        return covariance_factor(run.heldout)  # the baseline of random directions drawn from the activations' covariance

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        threshold = self.parameters(run.config).near_duplicate_threshold
        for index, sae in enumerate(saes):
            metrics, arrays = orthogonality_metrics(sae, threshold, alive=chunk.alive[index], activation_covariance_factor=state)
            chunk.scalars[index] |= metrics.as_dict()
            details = chunk.details[index]
            details["cosine_histogram_edges"] = COSINE_HISTOGRAM_EDGES.tolist()
            details["max_cosine_histogram"] = _histogram(arrays["max_cosine"])
            details["random_max_cosine_histogram"] = _histogram(arrays["random_max_cosine"])
            details["encoder_decoder_cosine_histogram"] = _histogram(arrays["encoder_decoder_cosine"])

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        width = config.sae.width
        return costs.measured(f"orthogonality|d{d_model}|w{width}", lambda: orthogonality_seconds(d_model, width))


def orthogonality_seconds(d_model: int, width: int) -> float:
    sae, factor = timing_sae(d_model, width), covariance_factor(torch.randn(2 * d_model, d_model))
    return once(lambda: orthogonality_metrics(sae, activation_covariance_factor=factor))


FAMILY = Orthogonality()
