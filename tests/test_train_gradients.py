import pytest
import torch
from references import LossTerms, sae_loss

from taulib.config import TrainingConfig
from taulib.sae import SparseAutoencoder
from taulib.train.gradients import loss_and_gradients
from taulib.train.trainer import make_optimiser, optimiser_step


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


def _sparser_sae():
    sae = _sae()
    with torch.no_grad():
        sae.b_enc.sub_(0.3)  # a few latents per token
    return sae


def test_sparse_latent_side_matches_autograd():
    sae, coefficient = _sparser_sae(), 0.04 / 0.05
    x = torch.randn(64, 24, generator=torch.Generator().manual_seed(3))
    terms, expected, f = _autograd(sae, x, coefficient, autocast=False)
    terms = LossTerms(*(t.detach() for t in (terms.loss, terms.mse, terms.l1)))
    assert 0.01 < float((f > 0).float().mean()) < 0.5
    result = loss_and_gradients(sae, x, coefficient, sparse_max_density=1.0)  # 1: always sparse
    assert float(result.loss) == pytest.approx(float(terms.loss), rel=1e-6)
    assert float(result.mse) == pytest.approx(float(terms.mse), rel=1e-6)
    assert float(result.l1) == pytest.approx(float(terms.l1), rel=1e-6)
    assert torch.equal(result.fired, (f > 0).any(dim=0)) and torch.allclose(result.f, f)
    for name, parameter in sae.named_parameters():
        assert parameter.grad.dtype == torch.float32 and parameter.grad.is_contiguous(), name
        assert float((parameter.grad - expected[name]).abs().max() / expected[name].abs().max()) < 1e-5, name


BF16_ROUNDING = 2.0**-8  # bfloat16's unit roundoff: one rounding of a matmul output


def test_sparse_latent_side_under_bfloat16_matches_the_dense_bfloat16_step():
    """Under bfloat16 the sparse side rounds every product's operands and output where the dense step's bfloat16 matmuls
    do (both accumulate in float32): the same active latents, and gradients that differ by summation order, at most a
    rounding of an output, not by precision."""
    sae, coefficient, x = _sparser_sae(), 0.04 / 0.05, torch.randn(64, 24, generator=torch.Generator().manual_seed(3))
    dense = loss_and_gradients(sae, x, coefficient, torch.bfloat16)
    dense_grads = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sparse = loss_and_gradients(sae, x, coefficient, torch.bfloat16, sparse_max_density=1.0)
    assert torch.equal(sparse.f, dense.f) and torch.equal(sparse.fired, dense.fired)
    assert float(sparse.loss) == pytest.approx(float(dense.loss), rel=BF16_ROUNDING)
    for name, parameter in sae.named_parameters():
        assert parameter.grad.dtype == torch.float32, name
        assert float((parameter.grad - dense_grads[name]).abs().max() / dense_grads[name].abs().max()) <= BF16_ROUNDING, name


def _trained(sparse: bool, steps: int = 150) -> SparseAutoencoder:
    """An SAE trained in bfloat16 with the step always dense or always sparse, on the same batches."""
    sae = SparseAutoencoder(64, 512)
    sae.initialise(torch.Generator().manual_seed(0), torch.zeros(64))
    with torch.no_grad():
        sae.b_enc.sub_(0.5)  # a few percent of the latents active: the sparse side's regime
    optimiser = make_optimiser(sae, TrainingConfig(lr=1e-3))
    batches = torch.Generator().manual_seed(5)
    for _ in range(steps):
        optimiser_step(sae, optimiser, torch.randn(256, 64, generator=batches), 0.5, 1e-3, torch.bfloat16, sparse_max_density=1.0 if sparse else 0.0)
    return sae


def _departure(a: SparseAutoencoder, b: SparseAutoencoder) -> float:
    """The largest difference between two SAEs' weights, relative to each weight matrix's largest entry."""
    return max(float((getattr(a, name) - getattr(b, name)).abs().max() / getattr(a, name).abs().max()) for name in ("W_enc", "W_dec", "b_dec"))


def test_bfloat16_training_ends_at_the_same_weights_whichever_side_the_switch_takes(monkeypatch):
    """The sparse switch changes speed, not what a run learns: 150 bfloat16 steps always dense and always sparse end at
    the same weights to bfloat16 rounding. The risk is real: with the sparse side in float32 (no rounding where the dense
    step rounds) the same runs part by several times more."""
    import taulib.train.gradients as gradients

    dense = _trained(sparse=False)
    same_precision = _departure(dense, _trained(sparse=True))
    assert same_precision <= BF16_ROUNDING
    monkeypatch.setattr(gradients, "_rounded", lambda t, compute_dtype: t)  # the sparse side in float32
    assert _departure(dense, _trained(sparse=True)) > 2 * same_precision


def test_sparse_path_with_no_active_latent():
    sae = _sae()
    with torch.no_grad():
        sae.b_enc.fill_(-1e4)
    x = torch.randn(32, 24, generator=torch.Generator().manual_seed(4))
    terms, expected, _ = _autograd(sae, x, 0.1, autocast=False)
    terms = LossTerms(*(t.detach() for t in (terms.loss, terms.mse, terms.l1)))
    result = loss_and_gradients(sae, x, 0.1, sparse_max_density=1.0)
    assert not result.fired.any() and float(result.l1) == 0.0
    assert float(result.loss) == pytest.approx(float(terms.loss), rel=1e-6)
    for name, parameter in sae.named_parameters():
        assert torch.allclose(parameter.grad, expected[name], atol=1e-6), name


def test_the_step_goes_sparse_below_the_threshold_only(monkeypatch):
    import taulib.train.gradients as sae_step

    calls = []
    original = sae_step._sparse_latent_side
    monkeypatch.setattr(sae_step, "_sparse_latent_side", lambda *args: calls.append(1) or original(*args))
    sae = _sae()
    x = torch.randn(64, 24, generator=torch.Generator().manual_seed(5))
    density = float((sae.encode(x) > 0).float().mean())
    loss_and_gradients(sae, x, 0.1, sparse_max_density=density * 0.9)
    loss_and_gradients(sae, x, 0.1, sparse_max_density=0.0)
    assert calls == []
    loss_and_gradients(sae, x, 0.1, sparse_max_density=density)
    assert calls == [1]
