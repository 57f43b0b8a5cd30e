"""What a run's latent context store (notebook 06) costs to build, per checkpoint and per run, and its size.

    flock -x /tmp/taulib-cpu.lock .venv/bin/python benchmarks/latent_contexts_cost.py
    .venv/bin/python benchmarks/latent_contexts_cost.py --quick --results /tmp/results.md   # seconds

One checkpoint's share of `taulib.analysis.latent_contexts.build_contexts`: encoding every held-out
token with the checkpoint's SAE and keeping each latent's top-k positions, histogram and firing
count (`checkpoint_contexts`, with the window of the latent's activations around each top
position), matching the final SAE's latents to the checkpoint's (Hungarian), and writing the
compressed file. A run's store is that per checkpoint, plus the tokenizer's decoding of the held-out
token ids (loading the tokenizer is timed separately). Data: Gaussian activations in d_model 640 (the
embedded model's width) and an SAE of random unit directions whose threshold makes each latent
fire on 1% of tokens (L0 ≈ width / 100); what compresses depends on how sparse the latents are.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, provenance, write_section  # noqa: E402

from taulib.analysis.latent_contexts import ContextSettings, checkpoint_contexts  # noqa: E402
from taulib.metrics.latent_formation import match_latents  # noqa: E402
from taulib.sae import SparseAutoencoder  # noqa: E402

D_MODEL = 640
SEQUENCE = 127  # the default context of 128, BOS dropped
# the study's profiles (parameters/_study.yaml, _sweep.yaml "full"): (latents, held-out tokens, checkpoints)
PROFILES = {"default": (1024, 65_536, 17), "full": (4096, 131_072, 16)}
FIRING_THRESHOLD = 2.326  # P(N(0, 1) > 2.326) = 1%


def random_sae(width: int, seed: int) -> SparseAutoencoder:
    generator = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(D_MODEL, width)
    directions = torch.nn.functional.normalize(torch.randn(width, D_MODEL, generator=generator), dim=1)
    with torch.no_grad():
        sae.W_dec.copy_(directions)
        sae.W_enc.copy_(directions.T)
        sae.b_enc.fill_(-FIRING_THRESHOLD)
        sae.b_dec.zero_()
    return sae.requires_grad_(False)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=list(PROFILES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny profile, one repeat (a smoke test)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats <= 0:
        parser.error("--repeats must be positive")
    args.sizes = {"quick": (64, 2_048, 3)} if args.quick else {name: PROFILES[name] for name in args.profiles}
    if args.quick:
        args.repeats = 1
    return args


def measure(width: int, tokens: int, repeats: int, settings: ContextSettings) -> dict[str, float]:
    """Median seconds of one checkpoint's pieces, and the bytes of its file."""
    activations = torch.randn(tokens, D_MODEL, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)  # the full profile's storage dtype
    final, checkpoint = random_sae(width, 1), random_sae(width, 2)
    contexts, matching, writing, size = [], [], [], 0
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeats):
            started = time.perf_counter()
            out = checkpoint_contexts(checkpoint, activations, SEQUENCE, settings)
            contexts.append(time.perf_counter() - started)
            started = time.perf_counter()
            match_latents(final.W_dec, checkpoint.W_dec, settings.method)
            matching.append(time.perf_counter() - started)
            started = time.perf_counter()
            path = Path(scratch) / "step.npz"
            with open(path, "wb") as handle:
                np.savez_compressed(handle, **out)
            writing.append(time.perf_counter() - started)
            size = path.stat().st_size
    l0 = float(out["firing"].sum() / tokens)
    return {"contexts": statistics.median(contexts), "matching": statistics.median(matching), "writing": statistics.median(writing), "bytes": size, "l0": l0}


def tokenizer_seconds() -> float:
    from taulib.activations.models import load_tokenizer
    from taulib.config import ModelConfig

    started = time.perf_counter()
    load_tokenizer(ModelConfig())
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse(argv)
    settings = ContextSettings()
    rows, measured = [], {}
    for name, (width, tokens, checkpoints) in args.sizes.items():
        seconds = measure(width, tokens, args.repeats, settings)
        per_checkpoint = seconds["contexts"] + seconds["matching"] + seconds["writing"]
        held_out_ids = tokens * 4  # tokens.npz before compression: int32 ids
        store_bytes = checkpoints * seconds["bytes"] + held_out_ids + width * checkpoints * 8  # + the matching (int32 partner, float32 cosine)
        measured[name] = seconds | {"per_checkpoint": per_checkpoint, "per_run": checkpoints * per_checkpoint, "store_bytes": store_bytes}
        rows.append(
            [name, f"{width:,}", f"{tokens:,}", checkpoints, f"{seconds['l0']:.1f}", seconds["contexts"], seconds["matching"], seconds["writing"],
             per_checkpoint, checkpoints * per_checkpoint, f"{seconds['bytes'] / 2**20:.2f}", f"{store_bytes / 2**20:.1f}"]
        )  # fmt: skip
        print(f"{name}: {per_checkpoint:.2f} s per checkpoint, {checkpoints * per_checkpoint:.1f} s per run, {store_bytes / 2**20:.1f} MiB", flush=True)
    tokenizer = None if args.quick else tokenizer_seconds()
    command = "python benchmarks/latent_contexts_cost.py" + (" --quick" if args.quick else "")
    body = provenance(command, ("torch", "numpy", "scipy", "transformers")) + "\n"
    body += (
        f"One checkpoint of a run's context store (top {settings.top_k} contexts per latent with a window of {settings.window} tokens, "
        f"{settings.histogram_bins}-bin histogram, Hungarian matching; d_model {D_MODEL}, median of {args.repeats}), "
        "and a run's store: that for every checkpoint (the study's profiles; notebook 06 builds one run per arm). "
        "Sizes are the compressed files; the vocabulary (decoded held-out token ids) adds a few hundred KiB.\n\n"
    )
    body += markdown_table(
        ["profile", "latents", "held-out tokens", "checkpoints", "L0", "contexts (s)", "matching (s)", "writing (s)", "per checkpoint (s)", "per run (s)",
         "per checkpoint (MiB)", "per run (MiB)"],
        rows,
    )  # fmt: skip
    if tokenizer is not None:
        body += f"\nLoading the embedded model's tokenizer (once per notebook, to decode the held-out token ids): {tokenizer:.1f} s.\n"
    write_section("latent_contexts_cost", "Latent context store: build cost and size per run (`benchmarks/latent_contexts_cost.py`)", body, args.results)
    return measured


if __name__ == "__main__":
    main()
