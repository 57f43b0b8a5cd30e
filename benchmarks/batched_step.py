"""Several SAEs trained together in one batched step, against the same SAEs stepped one after another.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/batched_step.py
    .venv/bin/python benchmarks/batched_step.py --quick --results /tmp/results.md   # seconds, small shapes

The runs of one seed share their batch order (taulib.train.trainer.BatchOrder is seeded by the run's seed) and
their initialisation, so they could be stepped together: one batch read, and each of the five matmuls run as one
batched product over the k SAEs (torch.bmm) instead of k products (SAELens' multi-SAE runner and sparsify's
multi-seed training do this on GPUs). This script measures whether that pays on this CPU before the trainer is
changed: the study's step (taulib.train.trainer.optimiser_step, dense side) k times, against one batched step of
the same arithmetic (`batched_step` below: the same hand-written gradients, decoder projection, fused Adam and
renormalisation, stacked), per SAE and per compute dtype, at the default study's shape (batch 512, d_model 640,
1,024 latents) and k = 3, 7 (a seed's arms at one target) and 21 (a seed's arms at every target). Before timing,
the batched step is checked to reach the separate steps' weights after a few steps (to the compute dtype's rounding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SKIPPED_BFLOAT16, markdown_table, provenance, time_bfloat16, write_section  # noqa: E402

from taulib.config import TrainingConfig  # noqa: E402
from taulib.sae import SparseAutoencoder  # noqa: E402
from taulib.train.trainer import make_optimiser, optimiser_step  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
COEFFICIENT, LR = 0.8, 3e-3  # λ/τ near the tightened schedule's end; the values do not change the cost


class BatchedSAEs:
    """k SAEs' weights stacked along a leading axis, one fused Adam over the stacks (Adam is elementwise: stacking
    changes nothing it computes)."""

    def __init__(self, saes: list[SparseAutoencoder], training: TrainingConfig) -> None:
        def stack(name: str) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.stack([getattr(sae, name).detach().clone() for sae in saes]))

        self.W_enc, self.b_enc, self.W_dec, self.b_dec = (stack(name) for name in ("W_enc", "b_enc", "W_dec", "b_dec"))
        self.optimiser = torch.optim.Adam([self.W_enc, self.b_enc, self.W_dec, self.b_dec], lr=LR, betas=(training.adam_beta1, training.adam_beta2), fused=True)


@torch.no_grad()
def batched_step(saes: BatchedSAEs, x: torch.Tensor, coefficients: torch.Tensor, compute_dtype: torch.dtype) -> None:
    """taulib.train.gradients.loss_and_gradients (dense side) and the trainer's update, for every stacked SAE at once."""
    batch = x.shape[0]
    low = compute_dtype != torch.float32
    W_enc, W_dec = saes.W_enc.to(compute_dtype), saes.W_dec.to(compute_dtype)
    centred = x[None] - saes.b_dec[:, None]
    centred_c = centred.to(compute_dtype)
    if low:  # bf16 products, their outputs rounded, the biases added in float32 (as the single step does)
        f = torch.bmm(centred_c, W_enc).float().add_(saes.b_enc[:, None]).relu_()
        f_c = f.to(compute_dtype)
        x_hat = torch.bmm(f_c, W_dec).float().add_(saes.b_dec[:, None])
    else:
        f = torch.baddbmm(saes.b_enc[:, None], centred_c, W_enc).relu_()
        f_c = f
        x_hat = torch.baddbmm(saes.b_dec[:, None], f_c, W_dec)
    grad_x_hat = (x_hat - x).mul_(2.0 / batch)
    grad_x_hat_c = grad_x_hat.to(compute_dtype)
    grad_W_dec = torch.bmm(f_c.transpose(1, 2), grad_x_hat_c)
    grad_pre = torch.bmm(grad_x_hat_c, W_dec.transpose(1, 2)).float().add_((coefficients / batch)[:, None, None])
    torch.ops.aten.threshold_backward.grad_input(grad_pre, f, 0.0, grad_input=grad_pre)
    grad_b_enc = grad_pre.sum(dim=1)
    grad_W_enc = torch.bmm(centred_c.transpose(1, 2), grad_pre.to(compute_dtype))
    grad_b_dec = grad_x_hat.sum(dim=1) - torch.bmm(saes.W_enc, grad_b_enc[..., None]).squeeze(-1)
    saes.W_enc.grad, saes.W_dec.grad = grad_W_enc.float(), grad_W_dec.float()
    saes.b_enc.grad, saes.b_dec.grad = grad_b_enc, grad_b_dec
    parallel = torch.linalg.vecdot(saes.W_dec.grad, saes.W_dec).unsqueeze(-1)
    saes.W_dec.grad.addcmul_(parallel, saes.W_dec, value=-1.0)
    saes.optimiser.step()
    saes.W_dec.div_(saes.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def fresh(x: torch.Tensor, k: int, d_sae: int, training: TrainingConfig) -> list[tuple[SparseAutoencoder, torch.optim.Adam]]:
    """k SAEs as a seed's runs start: the same initialisation (a seed's arms share it)."""
    pairs = []
    for _ in range(k):
        sae = SparseAutoencoder(x.shape[1], d_sae)
        sae.initialise(torch.Generator().manual_seed(0), x.mean(dim=0))
        pairs.append((sae, make_optimiser(sae, training)))
    return pairs


def weight_agreement(x: torch.Tensor, d_sae: int, dtype: torch.dtype, steps: int, training: TrainingConfig) -> dict[str, float]:
    """The batched and the separate steps from the same start, k = 3 SAEs with different coefficients: the largest
    absolute difference of any decoder weight between the two after `steps` steps, beside the largest distance any
    decoder weight moved from the start (the scale a wrong computation would differ by)."""
    coefficients = torch.tensor([0.2, 0.5, 0.8])
    separate = fresh(x, 3, d_sae, training)
    start = separate[0][0].W_dec.detach().clone()
    together = BatchedSAEs([sae for sae, _ in separate], training)
    for _ in range(steps):
        for (sae, optimiser), coefficient in zip(separate, coefficients.tolist(), strict=True):
            optimiser_step(sae, optimiser, x, coefficient, LR, dtype)
        batched_step(together, x, coefficients, dtype)
    with torch.no_grad():
        difference = max(float((together.W_dec[index] - sae.W_dec).abs().max()) for index, (sae, _) in enumerate(separate))
        moved = max(float((sae.W_dec - start).abs().max()) for sae, _ in separate)
    return {"difference": difference, "moved": moved}


def median_seconds(function: Any, repeats: int) -> float:
    function(), function()  # warm-up: oneDNN's primitives, the allocator
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(x: torch.Tensor, d_sae: int, k: int, dtype: torch.dtype, repeats: int, training: TrainingConfig) -> dict[str, float]:
    separate = fresh(x, k, d_sae, training)
    together = BatchedSAEs([sae for sae, _ in separate], training)
    coefficients = torch.full((k,), COEFFICIENT)

    def one_by_one() -> None:
        for sae, optimiser in separate:
            optimiser_step(sae, optimiser, x, COEFFICIENT, LR, dtype)

    # interleaved rounds, so that a busy spell slows both sides alike; the median of each
    rounds = [(median_seconds(one_by_one, repeats), median_seconds(lambda: batched_step(together, x, coefficients, dtype), repeats)) for _ in range(3)]
    alone = statistics.median(r[0] for r in rounds) / k
    stacked = statistics.median(r[1] for r in rounds) / k
    return {"separate_ms": alone * 1e3, "batched_ms": stacked * 1e3, "speedup": alone / stacked}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, seconds (a smoke test, not a measurement)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    batch, d_in, d_sae, ks, repeats = (64, 32, 128, (3,), 3) if args.quick else (512, 640, 1024, (3, 7, 21), 10)
    training = TrainingConfig()
    x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(0))
    dtypes = [name for name in DTYPES if name == "float32" or time_bfloat16(args.quick)]
    notes = [] if "bfloat16" in dtypes else [SKIPPED_BFLOAT16]
    checks = {name: weight_agreement(x, d_sae, DTYPES[name], 5, training) for name in dtypes}
    rows = [{"dtype": name, "k": k, **measure(x, d_sae, k, DTYPES[name], repeats, training)} for name in dtypes for k in ks]
    command = "python benchmarks/batched_step.py" + (" --quick" if args.quick else "")
    body = provenance(command) + "\n"
    body += (
        f"One step of batch {batch}, d_model {d_in}, {d_sae:,} latents ({'tiny shapes: a smoke test' if args.quick else 'the default study' + chr(39) + 's shape'}; "
        "random activations: the dense step's cost does not depend on their values), per SAE: k separate `optimiser_step` calls against one batched step of "
        "the same arithmetic over k stacked SAEs (medians of 3 interleaved rounds of the median of "
        f"{repeats} steps). Speed-up above 1: the batched step is faster.\n\n"
    )
    body += markdown_table(
        ["compute dtype", "SAEs together (k)", "separate, ms per SAE", "batched, ms per SAE", "speed-up"],
        [[row["dtype"], row["k"], f"{row['separate_ms']:.2f}", f"{row['batched_ms']:.2f}", f"{row['speedup']:.2f}"] for row in rows],
    )
    body += (
        "\nThe batched step against the separate ones from the same start, 3 SAEs at different coefficients, after 5 steps: largest decoder-weight difference "
    )
    body += ", ".join(f"{name} {check['difference']:.1e} (the weights moved up to {check['moved']:.1e})" for name, check in checks.items()) + ".\n"
    for note in notes:
        body += f"\n{note}.\n"
    write_section("batched_step", "Several SAEs in one batched step against one after another (`benchmarks/batched_step.py`)", body, args.results)
    return {"rows": rows, "checks": checks, "notes": notes}


if __name__ == "__main__":
    main()
