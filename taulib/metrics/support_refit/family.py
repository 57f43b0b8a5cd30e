"""The support-refit family's work: the SAE's support on held-out tokens, its coefficients refitted by least squares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from taulib.metrics.family import Chunk, Costs, Family, RunInputs, timing_sae
from taulib.metrics.support_refit.metric import support_refit_metrics
from taulib.metrics.support_refit.settings import DECLARATION
from taulib.sae import SparseAutoencoder
from taulib.timing import timed

if TYPE_CHECKING:
    from taulib.config import RunConfig

TIMING_TOKENS = 512  # timed on this many tokens, then scaled
UNKNOWN_TIMING_L0 = 64  # a run outside a sweep has no L0 target to time the refit at: a typical SAE's


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
        l0 = timing_l0(config)
        return tokens * costs.measured(f"support_refit|d{d_model}|w{width}|l0{l0:g}", lambda: support_refit_seconds_per_token(d_model, width, l0))

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        evaluated = checkpoints if self.parameters(config).checkpoints == "all" else min(checkpoints, 1)
        return evaluated * self.checkpoint_seconds(costs, config, d_model)


def timing_l0(config: RunConfig) -> float:
    """The L0 the refit is timed at: the run's final L0 target in a sweep (the refit runs on the final checkpoint), else
    UNKNOWN_TIMING_L0. Its cost grows with the active latents per token (a k × k system each), so a timing at another
    L0 misprices it many times over (benchmarks/RESULTS.md, run_cost: its cost at each of the default targets)."""
    target = config.sweep.l0_target if config.sweep is not None else None
    return float(min(target, config.sae.width / 2)) if target else float(min(UNKNOWN_TIMING_L0, config.sae.width / 2))


def timing_sae_at_l0(x: torch.Tensor, width: int, l0: float) -> SparseAutoencoder:
    """`timing_sae` with each latent's threshold at its pre-activation quantile that fires it on l0 / width of `x`:
    about l0 latents active per token."""
    sae = timing_sae(x.shape[1], width)
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc
        rank = max(1, min(len(x), round((1 - l0 / width) * len(x))))
        sae.b_enc.copy_(-pre.kthvalue(rank, dim=0).values)
    return sae


def support_refit_seconds_per_token(d_model: int, width: int, l0: float) -> float:
    """The refit per token of an SAE of this shape with about `l0` latents active per token."""
    x = torch.randn(TIMING_TOKENS, d_model, generator=torch.Generator().manual_seed(0))
    sae = timing_sae_at_l0(x, width, l0)
    return timed(lambda: support_refit_metrics(sae, x)) / TIMING_TOKENS


FAMILY = SupportRefit()
