"""Orthogonality metrics on decoders with known answers, and the chunked max-cosine against a direct one."""

import math

import numpy as np
import torch

from taulib.metrics.orthogonality.metric import encoder_decoder_cosine, max_cosine_to_others, orthogonality_metrics, random_unit_directions
from taulib.sae import SparseAutoencoder


def sae_with_decoder(rows: torch.Tensor) -> SparseAutoencoder:
    sae = SparseAutoencoder(rows.shape[1], rows.shape[0])
    with torch.no_grad():
        sae.W_dec.copy_(rows / rows.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
    return sae


def test_orthogonal_decoder_has_max_cosine_zero():
    metrics, arrays = orthogonality_metrics(sae_with_decoder(torch.eye(32)[:20]))
    assert np.allclose(arrays["max_cosine"], 0.0)
    assert metrics.mean_max_cosine == 0.0
    assert metrics.near_duplicate_pair_fraction == 0.0
    assert math.isclose(metrics.mean_encoder_decoder_cosine, 1.0, rel_tol=1e-6)  # tied encoder


def test_near_duplicates_are_counted_once_per_pair():
    rows = torch.eye(16)[:10].clone()
    rows[1] = 0.95 * rows[0] + math.sqrt(1 - 0.95**2) * torch.eye(16)[12]  # cos(0, 1) = 0.95
    rows[2] = 0.5 * rows[3] + math.sqrt(0.75) * torch.eye(16)[13]  # cos(2, 3) = 0.5: not a duplicate
    metrics, arrays = orthogonality_metrics(sae_with_decoder(rows), duplicate_threshold=0.9)
    assert math.isclose(metrics.near_duplicate_pair_fraction, 1 / (10 * 9 / 2))
    assert math.isclose(metrics.near_duplicate_latent_fraction, 2 / 10)
    assert np.isclose(arrays["max_cosine"][0], 0.95, atol=1e-6) and np.isclose(arrays["max_cosine"][3], 0.5, atol=1e-6)


def test_chunked_max_cosine_matches_the_full_matrix():
    directions = torch.randn(300, 24)
    best, pairs = max_cosine_to_others(directions, duplicate_threshold=0.5, chunk=37)
    unit = directions / directions.norm(dim=1, keepdim=True)
    full = (unit @ unit.T).numpy()
    np.fill_diagonal(full, -np.inf)
    assert np.allclose(best, full.max(axis=1), atol=1e-6)
    assert pairs == int((np.triu(full, 1) > 0.5).sum())


def test_random_baseline_is_the_expected_random_cosine():
    # for n random unit vectors in d dimensions the mean max |cos| grows like sqrt(2 log n / d)
    directions = random_unit_directions(4096, 640, seed=0)
    assert torch.allclose(directions.norm(dim=1), torch.ones(4096), atol=1e-5)
    best, _ = max_cosine_to_others(directions)
    assert 0.10 < best.mean() < math.sqrt(2 * math.log(4096) / 640) + 0.02


def test_encoder_decoder_cosine_per_latent():
    sae = sae_with_decoder(torch.eye(8)[:4])
    with torch.no_grad():
        sae.W_enc[:, 0] = torch.eye(8)[0] + torch.eye(8)[5]  # 45 degrees away from its decoder row
    assert np.allclose(encoder_decoder_cosine(sae), [math.sqrt(0.5), 1, 1, 1], atol=1e-6)


def test_alive_latents_only_dead_copies_and_both_baselines():
    from taulib.metrics.orthogonality.metric import covariance_factor, random_baseline

    alive_rows = torch.eye(32)[:20]
    dead_rows = alive_rows[:10].clone()  # dead latents parked on alive directions: cos 1 with them
    sae = sae_with_decoder(torch.cat([alive_rows, dead_rows]))
    alive = np.array([True] * 20 + [False] * 10)
    # activations along a single direction: directions drawn from their covariance are all ± that one
    activations = torch.randn(500, 1) * torch.eye(32)[3]
    metrics, _ = orthogonality_metrics(sae, alive=alive, activation_covariance_factor=covariance_factor(activations))
    assert metrics.mean_max_cosine > 0.6  # all latents: the dead copies and their originals read as duplicates
    assert metrics.alive_latents == 20 and metrics.alive_mean_max_cosine == 0.0 and metrics.alive_near_duplicate_latent_fraction == 0.0
    assert metrics.alive_random_mean_max_cosine == float(random_baseline(20, 32, 0, 0.9)[0].mean())
    assert metrics.alive_excess_mean_max_cosine == -metrics.alive_random_mean_max_cosine
    assert metrics.alive_covariance_mean_max_cosine > 0.999  # rank-one covariance: every draw on one axis
    isotropic, _ = orthogonality_metrics(sae, alive=alive, activation_covariance_factor=covariance_factor(torch.randn(20_000, 32)))
    # an isotropic covariance gives the isotropic baseline (up to the draws)
    assert abs(isotropic.alive_covariance_mean_max_cosine - isotropic.alive_random_mean_max_cosine) < 0.1
    none_alive, _ = orthogonality_metrics(sae, alive=np.zeros(30, dtype=bool))
    assert none_alive.alive_latents == 0 and math.isnan(none_alive.alive_mean_max_cosine)
