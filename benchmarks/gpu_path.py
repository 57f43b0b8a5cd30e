"""The GPU path end to end: the study's own extraction, training and evaluation code on a CUDA device.

    .venv/bin/python benchmarks/gpu_path.py                                  # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu_path.py --device cpu --quick --results /tmp/results.md   # checks it runs

With the parameters a GPU user sets (`model.device`, `training.device`: cuda; the model's weights in
bfloat16 without autocast, as the gemma-2-2b profile has them; float32 on a device without fast
bfloat16, see taulib.precision) and the embedded Gemma 3 270M, it:

1. loads the model and extracts `--tokens` training tokens (and the held-out split) of the residual
   stream after the study's layer with `taulib.activations.extraction` (nnsight, the forward stopped after the
   block) into an activation cache, and prepares the metrics' model-side inputs;
2. trains the tightened arm's SAE with `AnnealedTrainer` on that cache, held in GPU memory
   (`activation_storage: device`), at each `--widths`, and evaluates every checkpoint of the first
   (core, spliced CE/KL, orthogonality, absorption; sparse probing needs the labelled text of
   `python -m taulib corpus` and runs on the CPU, so it is left out here);
3. trains on random activations of the original study's shape (gemma-2-2b: d_model 2,304,
   16,384 latents, batch 4,096) to measure that SAE's training step, which the model does not affect.

Tokens per second are the study's own counters (the extraction manifest, the trainer's summary),
so they include everything those loops do (tokenising, writing shards, logging, checkpoints).
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
from common import markdown_table, provenance, sae_step_flops, write_section  # noqa: E402

from taulib import atomic  # noqa: E402
from taulib.activations.cache import (
    activation_spec,
    cache_folder,
    load_cache,  # noqa: E402
)
from taulib.activations.extraction import ensure_activations  # noqa: E402
from taulib.activations.models import load_language_model  # noqa: E402
from taulib.config import load_run_config  # noqa: E402
from taulib.metrics.evaluate import evaluate_run, prepare_evaluation_data  # noqa: E402
from taulib.precision import fast_bfloat16  # noqa: E402
from taulib.train.trainer import AnnealedTrainer  # noqa: E402

GPU_FAMILIES = ["core", "downstream", "orthogonality", "absorption"]
QUICK_FAMILIES = ["core", "downstream", "orthogonality"]  # absorption needs its full vocabulary to have letters to score


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", default="parameters/cosine_0.3_to_0.05_tightened.yaml", help="the arm whose settings are used")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--outputs", type=Path, default=None, help="outputs folder (default: a temporary one)")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="training tokens extracted")
    parser.add_argument("--train-tokens", type=int, default=2_000_000, help="tokens each SAE trains on (passes over the cache)")
    parser.add_argument("--widths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--original-tokens", type=int, default=4_096_000, help="tokens of the gemma-2-2b-shaped SAE's run (0: skip)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.train_tokens, args.widths, args.batch_size, args.original_tokens = 4096, 8192, [256], 512, 4096
    args.families = QUICK_FAMILIES if args.quick else GPU_FAMILIES
    return args


def overrides(args: argparse.Namespace, width: int, train_tokens: int, run_name: str = "gpu-path") -> dict[str, Any]:
    return {
        "run_name": run_name,
        "model": {"device": args.device, "dtype": "bfloat16" if fast_bfloat16(args.device) else "float32", "autocast": None},
        "activations": {"n_tokens": args.tokens, "heldout_tokens": min(65_536, args.tokens), "batch_size": 64},
        "sae": {"width": width},
        "training": {
            "device": args.device,
            "activation_storage": "device",
            "compute_dtype": "auto",
            "n_tokens": train_tokens,
            "batch_size": args.batch_size,
            "n_checkpoints": 4,
        },
        # every checkpoint's CE/KL on the same sequences (the study's larger final-checkpoint set aside), as timed before
        "evaluation": {"families": args.families, "core": {"tokens": min(16_384, args.tokens)}, "downstream": {"sequences": 16 if not args.quick else 2, "final_sequences": None}},
    }


def synchronise(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    outputs = args.outputs or Path(tempfile.mkdtemp(prefix="taulib-gpu-path-"))
    config = load_run_config(args.parameters, overrides(args, args.widths[0], args.train_tokens))

    started = time.perf_counter()
    loaded = load_language_model(config.model)
    synchronise(args.device)
    load_seconds = time.perf_counter() - started
    folders = ensure_activations(config, loaded, outputs)
    extraction = atomic.read_json(folders["train"] / "manifest.json")["stats"]
    started = time.perf_counter()
    prepare_evaluation_data(config, loaded, outputs)
    preparation_seconds = time.perf_counter() - started

    layer = loaded.layer
    spec = activation_spec(config, "train", layer)
    cache = load_cache(cache_folder(outputs, spec), spec).activations
    d_model = cache.shape[1]
    trained: list[dict[str, Any]] = []
    evaluation_row: dict[str, Any] | None = None
    for index, width in enumerate(args.widths):
        run_config = load_run_config(args.parameters, overrides(args, width, args.train_tokens, f"gpu-path-w{width}"))
        summary = AnnealedTrainer(run_config, cache, outputs / run_config.run_name, layer=layer).train()
        trained.append({"shape": f"{d_model} → {width}", "data": "extracted", **summary})
        if index == 0:
            started = time.perf_counter()
            table = evaluate_run(outputs / run_config.run_name, outputs, model=loaded, evaluation=run_config.evaluation)
            synchronise(args.device)
            evaluation_row = {"seconds": time.perf_counter() - started, "checkpoints": len(table), "final": table.iloc[-1].to_dict()}
    del loaded, cache

    if args.original_tokens:
        # the original study's SAE shape; the data is random, which the step's cost does not depend on
        d_in, width = (2304, 16_384) if not args.quick else (64, 256)
        rows = max(args.batch_size * 8, 65_536 if not args.quick else 4096)
        random_cache = torch.randn(rows, d_in, generator=torch.Generator().manual_seed(0))
        run_config = load_run_config(args.parameters, overrides(args, width, args.original_tokens, "gpu-path-gemma-2-2b-shape"))
        summary = AnnealedTrainer(run_config, random_cache, outputs / run_config.run_name, layer=layer).train()
        trained.append({"shape": f"{d_in} → {width}", "data": "random", **summary})

    device_name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "CPU"
    body = provenance(f"benchmarks/gpu_path.py {' '.join(argv if argv is not None else sys.argv[1:])}".strip(), ("torch", "transformers", "nnsight"))
    body += f"Device: {device_name} (`model.device` and `training.device`: {args.device}; model weights {config.model.dtype}, no autocast).\n\n"
    body += f"**Extraction** ({config.model.name}, residual stream after block {spec.layer}, context {spec.context_length}, batch {config.activations.batch_size}): "
    body += f"{extraction['tokens_this_session']:,} tokens at **{extraction['tokens_per_second']:,.0f} tokens/s** "
    body += f"(model load {load_seconds:.1f} s; the metrics' model-side inputs {preparation_seconds:.1f} s).\n\n"
    body += (
        f"**Training** (`AnnealedTrainer`, {config.training.compute_dtype} matmuls, float32 weights and Adam, batch {args.batch_size}, "
        f"the cache in device memory{'' if args.quick else '; the random activations have gemma-2-2b width, d_model 2,304'}):\n\n"
    )
    table_rows = []
    for row in trained:
        d_in, width = (int(value) for value in row["shape"].split(" → "))
        tflops = row["tokens_per_second_this_session"] * sae_step_flops(d_in, width) / 1e12
        table_rows.append(
            [
                row["shape"],
                row["data"],
                f"{row['tokens']:,}",
                f"{row['train_seconds_this_session']:.1f}",
                f"{row['tokens_per_second_this_session']:,.0f}",
                f"{tflops:.1f}",
                f"{row['final']['l0']:.1f}",
                f"{row['final']['explained_variance']:.3f}",
            ]
        )
    body += markdown_table(["SAE", "activations", "tokens", "seconds", "tokens/s", "TFLOP/s (12·d·w)", "last batch L0", "last batch EV"], table_rows)
    if evaluation_row is not None:
        final = evaluation_row["final"]
        body += (
            f"\n**Evaluation** of the {args.widths[0]}-latent run's {evaluation_row['checkpoints']} checkpoints ({', '.join(args.families)}): "
            f"{evaluation_row['seconds']:.1f} s in all; final held-out L0 {final.get('l0', float('nan')):.1f}, explained variance "
            f"{final.get('explained_variance', float('nan')):.3f}, CE-loss score {final.get('ce_loss_score', float('nan')):.3f}.\n"
        )
    write_section("gpu_path", "The GPU path (`benchmarks/gpu_path.py`)", body, args.results or Path(__file__).resolve().parent / "RESULTS.md")
    print(body)
    return {"extraction": extraction, "trained": trained, "evaluation": evaluation_row}


if __name__ == "__main__":
    main()
