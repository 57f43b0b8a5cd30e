"""Per-checkpoint evaluation cost, by metric family, before and after the changes that fit the default
study in its time, side by side on one trained run of it.

    .venv/bin/python benchmarks/evaluation_cost.py [run folder] [outputs] [--write]

Needs a finished run and the evaluation inputs (`make study`). A chunk of the run's checkpoints
(taulib.metrics.family.DOWNSTREAM_CHUNK, evenly spaced) is evaluated both ways, family by family:

* core and orthogonality: one checkpoint at a time (before) and the chunk together (after);
* absorption: each checkpoint's k-sparse probes trained alone (before) and the chunk's trained
  together (after, `evaluate_absorption_many`);
* sparse probing: the chunk together, the latents encoded in float32 (before: what the default
  `compute_dtype: auto` gave) and as `taulib.metrics.probing.family.Probing.bfloat16` resolves it (after);
* spliced CE/KL, per run and then per checkpoint: before, the split forward recomputing the clean
  logits per batch (the path a soft-capped model still takes) under the previous defaults (4
  sequences at every checkpoint, clean logits once per chunk, 130 at the final checkpoint); after,
  KL from the clean distribution's expected unembedding row (`taulib.metrics.downstream.metric`) on the
  run's settings (`evaluation.downstream.final_sequences` at the final checkpoint only). Both are timed per
  sequence on a sample (best of 2) and scaled to the schedule.

`--write` puts the table in benchmarks/RESULTS.md.
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
from taulib.metrics.absorption.family import Absorption
from taulib.metrics.absorption.metric import AbsorptionData, evaluate_absorption, evaluate_absorption_many
from taulib.metrics.core.metric import reconstruction_metrics, reconstruction_metrics_many
from taulib.metrics.downstream.family import CE_SEQUENCES_FILE
from taulib.metrics.downstream.metric import SplicedModel, SpliceReference, downstream_metrics, splice_reference
from taulib.metrics.evaluate import evaluation_data_folder
from taulib.metrics.family import DOWNSTREAM_CHUNK
from taulib.metrics.orthogonality.metric import covariance_factor, orthogonality_metrics
from taulib.metrics.probing.family import Probing
from taulib.metrics.probing.metric import ProbingData, evaluate_sparse_probing_many
from taulib.sae import in_raw_units, load_sae
from taulib.train.trainer import read_checkpoint_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, markdown_table, provenance, write_section  # noqa: E402

SAMPLE_SEQUENCES = 8  # the spliced CE/KL is timed on this many sequences, then scaled
PREVIOUS_CE_SEQUENCES, PREVIOUS_CE_FINAL_SEQUENCES = 4, 130  # the default study's CE/KL before it spliced the final checkpoint only


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
    heldout = load_cache(cache_folder(outputs, spec), spec).activations[: e.core.tokens].float()
    factor = covariance_factor(heldout)
    absorption = AbsorptionData.load(folder, Absorption().settings(config))
    probing = ProbingData.load(folder, Probing().settings(config))
    sequences = load_file(str(folder / CE_SEQUENCES_FILE))["input_ids"]
    spliced = SplicedModel(load_language_model(config.model.model_copy(update={"layer": layer})), config.model.autocast)

    # model-free families: seconds per checkpoint over the chunk
    alive = [reconstruction_metrics(sae, heldout)[1] > 0 for sae in saes]  # also warms up
    rows = []
    core_before = once(lambda: [reconstruction_metrics(sae, heldout, dense_threshold=e.core.dense_threshold) for sae in saes]) / k
    core_after = once(lambda: reconstruction_metrics_many(saes, heldout, dense_threshold=e.core.dense_threshold)) / k
    rows.append([f"core ({len(heldout):,} held-out tokens)", core_before, core_after])
    ortho = lambda: [orthogonality_metrics(sae, e.orthogonality.near_duplicate_threshold, alive=a, activation_covariance_factor=factor) for sae, a in zip(saes, alive, strict=True)]  # noqa: E731
    ortho()  # the random baselines are cached per shape: warm them as a run's first checkpoint does
    ortho_seconds = once(ortho) / k
    rows.append(["orthogonality (unchanged: per checkpoint)", ortho_seconds, ortho_seconds])
    absorption_before = once(lambda: [evaluate_absorption(sae, absorption) for sae in saes]) / k
    absorption_after = once(lambda: evaluate_absorption_many(saes, absorption)) / k
    rows.append([f"absorption ({len(absorption.train_words) + len(absorption.test_words):,} words)", absorption_before, absorption_after])
    probing_tokens = sum(len(t.token_acts) for t in probing.tasks)
    bf16 = Probing.bfloat16(config)
    results: dict[bool, list] = {}
    probing_before = once(lambda: results.__setitem__(False, evaluate_sparse_probing_many(saes, probing, autocast=False))) / k
    probing_after = once(lambda: results.__setitem__(bf16, evaluate_sparse_probing_many(saes, probing, autocast=bf16))) / k
    # what bfloat16 encoding moves: every checkpoint's top-k accuracies, against float32 (the test sets' steps are 1/n)
    accuracy_shift = max(abs(one[0][key] - other[0][key]) for one, other in zip(results[False], results[bf16], strict=True) for key in one[0] if key.startswith("sae_top_"))
    rows.append([f"sparse probing ({probing_tokens:,} tokens, {sum(len(t.binary_tasks) for t in probing.tasks)} binary tasks; float32 → {'bfloat16' if bf16 else 'float32'})", probing_before, probing_after])

    # spliced CE/KL: seconds per spliced sequence, one SAE and a chunk's, on a sample of the sequences
    sample = sequences[:SAMPLE_SEQUENCES]
    b = e.downstream.batch_size
    reference = splice_reference(spliced, sample, b)
    recomputing = SpliceReference(reference.input_ids, reference.residual, reference.per_sequence)  # no expected row: the clean logits per batch
    downstream_metrics(spliced, sample[:1], saes[:1], 1, reference=reference.rows(0, 1))  # warm-up
    clean_and_one = best_of(lambda: downstream_metrics(spliced, sample, saes[:1], b, reference=recomputing), 2) / len(sample)
    clean_and_chunk = best_of(lambda: downstream_metrics(spliced, sample, saes, b, reference=recomputing), 2) / len(sample)
    per_checkpoint = (clean_and_chunk - clean_and_one) / (k - 1)
    linear_one = best_of(lambda: downstream_metrics(spliced, sample, saes[:1], b, reference=reference), 2) / len(sample)
    checkpoints = len(index)
    before_run = sum(clean_and_one + (size - 1) * per_checkpoint for size in chunk_sizes(checkpoints)) * PREVIOUS_CE_SEQUENCES
    before_run += (PREVIOUS_CE_FINAL_SEQUENCES - PREVIOUS_CE_SEQUENCES) * clean_and_one
    after_run = (checkpoints * e.downstream.sequences + e.downstream.sequences_needed() - e.downstream.sequences) * linear_one
    rows.append(
        [
            f"CE/KL spliced (before: {PREVIOUS_CE_SEQUENCES} sequences a checkpoint, {PREVIOUS_CE_FINAL_SEQUENCES} the final; "
            f"after: {e.downstream.sequences} a checkpoint, {e.downstream.sequences_needed()} the final)",
            before_run / checkpoints,
            after_run / checkpoints,
        ]
    )
    rows.append(["**total**", sum(r[1] for r in rows), sum(r[2] for r in rows)])

    table = markdown_table(["family", "before: s per checkpoint", "after: s per checkpoint", "speed-up"], [[*r, f"{r[1] / r[2]:.2f}×"] for r in rows])
    chunks = chunk_sizes(checkpoints)
    notes = (
        f"Run `{run_dir.name}`: {saes[0].d_sae:,} latents, {checkpoints} checkpoints (evaluated in chunks of {', '.join(map(str, chunks))}), "
        f"layer {layer}, model autocast {config.model.autocast}, SAE compute {config.training.compute_dtype}; the model-free "
        f"families timed on {k} of its checkpoints. CE/KL per spliced sequence of {sequences.shape[1]} tokens (timed on "
        f"{len(sample)}, best of 2): the clean logits recomputed and one SAE {clean_and_one:.3f} s, each further SAE of a chunk "
        f"{per_checkpoint:.3f} s; with the expected unembedding row, one SAE {linear_one:.3f} s. Per run: before {before_run:.0f} s, "
        f"after {after_run:.0f} s. Sparse probing encoded in bfloat16 instead of float32: the largest change of any "
        f"checkpoint's mean top-k accuracy (k in {', '.join(map(str, e.probing.ks))}) is {accuracy_shift:.4f}.\n"
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
