"""The decoder-drift family: each latent's decoder cosine to its initialisation, against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taulib.metrics.decoder_drift.metric import decoder_drift_metrics, row_cosines, weighted_median


def test_the_weighted_median_with_integer_weights_is_the_median_of_the_values_repeated():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.normal(size=7)
        weights = rng.integers(0, 5, size=7)
        if weights.sum() % 2 == 0:  # an odd count, where the median of the repeated values is one of them
            weights[int(np.argmax(weights))] += 1
        assert weighted_median(values, weights) == np.median(np.repeat(values, weights))


def test_the_weighted_median_ignores_unweighted_values_and_is_nan_without_weight():
    assert weighted_median(np.array([0.1, 0.9, 0.5]), np.array([0.0, 1.0, 0.0])) == 0.9
    assert math.isnan(weighted_median(np.array([0.1, 0.2]), np.zeros(2)))
    with pytest.raises(ValueError, match="non-negative"):
        weighted_median(np.array([0.1]), np.array([-1.0]))


def test_row_cosines_of_rows_turned_by_known_angles():
    d, n = 20, 9
    basis = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    angles = torch.linspace(0, math.pi, n, dtype=torch.float64)
    initial = basis[:n].double()  # row i along e_i, turned towards e_{i+n} by angle i
    turned = torch.cos(angles)[:, None] * basis[:n].double() + torch.sin(angles)[:, None] * basis[n : 2 * n].double()
    np.testing.assert_allclose(row_cosines(initial * 3.0, turned), torch.cos(angles).numpy(), atol=1e-12)  # scale-free


def test_decoder_drift_reads_the_firing_latents_in_the_weighted_median():
    initial = torch.eye(4)
    decoder = torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 0, 1.0], [0, 0, 1.0, 0]])  # cosines 1, 1/√2, 0, 0
    drift = decoder_drift_metrics(initial, decoder, np.array([0.0, 0.5, 0.1, 0.0]))
    assert drift.decoder_init_cosine_median == pytest.approx(0.5 / math.sqrt(2))  # between 0 and 1/√2
    assert drift.decoder_init_cosine_weighted_median == pytest.approx(1 / math.sqrt(2))  # 5/6 of the firing is latent 1's
    assert math.isnan(decoder_drift_metrics(initial, decoder, None).decoder_init_cosine_weighted_median)
    with pytest.raises(ValueError, match="initial decoder"):
        row_cosines(torch.eye(4), torch.eye(5)[:, :4])


def test_a_run_evaluated_starts_at_cosine_one_and_reads_its_checkpoints_as_an_independent_computation(tmp_path):
    from family_records import trained_synthetic_run

    from taulib.config import EvaluationConfig
    from taulib.metrics.evaluate import evaluate_run, read_checkpoint_details
    from taulib.sae import load_sae

    run_dir, outputs, _ = trained_synthetic_run(tmp_path)
    table = evaluate_run(run_dir, outputs, show_progress=False, evaluation=EvaluationConfig.model_validate({"core": {"tokens": 16}, "families": ["core", "decoder_drift"]}))
    first, last = table.iloc[0], table.iloc[-1]
    assert first["step"] == 0 and first["decoder_init_cosine_median"] == pytest.approx(1.0, abs=1e-6)
    assert first["decoder_init_cosine_weighted_median"] == pytest.approx(1.0, abs=1e-6)
    step = int(last["step"])
    initial = load_sae(run_dir / "checkpoints" / "step_0000000")[0].W_dec.detach().numpy().astype(np.float64)
    final = load_sae(run_dir / "checkpoints" / f"step_{step:07d}")[0].W_dec.detach().numpy().astype(np.float64)
    cosines = (initial * final).sum(1) / np.linalg.norm(initial, axis=1) / np.linalg.norm(final, axis=1)
    assert last["decoder_init_cosine_median"] == pytest.approx(np.median(cosines), abs=1e-9)
    assert last["decoder_init_cosine_median"] < 0.999  # the trained dictionary moved
    density = np.asarray(read_checkpoint_details(run_dir, step)["details"]["latent_density"])
    weighted = last["decoder_init_cosine_weighted_median"]
    at = int(np.argmin(np.abs(cosines - weighted)))  # one of the firing latents' cosines (to float64 rounding) ...
    assert abs(cosines[at] - weighted) < 1e-12 and density[at] > 0
    assert density[cosines < cosines[at]].sum() < 0.5 * density.sum() <= density[cosines <= cosines[at]].sum()  # ... where half the firing is reached
