"""Explained variance with the L1 shrinkage taken out: each token keeps its active latents (the SAE's support), and
their coefficients are refitted by least squares against the token.

An L1-trained SAE under-estimates its coefficients (shrinkage), so its explained variance mixes two things: how good
its dictionary and its choice of active latents are, and how much the penalty shrinks the coefficients. Refitting the
coefficients on the same support keeps the first and removes the second: the support-refit EV is the best
reconstruction this dictionary allows with these latents active, and its gain over the SAE's own EV is what the
shrinkage costs. Two arms at the same L0 that differ in EV but not in support-refit EV differ in shrinkage, not in
their dictionaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from taulib.sae import SparseAutoencoder


@dataclass(frozen=True)
class SupportRefitMetrics:
    support_refit_tokens: int
    support_refit_explained_variance: float  # 1 − Σ‖x − x̂_refit‖² / Σ‖x − x̄‖², the active latents' coefficients refitted
    support_refit_ev_gain: float  # the refitted EV minus the SAE's own EV on the same tokens: what shrinkage costs

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def refitted_reconstructions(sae: SparseAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the SAE's reconstruction, the support-refit reconstruction) of `x` (n, d_in), in float64: per token, b_dec plus
    the least-squares combination of its active latents' decoder rows closest to x − b_dec (the minimum-norm one when
    those rows are linearly dependent; a token with no active latent is b_dec)."""
    x = x.to(sae.W_dec.device, torch.float32)
    x_hat, f = sae(x)
    active = f > 0
    k = int(active.sum(dim=1).max()) if len(x) else 0
    b_dec = sae.b_dec.double()
    target = (x.double() - b_dec).unsqueeze(-1)  # (n, d, 1)
    if k == 0:
        return x_hat.double(), b_dec.expand_as(x).clone()
    # each token's active latents first, padded with inactive ones whose columns are zeroed (their coefficient: 0)
    order = torch.topk(active.to(torch.int8), k, dim=1, sorted=True).indices  # (n, k)
    kept = torch.gather(active, 1, order)  # (n, k): which of the k are active
    columns = sae.W_dec.double()[order] * kept.unsqueeze(-1)  # (n, k, d)
    # the normal equations, a padded coefficient pinned to 0 by a unit diagonal; Cholesky, with a rank-revealing
    # least-squares solve for the tokens whose active rows are (numerically) linearly dependent
    gram = columns @ columns.transpose(1, 2) + torch.diag_embed((~kept).double())
    factor, info = torch.linalg.cholesky_ex(gram)
    solution = torch.cholesky_solve(columns @ target, factor)  # (n, k, 1)
    if (failed := info != 0).any():
        solution[failed] = torch.linalg.lstsq(columns[failed].transpose(1, 2), target[failed], driver="gelsd").solution
    return x_hat.double(), (columns.transpose(1, 2) @ solution).squeeze(-1) + b_dec


@torch.no_grad()
def support_refit_metrics(sae: SparseAutoencoder, activations: torch.Tensor, batch_size: int = 128) -> SupportRefitMetrics:
    """The support-refit explained variance of `sae` on `activations` (n, d_in), raw units, batch by batch, in float64."""
    n = activations.shape[0]
    if n == 0:
        raise ValueError("support_refit_metrics needs at least one activation")
    residual = refitted = 0.0
    total_sq, total_sum = 0.0, torch.zeros(activations.shape[1], dtype=torch.float64)
    for start in range(0, n, batch_size):
        x = activations[start : start + batch_size].double()
        own, refit = refitted_reconstructions(sae, x)
        residual += float((x - own.cpu()).pow(2).sum())
        refitted += float((x - refit.cpu()).pow(2).sum())
        total_sq += float(x.pow(2).sum())
        total_sum += x.sum(dim=0)
    total_variance = total_sq - float(total_sum.pow(2).sum()) / n
    own_ev, refit_ev = 1 - residual / total_variance, 1 - refitted / total_variance
    return SupportRefitMetrics(n, refit_ev, refit_ev - own_ev)
