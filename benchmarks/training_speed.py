"""SAE training throughput: taulib's annealed trainer against dictionary_learning's and SAELens's.

    make bench    # installs .venv-bench (the reference trainers) and runs every benchmark
    flock /tmp/taulib-cpu.lock .venv-bench/bin/python benchmarks/training_speed.py --outputs outputs
    .venv/bin/python benchmarks/training_speed.py --quick --results /tmp/results.md   # seconds, synthetic data

All trainers see the same cached activations of the default study (divided by taulib's input
scale), at the same width, batch size, learning rate and dtype, on the same 2 torch threads. The
compared trainers alternate step by step (`--steps` × `--repeats` timed steps each, after
`--warmup`) and each is credited with its median step: on a shared machine whose speed drifts by
tens of percent over minutes, every trainer then sees the same drift. taulib's variants are timed
alone, best of `--repeats` runs of `--steps`. The matmul ceilings are measured in the same run.

Two states are timed, and a whole run. From initialisation: a fresh SAE fires about half its
latents, and every trainer runs dense matmuls. Trained: taulib trains an SAE until its L0 falls to
`--trained-l0` (L1 coefficient `--trained-coefficient`, learning rate `--trained-lr`), every
trainer's SAE is given those weights (the three share the architecture), and each goes on training
at that coefficient, timed as before. A whole run: every trainer trains the same fresh SAE
(taulib's initial weights) at that coefficient and learning rate for `--run-steps` steps on the
same batches, the trainers taking turns step by step, each credited with the sum of its steps;
then each final SAE's L0 and explained variance on the held-out cache are reported. taulib's step
switches to its sparse latent side once few enough latents fire (taulib.train.gradients); the
references' steps stay dense whatever the sparsity. Also measured: variants of
taulib's step (what was explored to make it fast), and taulib's whole `AnnealedTrainer.train()`
(logging, checkpoints) in float32 and bfloat16 with the explained variance each reaches on the
held-out cache. Without dictionary-learning or sae-lens installed their rows are skipped.

bfloat16 is timed only where the CPU has fast bfloat16 matmuls (AVX512-BF16 or AMX,
taulib.precision): elsewhere torch's bfloat16 matmul is a reference loop about 200× slower than
float32, and the script would run for hours. `--dtypes float32,bfloat16` times it anyway.
`--section` names the RESULTS.md section to write, so that a second machine's results can stand
beside the first's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SKIPPED_BFLOAT16, best_of, fp32_ceiling, markdown_table, matmul_ceiling, provenance, sae_step_flops, time_bfloat16, write_section  # noqa: E402
from matmul_kernels import step_matmul_seconds  # noqa: E402
from trainers import (  # noqa: E402
    L1_COEFFICIENT,
    ComparedStep,
    DictionaryLearningStep,
    SAELensStep,
    Step,
    TaulibAutograd,
    TaulibStep,
    mean_l0,
    reference_missing,
    study_activations,
    timed_batches,
)

from taulib.activations.models import hooked_layer  # noqa: E402
from taulib.config import RunConfig  # noqa: E402
from taulib.progress import progress_bar  # noqa: E402
from taulib.sae import SparseAutoencoder, load_sae  # noqa: E402
from taulib.train.trainer import AnnealedTrainer, activation_statistics, explained_variance  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_PARAMETERS, DEFAULT_OUTPUTS = "parameters/cosine_0.3_to_0.05_tightened.yaml", "outputs"
DEFAULT_RUN_STEPS = 500
HELDOUT_TOKENS = 16_384  # the held-out tokens each final SAE is evaluated on


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", default=DEFAULT_PARAMETERS, help="a parameter file of the study (width, batch, lr, caches)")
    parser.add_argument("--outputs", default=DEFAULT_OUTPUTS, help="the outputs folder holding the activation caches")
    parser.add_argument("--width", type=int, default=4096, help="latents (default: the full profile's 4,096)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per trainer and repeat")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ev-tokens", type=int, default=262_144, help="tokens of the float32-vs-bfloat16 end-to-end runs")
    parser.add_argument("--trained-l0", type=float, default=40, help="the L0 the trained state is trained down to (0: skip that timing)")
    parser.add_argument("--trained-coefficient", type=float, default=1.0, help="the L1 coefficient of the trained-state runs")
    parser.add_argument("--trained-lr", type=float, default=1e-3, help="the learning rate that trains the trained state")
    parser.add_argument("--trained-max-steps", type=int, default=1000)
    parser.add_argument("--run-steps", type=int, default=DEFAULT_RUN_STEPS, help="steps of the whole-run comparison from initialisation (0: skip it)")
    parser.add_argument("--no-explore", action="store_true", help="skip the taulib variants")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (compiling takes a minute)")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data and sizes: checks the script runs")
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--section", default="training_speed", help="the RESULTS.md section to (re)write")
    parser.add_argument(
        "--dtypes",
        type=_dtypes,
        default=None,
        help="compute dtypes to time, comma-separated (default: float32, and bfloat16 where this CPU has fast bfloat16 matmuls)",
    )
    args = parser.parse_args(argv)
    if args.run_steps < 0:
        parser.error(f"--run-steps must be 0 (skip the whole run) or more, got {args.run_steps}")
    args.dtypes_chosen = args.dtypes is not None
    if args.dtypes is None:
        args.dtypes = list(DTYPES) if time_bfloat16() else ["float32"]  # quick mode too: its steps are not tiny enough for slow bf16
    if args.quick:
        args.steps, args.warmup, args.repeats, args.ev_tokens, args.no_compile, args.trained_max_steps, args.width = 3, 1, 1, 4096, True, 30, None
        args.run_steps = min(args.run_steps, 20)
    return args


def _dtypes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in DTYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown dtype(s) {unknown or text!r}; choose from {', '.join(DTYPES)}")
    return list(dict.fromkeys(names))


def skipped_dtypes_note(args: argparse.Namespace) -> str | None:
    """Said in the results when bfloat16 was left out by default (not when --dtypes chose so)."""
    return None if args.dtypes_chosen or "bfloat16" in args.dtypes else SKIPPED_BFLOAT16


def warm_up(trainers: list[Step], batches: list[torch.Tensor], warmup: int) -> None:
    for trainer in trainers:
        for i in range(warmup):
            trainer.step(batches[i % len(batches)])


def run_interleaved(trainers: list[Step], batches: list[torch.Tensor], steps: int, warmup: int, repeats: int) -> list[float]:
    """Seconds per step of each trainer: warm-up, then `repeats` rounds over all trainers, best of them."""
    warm_up(trainers, batches, warmup)
    best = [float("inf")] * len(trainers)
    for _ in range(repeats):
        for index, trainer in enumerate(trainers):
            started = time.perf_counter()
            for i in range(steps):
                trainer.step(batches[i % len(batches)])
            best[index] = min(best[index], (time.perf_counter() - started) / steps)
    return best


def alternate(trainers: list[Step], batches: list[torch.Tensor], steps: int, desc: str | None = None) -> list[list[float]]:
    """Each trainer's seconds for each of `steps` steps, the trainers taking turns one step at a time
    (a progress bar named `desc`, if given)."""
    times: list[list[float]] = [[] for _ in trainers]
    with progress_bar(total=steps, desc=desc, disable=desc is None) as bar:
        for i in range(steps):
            for index, trainer in enumerate(trainers):
                started = time.perf_counter()
                trainer.step(batches[i % len(batches)])
                times[index].append(time.perf_counter() - started)
            bar.update()
    return times


def run_alternating(trainers: list[Step], batches: list[torch.Tensor], steps: int, warmup: int) -> list[float]:
    """Median seconds per step of each trainer, the trainers taking turns one step at a time."""
    warm_up(trainers, batches, warmup)
    return [statistics.median(per_step) for per_step in alternate(trainers, batches, steps)]


def make_trainers(d_in: int, d_sae: int, batch_size: int, lr: float, dtype: torch.dtype, total: int, coefficient: float) -> list[ComparedStep]:
    """taulib's step and each installed reference, at the same width, learning rate, dtype and L1 coefficient."""
    trainers: list[ComparedStep] = [TaulibStep(d_in, d_sae, lr, dtype, coefficient=coefficient)]
    if not reference_missing("dictionary_learning.trainers.standard"):
        trainers.append(DictionaryLearningStep(d_in, d_sae, lr, dtype, total, coefficient=coefficient))
    if not reference_missing("sae_lens"):
        trainers.append(SAELensStep(d_in, d_sae, lr, dtype, total, batch_size, coefficient=coefficient))
    return trainers


