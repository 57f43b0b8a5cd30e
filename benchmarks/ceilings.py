"""Training and extraction against this machine's matmul ceiling, measured in the same run.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/ceilings.py
    .venv/bin/python benchmarks/ceilings.py --quick --results /tmp/results.md   # a tiny random model, small shapes

At the precision the study picks on this machine (taulib.precision: bfloat16 where the CPU has
AVX512-BF16 or AMX, else float32), one run measures

* the matmul ceiling: the best of a square and the SAE-shaped matmul in that precision
  (benchmarks/common.matmul_ceiling);
* the training step (`taulib.train.trainer.optimiser_step`: forward, hand-written gradients, fused
  Adam, decoder renormalisation) at each width, from initialisation (about half the latents fire:
  dense) and at the density of the study's middle L0 target, forced dense, forced sparse, and with
  the switch the trainer measures for itself (taulib.train.sparse_switch); beside the dense step, its
  five matmuls alone on the kernels it runs them on, so what is not matmul shows;
* extraction: taulib's reader (nnsight, stops after the hooked block) on packed corpus batches;
* the spliced CE/KL's forward from the hooked block's residual (the later blocks, the unembedding and
  its log-partition), with the unembedding on torch's BLAS and on oneDNN.

Throughput is counted in model FLOPs: 12·d_in·d_sae per token for a step (`common.sae_step_flops`;
the sparse step does less arithmetic, so its figure is dense-equivalent), and for extraction
2 × the weights of the embedding-free blocks up to the hooked one plus the attention products
(`extraction_flops_per_token`), and for the splice the later blocks' plus 2 per unembedding weight. The activations of the step timings are the residuals the
extraction timing read, divided by their input scale.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, markdown_table, matmul_ceiling, provenance, sae_step_flops, write_section  # noqa: E402
from extraction_speed import corpus_batches, tiny_model  # noqa: E402
from matmul_kernels import step_matmul_seconds  # noqa: E402

from taulib.activations.extraction import ResidualReader  # noqa: E402
from taulib.activations.models import LoadedModel, decoder_layers, load_language_model  # noqa: E402
from taulib.config import load_run_config  # noqa: E402
from taulib.metrics.downstream.metric import SplicedModel, log_partition  # noqa: E402
from taulib.precision import resolve_autocast, resolve_compute_dtype  # noqa: E402
from taulib.sae import SparseAutoencoder  # noqa: E402
from taulib.train.sparse_switch import machine_crossover, sae_at_density  # noqa: E402
from taulib.train.trainer import activation_statistics, optimiser_step  # noqa: E402

DEFAULT_PARAMETERS = "parameters/cosine_0.3_to_0.05_tightened.yaml"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SPLICE_SEQUENCES = 4  # the evaluation's CE/KL batch: 4 × 128 positions of 262k-word logits (0.5 GB in float32)
COEFFICIENT, LR = 0.8, 1e-5  # a small learning rate keeps the timed SAE at its density over the timed steps


def cpu_class() -> str:
    """What sets this CPU's matmul speed: AMX, AVX512-BF16, else torch's vector capability (AVX2, AVX512…)."""
    from taulib.precision import cpu_flags

    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return torch.backends.cpu.get_cpu_capability()


def block_flops_per_token(loaded: LoadedModel, blocks: slice, context_length: int) -> float:
    """Model FLOPs per token of the decoder blocks `blocks`: 2 per weight of their matrices, plus the
    attention's two products, 2·2·heads·head_dim per attended position, over (context_length + 1)/2
    positions on average (causal)."""
    chosen = list(decoder_layers(loaded.model))[blocks]
    weights = sum(p.numel() for block in chosen for p in block.parameters() if p.ndim == 2)
    config = getattr(loaded.model.config, "text_config", loaded.model.config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 4 * config.num_attention_heads * head_dim * (context_length + 1) / 2 * len(chosen)
    return 2 * weights + attention


def extraction_flops_per_token(loaded: LoadedModel, context_length: int) -> float:
    """The forward up to and including the hooked block (the embedding is a lookup)."""
    return block_flops_per_token(loaded, slice(0, loaded.layer + 1), context_length)


def splice_flops_per_token(loaded: LoadedModel, context_length: int) -> float:
    """A splice's forward from the hooked block's output: the later blocks and the vocabulary-wide unembedding."""
    unembedding = loaded.model.get_output_embeddings().weight
    return block_flops_per_token(loaded, slice(loaded.layer + 1, None), context_length) + 2 * unembedding.numel()


def time_splice(loaded: LoadedModel, batch: torch.Tensor, autocast: str | None, repeats: int) -> dict[str, float]:
    """Tokens/s of a splice's forward from the residual (`SplicedModel.head_from_residual`, then the
    log-partition the CE and KL need) on the clean residual, with the unembedding on torch's BLAS and
    on oneDNN (what `downstream_metrics` runs where it applies), best of `repeats` each, alternating."""
    model = SplicedModel(loaded, autocast)
    residual = model.residuals(batch)

    def splice() -> None:
        log_partition(model.head_from_residual(batch, residual).logits)

    seconds = {"model's own unembedding": float("inf"), "unembedding on oneDNN": float("inf")}
    with model.weights_cast_once():
        for _ in range(repeats + 1):  # the first round warms up
            for name in seconds:
                with model.unembedding_on_onednn() if "oneDNN" in name else contextlib.nullcontext():
                    seconds[name] = min(seconds[name], best_of(splice, 1))
    return {name: batch.numel() / value for name, value in seconds.items()}


def time_extraction(loaded: LoadedModel, batches: list[torch.Tensor], autocast: str | None, repeats: int) -> tuple[float, torch.Tensor]:
    """Tokens/s of the study's reader over `batches` (best of `repeats` after a warm-up batch), and the residuals it read."""
    reader = ResidualReader(loaded, autocast)
    masks = [torch.ones_like(batch) for batch in batches]
    reader(batches[0], masks[0])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        residuals = [reader(batch, mask) for batch, mask in zip(batches, masks, strict=True)]
        best = min(best, time.perf_counter() - started)
    tokens = sum(batch.numel() for batch in batches)
    # the residuals without each sequence's BOS position (its norm is far from the rest; the study drops it too)
    return tokens / best, torch.cat([r[:, 1:].reshape(-1, r.shape[-1]).float() for r in residuals])


