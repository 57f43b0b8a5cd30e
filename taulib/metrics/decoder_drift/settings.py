"""The decoder-drift family's declaration: how far the dictionary moved from its initialisation."""

from __future__ import annotations

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class DecoderDriftParameters(StrictModel):
    """No parameters: the initial decoder is the run's step-0 checkpoint, the firing frequencies core's."""


DECLARATION = FamilyDeclaration(
    name="decoder_drift",
    summary="each latent's decoder cosine to its initial row: median, tenth percentile, firing-weighted median (taulib.metrics.decoder_drift.metric)",
    needs="any",
    parameters=DecoderDriftParameters,
    columns=(
        Column("decoder_init_cosine_median", "decoder cosine to initialisation, median over latents"),
        Column("decoder_init_cosine_p10", "decoder cosine to initialisation, tenth percentile"),
        Column("decoder_init_cosine_weighted_median", "decoder cosine to initialisation, median weighted by firing frequency"),
    ),
    reads=("core",),  # each latent's firing frequency on the held-out sample
)
