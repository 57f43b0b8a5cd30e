"""The training step's matmul kernels: oneDNN for its latent-wide float32 products on a CPU.

In float32 torch.mm calls the BLAS torch was built with (MKL in the PyPI wheels). Three of the
step's five matmuls write an output as wide as the dictionary: the encoder's forward, ∂x̂·W_decᵀ
and ∂W_enc = (x − b_dec)ᵀ·∂pre. From a few thousand latents up, oneDNN's GEMM (torch's own, the
one torch.compile uses for CPU linear layers) is faster than MKL on them at most shapes measured
(up to 1.6×, and within 4% either way at the rest); at narrower widths, and for the two products
that write d_in-wide outputs, MKL is as fast or faster
(benchmarks/matmul_kernels.py times all five products both ways at several shapes; measured on an
AVX2 AMD EPYC).

The choice is a fixed rule on the shapes, not a timing made at run time: the same machine always
runs the same kernels, so a resumed run repeats an uninterrupted one bit for bit. Where torch has
no oneDNN, and for other dtypes and devices, every product runs on torch.mm/addmm.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# The latent-wide products of SAEs with at least this many latents run on oneDNN (at 1,024 latents
# its gain was within run-to-run noise, and ∂W_enc slower, in benchmarks/matmul_kernels.py)
ONEDNN_MIN_LATENTS = 2048


def _onednn_linear():
    """torch's oneDNN linear kernel (act(a·wᵀ + b) in one call), or None where this torch lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


ONEDNN_LINEAR = _onednn_linear()
_onednn_enabled = True


@contextlib.contextmanager
def torch_blas_only() -> Iterator[None]:
    """Run every product on torch.mm/addmm inside this block (to compare the kernels; not thread-safe)."""
    global _onednn_enabled
    previous, _onednn_enabled = _onednn_enabled, False
    try:
        yield
    finally:
        _onednn_enabled = previous


def uses_onednn(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `latent_matmul(a, b)` runs on oneDNN: float32 on a CPU with a torch that has it, and enough latents."""
    return (
        _onednn_enabled
        and ONEDNN_LINEAR is not None
        and a.device.type == "cpu"
        and a.dtype == torch.float32
        and b.dtype == torch.float32
        and b.shape[1] >= ONEDNN_MIN_LATENTS
    )


def mm_plus_bias(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """a @ b + bias in float32; the matmul in the operands' dtype (its bf16 output rounded, as under autocast)."""
    if a.dtype == torch.float32:
        return torch.addmm(bias, a, b)
    return torch.mm(a, b).float().add_(bias)


def onednn_matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """a @ b (+ bias, then ReLU) on oneDNN, whatever the shapes; float32 CPU tensors, `ONEDNN_LINEAR` present."""
    # oneDNN's linear takes its weight as (out × in), i.e. bᵀ, and its input contiguous
    return ONEDNN_LINEAR(a.contiguous(), b.t(), bias, "relu" if relu else "none", [], "")


def latent_matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """a @ b for a product whose output spans the latents (b's columns are the d_sae latents), plus the
    bias (float32, `mm_plus_bias`), then the ReLU if asked; a and b may be transposed views.

    Without a bias the result is in the operands' dtype.
    """
    if uses_onednn(a, b):
        return onednn_matmul(a, b, bias, relu)
    out = torch.mm(a, b) if bias is None else mm_plus_bias(a, b, bias)
    return out.relu_() if relu else out
