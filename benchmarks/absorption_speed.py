"""Time taulib's absorption evaluation against SAE Bench 0.6.0's on the same SAE, model and data.

    make saebench-check   # once: creates .venv-saebench
    .venv-saebench/bin/python benchmarks/absorption_speed.py [SAE folder] [--vocab N]

Both evaluate the same SAE on the same vocabulary, prompts, residuals and ground-truth probe
(prepared once by taulib and handed to SAE Bench in its own probe-folder layout). What is timed is
the per-SAE work, the part repeated for every checkpoint: SAE Bench's k-sparse probing and
absorption experiment (which reads the model on the absorption prompts, stopped after the hooked
block), against taulib's `evaluate_absorption` (residuals cached once per model and layer). The
one-time preparation is timed separately. Prints the metrics of both and the speed ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from taulib.activations.extraction import ResidualReader
from taulib.activations.models import load_language_model
from taulib.config import ModelConfig
from taulib.interop.export import sae_bench_sae
from taulib.interop.sae_bench import hooked_transformer, run_sae_bench_absorption
from taulib.metrics.absorption.metric import AbsorptionSettings, evaluate_absorption, prepare_absorption_data
from taulib.sae import in_raw_units, load_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sae", nargs="?", default="outputs/cosine_0.3_to_0.05_tightened/final", help="a saved taulib SAE folder")
    parser.add_argument("--vocab", type=int, default=2600, help="absorption vocabulary size")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of taulib's evaluation")
    args = parser.parse_args()
    torch.set_num_threads(2)

    sae, metadata = load_sae(args.sae)
    raw = in_raw_units(sae, metadata)
    loaded = load_language_model(ModelConfig(layer=metadata.layer))
    started = time.perf_counter()
    data = prepare_absorption_data(ResidualReader(loaded, None), loaded.tokenizer, AbsorptionSettings(vocab_size=args.vocab))
    prepare_seconds = time.perf_counter() - started
    model = hooked_transformer(loaded)

    evaluate_absorption(raw, data)  # warm-up
    ours_seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        ours, _ = evaluate_absorption(raw, data)
        ours_seconds.append(time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        theirs, _ = run_sae_bench_absorption(model, sae_bench_sae(raw, metadata.layer), data, metadata.layer, Path(workdir))
        theirs_seconds = time.perf_counter() - started

    best = min(ours_seconds)
    print(f"SAE {args.sae}: {metadata.d_sae} latents, layer {metadata.layer}; vocabulary {args.vocab} words, {ours.letters_evaluated} letters evaluated")
    print(f"one-time preparation by taulib (prompts, float32 residuals, probe): {prepare_seconds:.1f} s")
    print("| | absorption fraction | full absorption | split latents | k=1 F1 | seconds per SAE |")
    print("|---|---|---|---|---|---|")
    print(f"| taulib | {ours.absorption_fraction:.4f} | {ours.full_absorption_rate:.4f} | {ours.mean_split_latents:.3f} | {ours.k1_f1:.4f} | {best:.2f} |")
    print(
        f"| SAE Bench 0.6.0 | {theirs['absorption_fraction']:.4f} | {theirs['full_absorption_rate']:.4f} | {theirs['mean_split_latents']:.3f} | {theirs['k1_f1']:.4f} | {theirs_seconds:.2f} |"
    )
    print(f"speed-up per SAE: {theirs_seconds / best:.1f}x")


if __name__ == "__main__":
    main()
