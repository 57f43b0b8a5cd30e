"""The training step's sparse latent side against its dense matmuls, by density and compute dtype.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/sparse_latents.py --outputs outputs
    .venv/bin/python benchmarks/sparse_latents.py --quick --results /tmp/results.md   # seconds, small shapes

Four of the step's five matmuls involve the latents f only where f > 0 (taulib.train.gradients). This
script times `taulib.train.gradients.loss_and_gradients` forced dense and forced sparse, at the training
benchmark's shapes, on the study's cached activations, for SAEs at a range of densities: a freshly
initialised SAE whose encoder biases are shifted so that each latent fires on the chosen fraction
of the batch's tokens. The densities at which the sparse side wins give the crossover per dtype;
the switch the trainer measures for itself on this machine (taulib.train.sparse_switch) is checked
against it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SKIPPED_BFLOAT16, best_of, markdown_table, provenance, time_bfloat16, write_section  # noqa: E402

from taulib.sae import SparseAutoencoder  # noqa: E402
from taulib.train.gradients import loss_and_gradients  # noqa: E402
from taulib.train.sparse_switch import machine_crossover, sae_at_density  # noqa: E402
from taulib.train.trainer import activation_statistics  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_PARAMETERS = "parameters/cosine_0.3_to_0.05_tightened.yaml"
COEFFICIENT = 0.04 / 0.05  # λ/τ at the end of the tightened schedule; the coefficient does not change the cost


def fresh_sae(x: torch.Tensor, d_sae: int, mean: torch.Tensor) -> SparseAutoencoder:
    sae = SparseAutoencoder(x.shape[1], d_sae)
    sae.initialise(torch.Generator().manual_seed(0), mean)
    return sae


def measured_density(sae: SparseAutoencoder, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((sae.encode(x) > 0).float().mean())


def measure(sae: SparseAutoencoder, x: torch.Tensor, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    def step(max_density: float) -> None:
        loss_and_gradients(sae, x, COEFFICIENT, dtype, max_density)

    step(0.0), step(1.0)
    dense, sparse = best_of(lambda: step(0.0), repeats), best_of(lambda: step(1.0), repeats)
    return {"dense_ms": dense * 1e3, "sparse_ms": sparse * 1e3, "speedup": dense / sparse}


def crossover(rows: list[dict[str, Any]], dtype: str) -> float | None:
    """The highest density measured at which the sparse side is faster, all lower ones being faster too."""
    best = None
    for row in sorted((r for r in rows if r["dtype"] == dtype), key=lambda r: r["density"]):
        if row["speedup"] <= 1:
            break
        best = row["density"]
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", default=DEFAULT_PARAMETERS, help="whose cached activations the SAEs run on")
    parser.add_argument("--outputs", default="outputs")
    parser.add_argument("--width", type=int, default=4096, help="latents (the training benchmark's width)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small shapes and synthetic activations, for the smoke test")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--section", default="sparse_latents", help="the RESULTS.md section to (re)write (another machine's beside the first's)")
    args = parser.parse_args(argv)
    from trainers import study_activations

    torch.set_num_threads(1 if args.quick else 2)
    _, activations, _ = study_activations(args.parameters, args.outputs, args.quick)
    batch, d_sae, repeats = (128, 256, 2) if args.quick else (args.batch, args.width, args.repeats)
    scale, mean = activation_statistics(activations[:16_384].float())
    x = activations[torch.randperm(activations.shape[0], generator=torch.Generator().manual_seed(0))[:batch]].float() / scale
    mean = mean / scale
    densities = [0.02, 0.1, 0.3] if args.quick else [0.0025, 0.005, 0.01, 0.02, 0.04, 0.05, 0.06, 0.08, 0.16, 0.32]
    fresh = measured_density(fresh_sae(x, d_sae, mean), x)

    dtypes = {name: dtype for name, dtype in DTYPES.items() if name == "float32" or time_bfloat16(args.quick)}
    rows = []
    for dtype_name, dtype in dtypes.items():
        for target in [*densities, None]:
            sae = fresh_sae(x, d_sae, mean) if target is None else sae_at_density(x, d_sae, target)
            density = measured_density(sae, x)
            rows.append({"dtype": dtype_name, "density": density, "l0": density * d_sae, "fresh": target is None, **measure(sae, x, dtype, repeats)})

    table = markdown_table(
        ["compute dtype", "density", "L0 (latents per token)", "dense step (ms)", "sparse step (ms)", "sparse speed-up"],
        [
            (
                r["dtype"],
                f"{r['density']:.2%}" + (" (fresh SAE)" if r["fresh"] else ""),
                f"{r['l0']:.0f}",
                f"{r['dense_ms']:.1f}",
                f"{r['sparse_ms']:.1f}",
                f"{r['speedup']:.2f}×",
            )
            for r in rows
        ],
    )
    lines = []
    crossovers = {}
    for dtype_name, dtype in dtypes.items():
        crossovers[dtype_name] = found = crossover(rows, dtype_name)
        measured_switch = machine_crossover(x, d_sae, dtype)  # what the trainer runs with here (cached per machine)
        if found is None:
            lines.append(f"- {dtype_name}: the sparse side is slower at every density measured; the trainer's measured switch here is {measured_switch:.2%}.")
            continue
        # (a shifted SAE's measured density overshoots its target by a hair: 8.01% is the 8% row)
        faster_below_switch = all(r["speedup"] > 1 for r in rows if r["dtype"] == dtype_name and round(r["density"], 3) <= measured_switch)
        lines.append(
            f"- {dtype_name}: the sparse side is faster up to {found:.1%} density (L0 {found * d_sae:.0f} of {d_sae}). "
            f"The trainer switches to it at ≤ {measured_switch:.2%} (its own measurement on this machine, `taulib.train.sparse_switch`): "
            + ("every density measured at or below it is faster sparse." if faster_below_switch else "**some density below it is slower sparse.**")
        )
    command = "benchmarks/sparse_latents.py" + (" --quick" if args.quick else "")
    command += f" --section {args.section}" if args.section != "sparse_latents" else ""
    if not args.quick and args.parameters != DEFAULT_PARAMETERS:  # where the activations came from, when not the default study's
        command += f" --parameters {args.parameters} --outputs {args.outputs}"
    body = (
        provenance(command, ("torch",)) + f"\nSAE {x.shape[1]} → {d_sae} latents, batch {batch}, `loss_and_gradients` (forward, loss and the four gradients; "
        f"Adam and the decoder normalisation are the same on both sides), best of {repeats}. Each SAE is a fresh one whose "
        "encoder biases are shifted so that every latent fires on the stated fraction of the batch; a freshly initialised "
        f"SAE fires {fresh:.0%} of its latents on the study's activations.\n\n" + table + "\n" + "\n".join(lines) + "\n"
    )
    if len(dtypes) < len(DTYPES):
        body += f"\n{SKIPPED_BFLOAT16}.\n"
    title = "Sparse latents: the training step's sparse latent side against its dense matmuls (`benchmarks/sparse_latents.py`)"
    if args.section != "sparse_latents":
        title = title.replace(" (`", f" on an {torch.backends.cpu.get_cpu_capability()} CPU (`")
    write_section(
        args.section,
        title,
        body,
        args.results,
    )
    print(body)
    return {"rows": rows, "initial_density": fresh, "crossovers": crossovers}


if __name__ == "__main__":
    main()
