"""The probing family's declaration: SAE Bench's sparse probing on labelled texts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from taulib.corpus.probing_tasks import DEFAULT_TASKS, PROBING_TASKS
from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel

# the probing tasks' names come from their registry (taulib.corpus.probing_tasks)
ProbingTaskName = Literal[tuple(PROBING_TASKS)]  # type: ignore[valid-type]


class ProbingParameters(StrictModel):
    tasks: tuple[ProbingTaskName, ...] = Field(DEFAULT_TASKS, min_length=1, description="sparse-probing tasks (taulib.corpus.probing_tasks)")
    examples_per_class: int = Field(100, ge=10, description="texts drawn per class of each probing task")
    test_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="share of each class's probing texts held out for testing; a binary task tests on 2 × examples_per_class × "
        "this, so its accuracy moves in steps of 1 / that",
    )
    context_length: int = Field(64, ge=2, description="tokens read per probing text, BOS included")
    ks: tuple[int, ...] = Field((1, 2, 5, 10, 20, 50), min_length=1, description="k of the top-k sparse probes")
    seed: int = Field(42, ge=0, description="seed of the probing texts' sample and their train/test split")

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k <= 0 for k in value) or len(set(value)) != len(value):
            raise ValueError("must be distinct positive integers")
        return tuple(sorted(value))


DECLARATION = FamilyDeclaration(
    name="probing",
    summary="SAE Bench's sparse probing on labelled texts (taulib.metrics.probing.metric)",
    needs="language_model",
    parameters=ProbingParameters,
    columns=(
        Column("sae_top_1_accuracy", "sparse probing, top-1 accuracy", True),
        Column("sae_top_*_accuracy", "sparse probing, top-k accuracy", True),
        Column("sae_top_*_accuracy.*", "sparse probing, top-k accuracy on one task", True),
    ),
    details=("probing_tasks",),
    old_keys={
        "probing_tasks": "tasks",
        "probing_examples_per_class": "examples_per_class",
        "probing_test_fraction": "test_fraction",
        "probing_context_length": "context_length",
        "probing_ks": "ks",
        "probing_seed": "seed",
    },
)
