"""Core reconstruction metrics against known answers and an independent numpy computation."""

import numpy as np
import torch
from saes import perfect_sae

from taulib.metrics.core.metric import DENSITY_BIN_EDGES, density_histogram, reconstruction_metrics
from taulib.sae import SAEMetadata, SparseAutoencoder, in_raw_units


def random_sae(d: int, width: int, seed: int = 0) -> SparseAutoencoder:
    sae = SparseAutoencoder(d, width)
    sae.initialise(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)
    return sae


def test_perfect_reconstruction_has_known_metrics():
    x = torch.randn(500, 16) * 3 + 1
    metrics, density = reconstruction_metrics(perfect_sae(16), x, batch_size=64)
    assert metrics.explained_variance == 1.0 - 0.0
    assert metrics.mse < 1e-10
    assert abs(metrics.cosine_similarity - 1.0) < 1e-6
    # every coordinate is non-zero, so exactly one of each ± pair fires: L0 = d
    assert metrics.l0 == 16
    assert metrics.dead_fraction == 0.0
    assert np.allclose(density[:16] + density[16:], 1.0)


def test_metrics_match_an_independent_numpy_computation():
    torch.manual_seed(1)
    x = torch.randn(1000, 12) @ torch.randn(12, 12) + 2.0
    sae = random_sae(12, 48)
    metrics, density = reconstruction_metrics(sae, x, batch_size=97, dense_threshold=0.3)
    xn = x.double().numpy()
    f = np.maximum((xn - sae.b_dec.detach().double().numpy()) @ sae.W_enc.detach().double().numpy() + sae.b_enc.detach().double().numpy(), 0)
    x_hat = f @ sae.W_dec.detach().double().numpy() + sae.b_dec.detach().double().numpy()
    residual = ((xn - x_hat) ** 2).sum()
    total = ((xn - xn.mean(axis=0)) ** 2).sum()
    cos = (xn * x_hat).sum(1) / np.linalg.norm(xn, axis=1) / np.linalg.norm(x_hat, axis=1)
    fires = (f > 0).mean(axis=0)
    assert np.isclose(metrics.explained_variance, 1 - residual / total, rtol=1e-5)
    assert np.isclose(metrics.mse, residual / xn.size, rtol=1e-5)
    assert np.isclose(metrics.l0, (f > 0).sum(1).mean())
    assert np.isclose(metrics.l1, f.sum(1).mean(), rtol=1e-5)
    assert np.isclose(metrics.cosine_similarity, cos.mean(), rtol=1e-5)
    assert np.allclose(density, fires)
    assert metrics.dead_fraction == (fires == 0).mean()
    assert metrics.dense_fraction == (fires > 0.3).mean()
    # batching does not change anything
    again, _ = reconstruction_metrics(sae, x, batch_size=1000, dense_threshold=0.3)
    assert np.isclose(again.explained_variance, metrics.explained_variance, rtol=1e-6)


def test_density_histogram_bins_known_densities():
    density = np.array([0.0, 0.0, 1e-3, 1e-3, 0.5, 1.0, 1e-9])
    histogram = density_histogram(density)
    assert histogram["dead"] == 2
    assert sum(histogram["counts"]) == 5
    edges = np.array(histogram["log10_density_edges"])
    assert np.allclose(edges, DENSITY_BIN_EDGES)
    assert histogram["counts"][int(np.searchsorted(edges, -3.0, side="right") - 1)] == 2
    assert histogram["counts"][0] == 1  # rarer than the first edge goes in the first bin
    assert histogram["counts"][-1] == 1  # 1.0: the last bin includes its right edge
    assert histogram["counts"][int(np.searchsorted(edges, np.log10(0.5), side="right") - 1)] == 1


def test_raw_units_fold_the_input_scale_into_the_weights():
    torch.manual_seed(2)
    sae = random_sae(10, 30, seed=3)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(10))
        sae.b_enc.copy_(torch.randn(30) * 0.1)
    scale = 7.5
    raw = in_raw_units(sae, SAEMetadata(d_in=10, d_sae=30, input_scale=scale))
    x = torch.randn(200, 10) * scale
    x_hat_scaled, f_scaled = sae(x / scale)
    x_hat_raw, f_raw = raw(x)
    assert torch.allclose(f_raw, f_scaled * scale, atol=1e-4)
    assert torch.allclose(x_hat_raw, x_hat_scaled * scale, atol=1e-4)
    assert torch.allclose(raw.W_dec.norm(dim=1), torch.ones(30), atol=1e-6)
    assert torch.equal((f_raw > 0), (f_scaled > 0))
