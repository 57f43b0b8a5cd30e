"""The decoder-drift family's work: every checkpoint's decoder against the run's initial one (its step-0 checkpoint)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from taulib.metrics.decoder_drift.metric import decoder_drift_metrics
from taulib.metrics.decoder_drift.settings import DECLARATION
from taulib.metrics.family import Chunk, Costs, Family, RunInputs, timing_sae
from taulib.sae import load_sae
from taulib.timing import timed

if TYPE_CHECKING:
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder


class DecoderDrift(Family):
    declaration = DECLARATION

    def load(self, run: RunInputs) -> torch.Tensor:
        if run.run_dir is None:
            raise ValueError("the decoder_drift family needs the run's folder (RunInputs.run_dir) to read its initial checkpoint")
        initial = run.run_dir / "checkpoints" / "step_0000000"
        if not (initial / "sae.safetensors").is_file():
            raise FileNotFoundError(f"{initial}: the run has no initial checkpoint, which the decoder_drift family compares every checkpoint with")
        sae, _ = load_sae(initial)
        return sae.W_dec.detach()  # directions: the raw-units conversion leaves the decoder's rows as they are

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        for index, sae in enumerate(saes):
            chunk.scalars[index] |= decoder_drift_metrics(state, sae.W_dec, chunk.density[index]).as_dict()

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        width = config.sae.width
        return costs.measured(f"decoder_drift|d{d_model}|w{width}", lambda: decoder_drift_seconds(d_model, width))


def decoder_drift_seconds(d_model: int, width: int) -> float:
    initial, sae = timing_sae(d_model, width), timing_sae(d_model, width)
    density = torch.rand(width).numpy()
    return timed(lambda: decoder_drift_metrics(initial.W_dec, sae.W_dec, density))


FAMILY = DecoderDrift()
