import pytest
import torch

from taulib.sae import SparseAutoencoder
from taulib.sae_step import loss_and_gradients
from taulib.trainer import LossTerms, sae_loss


def _sae(d_in=24, d_sae=96):
    sae = SparseAutoencoder(d_in, d_sae)
    sae.initialise(torch.Generator().manual_seed(0), torch.randn(d_in, generator=torch.Generator().manual_seed(1)) * 0.1)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    return sae


def _autograd(sae, x, coefficient, autocast):
    for parameter in sae.parameters():
        parameter.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        x_hat, f = sae(x)
    terms = sae_loss(x, x_hat, f, coefficient)
    terms.loss.backward()
    return terms, {name: p.grad.clone() for name, p in sae.named_parameters()}, f.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_match_autograd(dtype):
    sae, coefficient = _sae(), 0.04 / 0.3
    x = torch.randn(64, 24, generator=torch.Generator().manual_seed(3))
    terms, expected, f = _autograd(sae, x, coefficient, dtype == torch.bfloat16)
    result = loss_and_gradients(sae, x, coefficient, dtype)
    terms = LossTerms(*(t.detach() for t in (terms.loss, terms.mse, terms.l1)))
    assert float(result.loss) == pytest.approx(float(terms.loss), rel=1e-6)
    assert float(result.mse) == pytest.approx(float(terms.mse), rel=1e-6)
    assert float(result.l1) == pytest.approx(float(terms.l1), rel=1e-6)
    assert torch.equal(result.fired, (f > 0).any(dim=0))
    for name, parameter in sae.named_parameters():
        assert parameter.grad.dtype == torch.float32
        # float32: the same arithmetic up to summation order. bfloat16: the weights' gradients are
        # autocast's exactly; b_dec's is summed in float32 where autocast sums bfloat16 products
        tolerance = 1e-5 if dtype == torch.float32 or name != "b_dec" else 2e-2
        scale = expected[name].abs().max()
        assert float((parameter.grad - expected[name]).abs().max() / scale) < tolerance, name


def test_inactive_latents_get_no_gradient():
    sae = _sae()
    with torch.no_grad():
        sae.b_enc[:10] = -1e4  # never fire
    loss_and_gradients(sae, torch.randn(32, 24), 0.1)
    assert torch.all(sae.W_enc.grad[:, :10] == 0) and torch.all(sae.b_enc.grad[:10] == 0) and torch.all(sae.W_dec.grad[:10] == 0)
