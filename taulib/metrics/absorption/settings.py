"""The absorption family's declaration: SAE Bench's first-letter feature absorption."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class AbsorptionParameters(StrictModel):
    checkpoints: Literal["all", "final"] = Field(
        "all",
        description="absorption at every evaluated checkpoint (its reduction speed), or at the final one only: below "
        "~16k latents absorption is out of its valid range and its speed draws no verdict (docs/method.md, \"Cost\")",
    )
    vocab_size: int = Field(2600, ge=260, description="stratified subset of the alphabetic single-token words")
    seed: int = Field(42, ge=0, description="seed of the absorption vocabulary's sample and its probes")


DECLARATION = FamilyDeclaration(
    name="absorption",
    summary="SAE Bench's first-letter feature absorption (taulib.metrics.absorption.metric)",
    needs="language_model",
    parameters=AbsorptionParameters,
    columns=(
        Column("absorption_fraction", "absorption fraction", False),
        Column("absorption_fraction_unthresholded", "absorption fraction (SAE Bench ≤ 0.3, unthresholded)", False),
        Column("full_absorption_rate", "full-absorption rate", False),
        Column("mean_split_latents", "latents per letter (feature splitting)"),
        Column("k1_f1", "first-letter probe, k=1 F1", True),
        Column("letters_evaluated", "letters evaluated (probe F1 > 0.6)"),
    ),
    details=("absorption_letters",),
    old_keys={"absorption_checkpoints": "checkpoints", "absorption_vocab_size": "vocab_size", "absorption_seed": "seed"},
)
