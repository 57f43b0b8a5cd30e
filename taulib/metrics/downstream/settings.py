"""The downstream family's declaration: CE loss and KL with the reconstruction spliced into the language model."""

from __future__ import annotations

from pydantic import Field, model_validator

from taulib.metrics.declaration import Column, FamilyDeclaration
from taulib.strict_model import StrictModel


class DownstreamParameters(StrictModel):
    sequences: int = Field(
        8,
        ge=0,
        description="held-out sequences (of activations.context_length) for the spliced CE/KL of every checkpoint; "
        "0: the final checkpoint's only (final_sequences)",
    )
    final_sequences: int | None = Field(
        None,
        gt=0,
        description="held-out sequences for the spliced CE/KL of the final checkpoint, where the verdicts are drawn "
        "(at least sequences; the first sequences are the other checkpoints'); None: sequences",
    )
    batch_size: int = Field(4, gt=0, description="sequences per forward pass in the CE/KL evaluation (vocab-sized logits)")

    @model_validator(mode="after")
    def _final_sequences_include_the_others(self) -> DownstreamParameters:
        if self.final_sequences is not None and self.final_sequences < self.sequences:
            raise ValueError(f"final_sequences ({self.final_sequences}) must be at least sequences ({self.sequences})")
        return self

    def sequences_needed(self) -> int:
        """How many held-out CE sequences the evaluation reads (the final checkpoint's, the most)."""
        return max(self.sequences, self.final_sequences or 0)


def _some_checkpoint_is_spliced(parameters: DownstreamParameters) -> None:
    if parameters.sequences_needed() == 0:
        raise ValueError("downstream.sequences is 0 and downstream.final_sequences is not set: no checkpoint would get its spliced CE/KL")


DECLARATION = FamilyDeclaration(
    name="downstream",
    summary="CE loss and KL with the reconstruction spliced into the language model (taulib.metrics.downstream.metric)",
    needs="language_model",
    parameters=DownstreamParameters,
    columns=(
        Column("ce_loss_clean", "CE loss of the clean model"),
        Column("ce_loss_with_sae", "CE loss with the reconstruction spliced in", False),
        Column("ce_loss_with_ablation", "CE loss with the layer zero-ablated"),
        Column("ce_loss_score", "CE-loss score (spliced)", True),
        Column("ce_loss_score_low", "CE-loss score, document bootstrap interval's low end"),
        Column("ce_loss_score_high", "CE-loss score, document bootstrap interval's high end"),
        Column("kl_div_with_sae", "KL from the clean distribution, spliced", False),
        Column("kl_div_with_ablation", "KL from the clean distribution, zero-ablated"),
        Column("kl_div_score", "KL-divergence score (spliced)", True),
        Column("kl_div_score_low", "KL-divergence score, document bootstrap interval's low end"),
        Column("kl_div_score_high", "KL-divergence score, document bootstrap interval's high end"),
        Column("ce_tokens", "tokens scored by the spliced CE/KL"),
    ),
    details=("ce_per_sequence",),  # the losses per part of a sequence one document fills, with its document (SequenceLosses)
    version=2,  # 2: the interval resamples documents, not sequences
    old_keys={"ce_sequences": "sequences", "ce_final_sequences": "final_sequences", "ce_batch_size": "batch_size"},
    check_requested=_some_checkpoint_is_spliced,
)
