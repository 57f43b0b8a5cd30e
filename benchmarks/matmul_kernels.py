"""The dense training step's five float32 matmuls, each on torch.mm (MKL) and on oneDNN, at several shapes.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/matmul_kernels.py
    .venv/bin/python benchmarks/matmul_kernels.py --quick --results /tmp/results.md   # seconds, small shapes

taulib.train.kernels runs the three products whose output spans the latents (the encoder's forward,
∂x̂·W_decᵀ and ∂W_enc) on oneDNN once d_sae ≥ `ONEDNN_MIN_LATENTS`, and the two others on torch.mm.
This script times every product both ways, operands laid out as the step has them, on random
float32 data (a GEMM's speed does not depend on the values), and says whether the rule picks
the faster kernel at each shape. The shapes: the study's default SAE (640 → 1,024), 2,048 latents,
the training benchmark's (640 → 4,096), a 4× wider one, a 4× larger batch, and gemma-2-2b's
residual width (2,304).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, best_of, markdown_table, provenance, write_section  # noqa: E402

from taulib.train.kernels import ONEDNN_LINEAR, ONEDNN_MIN_LATENTS, latent_matmul, onednn_matmul, uses_onednn  # noqa: E402

# (batch, d_in, d_sae)
SHAPES = [(1024, 640, 1024), (1024, 640, 2048), (1024, 640, 4096), (1024, 640, 16384), (4096, 640, 4096), (1024, 2304, 4096)]
QUICK_SHAPES = [(128, 64, 256)]


def products(batch: int, d_in: int, d_sae: int, dtype: torch.dtype = torch.float32) -> list[tuple[str, torch.Tensor, torch.Tensor, bool]]:
    """(name, a, b, whether the output spans the latents) for a·b, operands laid out as in taulib.train.gradients."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(dtype)

    centred, grad_x_hat = rand(batch, d_in), rand(batch, d_in)
    W_enc, W_dec = rand(d_in, d_sae), rand(d_sae, d_in)
    f, grad_pre = rand(batch, d_sae), rand(batch, d_sae)
    return [
        ("encoder forward (x − b_dec)·W_enc", centred, W_enc, True),
        ("∂x̂·W_decᵀ", grad_x_hat, W_dec.t(), True),
        ("decoder forward f·W_dec", f, W_dec, False),
        ("∂W_dec = fᵀ·∂x̂", f.t(), grad_x_hat, False),
        ("∂W_enc = (x − b_dec)ᵀ·∂pre", centred.t(), grad_pre, True),
    ]


def step_matmul_seconds(batch: int, d_in: int, d_sae: int, dtype: torch.dtype, repeats: int) -> float:
    """Seconds the dense step's five matmuls take on the kernels taulib runs them on (each best of `repeats`)."""
    total = 0.0
    for _, a, b, latent in products(batch, d_in, d_sae, dtype):
        product = latent_matmul if latent else torch.mm
        product(a, b)
        total += best_of(lambda a=a, b=b, product=product: product(a, b), repeats)
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one small shape, for the smoke test")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if ONEDNN_LINEAR is None:
        raise SystemExit("this torch has no oneDNN linear kernel (torch.backends.mkldnn): nothing to compare")
    torch.set_num_threads(1 if args.quick else 2)
    shapes, repeats = (QUICK_SHAPES, 2) if args.quick else (SHAPES, args.repeats)

    rows = []
    for batch, d_in, d_sae in shapes:
        for name, a, b, latent in products(batch, d_in, d_sae):
            taulib_onednn = latent and uses_onednn(a, b)
            torch.mm(a, b), onednn_matmul(a, b)  # first calls build oneDNN's primitive
            blas = best_of(lambda a=a, b=b: torch.mm(a, b), repeats)
            onednn = best_of(lambda a=a, b=b: onednn_matmul(a, b), repeats)
            chosen, other = (onednn, blas) if taulib_onednn else (blas, onednn)
            rows.append(
                {
                    "shape": (batch, d_in, d_sae),
                    "product": name,
                    "blas_ms": blas * 1e3,
                    "onednn_ms": onednn * 1e3,
                    "taulib": "oneDNN" if taulib_onednn else "torch.mm",
                    "chosen_is_faster": chosen <= other,
                    "gflops": 2 * batch * d_in * d_sae / min(blas, onednn) / 1e9,
                }
            )

    table = markdown_table(
        ["batch, d_in → d_sae", "product", "torch.mm (ms)", "oneDNN (ms)", "oneDNN speed-up", "taulib runs", "taulib's choice faster"],
        [
            (
                f"{r['shape'][0]}, {r['shape'][1]} → {r['shape'][2]}",
                r["product"],
                f"{r['blas_ms']:.1f}",
                f"{r['onednn_ms']:.1f}",
                f"{r['blas_ms'] / r['onednn_ms']:.2f}×",
                r["taulib"],
                "yes" if r["chosen_is_faster"] else "**no**",
            )
            for r in rows
        ],
    )
    step_lines = []
    for shape in shapes:
        of_shape = [r for r in rows if r["shape"] == shape]
        blas_only = sum(r["blas_ms"] for r in of_shape)
        taulib = sum(r["onednn_ms"] if r["taulib"] == "oneDNN" else r["blas_ms"] for r in of_shape)
        best = sum(min(r["blas_ms"], r["onednn_ms"]) for r in of_shape)
        step_lines.append(
            f"- {shape[0]}, {shape[1]} → {shape[2]}: the five products take {blas_only:.1f} ms on torch.mm alone, "
            f"{taulib:.1f} ms as taulib runs them ({blas_only / taulib:.2f}×), {best:.1f} ms with the faster kernel for each."
        )
    wrong = [r for r in rows if not r["chosen_is_faster"]]
    verdict = (
        "taulib's rule picks the faster kernel for every product and shape measured."
        if not wrong
        else f"taulib's rule picks the slower kernel for {len(wrong)} of {len(rows)} product-shapes (marked **no**)."
    )
    body = (
        provenance("benchmarks/matmul_kernels.py" + (" --quick" if args.quick else ""), ("torch",))
        + f"\nfloat32, random operands laid out as `taulib.train.gradients` has them, best of {repeats}; taulib runs the three products whose "
        f"output spans the latents on oneDNN from {ONEDNN_MIN_LATENTS:,} latents up (`ONEDNN_MIN_LATENTS`). "
        "torch.mm is torch's BLAS (MKL in the PyPI wheels); oneDNN is `torch.ops.mkldnn._linear_pointwise`, "
        "the kernel torch.compile uses for CPU linear layers.\n\n" + table + "\n" + verdict + " Per dense step:\n\n" + "\n".join(step_lines) + "\n"
    )
    write_section("matmul_kernels", "The training step's matmuls: torch.mm against oneDNN (`benchmarks/matmul_kernels.py`)", body, args.results)
    print(body)
    return {"rows": rows}


if __name__ == "__main__":
    main()
