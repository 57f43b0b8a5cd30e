"""How much of the held-out text's sampling error resampling sequences (or tokens) misses: documents against units.

The default study's CE-loss score is measured on `evaluation.downstream.final_sequences` held-out sequences and its
explained variance on `evaluation.core.tokens` held-out tokens, both cut from one packed stream of documents; a document spans many sequences. This script re-scores the final
checkpoints of a finished study's runs per document (it writes nothing of the runs'; to the evaluation inputs it adds the
CE positions' documents and the splice reference kept by document, as a study at this code does), and sets the
intervals a bootstrap gives when it resamples documents beside those it gives when it resamples sequences (the CE-loss
score, as records made before the documents were kept did) or tokens (explained variance): per run at the middle
target, and for the report's paired comparison of two arms (taulib.analysis.sequence_bootstrap) at every target.

    python benchmarks/text_sampling_error.py outputs [--arms ARM ARM] [--write]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

from taulib.activations.cache import activation_spec, cache_folder, load_cache  # noqa: E402
from taulib.activations.models import load_language_model  # noqa: E402
from taulib.analysis.sequence_bootstrap import ce_score_difference, explained_variance_difference  # noqa: E402
from taulib.analysis.study_data import load_study  # noqa: E402
from taulib.corpus import iter_documents  # noqa: E402
from taulib.corpus.stream import stream_documents  # noqa: E402
from taulib.metrics.core.metric import VarianceParts, variance_by_document  # noqa: E402
from taulib.metrics.downstream.family import Downstream  # noqa: E402
from taulib.metrics.downstream.metric import SequenceLosses, SplicedModel, downstream_metrics  # noqa: E402
from taulib.metrics.evaluate import evaluation_data_folder  # noqa: E402
from taulib.progress import progress_bar  # noqa: E402
from taulib.sae import in_raw_units, load_sae  # noqa: E402

DEFAULT_ARMS = ("baseline_plain_l1", "cosine_0.3_to_0.05_tightened")


def by_sequence(losses: SequenceLosses, units_per_sequence: int) -> SequenceLosses:
    """The same losses with each sequence one unit: what the bootstrap resampled before the documents were kept."""
    return SequenceLosses(
        losses.clean, losses.zero, losses.sae, losses.kl_zero, losses.kl_sae, losses.n_ce, losses.n_kl, document=np.arange(len(losses)) // units_per_sequence
    ).by_document()


def undocumented(losses: SequenceLosses) -> SequenceLosses:
    return SequenceLosses(losses.clean, losses.zero, losses.sae, losses.kl_zero, losses.kl_sae, losses.n_ce, losses.n_kl)


def width(interval: dict[str, float], low: str, high: str) -> float:
    return interval[high] - interval[low]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--arms", nargs=2, default=list(DEFAULT_ARMS), help="the two arms compared (the first against the second)")
    parser.add_argument("--write", action="store_true", help="write the RESULTS.md section")
    args = parser.parse_args()
    started = time.perf_counter()
    study = load_study(args.outputs)
    runs = [run for run in study.runs if run.arm in args.arms and run.l0_target is not None]
    if not runs:
        raise SystemExit(f"{args.outputs}: no finished run of the arms {args.arms}")
    config = runs[0].config
    _, metadata = load_sae(runs[0].run_dir / "final")
    layer = metadata.layer
    spliced = SplicedModel(load_language_model(config.model.model_copy(update={"layer": layer})), config.model.autocast)
    folder = evaluation_data_folder(args.outputs, config, layer)
    family = Downstream()
    reference = family.reference(config, spliced, folder, show_progress=True)
    heldout_spec = activation_spec(config, "heldout", layer)
    heldout = load_cache(cache_folder(args.outputs, heldout_spec), heldout_spec).activations[: config.evaluation.core.tokens].float()
    token_documents = torch.from_numpy(stream_documents(iter_documents("heldout", seed=0), spliced.loaded.tokenizer, len(heldout)))

    losses: dict[str, SequenceLosses] = {}
    parts: dict[str, VarianceParts] = {}
    token_parts: dict[str, VarianceParts] = {}
    bar = progress_bar(total=len(runs), desc="re-score final checkpoints", unit="run")
    for run in runs:
        sae = in_raw_units(*load_sae(run.run_dir / "final")).requires_grad_(False)
        (metrics,) = downstream_metrics(spliced, reference.input_ids, [sae], config.evaluation.downstream.batch_size, reference=reference)
        losses[run.name] = metrics.per_sequence
        parts[run.name] = variance_by_document(sae, heldout, token_documents)
        token_parts[run.name] = variance_by_document(sae, heldout, torch.arange(len(heldout)))
        bar.update(1)
    bar.close()
    table = pd.DataFrame(
        [{"run": run.name, "arm": run.arm, "seed": run.seed, "l0_target": run.l0_target, "final_l0": float(run.evaluation["l0"].iloc[-1])} for run in runs]
    )
    units = reference.units_per_sequence
    n_documents_ce = len(next(iter(losses.values())).by_document())
    first = parts[runs[0].name]
    largest_share = float(first.tokens.max() / first.tokens.sum())

    middle = sorted(table["l0_target"].unique())[len(table["l0_target"].unique()) // 2]
    per_run = []
    for run in sorted((r for r in runs if math.isclose(r.l0_target, middle)), key=lambda r: (r.arm, r.seed)):
        documents = losses[run.name].bootstrap_intervals(seed=0)
        sequences = by_sequence(losses[run.name], units).bootstrap_intervals(seed=0)
        ev_documents, ev_tokens = parts[run.name].bootstrap_interval(seed=0), token_parts[run.name].bootstrap_interval(seed=0)
        per_run.append(
            [
                run.name,
                f"{losses[run.name].metrics().ce_loss_score:.4f}",
                f"{width(sequences, 'ce_loss_score_low', 'ce_loss_score_high'):.4f}",
                f"{width(documents, 'ce_loss_score_low', 'ce_loss_score_high'):.4f}",
                f"{parts[run.name].explained_variance():.4f}",
                f"{width(ev_tokens, 'explained_variance_low', 'explained_variance_high'):.4f}",
                f"{width(ev_documents, 'explained_variance_low', 'explained_variance_high'):.4f}",
            ]
        )
    comparisons = []
    arm, other = args.arms
    for target in sorted(table["l0_target"].unique()):
        by_documents = ce_score_difference(table, losses, arm, other, target)
        by_sequences = ce_score_difference(table, {name: undocumented(by_sequence(found, units)) for name, found in losses.items()}, arm, other, target)
        ev_documents = explained_variance_difference(table, parts, arm, other, target)
        ev_tokens = explained_variance_difference(table, token_parts, arm, other, target)
        for label, estimate in (
            ("CE-loss score, sequences resampled", by_sequences),
            ("CE-loss score, documents resampled", by_documents),
            ("explained variance, tokens resampled", ev_tokens),
            ("explained variance, documents resampled", ev_documents),
        ):
            if estimate is None or not math.isfinite(estimate.value):
                comparisons.append([f"{target:g}", label, "no reading", "", ""])
                continue
            comparisons.append([f"{target:g}", label, f"{estimate.value:+.4f}", f"[{estimate.low:+.4f}, {estimate.high:+.4f}]", f"{estimate.p_value:.3g}"])

    body = "\n\n".join(
        [
            provenance(f"python benchmarks/text_sampling_error.py {args.outputs} --arms {arm} {other} --write"),
            f"Wall time {time.perf_counter() - started:.0f} s.",
            f"The held-out text: the CE-loss score's {len(reference)} sequences hold {n_documents_ce} documents; the explained "
            f"variance's {len(heldout):,} tokens hold {len(first)} documents, the largest {largest_share:.0%} of them. Intervals are 95% "
            "percentile bootstraps (1,000 draws) of the final checkpoint; the widths are high − low.",
            f"Per run at L0 target {middle:g}:",
            markdown_table(["run", "CE-loss score", "width, sequences", "width, documents", "EV", "width, tokens", "width, documents"], per_run),
            f"The report's paired comparison, {arm} − {other}, read off each seed's frontier (mean ± t·√(s²/n + v_text)):",
            markdown_table(["L0 target", "endpoint, text redrawn by", "difference", "95% interval", "p (unadjusted)"], comparisons),
        ]
    )
    print(body)
    if args.write:
        write_section("text_sampling_error", "The held-out text's sampling error: documents against sequences and tokens (benchmarks/text_sampling_error.py)", body)


if __name__ == "__main__":
    main()