def median_step_seconds(sae: SparseAutoencoder, x: torch.Tensor, dtype: torch.dtype, switch: float, steps: int) -> float:
    optimiser = torch.optim.Adam(sae.parameters(), lr=LR, fused=True)
    optimiser_step(sae, optimiser, x, COEFFICIENT, LR, dtype, switch)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        optimiser_step(sae, optimiser, x, COEFFICIENT, LR, dtype, switch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_training(x: torch.Tensor, width: int, dtype: torch.dtype, l0: float, steps: int, repeats: int) -> list[dict[str, Any]]:
    """The step from initialisation and at density l0/width, on the batch x (float32, scaled)."""
    fresh = SparseAutoencoder(x.shape[1], width)
    fresh.initialise(torch.Generator().manual_seed(0), x.mean(dim=0))
    with torch.no_grad():
        fresh_density = float((fresh.encode(x) > 0).float().mean())
    switch = machine_crossover(x, width, dtype)
    density = l0 / width
    rows = [
        {"state": f"initialisation ({fresh_density:.0%} active)", "side": "dense", "seconds": median_step_seconds(fresh, x, dtype, 0.0, steps)},
        {
            "state": f"L0 {l0:g} ({density:.2%} active)",
            "side": "dense",
            "seconds": median_step_seconds(sae_at_density(x, width, density), x, dtype, 0.0, steps),
        },
        {
            "state": f"L0 {l0:g} ({density:.2%} active)",
            "side": "sparse",
            "seconds": median_step_seconds(sae_at_density(x, width, density), x, dtype, 1.0, steps),
        },
    ]
    chosen = "sparse" if density <= switch else "dense"
    for row in rows:
        row.update(width=width, matmuls=None, chosen=row["side"] == chosen if row["state"].startswith("L0") else True, switch=switch)
    rows[0]["matmuls"] = step_matmul_seconds(x.shape[0], x.shape[1], width, dtype, repeats)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", default=DEFAULT_PARAMETERS, help="model, layer, context length, batch sizes and the L0 target")
    parser.add_argument("--widths", default="1024,4096")
    parser.add_argument("--l0", type=float, default=50, help="the density the sparse regime is timed at, in active latents per token")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per row (their median)")
    parser.add_argument("--batches", type=int, default=2, help="extraction batches timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny random model and small shapes: checks the script runs")
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--section", default=None, help="the RESULTS.md section to (re)write (default: ceilings_<CPU class>, one per kind of CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if args.quick else 2)
    if args.quick:
        loaded, context_length, batch_size, batch = tiny_model(), 16, 2, 64
        widths, args.l0, args.steps, args.batches, args.repeats = [64, 128], 4, 2, 1, 1
    else:
        config = load_run_config(args.parameters)
        loaded, context_length, batch_size = load_language_model(config.model), config.activations.context_length, config.activations.batch_size
        batch, widths = config.training.batch_size, [int(w) for w in args.widths.split(",")]
    machine = cpu_class()
    section = args.section or "ceilings_" + machine.lower().replace("-", "_")
    dtype_name = resolve_compute_dtype("auto", "cpu")
    autocast = resolve_autocast("auto", "cpu")
    dtype = DTYPES[dtype_name]

    ceilings = matmul_ceiling(args.repeats, dtypes=(dtype_name,))
    ceiling = max(value for key, value in ceilings.items() if dtype_name in key)
    batches = corpus_batches(loaded, context_length, batch_size, args.batches, args.quick)
    tokens_per_second, residuals = time_extraction(loaded, batches, autocast, args.repeats)
    flops_per_token = extraction_flops_per_token(loaded, context_length)
    splice_batch = batches[0][: 2 if args.quick else SPLICE_SEQUENCES]
    splice = time_splice(loaded, splice_batch, autocast, args.repeats)
    splice_flops = splice_flops_per_token(loaded, context_length)
    scale, _ = activation_statistics(residuals)
    generator = torch.Generator().manual_seed(0)
    x = (residuals[torch.randperm(residuals.shape[0], generator=generator)[:batch]] / scale).contiguous()

    training = [row for width in widths for row in time_training(x, width, dtype, args.l0, args.steps, args.repeats)]
    table = []
    for row in training:
        flops = sae_step_flops(x.shape[1], row["width"]) * batch
        gflops = flops / row["seconds"] / 1e9
        matmuls = f"{row['matmuls'] * 1e3:.1f} ({row['matmuls'] / row['seconds']:.0%} of the step)" if row["matmuls"] else ""
        row.update(tokens_per_second=batch / row["seconds"], gflops=gflops, share=gflops / ceiling)
        table.append(
            (
                f"{row['width']:,}",
                row["state"],
                row["side"] + (" ← the trainer's choice" if row["chosen"] and row["state"].startswith("L0") else ""),
                f"{row['seconds'] * 1e3:.1f}",
                f"{row['tokens_per_second']:,.0f}",
                f"{gflops:.0f}",
                f"{row['share']:.0%}",
                matmuls,
            )
        )
    extraction_gflops = tokens_per_second * flops_per_token / 1e9

    command = "benchmarks/ceilings.py" + (" --quick" if args.quick else f" --steps {args.steps} --repeats {args.repeats}")
    command += f" --section {args.section}" if args.section else ""
    body = provenance(command) + "\n"
    body += f"Precision the study picks here (taulib.precision): SAE compute **{dtype_name}**, model autocast **{autocast or 'none (float32)'}**.\n\n"
    body += "Matmul ceilings measured in this run (GFLOP/s):\n\n" + markdown_table(["matmul", "GFLOP/s"], [(k, f"{v:.0f}") for k, v in ceilings.items()])
    body += f"\nThe {dtype_name} ceiling below is the best {dtype_name} figure above: **{ceiling:.0f} GFLOP/s**.\n\n"
    body += (
        f"**Training step** (batch {batch}, d_in {x.shape[1]}; median of {args.steps} steps; GFLOP/s counts 12·d_in·d_sae per token, "
        "dense-equivalent for the sparse side; the trainer's sparse switch is its own measurement on this machine):\n\n"
    )
    body += markdown_table(["latents", "state", "side", "ms per step", "tokens/s", "GFLOP/s", "of the ceiling", "the five matmuls alone, ms"], table)
    switches = ", ".join(f"{width:,} latents ≤ {next(r['switch'] for r in training if r['width'] == width):.2%}" for width in widths)
    body += f"\nThe trainer's measured switch to the sparse side: {switches} active.\n\n"
    body += (
        f"**Extraction** ({loaded.name}, residual stream after block {loaded.layer} of {loaded.n_layers}; {len(batches)} batches of "
        f"{batch_size} × {context_length} tokens, best of {args.repeats}): {tokens_per_second:,.0f} tokens/s × "
        f"{flops_per_token / 1e6:.0f} MFLOP per token = {extraction_gflops:.0f} GFLOP/s, **{extraction_gflops / ceiling:.0%} of the ceiling**.\n"
    )
    title = f"Training and extraction against the matmul ceiling on {'an' if machine[0] in 'AEIOU' else 'a'} {machine} CPU (`benchmarks/ceilings.py`)"
    body += (
        f"\n**Spliced forward** (the CE/KL's per-SAE work: blocks {loaded.layer + 1}–{loaded.n_layers - 1}, the final norm, the "
        f"{loaded.model.get_output_embeddings().weight.shape[0]:,}-word unembedding and its log-partition, from the residual after "
        f"block {loaded.layer}; {len(splice_batch)} sequences of {context_length} tokens, best of {args.repeats}; "
        f"{splice_flops / 1e6:.0f} MFLOP per token):\n\n"
    )
    body += markdown_table(
        ["unembedding", "ms per token", "GFLOP/s", "of the ceiling"],
        [(name, f"{1e3 / speed:.2f}", f"{speed * splice_flops / 1e9:.0f}", f"{speed * splice_flops / 1e9 / ceiling:.0%}") for name, speed in splice.items()],
    )
    write_section(section, title, body, *([args.results] if args.results else []))
    print(body)
    return {
        "section": section,
        "ceiling": ceiling,
        "training": training,
        "extraction_gflops": extraction_gflops,
        "extraction_share": extraction_gflops / ceiling,
        "splice": splice,
    }


if __name__ == "__main__":
    main()
