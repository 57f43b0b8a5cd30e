"""How good a plain-L1 SAE gets with width and training tokens at the default study's middle L0
target: held-out explained variance and the spliced CE-loss score, each read at exactly L0 = target
off the λ frontier of one (width, tokens) point, beside what training to that point costs here.

    .venv/bin/python benchmarks/quality_curve.py OUTPUTS [--widths 1024 4096] \
        [--tokens 500000 1000000 2000000 4000000] [--target 50] [--ce-sequences 32] [--write]

OUTPUTS is a finished default study's outputs folder (`make study`): its training and held-out
activation caches, its CE sequences and splice reference are read, never written; runs go to a
scratch folder (`--scratch`). Per width, plain-L1 runs (the default arm's settings otherwise) are
trained once each to the largest token count, checkpointed at every token count; training beyond
the cache's tokens makes further reshuffled passes over it. The learning-rate warm-up keeps the
default run's length in steps (5% of 500,000 tokens), so the 500,000-token checkpoint of a run is
the default study's run at that λ, bit for bit (lr and λ are constant after the warm-up). λ is
chosen adaptively: from `--lambda-start`, each next run's λ aims past the target on the side where
some token count is not yet bracketed (L0 ∝ λ^-1.75, the default study's plain-L1 frontier), until
every token count has runs on both sides of the target or `--max-runs` is reached.

At each (width, tokens), EV and CE-loss score are read at the target off the runs' frontier
(`taulib.analysis.frontier.read_at_l0`, as the report matches arms): linearly in log L0 between the
two runs whose held-out L0 bracket it, and off a parabola through three runs (the report's curvature
check; where the two differ, the bracket is too wide for either to be exact). The CE interval is the
reading's own: the CE sequences resampled alike for every run (they score the same text), the L0s
held. The CE-loss score uses `--ce-sequences` of the study's held-out CE sequences (127 scored tokens
each), fewer than the study's final checkpoint (`evaluation.downstream.final_sequences`) to fit the curve in its time; the interval says
what that costs. Training seconds are the time a run took to reach each checkpoint (the initial
checkpoint's file to that checkpoint's), the median over a width's runs. Runs already in the scratch
folder with the same configuration are reused, not trained again.

`--write` puts the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file

from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.models import hooked_layer, load_language_model
from taulib.analysis.frontier import FrontierShape, read_at_l0
from taulib.config import RunConfig, load_run_config
from taulib.metrics.core.metric import reconstruction_metrics_many
from taulib.metrics.decoder_drift.metric import decoder_drift_metrics
from taulib.metrics.downstream.family import CE_SEQUENCES_FILE, Downstream
from taulib.metrics.downstream.metric import SequenceLosses, SplicedModel, downstream_metrics
from taulib.metrics.evaluate import evaluation_data_folder
from taulib.sae import in_raw_units, load_sae
from taulib.train.trainer import AnnealedTrainer, RunMismatchError, warmup_steps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"
ARM = PARAMETERS / "baseline_plain_l1.yaml"
L0_EXPONENT = 1.75  # L0 ∝ λ^-1.75 on the default study's plain-L1 runs (λ 0.443 → L0 100, 1.108 → 20)
OVERSHOOT = 1.3  # aim this far past the target in L0, so that the next run brackets it
BOOTSTRAP = 1000
SHAPES: tuple[FrontierShape, ...] = ("linear", "quadratic")  # the frontier read off a line through the bracketing runs, and a parabola through three


def _checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}"


def _trained(config: RunConfig, activations, run_dir: Path, layer: int, steps: list[int], retry: bool = True) -> dict[int, float]:
    """Train to the last of `steps`, checkpointing at each (a run trained before with the same
    configuration is reused); the seconds from the initial checkpoint to each, from the files' times."""
    trainer = AnnealedTrainer(config, activations, run_dir, show_progress=False, layer=layer)
    trainer.checkpoints = [0, *steps]  # this benchmark's grid: the token counts of the curve
    try:
        trainer.train()
    except (RunMismatchError, ValueError):  # another configuration or grid in the folder: train it again, once
        if not retry:
            raise
        shutil.rmtree(run_dir)
        return _trained(config, activations, run_dir, layer, steps, retry=False)
    written = {step: (_checkpoint(run_dir, step) / "sae.safetensors").stat().st_mtime for step in [0, *steps]}
    return {step: written[step] - written[0] for step in steps}


