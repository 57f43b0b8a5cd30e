"""SAEs with known behaviour, shared by the tests."""

import torch

from taulib.sae import SparseAutoencoder


def perfect_sae(d: int) -> SparseAutoencoder:
    """f = (ReLU(x), ReLU(−x)), x̂ = ReLU(x) − ReLU(−x) = x exactly, with unit decoder rows;
    latent i fires where x_i > 0 and latent d + i where x_i < 0."""
    sae = SparseAutoencoder(d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.requires_grad_(False)
