"""Extraction throughput: taulib's nnsight reader against a full forward and a bare truncated forward.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/extraction_speed.py
    .venv/bin/python benchmarks/extraction_speed.py --quick --results /tmp/results.md   # a tiny random model

On the same packed corpus batches (the study's context length and batch size) and the same model
(the embedded Gemma 3 270M, hooked after block 9), reading the residual stream after the block:

* taulib: `taulib.activations.extraction.ResidualReader` (nnsight trace, saves the block's output, stops there);
* full forward: `AutoModelForCausalLM(...)(..., output_hidden_states=True).hidden_states[layer + 1]`,
  i.e. every block, the final norm and the 262k-way unembedding;
* bare truncated forward: the same model call with a plain forward hook on the block that keeps its
  output and raises, so nothing after the block runs: the floor any stop-early reader can reach.

Each in float32 and under bfloat16 autocast (the study's setting), the three interleaved, best of
`--repeats` passes over `--batches` batches after a warm-up batch. The readers' outputs are
checked to agree before anything is timed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SKIPPED_BFLOAT16, markdown_table, provenance, time_bfloat16, write_section  # noqa: E402

from taulib.activations.extraction import ResidualReader  # noqa: E402
from taulib.activations.models import LoadedModel, decoder_layers, load_language_model  # noqa: E402
from taulib.config import load_run_config  # noqa: E402

Reader = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Stop(Exception):
    """Raised by the hook to end the forward after the hooked block."""


def bare_truncated(loaded: LoadedModel) -> Reader:
    block = decoder_layers(loaded.model)[loaded.layer]

    @torch.inference_mode()
    def read(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        captured: dict[str, torch.Tensor] = {}

        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            captured["hidden"] = output[0] if isinstance(output, tuple) else output
            raise _Stop

        handle = block.register_forward_hook(hook)
        try:
            loaded.model(input_ids=input_ids, attention_mask=attention_mask)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured["hidden"]

    return read


def full_forward(loaded: LoadedModel) -> Reader:
    @torch.inference_mode()
    def read(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return loaded.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[loaded.layer + 1]

    return read


def tiny_model() -> LoadedModel:
    """A random 4-block Gemma 3 with a 512-word tokenizer, built in memory (for --quick)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    vocabulary = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{f"w{i}": i + 4 for i in range(508)}}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    config = Gemma3TextConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=64
    )
    torch.manual_seed(0)
    return LoadedModel(Gemma3ForCausalLM(config).eval().requires_grad_(False), tokenizer, "tiny random Gemma 3", 4, 64, 1)


def corpus_batches(loaded: LoadedModel, context_length: int, batch_size: int, count: int, quick: bool) -> list[torch.Tensor]:
    if quick:
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(4, 512, (count * batch_size, context_length), generator=generator)
        ids[:, 0] = loaded.bos_token_id
    else:
        from taulib.corpus import iter_documents, token_sequences

        ids = torch.stack(list(token_sequences(iter_documents("train", seed=0), loaded.tokenizer, context_length, count * batch_size)))
    return list(ids.split(batch_size))


def measure(readers: dict[str, Reader], batches: list[torch.Tensor], autocast: bool, repeats: int) -> dict[str, float]:
    """Tokens per second of each reader over all batches, interleaved, best of `repeats` after a warm-up."""
    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else (lambda: torch.autocast("cpu", enabled=False))
    masks = [torch.ones_like(batch) for batch in batches]
    with context():
        outputs = [reader(batches[0], masks[0]).float() for reader in readers.values()]
    for name, output in zip(readers, outputs, strict=True):
        # bf16 autocast rounds differently along different code paths; float32 must agree closely
        tolerance = 0.05 if autocast else 1e-3
        error = float((output - outputs[0]).norm() / outputs[0].norm())
        if error > tolerance:
            raise AssertionError(f"{name} reads a different residual stream (relative error {error:.2g})")
    tokens = sum(batch.numel() for batch in batches)
    best = dict.fromkeys(readers, float("inf"))
    for _ in range(repeats):
        for name, reader in readers.items():
            started = time.perf_counter()
            with context():
                for batch, mask in zip(batches, masks, strict=True):
                    reader(batch, mask)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: tokens / seconds for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", default="parameters/cosine_0.3_to_0.05_tightened.yaml", help="model, layer, context length and batch size")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny random model and batches: checks the script runs")
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if args.quick else 2)
    if args.quick:
        loaded, context_length, batch_size, args.batches, args.repeats = tiny_model(), 16, 2, 1, 1
    else:
        config = load_run_config(args.parameters)
        loaded, context_length, batch_size = load_language_model(config.model), config.activations.context_length, config.activations.batch_size
    batches = corpus_batches(loaded, context_length, batch_size, args.batches, args.quick)
    autocasts = (False, True) if time_bfloat16(args.quick) else (False,)
    rows = []
    for autocast in autocasts:
        readers = {
            "taulib (nnsight, stops after the block)": ResidualReader(loaded, "bfloat16" if autocast else None),
            "full forward": full_forward(loaded),
            "bare truncated forward": bare_truncated(loaded),
        }
        # ResidualReader applies its own autocast; the outer context is then a no-op for it
        speeds = measure(readers, batches, autocast, args.repeats)
        for name, speed in speeds.items():
            rows.append({"reader": name, "dtype": "bfloat16 autocast" if autocast else "float32", "tokens_per_second": speed})

    command = "benchmarks/extraction_speed.py" + (" --quick" if args.quick else f" --batches {args.batches} --repeats {args.repeats}")
    text = provenance(command)
    text += f"\n{loaded.name}, residual stream after block {loaded.layer} of {loaded.n_layers}; {len(batches)} batches of {batch_size} × {context_length} tokens (BOS included), best of {args.repeats}.\n\n"
    table, lines = [], []
    for dtype in ("float32", "bfloat16 autocast")[: len(autocasts)]:
        by = {row["reader"]: row["tokens_per_second"] for row in rows if row["dtype"] == dtype}
        ours, full, bare = by["taulib (nnsight, stops after the block)"], by["full forward"], by["bare truncated forward"]
        for reader, speed in by.items():
            table.append((reader, dtype, speed, f"{speed / full:.2f}×", f"{speed / bare:.2f}×"))
        lines.append(
            f"- {dtype}: taulib is {ours / full:.2f}× the full forward (goal ≥ 2×: {'met' if ours >= 2 * full else 'not met'}) and "
            f"{100 * (ours / bare - 1):+.1f}% against the bare truncated forward (goal within 10%: {'met' if ours >= 0.9 * bare else 'not met'})."
        )
    text += markdown_table(["reader", "dtype", "tokens/s", "vs full forward", "vs bare truncated"], table) + "\n" + "\n".join(lines) + "\n"
    if len(autocasts) == 1:
        text += f"\n{SKIPPED_BFLOAT16}.\n"
    write_section("extraction_speed", "Extraction throughput (`benchmarks/extraction_speed.py`)", text, *([args.results] if args.results else []))
    print(text)
    return {"rows": rows}


if __name__ == "__main__":
    main()