def _config(width: int, max_tokens: int, coefficient: float) -> RunConfig:
    base = load_run_config(ARM)
    default_warmup = warmup_steps(base.training.total_steps(), base.training)
    total = math.ceil(max_tokens / base.training.batch_size)
    return load_run_config(
        ARM,
        {
            "sae": {"width": width},
            "training": {"n_tokens": max_tokens, "l1_coefficient": coefficient, "lr_warmup_fraction": (default_warmup + 0.5) / total},
        },
    )


class StudyInputs(NamedTuple):
    """What a curve reads from a finished default study's outputs (never written)."""

    base: RunConfig  # the default arm's configuration
    layer: int
    train: Any  # the training cache
    heldout: torch.Tensor  # the held-out sample the core metrics use
    sequences: torch.Tensor  # held-out CE sequences
    spliced: SplicedModel
    reference: SequenceLosses  # the clean and zero-ablated losses on `sequences`


def study_inputs(outputs: Path, ce_sequences: int) -> StudyInputs:
    """A finished default study's inputs, with `ce_sequences` of its held-out CE sequences."""
    base = load_run_config(ARM)
    layer = hooked_layer(base.model)
    train_spec, heldout_spec = activation_spec(base, "train", layer), activation_spec(base, "heldout", layer)
    train = load_cache(cache_folder(outputs, train_spec), train_spec, mmap=base.training.activation_storage == "mmap")
    heldout = load_cache(cache_folder(outputs, heldout_spec), heldout_spec).activations[: base.evaluation.core.tokens].float()
    folder = evaluation_data_folder(outputs, base, layer)
    sequences = load_file(str(folder / CE_SEQUENCES_FILE))["input_ids"][:ce_sequences]
    spliced = SplicedModel(load_language_model(base.model.model_copy(update={"layer": layer})), base.model.autocast)
    reference = Downstream().reference(base, spliced, folder, show_progress=False).rows(0, len(sequences))
    return StudyInputs(base, layer, train, heldout, sequences, spliced, reference)


def measured_run(config: RunConfig, run_dir: Path, inputs: StudyInputs) -> tuple[dict[str, float], Any]:
    """Train a run (or reuse it), checkpointing at 90% of its steps and at the end, and measure it: held-out L0 (and its
    drift over the last 10%, the report's measure: final L0 over the L0 at 90% of the steps, minus 1), explained
    variance, dead fraction, decoder cosine to its initialisation (median and firing-weighted), the CE-loss score and
    the training seconds; with the CE's per-sequence losses, for the reading's interval."""
    total = config.training.total_steps()
    near_end = math.floor(0.9 * total)
    seconds = _trained(config, inputs.train.activations, run_dir, inputs.layer, [near_end, total])
    (initial, _), (late, late_meta), (final, final_meta) = (load_sae(_checkpoint(run_dir, step)) for step in (0, near_end, total))
    saes = [in_raw_units(late, late_meta), in_raw_units(final, final_meta)]
    (late_core, _), (core, density) = reconstruction_metrics_many(saes, inputs.heldout, dense_threshold=inputs.base.evaluation.core.dense_threshold)
    (spliced_metrics,) = downstream_metrics(
        inputs.spliced, inputs.sequences, saes[1:], inputs.base.evaluation.downstream.batch_size, reference=inputs.reference
    )
    drift = decoder_drift_metrics(initial.W_dec, final.W_dec, density)
    measured = {
        "l0": core.l0,
        "ev": core.explained_variance,
        "dead": core.dead_fraction,
        "ce": spliced_metrics.ce_loss_score,
        "cos": drift.decoder_init_cosine_median,
        "wcos": drift.decoder_init_cosine_weighted_median,
        "drift": core.l0 / late_core.l0 - 1,
        "seconds": seconds[total],
    }
    return measured, spliced_metrics.per_sequence


