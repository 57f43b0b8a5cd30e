"""How taulib's training time grows with the SAE's width and with the number of tokens.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/scaling.py --outputs outputs
    .venv/bin/python benchmarks/scaling.py --quick --results /tmp/results.md   # seconds, synthetic data

Width: the trainer's step (`taulib.train.trainer.optimiser_step` and the dead-latent counter) at
2,048 to 16,384 latents, the study's batch size and compute dtype, on the study's cached
activations; best of `--repeats` runs of `--steps` steps. Tokens: the whole
`AnnealedTrainer.train()` at the study's width for two token budgets, with the study's 16
checkpoints, so the fixed costs (activation statistics, checkpoints, state files) show beside the
per-token cost. The default study's split across its stages is `benchmarks/study_stages.py`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, lscpu, markdown_table, provenance, sae_step_flops, write_section  # noqa: E402
from trainers import TaulibStep, study_activations, timed_batches  # noqa: E402
from training_speed import run_interleaved  # noqa: E402

from taulib.train.trainer import AnnealedTrainer, activation_statistics  # noqa: E402


def five_matmuls(batch: int, d_in: int, d_sae: int, dtype: torch.dtype, repeats: int) -> float:
    """Seconds for the step's five matmuls alone, at its shapes and dtype (the rest of the step shows beside it)."""
    x, g = torch.randn(batch, d_in).to(dtype), torch.randn(batch, d_in).to(dtype)
    f, w_enc, w_dec = torch.randn(batch, d_sae).to(dtype), torch.randn(d_in, d_sae).to(dtype), torch.randn(d_sae, d_in).to(dtype)

    def run() -> None:
        torch.mm(x, w_enc), torch.mm(f, w_dec), torch.mm(f.t(), g), torch.mm(g, w_dec.t()), torch.mm(x.t(), f)

    run()
    return best_of(run, max(repeats, 2) * 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", default="parameters/cosine_0.3_to_0.05_tightened.yaml")
    parser.add_argument("--outputs", default="outputs", help="the outputs folder holding the activation caches")
    parser.add_argument("--widths", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--token-budgets", type=int, nargs="+", default=[262_144, 1_048_576])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data and sizes: checks the script runs")
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.widths, args.token_budgets, args.steps, args.warmup, args.repeats = [128, 256], [2048, 4096], 2, 1, 1
    torch.set_num_threads(1 if args.quick else 2)
    config, train, _ = study_activations(args.parameters, args.outputs, args.quick)
    training = config.training
    dtype = torch.bfloat16 if training.compute_dtype == "bfloat16" else torch.float32
    d_in, batch_size = train.shape[1], training.batch_size
    scale, _ = activation_statistics(train)
    batches = timed_batches(train, batch_size, args.steps, scale)

    widths = []
    for width in args.widths:
        (seconds,) = run_interleaved([TaulibStep(d_in, width, training.lr, dtype)], batches, args.steps, args.warmup, args.repeats)
        matmuls = five_matmuls(batch_size, d_in, width, dtype, args.repeats)
        widths.append(
            {
                "width": width,
                "tokens_per_second": batch_size / seconds,
                "gflops": batch_size / seconds * sae_step_flops(d_in, width) / 1e9,
                "step_ms": seconds * 1e3,
                "matmul_ms": matmuls * 1e3,
            }
        )
    budgets = []
    for tokens in args.token_budgets:
        run = config.model_copy(update={"run_name": "scaling", "training": training.model_copy(update={"n_tokens": tokens})})
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            summary = AnnealedTrainer(run, train, folder, show_progress=False).train()
            wall = time.perf_counter() - started
        budgets.append({"tokens": summary["tokens"], "wall_seconds": wall, "loop_tokens_per_second": summary["tokens_per_second_this_session"]})

    command = "benchmarks/scaling.py" + (" --quick" if args.quick else f" --steps {args.steps} --repeats {args.repeats}")
    text = provenance(command)
    text += f"\nWidth, at d_in {d_in}, batch {batch_size}, {training.compute_dtype} (the trainer's step, best of {args.repeats} × {args.steps} steps):\n\n"
    reference = next((w for w in widths if w["width"] == config.sae.width), widths[0])
    text += markdown_table(
        ["latents", "tokens/s", "seconds per 1M tokens", "GFLOP/s (12·d·m)", f"time vs {reference['width']:,}", "ms per step", "the five matmuls alone, ms"],
        [
            (
                f"{w['width']:,}",
                w["tokens_per_second"],
                1e6 / w["tokens_per_second"],
                w["gflops"],
                f"{reference['tokens_per_second'] / w['tokens_per_second']:.2f}×",
                w["step_ms"],
                f"{w['matmul_ms']:.1f} ({100 * w['matmul_ms'] / w['step_ms']:.0f}%)",
            )
            for w in widths
        ],
    )
    widest = max(args.widths)
    text += (
        "\nThe rest of a step (bias, ReLU and mask passes over the (batch × latents) activations, casts, Adam, decoder"
        f" normalisation) streams through memory; once a float32 (batch × latents) tensor ({batch_size * widest * 4 / 2**20:.0f} MiB"
        f" at {widest:,} latents) outgrows the last-level cache ({lscpu().get('L3 cache', 'size unknown')}), it costs more per latent.\n"
    )
    text += f"\nTokens, the whole `AnnealedTrainer.train()` at {config.sae.width:,} latents with {training.n_checkpoints} checkpoints:\n\n"
    text += markdown_table(
        ["tokens", "wall seconds", "seconds per 1M tokens", "training-loop tokens/s"],
        [(f"{b['tokens']:,}", b["wall_seconds"], b["wall_seconds"] / b["tokens"] * 1e6, b["loop_tokens_per_second"]) for b in budgets],
    )
    if len(budgets) >= 2:
        first, last = budgets[0], budgets[-1]
        per_token = (last["wall_seconds"] - first["wall_seconds"]) / (last["tokens"] - first["tokens"])
        fixed = first["wall_seconds"] - per_token * first["tokens"]
        text += f"\nA straight line through the two: {per_token * 1e6:.1f} s per 1M tokens plus {fixed:.1f} s fixed per run.\n"
    write_section("scaling", "Scaling with width and tokens (`benchmarks/scaling.py`)", text, *([args.results] if args.results else []))
    print(text)
    return {"widths": widths, "budgets": budgets}


if __name__ == "__main__":
    main()
