"""One training step's loss and gradients for the ReLU SAE, written out by hand.

The loss is the trainer's: ‖x − x̂‖² + c·‖f‖₁ (per-token means), with f = ReLU((x − b_dec)W_enc + b_enc)
and x̂ = f W_dec + b_dec. Writing the gradients out instead of running autograd saves, per step:

* one of the six (batch × d_in × d_sae) matmuls: b_dec's gradient through the encoder is
  −(Σ_batch ∂L/∂pre) W_encᵀ, a vector-matrix product, where autograd forms the full
  (batch × d_in) input gradient and then sums it;
* the (batch × d_sae) temporaries autograd keeps and walks through (|f|, sign(f), the summed
  ReLU and L1 gradients, their casts), which on a CPU cost as much time as the matmuls;
* the graph bookkeeping.

Precision follows torch.autocast: with `compute_dtype=torch.bfloat16` the matmul operands and
outputs are bfloat16 (AVX512-BF16 / AMX on recent CPUs), everything else (biases, the ReLU's
input, the losses, the gradients handed to the optimiser) is float32, and the weights themselves
stay float32. With float32 every operation is float32 and the gradients equal autograd's up to
summation order (tests/test_train_gradients.py checks both dtypes against autograd). In float32 on a CPU
the three matmuls whose output spans a large dictionary's latents run on oneDNN, the two others
on torch's BLAS (taulib.train.kernels: whichever is faster for such products).

Sparse latents. Once the SAE is sparse, four of the five matmuls only need the (token, latent)
pairs where f > 0: the decoder's forward f·W_dec, its weight gradient fᵀ·∂x̂, ∂pre (zero wherever
f is, so only its entries at the active pairs, a sampled matmul), and the encoder's weight gradient
(x − b_dec)ᵀ·∂pre. Below `sparse_max_density` active pairs per (token, latent), the step computes
them from f in compressed sparse rows: the dense encoder forward is the step's one full matmul.
Where that pays depends on the machine; taulib.train.sparse_switch measures the crossover.
The sparse kernels compute in float32 (their cost is in indexing, not arithmetic); under bfloat16 the
sparse side rounds every operand and output where the dense step's bfloat16 matmuls do, so a run's
precision does not change when it switches side: both equal each other up to summation order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from taulib.sae import SparseAutoencoder
from taulib.train.kernels import latent_matmul, mm_plus_bias

# torch marks its CSR tensors as beta; the operations used here are tested against autograd
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


@dataclass(frozen=True)
class StepResult:
    """What the trainer logs from a step; the tensors are detached and float32."""

    loss: torch.Tensor  # mse + coefficient·l1
    mse: torch.Tensor  # mean over the batch of ‖x − x̂‖²
    l1: torch.Tensor  # mean over the batch of ‖f‖₁
    x_hat: torch.Tensor  # (batch, d_in) reconstruction
    f: torch.Tensor  # (batch, d_sae) latent activations
    fired: torch.Tensor  # (d_sae,) bool: the latent was positive on some token of the batch


# The density check reads this many of the batch's tokens: batches are shuffled, so they are a
# random sample, and the choice of side only changes speed (both give the same gradients).
DENSITY_SAMPLE_TOKENS = 256


def active_density(f: torch.Tensor) -> float:
    """The fraction of positive entries of f >= 0 over its first DENSITY_SAMPLE_TOKENS rows.

    A sign-and-mean, not torch.count_nonzero: on a CPU that is an unvectorised loop (12 ms for a whole
    1024 × 4096 batch on AVX2, 5% of a dense float32 step); this costs well under a millisecond.
    """
    return float(f[:DENSITY_SAMPLE_TOKENS].sign().mean())


@torch.no_grad()
def loss_and_gradients(
    sae: SparseAutoencoder, x: torch.Tensor, coefficient: float, compute_dtype: torch.dtype = torch.float32, sparse_max_density: float = 0.0
) -> StepResult:
    """Forward and backward of one batch; sets `.grad` of the four parameters (replacing any).

    `x` is (batch, d_in) float32, already divided by the input scale; `coefficient` is the
    effective L1 coefficient λ/τ of this step. The latent side runs sparse when at most
    `sparse_max_density` of the (token, latent) activations are positive (0: never), as sampled by
    `active_density`.
    """
    batch = x.shape[0]
    low = compute_dtype != torch.float32
    W_enc = sae.W_enc.detach().to(compute_dtype)
    W_dec = sae.W_dec.detach().to(compute_dtype)

    # forward. bfloat16 as autocast does it: matmul operands and outputs in bf16, the biases added
    # in float32 (a cast, then a same-dtype add: torch's mixed-dtype broadcasting path is slower)
    centred = x - sae.b_dec
    centred_c = centred.to(compute_dtype)
    f = latent_matmul(centred_c, W_enc, sae.b_enc, relu=True)
    if sparse_max_density > 0 and active_density(f) <= sparse_max_density:
        return _sparse_latent_side(sae, x, centred, f, coefficient, compute_dtype)
    f_c = f.to(compute_dtype) if low else f
    x_hat = mm_plus_bias(f_c, W_dec, sae.b_dec)
    error = x_hat - x
    mse = error.pow(2).sum(dim=-1).mean()
    # f >= 0, so ‖f‖₁ is its sum, and a latent fired on some token iff its column sum is positive:
    # one pass over f gives both
    latent_sums = f.sum(dim=0)
    l1 = latent_sums.sum() / batch
    fired = latent_sums > 0

    # backward: ∂L/∂x̂ = 2(x̂ − x)/batch; ∂L/∂pre = ∂L/∂x̂ W_decᵀ + c/batch where f > 0, else 0
    grad_x_hat = error.mul_(2.0 / batch)
    grad_x_hat_c = grad_x_hat.to(compute_dtype)
    grad_W_dec = torch.mm(f_c.t(), grad_x_hat_c)
    grad_pre = latent_matmul(grad_x_hat_c, W_dec.t(), torch.full((W_dec.shape[0],), coefficient / batch, device=x.device))
    # the ReLU's backward (zero where f == 0), in place
    torch.ops.aten.threshold_backward.grad_input(grad_pre, f, 0.0, grad_input=grad_pre)
    grad_b_enc = grad_pre.sum(dim=0)
    grad_W_enc = latent_matmul(centred_c.t(), grad_pre.to(compute_dtype))
    # b_dec enters twice: added to x̂, and subtracted from x before the encoder
    grad_b_dec = grad_x_hat.sum(dim=0) - torch.mv(sae.W_enc.detach(), grad_b_enc)

    sae.W_enc.grad = grad_W_enc.float() if low else grad_W_enc
    sae.W_dec.grad = grad_W_dec.float() if low else grad_W_dec
    sae.b_enc.grad = grad_b_enc
    sae.b_dec.grad = grad_b_dec
    return StepResult(mse + coefficient * l1, mse, l1, x_hat, f, fired)


def _rounded(t: torch.Tensor, compute_dtype: torch.dtype) -> torch.Tensor:
    """`t` rounded to the compute dtype and held in float32: a bfloat16 matmul's operand or output, as the sparse
    kernels (float32 only) can take it."""
    return t if compute_dtype == torch.float32 else t.to(compute_dtype).float()


def _sparse_latent_side(
    sae: SparseAutoencoder, x: torch.Tensor, centred: torch.Tensor, f: torch.Tensor, coefficient: float, compute_dtype: torch.dtype = torch.float32
) -> StepResult:
    """The rest of `loss_and_gradients` from the latents f in compressed sparse rows. The kernels compute in float32;
    under bfloat16 every operand and output of the four products is rounded where the dense step's bfloat16 matmuls
    round it (accumulation is float32 in both), so the two sides differ by summation order, not by precision."""
    batch, d_sae = f.shape
    W_enc, W_dec = sae.W_enc.detach(), sae.W_dec.detach()
    W_dec_c = _rounded(W_dec, compute_dtype)
    f_rows = _rounded(f, compute_dtype).to_sparse_csr()  # f ≥ 0 rounds to 0 only where it is 0: the same pattern
    rows_start, latents, values = f_rows.crow_indices(), f_rows.col_indices(), f_rows.values()

    x_hat = _rounded(f_rows @ W_dec_c, compute_dtype).add_(sae.b_dec)
    error = x_hat - x
    mse = error.pow(2).sum(dim=-1).mean()
    l1 = f.sum() / batch  # from f itself, as the dense step sums it

    grad_x_hat = error.mul_(2.0 / batch)
    grad_x_hat_c = _rounded(grad_x_hat, compute_dtype)
    grad_W_dec = _rounded(f_rows.t() @ grad_x_hat_c, compute_dtype)
    # ∂L/∂pre at the active pairs only: ∂x̂·W_dec[j], rounded as a matmul output, then + c/batch in float32
    active = torch.sparse_csr_tensor(rows_start, latents, torch.zeros_like(values), f.shape, check_invariants=False)
    product = torch.sparse.sampled_addmm(active, grad_x_hat_c, W_dec_c.t())
    grad_pre = torch.sparse_csr_tensor(rows_start, latents, _rounded(product.values(), compute_dtype) + coefficient / batch, f.shape, check_invariants=False)
    grad_b_enc = torch.zeros(d_sae, device=f.device).index_add_(0, latents, grad_pre.values())
    # (x − b_dec)ᵀ·∂pre as (∂preᵀ·(x − b_dec))ᵀ: the sparse operand on the left, where the kernels want it
    pre_c = (
        grad_pre
        if compute_dtype == torch.float32
        else torch.sparse_csr_tensor(rows_start, latents, _rounded(grad_pre.values(), compute_dtype), f.shape, check_invariants=False)
    )
    grad_W_enc = _rounded((pre_c.t() @ _rounded(centred, compute_dtype)).t().contiguous(), compute_dtype)
    grad_b_dec = grad_x_hat.sum(dim=0) - torch.mv(W_enc, grad_b_enc)

    sae.W_enc.grad, sae.W_dec.grad, sae.b_enc.grad, sae.b_dec.grad = grad_W_enc, grad_W_dec, grad_b_enc, grad_b_dec
    fired = torch.zeros(d_sae, dtype=torch.bool, device=f.device).index_fill_(0, latents, True)
    return StepResult(mse + coefficient * l1, mse, l1, x_hat, f, fired)