def bracketed_runs(
    config_of: Callable[[float], RunConfig], folder: Path, first: float, inputs: StudyInputs, target: float, max_runs: int, label: str
) -> tuple[dict[float, dict[str, float]], dict[float, Any]]:
    """`measured_run` at λ = `first`, then at λ aimed past the target (L0 ∝ λ^-1.75) until two runs bracket it or
    `max_runs` ran: each λ's measures and per-sequence CE losses."""
    measured: dict[float, dict[str, float]] = {}
    losses: dict[float, Any] = {}
    coefficient: float | None = first
    while coefficient is not None and len(measured) < max_runs:
        coefficient = float(f"{coefficient:.4g}")
        config = config_of(coefficient)
        measured[coefficient], losses[coefficient] = measured_run(config, folder / f"lam{coefficient:g}", inputs)
        m = measured[coefficient]
        print(
            f"{label} λ {coefficient:g}: L0 {m['l0']:.1f} (drift {m['drift']:+.1%}), EV {m['ev']:.3f}, CE {m['ce']:.3f}, "
            f"decoder cosine to init {m['cos']:.3f} (weighted {m['wcos']:.3f}), dead {m['dead']:.1%}, {m['seconds']:.0f} s",
            flush=True,
        )
        total = config.training.total_steps()
        coefficient = _next_lambda({c: {total: v["l0"]} for c, v in measured.items()}, [total], target)
    return measured, losses


def at_target(measured: dict[float, dict[str, float]], name: str, target: float, digits: str = ".3f") -> str:
    """Measure `name` read at the target L0, linearly in log L0 between the runs that bracket it ("unmatched": none do)."""
    lambdas = sorted(measured)
    reading = read_at_l0([measured[c]["l0"] for c in lambdas], [measured[c][name] for c in lambdas], target, shape="linear")
    return "unmatched" if reading.status == "unmatched" else format(reading.value, digits)


def _next_lambda(points: dict[float, dict[int, float]], steps: list[int], target: float) -> float | None:
    """The λ of the next run: past the target where a token count has every run on one side of it."""
    too_dense = [s for s in steps if all(l0[s] > target for l0 in points.values())]  # needs a larger λ
    too_sparse = [s for s in steps if all(l0[s] < target for l0 in points.values())]
    if too_dense:
        largest = max(points)
        return max(largest * (points[largest][s] / target) ** (1 / L0_EXPONENT) * OVERSHOOT ** (1 / L0_EXPONENT) for s in too_dense)
    if too_sparse:
        smallest = min(points)
        return min(smallest * (points[smallest][s] / target) ** (1 / L0_EXPONENT) / OVERSHOOT ** (1 / L0_EXPONENT) for s in too_sparse)
    return None


