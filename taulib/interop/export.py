"""Export a saved SAE for other tools: a SAELens folder, or a live SAE Bench custom SAE.

Both get the SAE in raw units (`sae.in_raw_units`): the input scale folded into the biases, unit
decoder rows, `normalize_activations: none`, so they encode the model's activations directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from taulib import atomic
from taulib.sae import SparseAutoencoder, in_raw_units, load_sae

SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_CONFIG = "cfg.json"


def export_saelens(sae_folder: str | Path, target: str | Path) -> Path:
    """Write `target/cfg.json` and `target/sae_weights.safetensors`, loadable with `sae_lens.SAE.load_from_disk`."""
    sae, metadata = load_sae(sae_folder)
    raw = in_raw_units(sae, metadata)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    weights = {name: getattr(raw, name).detach().contiguous() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    with atomic.atomic_path(target / SAELENS_WEIGHTS) as tmp:
        save_file(weights, str(tmp))
    config = {
        "architecture": "standard",
        "d_in": metadata.d_in,
        "d_sae": metadata.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": metadata.model_name,
            "hook_name": metadata.hook_name,
            "hook_layer": metadata.layer,
            "prepend_bos": True,
            "sae_lens_version": "6.0.0",  # read as SAELens 6 format, metadata kept as written
            "exported_from": "taulib",
            **{key: value for key, value in metadata.extra.items() if isinstance(value, int | float | str)},
        },
    }
    atomic.write_json(target / SAELENS_CONFIG, config)
    return target


def sae_bench_sae(raw: SparseAutoencoder, layer: int, model_name: str = "gemma-3-270m", dtype: torch.dtype = torch.float32) -> Any:
    """A `sae_bench` ReLU custom SAE holding the weights of an SAE in raw units (needs the `saebench` extra)."""
    from sae_bench.custom_saes.relu_sae import ReluSAE

    bench = ReluSAE(d_in=raw.d_in, d_sae=raw.d_sae, model_name=model_name, hook_layer=layer, device=torch.device("cpu"), dtype=dtype)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(bench, name).copy_(getattr(raw, name).to(dtype))
    bench.cfg.architecture = "standard"
    return bench


def to_sae_bench(sae_folder: str | Path, model_name: str = "gemma-3-270m", dtype: torch.dtype = torch.float32) -> Any:
    """Load a saved taulib SAE as a `sae_bench` custom SAE."""
    sae, metadata = load_sae(sae_folder)
    return sae_bench_sae(in_raw_units(sae, metadata), metadata.layer, model_name, dtype)
