"""The support-refit explained variance: the SAE's active latents kept, their coefficients refitted by least squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taulib.metrics.support_refit.metric import refitted_reconstructions, support_refit_metrics
from taulib.sae import SparseAutoencoder


def _sae(d: int, width: int, seed: int, threshold: float) -> SparseAutoencoder:
    sae = SparseAutoencoder(d, width)
    sae.initialise(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_enc.fill_(-threshold)
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return sae.requires_grad_(False)


def test_shrinkage_alone_is_refitted_away():
    """An orthonormal dictionary whose encoder subtracts a threshold (soft thresholding, L1's shrinkage): on tokens made
    of a few dictionary directions with coefficients above it, the SAE picks the right support but shrinks every
    coefficient by the threshold; refitted, the reconstruction is exact."""
    d, threshold = 16, 0.5
    sae = SparseAutoencoder(d, d)
    with torch.no_grad():
        sae.W_dec.copy_(torch.eye(d))
        sae.W_enc.copy_(torch.eye(d))
        sae.b_enc.fill_(-threshold)
        sae.b_dec.zero_()
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(200, d)
    for row in x:
        row[torch.randperm(d, generator=generator)[:3]] = 1 + torch.rand(3, generator=generator)
    metrics = support_refit_metrics(sae, x)
    assert metrics.support_refit_explained_variance == pytest.approx(1.0, abs=1e-12)
    own = 1 - (3 * threshold**2 * len(x)) / float((x.double() - x.double().mean(0)).pow(2).sum())  # each active coefficient short by the threshold
    assert metrics.support_refit_explained_variance - metrics.support_refit_ev_gain == pytest.approx(own, rel=1e-6)


def test_the_refit_is_each_tokens_least_squares_fit_on_its_active_latents():
    """Against numpy's least squares, token by token, on a random overcomplete SAE (supports of different sizes)."""
    d, width = 12, 40
    sae = _sae(d, width, seed=3, threshold=0.6)
    x = torch.randn(64, d, generator=torch.Generator().manual_seed(4)) * 2
    own, refit = refitted_reconstructions(sae, x)
    f = sae.encode(x)
    sizes = set()
    decoder, b_dec = sae.W_dec.double().numpy(), sae.b_dec.double().numpy()
    for token in range(len(x)):
        active = np.flatnonzero(f[token].numpy() > 0)
        sizes.add(len(active))
        target = x[token].double().numpy() - b_dec
        expected = b_dec + (decoder[active].T @ np.linalg.lstsq(decoder[active].T, target, rcond=None)[0] if len(active) else 0)
        np.testing.assert_allclose(refit[token].numpy(), expected, atol=1e-9)
    assert len(sizes) > 3  # padded batches of different support sizes were exercised
    np.testing.assert_allclose(own.numpy(), sae(x)[0].double().numpy())


def test_linearly_dependent_active_rows_get_the_least_squares_fit():
    """Two active latents with the same decoder row: the normal equations are singular; the fit is still the projection."""
    d = 8
    sae = SparseAutoencoder(d, 3)
    with torch.no_grad():
        rows = torch.tensor([[1.0] + [0.0] * 7, [1.0] + [0.0] * 7, [0.0, 1.0] + [0.0] * 6])
        sae.W_dec.copy_(rows)
        sae.W_enc.copy_(rows.T)
        sae.b_enc.fill_(-0.1)
        sae.b_dec.zero_()
    x = torch.tensor([[2.0, 3.0, 1.0, 0, 0, 0, 0, 0]])
    _, refit = refitted_reconstructions(sae, x)
    np.testing.assert_allclose(refit.numpy(), [[2.0, 3.0, 0, 0, 0, 0, 0, 0]], atol=1e-12)


def test_a_trained_run_is_refitted_at_its_final_checkpoint_and_the_refit_never_loses():
    """The SAE's own coefficients are one fit on its support, so the least-squares refit is at least as good; the
    earlier checkpoints have no refit by default (support_refit.checkpoints: final); asked for more tokens than core's
    sample holds, it refits all of core's."""
    import tempfile
    from pathlib import Path

    from family_records import trained_synthetic_run

    from taulib.config import EvaluationConfig
    from taulib.metrics.evaluate import evaluate_run

    with tempfile.TemporaryDirectory() as folder:
        run_dir, outputs, _ = trained_synthetic_run(Path(folder))
        evaluation = EvaluationConfig.model_validate({"core": {"tokens": 16}, "support_refit": {"tokens": 4096}, "families": ["core", "support_refit"]})
        table = evaluate_run(run_dir, outputs, show_progress=False, evaluation=evaluation)
    final = table.iloc[-1]
    assert final["support_refit_tokens"] == 16 and final["support_refit_ev_gain"] >= -1e-12
    assert final["support_refit_explained_variance"] - final["support_refit_ev_gain"] == pytest.approx(final["explained_variance"], abs=1e-5)  # same tokens, float32 SAE
    assert table["support_refit_explained_variance"].iloc[:-1].isna().all()


def test_the_refit_is_priced_at_the_runs_final_l0():
    """The refit's cost grows with the latents active per token: the estimate times it on an SAE firing about the run's
    L0 target (a sweep's; a default outside one), not on a far denser one."""
    from taulib.config import RunConfig
    from taulib.metrics.support_refit.family import UNKNOWN_TIMING_L0, timing_l0, timing_sae_at_l0

    x = torch.randn(512, 32, generator=torch.Generator().manual_seed(0))
    for l0 in (5.0, 20.0):
        sae = timing_sae_at_l0(x, 128, l0)
        assert float((sae.encode(x) > 0).sum(dim=1).float().mean()) == pytest.approx(l0, rel=0.02)
    swept = RunConfig.model_validate({"run_name": "r", "sae": {"width": 1024}, "sweep": {"arm": "a", "l0_target": 50.0}})
    assert timing_l0(swept) == 50.0 and timing_l0(RunConfig(run_name="r", sae={"width": 1024})) == UNKNOWN_TIMING_L0
