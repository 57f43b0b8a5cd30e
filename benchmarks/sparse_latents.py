"""Can the SAE's own sparsity buy back matmul time? The three latent-side matmuls, dense against sparse.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/sparse_latents.py --outputs outputs
    .venv/bin/python benchmarks/sparse_latents.py --quick --results /tmp/results.md   # seconds, small shapes

Three of the training step's five matmuls involve the latents f only where f > 0: the decoder's
forward f·W_dec, and the two weight gradients fᵀ·∂x̂ and (x − b_dec)ᵀ·∂pre (∂pre is zero where
f is). With L0 active latents per token they need L0/d_sae of the dense work. This script times,
at the training benchmark's shapes and in float32, the dense matmuls against their sparse form:
the active (token, latent) pairs found once per step, the forward as an `embedding_bag` sum of
decoder rows, and each weight gradient as the backward of one. Latents are drawn uniformly at
random per token, at several L0 and at the density a freshly initialised SAE has on the study's
activations (the state the training benchmark starts from).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, best_of, markdown_table, provenance, write_section  # noqa: E402


def random_latents(batch: int, d_sae: int, l0: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, d_sae) non-negative activations with exactly `l0` positive entries per row."""
    f = torch.zeros(batch, d_sae)
    active = torch.rand(batch, d_sae, generator=generator).argsort(dim=1)[:, :l0]
    return f.scatter_(1, active, torch.rand(batch, l0, generator=generator) + 0.1)


def active_pairs(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bags of `embedding_bag`: each token's active latents (column ids), where each token's bag starts, their values."""
    mask = f > 0
    offsets = torch.zeros(f.shape[0], dtype=torch.long)
    offsets[1:] = mask.sum(dim=1).cumsum(0)[:-1]
    return mask.nonzero()[:, 1], offsets, f[mask]


def weight_gradient(columns: torch.Tensor, offsets: torch.Tensor, values: torch.Tensor, grad_output: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Σ over active pairs (token t, latent j) of value·grad_output[t], accumulated into row j: sparseᵀ @ dense."""
    weight = torch.zeros(n_rows, grad_output.shape[1], requires_grad=True)
    F.embedding_bag(columns, weight, offsets, mode="sum", per_sample_weights=values).backward(grad_output)
    return weight.grad


def measure(batch: int, d_in: int, d_sae: int, l0: int, repeats: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(l0)
    f = random_latents(batch, d_sae, l0, generator)
    w_dec, x, g = torch.randn(d_sae, d_in, generator=generator), torch.randn(batch, d_in, generator=generator), torch.randn(batch, d_in, generator=generator)

    def dense() -> None:
        torch.mm(f, w_dec), torch.mm(f.t(), g), torch.mm(x.t(), f)

    def sparse() -> None:
        columns, offsets, values = active_pairs(f)
        F.embedding_bag(columns, w_dec, offsets, mode="sum", per_sample_weights=values)
        weight_gradient(columns, offsets, values, g, d_sae)
        weight_gradient(columns, offsets, values, x, d_sae)  # (xᵀ·f)ᵀ: the encoder gradient's shape, transposed

    columns, offsets, values = active_pairs(f)
    # the sparse forms compute the dense results (to float32 summation order)
    assert torch.allclose(F.embedding_bag(columns, w_dec, offsets, mode="sum", per_sample_weights=values), f @ w_dec, atol=1e-3)
    assert torch.allclose(weight_gradient(columns, offsets, values, g, d_sae), f.t() @ g, atol=1e-3)
    dense(), sparse()
    dense_s, sparse_s = best_of(dense, repeats), best_of(sparse, repeats)
    index_s = best_of(lambda: active_pairs(f), repeats)
    return {"l0": l0, "density": l0 / d_sae, "dense_ms": dense_s * 1e3, "sparse_ms": sparse_s * 1e3, "index_ms": index_s * 1e3, "speedup": dense_s / sparse_s}


def initial_density(activations: torch.Tensor, d_sae: int, tokens: int = 4096) -> float:
    """Fraction of latents a freshly initialised SAE (the trainer's tied start) fires on these activations."""
    from taulib.sae import SparseAutoencoder
    from taulib.trainer import activation_statistics

    sample = activations[:tokens].float()
    scale, mean = activation_statistics(sample)
    sae = SparseAutoencoder(sample.shape[1], d_sae)
    sae.initialise(torch.Generator().manual_seed(0), mean)
    with torch.no_grad():
        return float((sae.encode(sample / scale) > 0).float().mean())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", default="parameters/cosine_0.3_to_0.05_tightened.yaml", help="whose cached activations a fresh SAE is run on")
    parser.add_argument("--outputs", default="outputs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small shapes and synthetic activations, for the smoke test")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from trainers import study_activations

    torch.manual_seed(0)
    _, activations, _ = study_activations(args.parameters, args.outputs, args.quick)
    batch, d_sae = (64, 128) if args.quick else (1024, 4096)
    d_in = activations.shape[1]
    l0s = [4, 16, 64] if args.quick else [10, 20, 40, 80, 160, 320]
    density = initial_density(activations, d_sae)
    l0s.append(max(1, round(density * d_sae)))
    rows = [measure(batch, d_in, d_sae, l0, 2 if args.quick else args.repeats) for l0 in l0s]
    table = markdown_table(
        [
            "L0 (active latents per token)",
            "density",
            "dense: 3 matmuls (ms)",
            "sparse: pairs + forward + 2 gradients (ms)",
            "of which finding the pairs",
            "sparse speed-up",
        ],
        [
            [
                f"{row['l0']}" + (" (fresh SAE)" if row is rows[-1] else ""),
                f"{row['density']:.1%}",
                f"{row['dense_ms']:.1f}",
                f"{row['sparse_ms']:.1f}",
                f"{row['index_ms']:.1f}",
                f"{row['speedup']:.2f}×",
            ]
            for row in rows
        ],
    )
    faster = [row for row in rows if row["speedup"] > 1]
    verdict = (
        f"The sparse form is faster up to L0 = {max(row['l0'] for row in faster)} ({max(row['density'] for row in faster):.1%} density) and slower above."
        if faster
        else "The sparse form is slower at every L0 measured."
    )
    verdict += (
        f" A freshly initialised SAE fires {density:.0%} of its latents on the study's activations, where the dense matmuls win {1 / rows[-1]['speedup']:.1f}×."
    )
    body = (
        provenance("benchmarks/sparse_latents.py" + (" --quick" if args.quick else ""))
        + f"\nSAE {d_in} → {d_sae} latents, batch {batch}, float32, best of {args.repeats}; active latents drawn uniformly per token.\n\n"
        + table
        + f"\n{verdict}\n"
    )
    write_section("sparse_latents", "Sparse latents: the three latent-side matmuls, dense against sparse (`benchmarks/sparse_latents.py`)", body, args.results)
    print(body)
    return {"rows": rows, "initial_density": density, "verdict": verdict}


if __name__ == "__main__":
    main()
