"""The ground_truth family's declaration: recovery of the synthetic model's known dictionary."""

from __future__ import annotations

from pydantic import Field

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class GroundTruthParameters(StrictModel):
    recovery_threshold: float = Field(0.9, gt=0, lt=1, description="a true feature is recovered when some decoder direction has cosine above this with it")


DECLARATION = FamilyDeclaration(
    name="ground_truth",
    summary="recovery of the synthetic model's known dictionary, per checkpoint and per true feature (taulib.metrics.ground_truth.metric)",
    needs="known_dictionary",
    parameters=GroundTruthParameters,
    columns=(
        Column("gt_recovered_fraction", "share of true features recovered (decoder cosine > 0.9)", True),
        Column("gt_mean_max_cosine", "mean over true features of the best decoder cosine", True),
        Column("gt_n_features", "true features"),
    ),
    details=("gt_max_cosine",),
    old_keys={"recovery_threshold": "recovery_threshold"},
)
