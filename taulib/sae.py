"""The ReLU sparse autoencoder of the study, and its on-disk format (safetensors + JSON).

    f  = ReLU(W_enc (x − b_dec) + b_enc)
    x̂ = W_dec f + b_dec

Shapes follow SAE Bench / SAELens: W_enc is (d_in, d_sae), W_dec is (d_sae, d_in) with unit-norm
rows (one decoder direction per latent). The SAE works on activations divided by
`input_scale`, a fixed factor that brings the mean squared norm of the training activations to
d_in; `input_scale` is saved with the weights so raw model activations can be encoded later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from taulib import atomic

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "sae_config.json"


@dataclass(frozen=True)
class SAEMetadata:
    """What a saved SAE needs besides its weights to be used on a model's activations."""

    d_in: int
    d_sae: int
    input_scale: float = 1.0  # raw activation / input_scale = what the SAE sees
    model_name: str = ""
    layer: int = -1
    hook_name: str = ""  # TransformerLens-style name, e.g. blocks.9.hook_resid_post
    extra: dict[str, Any] = field(default_factory=dict)


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in: int, d_sae: int) -> None:
        super().__init__()
        if d_in <= 0 or d_sae <= 0:
            raise ValueError(f"SAE sizes must be positive, got d_in={d_in}, d_sae={d_sae}")
        self.d_in, self.d_sae = d_in, d_sae
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @torch.no_grad()
    def initialise(self, generator: torch.Generator, data_mean: torch.Tensor | None = None) -> None:
        """Random unit-norm decoder rows, encoder tied to the decoder's transpose, b_dec at the data mean.

        The tied start (W_enc = W_decᵀ) is the initialisation of Anthropic's 2024 update and SAELens;
        it avoids dead latents at step 0 without any data-dependent resampling.
        """
        directions = torch.randn(self.d_sae, self.d_in, generator=generator)
        self.W_dec.copy_(directions / directions.norm(dim=1, keepdim=True))
        self.W_enc.copy_(self.W_dec.T)
        self.b_enc.zero_()
        self.b_dec.copy_(data_mean if data_mean is not None else torch.zeros(self.d_in))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (reconstruction, latent activations)."""
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Rescale every decoder row to unit norm (exactly, up to float rounding)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Project out the gradient component along each decoder row.

        With unit-norm rows, a step along the row only changes its length, which the
        renormalisation undoes; removing it keeps Adam's statistics about directions only.
        """
        if self.W_dec.grad is None:
            return
        # row-wise dot products and an in-place update: no (d_sae × d_in) temporaries
        parallel = torch.linalg.vecdot(self.W_dec.grad, self.W_dec).unsqueeze(1)
        self.W_dec.grad.addcmul_(parallel, self.W_dec, value=-1.0)


def identity_sae(d: int) -> SparseAutoencoder:
    """An SAE that reconstructs its input exactly: f = (ReLU(x), ReLU(−x)), x̂ = ReLU(x) − ReLU(−x) = x,
    with unit decoder rows (latent i fires where x_i > 0, latent d + i where x_i < 0). A known answer
    for the metrics, and a stand-in whose splice leaves the model's logits as they are."""
    sae = SparseAutoencoder(d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@torch.no_grad()
def in_raw_units(sae: SparseAutoencoder, metadata: SAEMetadata) -> SparseAutoencoder:
    """The same SAE acting on raw model activations, with input_scale folded into the weights.

    With x̃ = x/s, the trained SAE computes f = ReLU((x̃ − b_dec)W_enc + b_enc). Writing f_raw = s·f
    gives f_raw = ReLU((x − s·b_dec)W_enc + s·b_enc) and x = f_raw W_dec + s·b_dec: the decoder rows
    stay unit-norm, the latents are measured in the model's units, and L0 is unchanged. This is
    the form SAELens and SAE Bench expect, and what every metric evaluates.
    """
    scale = float(metadata.input_scale)
    raw = SparseAutoencoder(sae.d_in, sae.d_sae).to(sae.W_enc.device)
    raw.W_enc.copy_(sae.W_enc)
    raw.W_dec.copy_(sae.W_dec)
    raw.b_enc.copy_(sae.b_enc * scale)
    raw.b_dec.copy_(sae.b_dec * scale)
    return raw.requires_grad_(False)


def sae_weights(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().contiguous().clone() for name, tensor in sae.state_dict().items()}


def save_sae(sae: SparseAutoencoder, folder: str | Path, metadata: SAEMetadata) -> None:
    """Write `sae.safetensors` and `sae_config.json` into `folder`, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (metadata.d_in, metadata.d_sae) != (sae.d_in, sae.d_sae):
        raise ValueError(f"metadata sizes {(metadata.d_in, metadata.d_sae)} do not match the SAE {(sae.d_in, sae.d_sae)}")
    with atomic.atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(sae_weights(sae), str(tmp), metadata={"format": "taulib-sae-v1"})
    atomic.write_json(folder / CONFIG_FILE, asdict(metadata))


def load_sae(folder: str | Path, device: str | torch.device = "cpu") -> tuple[SparseAutoencoder, SAEMetadata]:
    folder = Path(folder)
    weights_path, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    for path in (weights_path, config_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; not a saved SAE folder")
    metadata = SAEMetadata(**json.loads(config_path.read_text(encoding="utf-8")))
    sae = SparseAutoencoder(metadata.d_in, metadata.d_sae)
    sae.load_state_dict(load_file(str(weights_path), device=str(device)))
    return sae.to(device), metadata