def trained_state(args: argparse.Namespace, d_in: int, d_sae: int, batches: list[torch.Tensor]) -> tuple[SparseAutoencoder, int]:
    """An SAE trained by taulib (float32) until its L0 on the first batch is at most `--trained-l0`; and its steps."""
    trainer = TaulibStep(d_in, d_sae, args.trained_lr, torch.float32, coefficient=args.trained_coefficient)
    steps = 0
    with progress_bar(total=args.trained_max_steps, desc=f"training to L0 {args.trained_l0:g}") as bar:
        while steps < args.trained_max_steps:
            if steps and steps % 10 == 0 and mean_l0(trainer, batches[0]) <= args.trained_l0:  # checked every 10 steps
                break
            trainer.step(batches[steps % len(batches)])
            steps += 1
            bar.update()
    return trainer.sae, steps


def main_comparison(
    args: argparse.Namespace,
    d_in: int,
    d_sae: int,
    batch_size: int,
    lr: float,
    batches: list[torch.Tensor],
    trained: SparseAutoencoder | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each trainer's time per step from initialisation, or from the `trained` SAE's weights at `--trained-coefficient`."""
    notes = [note for note in (reference_missing("dictionary_learning.trainers.standard"), reference_missing("sae_lens"), skipped_dtypes_note(args)) if note]
    total = args.warmup + args.steps * args.repeats + 10  # the references size their schedules by it
    coefficient = args.trained_coefficient if trained is not None else L1_COEFFICIENT
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        trainers = make_trainers(d_in, d_sae, batch_size, lr, dtype, total, coefficient)
        if trained is not None:
            for trainer in trainers:
                trainer.load_weights(trained)
        l0_before = [mean_l0(trainer, batches[0]) for trainer in trainers]
        seconds = run_alternating(trainers, batches, args.steps * args.repeats, args.warmup)
        for trainer, per_step, before in zip(trainers, seconds, l0_before, strict=True):
            rows.append(
                {
                    "trainer": trainer.name,
                    "dtype": dtype_name,
                    "seconds_per_step": per_step,
                    "tokens_per_second": batch_size / per_step,
                    "l0": before,
                    "l0_after": mean_l0(trainer, batches[0]),
                }
            )
    return rows, notes


def whole_run(
    args: argparse.Namespace, d_in: int, d_sae: int, batch_size: int, train: torch.Tensor, heldout: torch.Tensor, scale: float
) -> list[dict[str, Any]]:
    """Each trainer's wall time over a whole run of `--run-steps` steps from the same initial weights,
    and its final SAE on the held-out tokens: what the dense start and the sparse rest add up to."""
    batches = timed_batches(train, batch_size, max(1, min(args.run_steps, train.shape[0] // batch_size)), scale)
    x = heldout[:HELDOUT_TOKENS].float() / scale
    rows = []
    for dtype_name in args.dtypes:
        trainers = make_trainers(d_in, d_sae, batch_size, args.trained_lr, DTYPES[dtype_name], args.run_steps + 10, args.trained_coefficient)
        for trainer in trainers[1:]:
            trainer.load_weights(trainers[0].sae)  # taulib's fresh SAE: the same start for all
        seconds = [sum(per_step) for per_step in alternate(trainers, batches, args.run_steps, f"whole run, {dtype_name}")]
        for trainer, total in zip(trainers, seconds, strict=True):
            with torch.no_grad():
                x_hat = trainer.reconstruct(x).float()
            rows.append(
                {
                    "trainer": trainer.name,
                    "dtype": dtype_name,
                    "steps": args.run_steps,
                    "seconds": total,
                    "tokens_per_second": args.run_steps * batch_size / total,
                    "heldout_l0": mean_l0(trainer, x),
                    "heldout_explained_variance": explained_variance(x, x_hat),
                    "heldout_tokens": x.shape[0],
                }
            )
    return rows


def explore(args: argparse.Namespace, d_in: int, d_sae: int, lr: float, batches: list[torch.Tensor]) -> list[dict[str, Any]]:
    """Variants of taulib's step, each against the step the trainer uses now."""
    batch_size = batches[0].shape[0]
    variants: list[tuple[str, str, Any]] = [
        ("autograd, foreach Adam (taulib before)", "float32", lambda: TaulibAutograd(d_in, d_sae, lr, torch.float32)),
        ("autograd, foreach Adam (taulib before)", "bfloat16", lambda: TaulibAutograd(d_in, d_sae, lr, torch.bfloat16)),
        ("hand-written gradients, foreach Adam", "bfloat16", lambda: TaulibStep(d_in, d_sae, lr, torch.bfloat16, fused_adam=False)),
        ("hand-written gradients, fused Adam (taulib now)", "bfloat16", lambda: TaulibStep(d_in, d_sae, lr, torch.bfloat16)),
        (
            "hand-written gradients, fused Adam, every matmul on torch.mm (taulib before)",
            "float32",
            lambda: TaulibStep(d_in, d_sae, lr, torch.float32, onednn=False),
        ),
        ("hand-written gradients, fused Adam (taulib now)", "float32", lambda: TaulibStep(d_in, d_sae, lr, torch.float32)),
    ]
    variants = [variant for variant in variants if variant[1] in args.dtypes]
    fastest_name = "bfloat16" if "bfloat16" in args.dtypes else "float32"  # the one-thread and compiled variants' dtype
    fastest = DTYPES[fastest_name]
    rows = []
    for name, dtype_name, make in variants:
        (seconds,) = run_interleaved([make()], batches, args.steps, args.warmup, args.repeats)
        rows.append({"variant": name, "dtype": dtype_name, "threads": torch.get_num_threads(), "tokens_per_second": batch_size / seconds, "note": ""})
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
        try:
            (seconds,) = run_interleaved([TaulibStep(d_in, d_sae, lr, fastest)], batches, args.steps, args.warmup, args.repeats)
        finally:
            torch.set_num_threads(threads)
        rows.append({"variant": "taulib now, 1 thread", "dtype": fastest_name, "threads": 1, "tokens_per_second": batch_size / seconds, "note": ""})
    if not args.no_compile:
        try:
            trainer = TaulibAutograd(d_in, d_sae, lr, fastest, compile_forward=True)
            compile_seconds = best_of(lambda: trainer.step(batches[0]), 1)
            (seconds,) = run_interleaved([trainer], batches, args.steps, args.warmup, args.repeats)
            note = f"first step (compilation) {compile_seconds:.0f} s"
            rows.append(
                {
                    "variant": "autograd, torch.compile'd forward + loss",
                    "dtype": fastest_name,
                    "threads": threads,
                    "tokens_per_second": batch_size / seconds,
                    "note": note,
                }
            )
        except Exception as error:  # an inductor build failure is a result too
            rows.append(
                {
                    "variant": "autograd, torch.compile'd forward + loss",
                    "dtype": fastest_name,
                    "threads": threads,
                    "tokens_per_second": float("nan"),
                    "note": f"failed: {type(error).__name__}",
                }
            )
    return rows


def end_to_end(args: argparse.Namespace, config: RunConfig, train: torch.Tensor, heldout: torch.Tensor) -> list[dict[str, Any]]:
    """taulib's whole AnnealedTrainer.train() in float32 and bfloat16 on the same data and steps, and
    the held-out explained variance of the two final SAEs (evaluated in float32)."""
    rows = []
    for dtype_name in args.dtypes:
        training = config.training.model_copy(update={"n_tokens": args.ev_tokens, "compute_dtype": dtype_name, "n_checkpoints": 8})
        run_config = config.model_copy(update={"run_name": f"bench_{dtype_name}", "training": training})
        with tempfile.TemporaryDirectory() as folder:
            summary = AnnealedTrainer(run_config, train, folder, show_progress=False).train()
            sae, metadata = load_sae(Path(folder) / "final")
        x = heldout[:HELDOUT_TOKENS].float() / metadata.input_scale
        with torch.no_grad():
            x_hat, f = sae(x)
        rows.append(
            {
                "dtype": dtype_name,
                "tokens": summary["tokens"],
                "tokens_per_second": summary["tokens_per_second_this_session"],
                "heldout_explained_variance": explained_variance(x, x_hat),
                "heldout_l0": float((f > 0).sum(dim=-1).float().mean()),
                "heldout_tokens": x.shape[0],
            }
        )
    return rows


def render(
    args: argparse.Namespace,
    shape: tuple[int, int, int],
    ceilings: dict[str, float],
    rows: list[dict],
    notes: list[str],
    variants: list[dict],
    e2e: list[dict],
    trained: list[dict],
    matmul_seconds: dict[str, float],
    trained_steps: int = 0,
    run: list[dict] | None = None,
    data: str = "",
) -> str:
    d_in, d_sae, batch_size = shape
    flops = sae_step_flops(d_in, d_sae)
    ceiling = fp32_ceiling(ceilings)
    command = "benchmarks/training_speed.py" + (" --quick" if args.quick else f" --steps {args.steps} --repeats {args.repeats}")
    command += f" --dtypes {','.join(args.dtypes)}" if args.dtypes_chosen else ""
    command += f" --section {args.section}" if args.section != "training_speed" else ""
    command += f" --run-steps {args.run_steps}" if args.run_steps != DEFAULT_RUN_STEPS and not args.quick else ""
    if not args.quick:  # where the timed activations came from, when not the default study's
        command += f" --parameters {args.parameters}" if args.parameters != DEFAULT_PARAMETERS else ""
        command += f" --outputs {args.outputs}" if args.outputs != DEFAULT_OUTPUTS else ""
    text = provenance(command, ("torch", "numpy", "dictionary-learning", "sae-lens"))
    text += f"\n{data}\n" if data else ""
    text += f"\nSAE {d_in} → {d_sae} latents, batch {batch_size}, Adam; GFLOP/s counts {flops / d_in / d_sae:.0f}·d_in·d_sae = {flops / 1e6:.1f} MFLOP per token (see `common.sae_step_flops`).\n\n"
    text += (
        f"The compared trainers take turns one step at a time, {args.steps * args.repeats} timed steps each after {args.warmup} "
        "warm-up steps, and each is credited with its median step (the machine's speed drifts; alternating gives every "
        "trainer the same drift). taulib's variants below are timed alone, best of "
        f"{args.repeats} × {args.steps} steps.\n\n"
    )
    text += "Matmul ceilings measured in this run (GFLOP/s):\n\n" + markdown_table(["matmul", "GFLOP/s"], [(k, v) for k, v in ceilings.items()])
    text += f"\nThe float32 ceiling below is the best float32 figure above: **{ceiling:.0f} GFLOP/s**.\n\n"
    table = []
    for row in rows:
        gflops = row["tokens_per_second"] * flops / 1e9
        table.append(
            (
                row["trainer"],
                row["dtype"],
                row["seconds_per_step"] * 1e3,
                row["tokens_per_second"],
                gflops,
                f"{100 * gflops / ceiling:.0f}%",
                speedup(rows, row),
            )
        )
    text += markdown_table(["trainer", "dtype", "ms per step", "tokens/s", "GFLOP/s", "of fp32 ceiling", "taulib's speed-up"], table)
    for note in notes:
        text += f"\n{note}.\n"
    text += "\nFrom initialisation (a fresh SAE fires about half its latents: every step is dense):\n\n" + goals(
        rows, flops, ceiling, batch_size, matmul_seconds
    )
    if trained:
        text += (
            f"\n**Trained.** taulib trained an SAE for {trained_steps} steps (L1 coefficient {args.trained_coefficient}, "
            f"learning rate {args.trained_lr:g}, float32) until its L0 on the first batch was at most {args.trained_l0:g}; each trainer's "
            "SAE was given those weights and timed as above, training on at that coefficient. L0 is each SAE's active latents per "
            "token on the first batch when timing began and when it ended. GFLOP/s counts the dense step's FLOPs (the work the "
            "references do); taulib's sparse side does less.\n\n"
        )
        text += markdown_table(
            ["trainer", "dtype", "L0 (start → end)", "ms per step", "tokens/s", "dense-equivalent GFLOP/s", "taulib's speed-up"],
            [
                (
                    r["trainer"],
                    r["dtype"],
                    f"{r['l0']:.0f} → {r['l0_after']:.0f}",
                    r["seconds_per_step"] * 1e3,
                    r["tokens_per_second"],
                    r["tokens_per_second"] * flops / 1e9,
                    speedup(trained, r),
                )
                for r in trained
            ],
        )
        text += "\n" + trained_goals(trained, d_sae, args.dtypes)
    if run:
        text += render_whole_run(args, run, batch_size)
    if variants:
        now = {row["dtype"]: row["tokens_per_second"] for row in variants if "(taulib now)" in row["variant"]}
        text += "\nVariants of taulib's step explored (same data, steps and protocol):\n\n"
        text += markdown_table(
            ["variant", "dtype", "threads", "tokens/s", "GFLOP/s", "vs taulib now", "note"],
            [
                (
                    r["variant"],
                    r["dtype"],
                    r["threads"],
                    r["tokens_per_second"],
                    r["tokens_per_second"] * flops / 1e9,
                    f"{r['tokens_per_second'] / now[r['dtype']]:.2f}×",
                    r["note"],
                )
                for r in variants
            ],
        )
    if e2e:
        text += f"\ntaulib's whole `AnnealedTrainer.train()` (batch order, logging every {10} steps, 8 checkpoints, resumable state), then the final SAE on {e2e[0]['heldout_tokens']:,} held-out tokens:\n\n"
        text += markdown_table(
            ["compute dtype", "tokens trained", "tokens/s end to end", "held-out explained variance", "held-out L0"],
            [(r["dtype"], f"{r['tokens']:,}", r["tokens_per_second"], f"{r['heldout_explained_variance']:.4f}", f"{r['heldout_l0']:.1f}") for r in e2e],
        )
        by = {r["dtype"]: r for r in e2e}
        if {"bfloat16", "float32"} <= set(by):
            difference = by["bfloat16"]["heldout_explained_variance"] - by["float32"]["heldout_explained_variance"]
            text += f"\nHeld-out explained variance, bfloat16 minus float32: **{difference:+.1e}**.\n"
    return text


def render_whole_run(args: argparse.Namespace, run: list[dict], batch_size: int) -> str:
    steps = run[0]["steps"]
    text = (
        f"\n**A whole run.** Each trainer trained the same fresh SAE (taulib's initial weights) for {steps} steps "
        f"({steps * batch_size:,} tokens; L1 coefficient {args.trained_coefficient}, learning rate {args.trained_lr:g}) on the same "
        "batches, the trainers taking turns step by step; tokens/s is over the whole run, warm-up and first steps included. "
        "taulib's first steps are dense; once few enough of its latents fire it runs its sparse side. L0 and explained "
        f"variance are the final SAE's on {run[0]['heldout_tokens']:,} held-out tokens.\n\n"
    )
    text += markdown_table(
        ["trainer", "dtype", "seconds", "tokens/s", "held-out L0", "held-out explained variance", "taulib's speed-up"],
        [
            (
                r["trainer"],
                r["dtype"],
                f"{r['seconds']:.1f}",
                r["tokens_per_second"],
                f"{r['heldout_l0']:.1f}",
                f"{r['heldout_explained_variance']:.4f}",
                speedup(run, r),
            )
            for r in run
        ],
    )
    return text + "\n" + "\n".join(f"- {dtype}, whole run: {versus_references(run, dtype)}." for dtype in args.dtypes) + "\n"


def speedup(rows: list[dict], row: dict) -> str:
    """taulib's tokens/s over `row`'s, at the row's dtype, as a table cell."""
    ours = next(r for r in rows if r["trainer"] == "taulib" and r["dtype"] == row["dtype"])
    return f"{ours['tokens_per_second'] / row['tokens_per_second']:.2f}×"


def versus_references(rows: list[dict], dtype: str) -> str:
    """taulib's speed-up over each reference in `rows` at `dtype`, and whether it meets the ≥ 1.5× goal."""
    ours = next(r for r in rows if r["trainer"] == "taulib" and r["dtype"] == dtype)["tokens_per_second"]
    others = [(r["trainer"], r["tokens_per_second"]) for r in rows if r["trainer"] != "taulib" and r["dtype"] == dtype]
    versus = ", ".join(f"{ours / speed:.2f}× {name}" for name, speed in others) or "no reference installed"
    verdict = ("met" if all(ours / speed >= 1.5 for _, speed in others) else "not met") if others else "not measured"
    return f"taulib is {versus} (goal ≥ 1.5× both: {verdict})"


def trained_goals(rows: list[dict], d_sae: int, dtypes: list[str]) -> str:
    lines = []
    for dtype in dtypes:
        ours = next(r for r in rows if r["trainer"] == "taulib" and r["dtype"] == dtype)
        lines.append(f"- {dtype}, trained (taulib at {ours['l0'] / d_sae:.1%} density): {versus_references(rows, dtype)}.")
    return "\n".join(lines) + "\n"


def goals(rows: list[dict], flops: int, ceiling: float, batch_size: int, matmul_seconds: dict[str, float]) -> str:
    """The goals, met or not, and the bound the matmuls alone put on taulib's step.

    `matmul_seconds` is, per dtype, the measured time of the dense step's five matmuls on the kernels
    taulib runs them on: a step that did nothing else would reach batch_size / seconds tokens per second.
    """
    lines = []
    for dtype in matmul_seconds:
        ours = next(r for r in rows if r["trainer"] == "taulib" and r["dtype"] == dtype)["tokens_per_second"]
        others = [(r["trainer"], r["tokens_per_second"]) for r in rows if r["trainer"] != "taulib" and r["dtype"] == dtype]
        share = ours * flops / 1e9 / ceiling
        bound = batch_size / matmul_seconds[dtype]
        limit = ", ".join(f"{bound / speed:.2f}× {name.split()[0]}" for name, speed in others)
        lines.append(
            f"- {dtype}: {versus_references(rows, dtype)}; "
            f"{100 * share:.0f}% of the float32 matmul ceiling (goal ≥ 60%: {'met' if share >= 0.6 else 'not met'}). "
            f"Its five matmuls alone, on the kernels it runs them on, take {matmul_seconds[dtype] * 1e3:.1f} ms per step "
            f"({bound * flops * 10 / 12 / 1e9:.0f} GFLOP/s) and would allow {bound:,.0f} tokens/s"
            + (f" ({limit}): the step runs at {100 * ours / bound:.0f}% of that bound" if others else f"; the step runs at {100 * ours / bound:.0f}% of it")
            + (" (over 100%: the matmuls, timed apart from the steps, met a slower moment of the machine)." if ours > bound else ".")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    torch.set_num_threads(1 if args.quick else 2)  # tiny steps on 2 shared cores: one thread waits less
    config, train, heldout = study_activations(args.parameters, args.outputs, args.quick)
    scale, _ = activation_statistics(train)
    if args.width:
        config = config.model_copy(update={"sae": config.sae.model_copy(update={"width": args.width})})
    d_in, d_sae, batch_size, lr = train.shape[1], config.sae.width, config.training.batch_size, config.training.lr
    batches = timed_batches(train, batch_size, min(args.steps, 64), scale)
    ceilings = matmul_ceiling(repeats=1 if args.quick else 5, size=256 if args.quick else 2048, dtypes=tuple(args.dtypes))
    matmul_seconds = {name: step_matmul_seconds(batch_size, d_in, d_sae, DTYPES[name], 1 if args.quick else 7) for name in args.dtypes}
    rows, notes = main_comparison(args, d_in, d_sae, batch_size, lr, batches)
    trained: list[dict[str, Any]] = []
    trained_steps = 0
    if args.trained_l0 > 0:
        sae, trained_steps = trained_state(args, d_in, d_sae, batches)
        trained = main_comparison(args, d_in, d_sae, batch_size, lr, batches, trained=sae)[0]
    run = whole_run(args, d_in, d_sae, batch_size, train, heldout, scale) if args.run_steps > 0 else []
    variants = [] if args.no_explore else explore(args, d_in, d_sae, lr, batches)
    e2e = end_to_end(args, config, train, heldout)
    data = (
        "Activations: synthetic sparse directions (taulib.activations.synthetic)."
        if args.quick
        else f"Activations: the cache `{args.parameters}` names ({config.model.name}, layer {hooked_layer(config.model)}), "
        f"{train.shape[0]:,} training and {heldout.shape[0]:,} held-out tokens, divided by taulib's input scale."
    )
    text = render(args, (d_in, d_sae, batch_size), ceilings, rows, notes, variants, e2e, trained, matmul_seconds, trained_steps, run, data)
    title = "SAE training throughput (`benchmarks/training_speed.py`)"
    if args.section != "training_speed":  # a second machine's results beside the first's
        title = f"SAE training throughput on an {torch.backends.cpu.get_cpu_capability()} CPU, {', '.join(args.dtypes)} (`benchmarks/training_speed.py`)"
    write_section(args.section, title, text, *([args.results] if args.results else []))
    print(text)
    return {"ceilings": ceilings, "rows": rows, "notes": notes, "variants": variants, "end_to_end": e2e, "trained": trained, "whole_run": run}


if __name__ == "__main__":
    main()
