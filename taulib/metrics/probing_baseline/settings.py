"""The probing-baseline family's declaration: sparse probing of a random SAE at each checkpoint's L0."""

from __future__ import annotations

from pydantic import Field, field_validator

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class ProbingBaselineParameters(StrictModel):
    l0s: tuple[float, ...] = Field(
        (3, 5, 10, 20, 35, 50, 75, 100, 150, 250, 400), min_length=2, description="L0s of the random SAEs probed once per width; a checkpoint's baseline is read between them"
    )
    seed: int = Field(0, ge=0, description="seed of the random SAEs' directions")

    @field_validator("l0s")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(l0 <= 0 for l0 in value) or len(set(value)) != len(value):
            raise ValueError("must be distinct positive L0s")
        return tuple(sorted(value))


DECLARATION = FamilyDeclaration(
    name="probing_baseline",
    summary="sparse probing of a random SAE of the same width at the checkpoint's held-out L0: the baseline of the probing lift (taulib.metrics.probing_baseline.metric)",
    needs="language_model",
    parameters=ProbingBaselineParameters,
    columns=(Column("random_sae_top_*_accuracy", "sparse probing of a random SAE at this L0, top-k accuracy"),),
    # random_top_1_correct: per binary task, the baseline's per-test-example top-1 correctness at this L0 (the lift's test-set
    # bootstrap). No number of version 1 moves: records made before it lack it, and the lift's interval falls back to the seeds'
    details=("random_top_1_correct",),
    reads=("core", "probing"),  # core: the checkpoint's L0 (its latents' firing frequencies); probing: its texts, tasks and ks
)
