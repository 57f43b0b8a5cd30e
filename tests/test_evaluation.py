import pytest
import torch
from saes import perfect_sae

from taulib.metrics.core import reconstruction_metrics
from taulib.sae import SAEMetadata, SparseAutoencoder, in_raw_units
from taulib.trainer import explained_variance


def test_perfect_reconstruction_and_known_l0():
    x = torch.tensor([[1.0, -2.0, 0.0], [0.0, 3.0, 4.0]]) * 5  # raw activations
    sae = perfect_sae(3)
    metrics, _ = reconstruction_metrics(in_raw_units(sae, SAEMetadata(d_in=3, d_sae=6, input_scale=5.0)), x, batch_size=1)
    assert metrics.explained_variance == pytest.approx(1.0)
    assert metrics.l0 == pytest.approx((2 + 2) / 2)
    # fired: +e0 (token 1), −e1 (token 1), +e1 and +e2 (token 2); never: −e0, −e2
    assert metrics.dead_fraction == pytest.approx(2 / 6)


def test_batched_explained_variance_equals_the_one_pass_definition():
    torch.manual_seed(0)
    sae = SparseAutoencoder(8, 32)
    sae.initialise(torch.Generator().manual_seed(0))
    x = torch.randn(1000, 8) * 3 + 1
    metrics, _ = reconstruction_metrics(in_raw_units(sae, SAEMetadata(d_in=8, d_sae=32, input_scale=2.0)), x, batch_size=77)
    with torch.no_grad():
        x_hat, f = sae(x / 2.0)
    assert metrics.explained_variance == pytest.approx(explained_variance(x / 2.0, x_hat), rel=1e-5)
    assert metrics.l0 == pytest.approx(float((f > 0).sum(dim=1).float().mean()), rel=1e-6)
