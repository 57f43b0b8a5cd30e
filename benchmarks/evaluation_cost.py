"""Per-checkpoint evaluation cost, by metric family: one checkpoint at a time with whole forwards (before)
against checkpoints together with the split forward (after), side by side on one trained run.

    .venv/bin/python benchmarks/evaluation_cost.py [run folder] [outputs] [--write]

Needs the run trained and the evaluation inputs prepared (`python -m taulib extract`, then `train`).
A chunk of the run's checkpoints (taulib.metrics.evaluate.DOWNSTREAM_CHUNK, evenly spaced) is evaluated
both ways, family by family:

* before: core, orthogonality, absorption and probing one checkpoint at a time; the spliced CE/KL with
  whole forwards spliced through nnsight (`downstream_metrics_full_forward`: clean and zero-ablated
  forwards once per chunk, one whole forward per checkpoint, and for the final checkpoint all three
  again on its further sequences);
* after: what `evaluate_run` does now: the chunk through the held-out activations and probing
  residuals together, and CE/KL from the cached splice reference (residual at the layer, clean and
  zero-ablated losses), running the later blocks only.

Absorption runs per checkpoint either way (timed once). The CE/KL of a chunk is timed at one and at
all of its checkpoints (fixed cost per chunk + cost per checkpoint), the final checkpoint's further
sequences on a sample of them (per sequence), and both are combined for the run's own schedule
(its checkpoint count in chunks, `ce_final_sequences`). Each CE/KL figure is the best of 2; the
others are single timings of the whole chunk. `--write` puts the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from taulib import atomic
from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.models import load_language_model
from taulib.config import RunConfig
from taulib.metrics.absorption import AbsorptionData, evaluate_absorption
from taulib.metrics.core import reconstruction_metrics, reconstruction_metrics_many
from taulib.metrics.downstream import SplicedModel, downstream_metrics, downstream_metrics_full_forward, splice_reference
from taulib.metrics.evaluate import CE_SEQUENCES_FILE, DOWNSTREAM_CHUNK, absorption_settings, evaluation_data_folder, probing_settings
from taulib.metrics.orthogonality import covariance_factor, orthogonality_metrics
from taulib.metrics.probing import ProbingData, evaluate_sparse_probing, evaluate_sparse_probing_many
from taulib.sae import in_raw_units, load_sae
from taulib.train.trainer import read_checkpoint_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, markdown_table, provenance, write_section  # noqa: E402

FINAL_SAMPLE_SEQUENCES = 8  # the final checkpoint's further sequences are timed on this many, then scaled


def once(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def chunk_sizes(checkpoints: int) -> list[int]:
    return [min(DOWNSTREAM_CHUNK, checkpoints - start) for start in range(0, checkpoints, DOWNSTREAM_CHUNK)]


def main(run_dir: Path, outputs: Path, write: bool) -> None:
    torch.set_num_threads(2)
    config = RunConfig.model_validate(atomic.read_json(run_dir / "config.json")["config"])
    e = config.evaluation
    index = read_checkpoint_index(run_dir)
    picks = np.unique(np.linspace(0, len(index) - 1, min(DOWNSTREAM_CHUNK, len(index))).round().astype(int))
    loaded_saes = [load_sae(run_dir / "checkpoints" / f"step_{index[i]['step']:07d}") for i in picks]
    saes = [in_raw_units(sae, metadata) for sae, metadata in loaded_saes]
    layer, k = loaded_saes[0][1].layer, len(saes)
    folder = evaluation_data_folder(outputs, config, layer)
    spec = activation_spec(config, "heldout", layer)
    heldout = load_cache(cache_folder(outputs, spec), spec).activations[: e.core_tokens].float()
    factor = covariance_factor(heldout)
    absorption = AbsorptionData.load(folder, absorption_settings(config))
    probing = ProbingData.load(folder, probing_settings(config))
    autocast = config.training.compute_dtype == "bfloat16"
    sequences = load_file(str(folder / CE_SEQUENCES_FILE))["input_ids"]
    spliced = SplicedModel(load_language_model(config.model.model_copy(update={"layer": layer})), config.model.autocast)

    # model-free families: seconds per checkpoint over the chunk
    alive = [reconstruction_metrics(sae, heldout)[1] > 0 for sae in saes]  # also warms up
    rows = []
    core_before = once(lambda: [reconstruction_metrics(sae, heldout, dense_threshold=e.dense_threshold) for sae in saes]) / k
    core_after = once(lambda: reconstruction_metrics_many(saes, heldout, dense_threshold=e.dense_threshold)) / k
    rows.append([f"core ({len(heldout):,} held-out tokens)", core_before, core_after])
    ortho = lambda: [orthogonality_metrics(sae, e.near_duplicate_threshold, alive=a, activation_covariance_factor=factor) for sae, a in zip(saes, alive, strict=True)]  # noqa: E731
    ortho()  # the random baselines are cached per shape: warm them as a run's first checkpoint does
    ortho_seconds = once(ortho) / k
    rows.append(["orthogonality (unchanged: per checkpoint)", ortho_seconds, ortho_seconds])
    absorption_seconds = once(lambda: [evaluate_absorption(sae, absorption) for sae in saes]) / k
    rows.append([f"absorption ({len(absorption.train_words) + len(absorption.test_words):,} words; unchanged: per checkpoint)", absorption_seconds, absorption_seconds])
    probing_tokens = sum(len(t.token_acts) for t in probing.tasks)
    probing_before = once(lambda: [evaluate_sparse_probing(sae, probing, autocast=autocast) for sae in saes]) / k
    probing_after = once(lambda: evaluate_sparse_probing_many(saes, probing, autocast=autocast)) / k
    rows.append([f"sparse probing ({probing_tokens:,} tokens, {sum(len(t.binary_tasks) for t in probing.tasks)} binary tasks)", probing_before, probing_after])

    # spliced CE/KL: per chunk (fixed + per checkpoint) on ce_sequences, per further sequence of the final checkpoint
    first, extra = sequences[: e.ce_sequences], sequences[e.ce_sequences : e.ce_sequences + FINAL_SAMPLE_SEQUENCES]
    reference_seconds = once(lambda: splice_reference(spliced, first, e.ce_batch_size))
    reference = splice_reference(spliced, first, e.ce_batch_size)
    extra_reference = splice_reference(spliced, extra, e.ce_batch_size)
    downstream_metrics_full_forward(spliced, first[:1, :8], saes[:1], 1)  # warm-up (nnsight's first trace)
    b = e.ce_batch_size

    def schedule(one: float, chunk: float, further: float) -> float:
        """A run's CE/KL seconds per checkpoint: its chunks (fixed + per checkpoint) and the final's further sequences."""
        per_checkpoint = (chunk - one) / (k - 1)
        fixed = one - per_checkpoint
        further_sequences = e.ce_sequences_needed() - e.ce_sequences
        total = sum(fixed + size * per_checkpoint for size in chunk_sizes(len(index))) + further * further_sequences
        return total / len(index)

    before = schedule(
        best_of(lambda: downstream_metrics_full_forward(spliced, first, saes[:1], b), 2),
        best_of(lambda: downstream_metrics_full_forward(spliced, first, saes, b), 2),
        best_of(lambda: downstream_metrics_full_forward(spliced, extra, saes[-1:], b), 2) / len(extra),
    )
    after = schedule(
        best_of(lambda: downstream_metrics(spliced, first, saes[:1], b, reference=reference), 2),
        best_of(lambda: downstream_metrics(spliced, first, saes, b, reference=reference), 2),
        best_of(lambda: downstream_metrics(spliced, extra, saes[-1:], b, reference=extra_reference), 2) / len(extra),
    )
    ce_tokens = e.ce_sequences * config.activations.context_length
    rows.append([f"CE/KL spliced ({ce_tokens:,} tokens a checkpoint, {e.ce_sequences_needed() * config.activations.context_length:,} the final)", before, after])
    rows.append(["**total**", sum(r[1] for r in rows), sum(r[2] for r in rows)])
    reference_once = reference_seconds / len(first) * e.ce_sequences_needed()

    table = markdown_table(["family", "before: s per checkpoint", "after: s per checkpoint", "speed-up"], [[*r, f"{r[1] / r[2]:.2f}×"] for r in rows])
    chunks = chunk_sizes(len(index))
    notes = (
        f"Run `{run_dir.name}`: {saes[0].d_sae:,} latents, {len(index)} checkpoints (evaluated in chunks of {', '.join(map(str, chunks))}), "
        f"layer {layer}, model autocast {config.model.autocast}, SAE compute {config.training.compute_dtype}; "
        f"timed on {k} of its checkpoints. CE/KL per checkpoint includes the run's share of the clean and zero-ablated work "
        f"and of the final checkpoint's {e.ce_sequences_needed() - e.ce_sequences} further sequences "
        f"(timed on {len(extra)}, scaled). After, the splice reference (residuals at the layer, clean and zero-ablated "
        f"losses) is computed once per model and layer with the evaluation inputs: {reference_once:.0f} s for "
        f"{e.ce_sequences_needed()} sequences (timed on {len(first)}, scaled), shared by every run.\n"
    )
    print(table)
    print(notes)
    if write:
        command = f"benchmarks/evaluation_cost.py {run_dir} {outputs} --write"
        write_section("evaluation_cost", "Evaluation: checkpoints one at a time vs together (`benchmarks/evaluation_cost.py`)", provenance(command) + "\n" + table + "\n" + notes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=Path("outputs/cosine_0.3_to_0.05_tightened"))
    parser.add_argument("outputs", type=Path, nargs="?", default=Path("outputs"))
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    arguments = parser.parse_args()
    main(arguments.run_dir, arguments.outputs, arguments.write)
