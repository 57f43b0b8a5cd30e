"""taulib.train.kernels: the step's products on oneDNN give torch's results, deterministically, and
only where the rule says (float32 on a CPU, at least ONEDNN_MIN_LATENTS latents)."""

import pytest
import torch
from test_train_gradients import _autograd, _sae

from taulib.train.gradients import loss_and_gradients
from taulib.train.kernels import ONEDNN_LINEAR, ONEDNN_MIN_LATENTS, latent_matmul, torch_blas_only, uses_onednn

WIDE = ONEDNN_MIN_LATENTS


def test_the_pinned_torch_has_the_onednn_kernel():
    assert ONEDNN_LINEAR is not None, "torch without oneDNN: every product falls back to torch.mm (slower at large widths)"


def _operands(seed=0, batch=48, d_in=20, d_sae=WIDE):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, d_in, generator=g), torch.randn(d_in, d_sae, generator=g), torch.randn(d_sae, d_in, generator=g)


@pytest.mark.parametrize("form", ["plain", "transposed weight", "transposed input"])
@pytest.mark.parametrize("bias,relu", [(False, False), (True, False), (True, True)])
def test_latent_matmul_on_onednn_equals_a_float64_product(form, bias, relu):
    x, W_enc, W_dec = _operands()
    a, b = {"plain": (x, W_enc), "transposed weight": (x, W_dec.t()), "transposed input": (x.t().contiguous().t(), W_enc)}[form]
    vector = torch.randn(WIDE, generator=torch.Generator().manual_seed(9)) if bias else None
    assert uses_onednn(a, b)
    expected = a.double() @ b.double() + (vector.double() if bias else 0)
    expected = expected.relu() if relu else expected
    result = latent_matmul(a, b, vector, relu)
    assert result.dtype == torch.float32 and result.shape == expected.shape
    assert float((result.double() - expected).abs().max()) < 1e-5 * float(expected.abs().max())
    assert torch.equal(result, latent_matmul(a, b, vector, relu)), "the same inputs give the same bits (resumed runs rely on it)"


def test_the_rule_keeps_narrow_outputs_other_dtypes_and_the_comparison_block_on_torch():
    x, W_enc, W_dec = _operands()
    assert uses_onednn(x, W_enc) and not uses_onednn(x, W_enc[:, : WIDE // 2])  # fewer latents
    assert not uses_onednn(x.bfloat16(), W_enc.bfloat16())
    with torch_blas_only():
        assert not uses_onednn(x, W_enc)
    assert uses_onednn(x, W_enc), "the block restores the rule"


def test_a_wide_dense_step_on_onednn_matches_torch_blas_and_autograd():
    sae, coefficient = _sae(d_in=20, d_sae=WIDE), 0.04 / 0.3
    x = torch.randn(48, 20, generator=torch.Generator().manual_seed(3))
    _, expected, _ = _autograd(sae, x, coefficient, False)
    loss_and_gradients(sae, x, coefficient)
    onednn = {name: p.grad.clone() for name, p in sae.named_parameters()}
    with torch_blas_only():
        loss_and_gradients(sae, x, coefficient)
    blas = {name: p.grad.clone() for name, p in sae.named_parameters()}
    for name in onednn:
        scale = expected[name].abs().max()
        assert float((onednn[name] - expected[name]).abs().max() / scale) < 1e-5, name
        assert float((onednn[name] - blas[name]).abs().max() / scale) < 1e-5, name