def reading_interval(l0s: list[float], losses: list[SequenceLosses], target: float, shape: FrontierShape, seed: int) -> tuple[float, float]:
    """A 95% percentile interval of the CE-loss score read at `target` off the frontier through the runs:
    the same documents resampled for every run (they are scored on the same text), the L0s held fixed."""
    rng = np.random.default_rng(seed)
    losses = [run.by_document() for run in losses]
    n = len(losses[0])
    draws = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, n, n)
        draws.append(read_at_l0(l0s, [run.metrics(pick).ce_loss_score for run in losses], target, shape=shape).value)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--tokens", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--target", type=float, default=50.0)
    parser.add_argument("--lambda-start", type=float, default=0.6459, help="the first run's λ (the default study's plain L1 at L0 50)")
    parser.add_argument("--max-runs", type=int, default=3, help="runs per width")
    parser.add_argument("--ce-sequences", type=int, default=32)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/taulib-quality-curve"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    tokens = sorted(args.tokens)
    base, layer, train, heldout, sequences, spliced, reference = study_inputs(args.outputs, args.ce_sequences)
    cache_tokens = train.activations.shape[0]
    print(f"cache: {cache_tokens:,} training tokens; CE on {len(sequences)} sequences; target L0 {args.target:g}", flush=True)

    rows, notes = [], []
    for width in args.widths:
        steps = [math.ceil(t / base.training.batch_size) for t in tokens]  # as TrainingConfig.total_steps of a run of t tokens
        l0s: dict[float, dict[int, float]] = {}
        measured: dict[float, dict[int, dict[str, float]]] = {}
        train_seconds: dict[float, dict[int, float]] = {}
        losses: dict[float, dict[int, SequenceLosses]] = defaultdict(dict)
        coefficient: float | None = args.lambda_start
        while coefficient is not None and len(l0s) < args.max_runs:
            coefficient = float(f"{coefficient:.4g}")
            config = _config(width, tokens[-1], coefficient)
            run_dir = args.scratch / f"w{width}_lam{coefficient:g}"
            train_seconds[coefficient] = _trained(config, train.activations, run_dir, layer, steps)
            loaded = [load_sae(_checkpoint(run_dir, step)) for step in steps]
            saes = [in_raw_units(sae, metadata) for sae, metadata in loaded]
            evaluated = time.perf_counter()
            core = reconstruction_metrics_many(saes, heldout, dense_threshold=base.evaluation.core.dense_threshold)
            downstream = downstream_metrics(spliced, sequences, saes, base.evaluation.downstream.batch_size, reference=reference)
            evaluation_seconds = (time.perf_counter() - evaluated) / len(saes)
            measured[coefficient] = {}
            for step, (metrics, _), spliced_metrics in zip(steps, core, downstream, strict=True):
                measured[coefficient][step] = {
                    "l0": metrics.l0,
                    "ev": metrics.explained_variance,
                    "dead": metrics.dead_fraction,
                    "ce": spliced_metrics.ce_loss_score,
                }
                losses[coefficient][step] = spliced_metrics.per_sequence
            l0s[coefficient] = {step: measured[coefficient][step]["l0"] for step in steps}
            print(
                f"width {width}, λ {coefficient:g}: L0 "
                + ", ".join(
                    f"{t:,}: {measured[coefficient][s]['l0']:.1f} (EV {measured[coefficient][s]['ev']:.3f}, CE {measured[coefficient][s]['ce']:.3f})"
                    for t, s in zip(tokens, steps, strict=True)
                )
                + f"; training {train_seconds[coefficient][steps[-1]]:.0f} s, evaluation {evaluation_seconds:.1f} s a checkpoint",
                flush=True,
            )
            coefficient = _next_lambda(l0s, steps, args.target)
        for t, step in zip(tokens, steps, strict=True):
            lambdas = sorted(measured)
            point_l0 = [measured[c][step]["l0"] for c in lambdas]
            readings = {}
            for shape in SHAPES:
                ev = read_at_l0(point_l0, [measured[c][step]["ev"] for c in lambdas], args.target, shape=shape)
                ce = read_at_l0(point_l0, [measured[c][step]["ce"] for c in lambdas], args.target, shape=shape)
                low, high = reading_interval(point_l0, [losses[c][step] for c in lambdas], args.target, shape, seed=step)
                readings[shape] = f"{ev.value:.3f}", f"{ce.value:.3f} [{low:.3f}, {high:.3f}]" if ce.status != "unmatched" else "unmatched"
            seconds = np.median([train_seconds[c][step] for c in lambdas])
            rows.append(
                [
                    f"{width:,}",
                    f"{t:,}",
                    f"{t / cache_tokens:.1f}",
                    *readings["linear"],
                    *readings["quadratic"],
                    f"{ev.lower_l0:.1f}–{ev.upper_l0:.1f}" if ev.status != "unmatched" else f"unmatched ({ev.lower_l0:.1f})",
                    ", ".join(f"{c:g}" for c in lambdas),
                    f"{seconds:.0f}",
                ]
            )
        notes.append(
            f"width {width:,}: runs at λ "
            + "; ".join(f"{c:g} (final L0 {measured[c][steps[-1]]['l0']:.1f}, dead {measured[c][steps[-1]]['dead']:.1%})" for c in sorted(measured))
        )

    target = f"{args.target:g}"
    table = markdown_table(
        [
            "latents",
            "training tokens",
            "passes over the cache",
            f"EV at L0 {target}, line",
            f"CE-loss score at L0 {target}, line [95% CI]",
            "EV, parabola",
            "CE-loss score, parabola [95% CI]",
            "L0 of the two runs read between",
            "λ of the runs",
            "training seconds",
        ],
        rows,
    )
    command = " ".join(["benchmarks/quality_curve.py", *sys.argv[1:]])
    body = (
        f"{provenance(command)}\n\n{table}\n\n"
        f"Plain L1, the default arm's settings otherwise (lr 3e-4, batch 1,024, a {warmup_steps(base.training.total_steps(), base.training)}-step warm-up); "
        f"held-out EV on {len(heldout):,} tokens; CE-loss score on {len(sequences)} held-out sequences ({sequences.shape[0] * (sequences.shape[1] - 1):,} scored tokens), "
        f"interval: the reading's own, over the CE sequences resampled alike for every run. "
        f"Line: linear in log L0 between the two runs that bracket L0 {target}; parabola: through all three runs in log L0 (the "
        f"report's curvature check); where they differ, the bracket is too wide for the reading to be exact. Training seconds: the median over a width's runs of the time to reach "
        f"that many tokens (from the initial checkpoint's file to that checkpoint's).\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    )
    print(body)
    if args.write:
        write_section("quality_curve", "Quality against width and training tokens at the middle L0 target (`benchmarks/quality_curve.py`)", body)


if __name__ == "__main__":
    main()
