"""The core family's declaration: L0, reconstruction and latent density on held-out activations."""

from __future__ import annotations

from pydantic import Field

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class CoreParameters(StrictModel):
    tokens: int = Field(16_384, gt=0, description="held-out activations for the core metrics, and the held-out sample every family reads (at most the held-out cache)")
    dense_threshold: float = Field(0.1, gt=0, le=1, description="a latent firing on more than this fraction of tokens is dense")


DECLARATION = FamilyDeclaration(
    name="core",
    summary="L0, explained variance, dead and dense latents, density (taulib.metrics.core.metric)",
    needs="any",
    parameters=CoreParameters,
    columns=(
        Column("n_tokens", "held-out tokens evaluated"),
        Column("l0", "L0 (held out)"),
        Column("l1", "L1 of the latents per token (raw units)"),
        Column("mse", "mean squared error (raw units)", False),
        Column("explained_variance", "explained variance", True),
        Column("explained_variance_low", "explained variance, bootstrap interval's low end over the held-out sample's documents (final checkpoint)"),
        Column("explained_variance_high", "explained variance, bootstrap interval's high end over the held-out sample's documents (final checkpoint)"),
        Column("cosine_similarity", "cosine of input and reconstruction", True),
        Column("dead_fraction", "dead latents (fraction)", False),
        Column("dense_fraction", "dense latents (fraction)", False),
    ),
    # ev_per_document: the final checkpoint's (VarianceParts). No number of version 1 moves: records made before it lack
    # the interval and the parts, and the report's explained-variance comparisons fall back to the seeds' interval there
    details=("density_histogram", "latent_density", "ev_per_document"),
    old_keys={"core_tokens": "tokens", "dense_threshold": "dense_threshold"},
)
