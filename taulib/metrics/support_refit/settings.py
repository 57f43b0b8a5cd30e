"""The support-refit family's declaration: explained variance with the L1 shrinkage refitted away."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class SupportRefitParameters(StrictModel):
    tokens: int = Field(4096, gt=0, description="held-out tokens refitted: the first of core's sample (all of it, if evaluation.core.tokens is smaller)")
    checkpoints: Literal["all", "final"] = Field("final", description="refit at every checkpoint, or at the final one, where the reconstruction verdict is drawn")


DECLARATION = FamilyDeclaration(
    name="support_refit",
    summary="explained variance with each token's active latents kept and their coefficients refitted by least squares (taulib.metrics.support_refit.metric)",
    needs="any",
    parameters=SupportRefitParameters,
    columns=(
        Column("support_refit_tokens", "held-out tokens refitted"),
        Column("support_refit_explained_variance", "explained variance, active latents' coefficients refitted (no shrinkage)", True),
        Column("support_refit_ev_gain", "explained variance the refit adds: what the L1 shrinkage costs"),
    ),
    reads=("core",),  # its held-out sample
)
