"""The support-refit family's work: the SAE's support on held-out tokens, its coefficients refitted by least squares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from taulib.metrics.family import Chunk, Costs, Family, RunInputs, timing_sae
from taulib.metrics.support_refit.metric import support_refit_metrics
from taulib.metrics.support_refit.settings import DECLARATION
from taulib.timing import timed

if TYPE_CHECKING:
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

TIMING_TOKENS = 512  # timed on this many tokens, then scaled


class SupportRefit(Family):
    declaration = DECLARATION

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        parameters = self.parameters(run.config)
        sample = run.heldout[: parameters.tokens]
        for index, step in enumerate(chunk.steps):
            if parameters.checkpoints == "all" or step == chunk.final_step:
                chunk.scalars[index] |= support_refit_metrics(saes[index], sample).as_dict()

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        width, tokens = config.sae.width, min(self.parameters(config).tokens, config.evaluation.section("core").tokens)
        return tokens * costs.measured(f"support_refit|d{d_model}|w{width}", lambda: support_refit_seconds_per_token(d_model, width))

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        evaluated = checkpoints if self.parameters(config).checkpoints == "all" else min(checkpoints, 1)
        return evaluated * self.checkpoint_seconds(costs, config, d_model)


def support_refit_seconds_per_token(d_model: int, width: int) -> float:
    sae, x = timing_sae(d_model, width), torch.randn(TIMING_TOKENS, d_model)
    return timed(lambda: support_refit_metrics(sae, x)) / TIMING_TOKENS


FAMILY = SupportRefit()
