"""The training objective written with autograd: the definition that `taulib.train.gradients`
computes by hand in fewer passes, and the reference it is checked against (tests/test_sae_step.py)
and that the autograd trainers of benchmarks/trainers.py run."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossTerms:
    loss: torch.Tensor
    mse: torch.Tensor  # mean over the batch of ‖x − x̂‖²
    l1: torch.Tensor  # mean over the batch of ‖f‖₁


def sae_loss(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor, l1_coefficient_effective: float) -> LossTerms:
    """Squared reconstruction error plus the (already τ-divided) L1 penalty, both per-token means."""
    mse = (x_hat.float() - x).pow(2).sum(dim=-1).mean()
    l1 = f.float().abs().sum(dim=-1).mean()
    return LossTerms(mse + l1_coefficient_effective * l1, mse, l1)
