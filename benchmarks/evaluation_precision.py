"""What evaluating in bfloat16 moves: finished runs' final checkpoints evaluated as the study does
where bfloat16 is fast (the language model under bfloat16 autocast for the spliced CE/KL, the
SAE's encoder in bfloat16 for sparse probing) and in float32, each difference set beside the
interval the study reports for that metric.

    .venv/bin/python benchmarks/evaluation_precision.py OUTPUTS RUN [RUN ...] [--write]

OUTPUTS is a finished study's outputs folder; each RUN is a run folder's name in it. The float32
splice reference (the CE sequences' residuals and their clean and zero-ablated losses) is computed
here on the same sequences; the bfloat16 one is the study's, read from its evaluation inputs. The
other families (core, orthogonality, absorption's probes) compute in float32 on every machine; the
caches they read were extracted under the model's autocast (benchmarks/RESULTS.md, extraction).

A shift matters only if it could move a verdict: besides each run's shift against its own interval,
the table gives each run's difference to the first RUN (a between-arm difference, as the report
pairs them) in both precisions.

`--write` puts the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from taulib import atomic
from taulib.activations.models import load_language_model
from taulib.config import RunConfig
from taulib.metrics.downstream.family import CE_SEQUENCES_FILE, Downstream
from taulib.metrics.downstream.metric import SplicedModel, downstream_metrics, splice_reference
from taulib.metrics.evaluate import evaluation_data_folder
from taulib.metrics.probing.family import Probing
from taulib.metrics.probing.metric import ProbingData, evaluate_sparse_probing_many
from taulib.sae import in_raw_units, load_sae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

SCORES = ("ce_loss_score", "kl_div_score")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    configs = {run: RunConfig.model_validate(atomic.read_json(args.outputs / run / "config.json")["config"]) for run in args.runs}
    config = configs[args.runs[0]]
    if config.model.autocast is None:
        raise SystemExit(f"{args.runs[0]}: its model ran in float32 (autocast none); there is no bfloat16 evaluation to compare")
    loaded_saes = {run: load_sae(args.outputs / run / "final") for run in args.runs}
    layer = loaded_saes[args.runs[0]][1].layer
    saes = {run: in_raw_units(sae, metadata) for run, (sae, metadata) in loaded_saes.items()}
    folder = evaluation_data_folder(args.outputs, config, layer)
    sequences = load_file(str(folder / CE_SEQUENCES_FILE))["input_ids"][: config.evaluation.downstream.sequences_needed()]
    model = load_language_model(config.model.model_copy(update={"layer": layer}))
    batch = config.evaluation.downstream.batch_size

    probing = ProbingData.load(folder, Probing().settings(config))
    encoded = {bf16: evaluate_sparse_probing_many([saes[run] for run in args.runs], probing, autocast=bf16) for bf16 in (True, False)}
    shifts = [(key, abs(one[0][key] - other[0][key])) for one, other in zip(encoded[True], encoded[False], strict=True) for key in one[0] if key.startswith("sae_top_")]
    mean_shift = max(shift for key, shift in shifts if "/" not in key)  # sae_top_<k>_accuracy: the mean over every task
    task_shift = max(shift for key, shift in shifts if "/" in key)  # sae_top_<k>_accuracy/<task>: one task's mean over its classes
    test_examples = min(len(binary.test_labels) for task in probing.tasks for binary in task.binary_tasks)

    spliced = {"bfloat16": SplicedModel(model, config.model.autocast), "float32": SplicedModel(model, None)}
    references = {"bfloat16": Downstream().reference(config, spliced["bfloat16"], folder, show_progress=False).rows(0, len(sequences))}
    started = time.perf_counter()
    references["float32"] = splice_reference(spliced["float32"], sequences, batch)
    reference_seconds = time.perf_counter() - started
    scores: dict[str, dict[str, dict[str, float]]] = {precision: {} for precision in spliced}
    seconds = {}
    for precision, model_view in spliced.items():
        started = time.perf_counter()
        metrics = downstream_metrics(model_view, sequences, [saes[run] for run in args.runs], batch, reference=references[precision])
        seconds[precision] = (time.perf_counter() - started) / len(args.runs)
        for run, result in zip(args.runs, metrics, strict=True):
            scores[precision][run] = result.as_dict() | result.per_sequence.bootstrap_intervals(seed=0)

    rows = []
    first = args.runs[0]
    for run in args.runs:
        for score in SCORES:
            low, high = scores["bfloat16"][run][f"{score}_low"], scores["bfloat16"][run][f"{score}_high"]
            shift = scores["bfloat16"][run][score] - scores["float32"][run][score]
            row = [f"`{run}`", score, f"{scores['bfloat16'][run][score]:.4f}", f"{scores['float32'][run][score]:.4f}", f"{shift:+.5f}", f"{(high - low) / 2:.4f}"]
            if run != first:
                paired = {p: scores[p][run][score] - scores[p][first][score] for p in spliced}
                row += [f"{paired['bfloat16']:+.4f}", f"{paired['float32']:+.4f}", f"{paired['bfloat16'] - paired['float32']:+.5f}"]
            else:
                row += ["—", "—", "—"]
            rows.append(row)

    table = markdown_table(
        ["run", "score", "bfloat16 (as the study)", "float32", "shift", "study's 95% CI half-width", f"minus `{first}`, bfloat16", "float32", "shift of the difference"], rows
    )
    command = " ".join(["benchmarks/evaluation_precision.py", *sys.argv[1:]])
    body = (
        f"{provenance(command)}\n\n{table}\n\n"
        f"Final checkpoints; CE/KL on the study's {len(sequences)} CE sequences ({len(sequences) * (sequences.shape[1] - 1):,} scored tokens), "
        f"interval: the study's bootstrap over sequences. The float32 reference took {reference_seconds:.0f} s; one SAE's splice "
        f"{seconds['bfloat16']:.1f} s in bfloat16 and {seconds['float32']:.1f} s in float32. Sparse probing encoded in bfloat16 instead of "
        f"float32, over k in {', '.join(map(str, config.evaluation.probing.ks))}: the largest change of a run's top-k accuracy (the mean over "
        f"every task, as the report uses it) is {mean_shift:.4f}, of one task's {task_shift:.4f}; the smallest binary task's test set moves its "
        f"accuracy in steps of {1 / test_examples:.3f}.\n"
    )
    print(body)
    if args.write:
        write_section("evaluation_precision", "What evaluating in bfloat16 moves (`benchmarks/evaluation_precision.py`)", body)


if __name__ == "__main__":
    main()
