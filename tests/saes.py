"""SAEs with known behaviour, shared by the tests."""


from taulib.sae import SparseAutoencoder, identity_sae


def perfect_sae(d: int) -> SparseAutoencoder:
    """taulib.sae.identity_sae, frozen: x̂ = x exactly; latent i fires where x_i > 0, d + i where x_i < 0."""
    return identity_sae(d).requires_grad_(False)
