"""The orthogonality family's declaration: how far the decoder's directions are from one another."""

from __future__ import annotations

from pydantic import Field

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class OrthogonalityParameters(StrictModel):
    near_duplicate_threshold: float = Field(0.9, gt=0, lt=1, description="decoder cosine above which two latents are near-duplicates")


DECLARATION = FamilyDeclaration(
    name="orthogonality",
    summary="decoder max-cosine statistics over all and over alive latents, against random baselines (taulib.metrics.orthogonality.metric)",
    needs="any",
    parameters=OrthogonalityParameters,
    columns=(
        Column("mean_max_cosine", "mean max decoder cosine (all latents)", False),
        Column("median_max_cosine", "median max decoder cosine (all latents)", False),
        Column("p99_max_cosine", "99th percentile of the max decoder cosine", False),
        Column("near_duplicate_pair_fraction", "near-duplicate decoder pairs (fraction)", False),
        Column("near_duplicate_latent_fraction", "latents with a near-duplicate (fraction)", False),
        Column("random_mean_max_cosine", "mean max cosine of as many random directions"),
        Column("random_near_duplicate_pair_fraction", "near-duplicate pairs among random directions (fraction)"),
        Column("mean_encoder_decoder_cosine", "mean cosine of a latent's encoder and decoder rows"),
        Column("alive_latents", "alive latents (fired on the held-out tokens)"),
        Column("alive_mean_max_cosine", "mean max decoder cosine among alive latents", False),
        Column("alive_near_duplicate_latent_fraction", "near-duplicate alive latents (fraction)", False),
        Column("alive_random_mean_max_cosine", "mean max cosine of as many isotropic random directions"),
        Column("alive_covariance_mean_max_cosine", "mean max cosine of as many directions drawn from the activations' covariance"),
        Column("alive_excess_mean_max_cosine", "mean max decoder cosine among alive latents, over its random baseline", False),
    ),
    details=("cosine_histogram_edges", "max_cosine_histogram", "random_max_cosine_histogram", "encoder_decoder_cosine_histogram"),
    reads=("core",),  # its alive latents, and the held-out sample (core.tokens) its covariance baseline is drawn from
    old_keys={"near_duplicate_threshold": "near_duplicate_threshold"},
)
