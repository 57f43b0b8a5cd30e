import pytest
import torch
from references import sae_loss

from taulib.sae import SAEMetadata, SparseAutoencoder, identity_sae, load_sae, save_sae
from taulib.train.trainer import explained_variance


def _sae(d_in=8, d_sae=16, seed=0):
    sae = SparseAutoencoder(d_in, d_sae)
    sae.initialise(torch.Generator().manual_seed(seed))
    return sae


def test_initialisation_is_not_zero_and_tied():
    sae = _sae()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert sae.W_enc.abs().sum() > 0


def test_loss_matches_hand_computation():
    sae = SparseAutoencoder(2, 2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, -1.0]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        sae.b_dec.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[1.5, 3.0], [0.0, 0.5]])
    # token 1: x - b_dec = (1, 3); pre = (1, 2); f = (1, 2); x_hat = (1.5, 2); err² = 0 + 1 = 1; ‖f‖₁ = 3
    # token 2: x - b_dec = (-0.5, 0.5); pre = (-0.5, -0.5); f = (0, 0); x_hat = (0.5, 0); err² = 0.25 + 0.25; ‖f‖₁ = 0
    x_hat, f = sae(x)
    assert torch.allclose(f, torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    coefficient = 0.04 / 0.3
    terms = sae_loss(x, x_hat.detach(), f.detach(), coefficient)
    assert float(terms.mse) == pytest.approx((1.0 + 0.5) / 2)
    assert float(terms.l1) == pytest.approx(3.0 / 2)
    assert float(terms.loss) == pytest.approx(0.75 + coefficient * 1.5)


def test_explained_variance_known_cases():
    x = torch.randn(100, 4)
    assert explained_variance(x, x) == pytest.approx(1.0)
    assert explained_variance(x, x.mean(dim=0).expand_as(x)) == pytest.approx(0.0, abs=1e-6)


def test_decoder_stays_unit_norm_through_adam_steps():
    torch.manual_seed(0)
    sae = _sae(16, 64)
    optimiser = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for _ in range(50):
        x = torch.randn(32, 16) * 3
        x_hat, f = sae(x)
        loss = sae_loss(x, x_hat, f, 0.5).loss
        optimiser.zero_grad()
        loss.backward()
        sae.remove_parallel_decoder_grad()
        # after projection the gradient is orthogonal to every decoder row
        parallel = (sae.W_dec.grad * sae.W_dec).sum(dim=1).abs()
        assert (parallel / sae.W_dec.grad.norm(dim=1).clamp_min(1e-12)).max() < 1e-5
        optimiser.step()
        sae.normalise_decoder()
        assert (sae.W_dec.norm(dim=1) - 1).abs().max() < 1e-6


def test_save_load_round_trip(tmp_path):
    sae = _sae()
    meta = SAEMetadata(d_in=8, d_sae=16, input_scale=2.5, model_name="m", layer=3, hook_name="blocks.3.hook_resid_post")
    save_sae(sae, tmp_path / "s", meta)
    loaded, loaded_meta = load_sae(tmp_path / "s")
    assert loaded_meta == meta
    for name, tensor in sae.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])
    assert not list((tmp_path / "s").glob("*.tmp")), "no temporary files left behind"


def test_load_refuses_a_folder_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="sae.safetensors"):
        load_sae(tmp_path)


def test_the_identity_sae_reconstructs_exactly_with_one_latent_per_sign():
    x = torch.randn(50, 6)
    sae = identity_sae(6)
    reconstruction, latents = sae(x)[:2]
    assert torch.allclose(reconstruction, x, atol=1e-6)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(12))
    assert torch.equal(latents[:, :6] > 0, x > 0) and torch.equal(latents[:, 6:] > 0, x < 0)
