"""Whether an annealed arm ends near its equilibrium: τ annealed over all of training against τ annealed over the
first part and then held while the learning rate decays, at the default study's middle L0 target.

    .venv/bin/python benchmarks/equilibrium.py OUTPUTS [--arms ...] [--fractions 1 0.8] [--target 50] \
        [--ce-sequences 32] [--max-runs 3] [--scratch DIR] [--write]

OUTPUTS is a finished default study's outputs folder (`make study`); its caches and its generated parameter files are
read, never written. In the default regime (lr 3e-3, decayed linearly to 0 over the last 20% of steps), an arm
annealed to the last step has a penalty λ/τ(t) that rises while the learning rate decays, so its sparsity lags its
penalty when it is compared. Holding τ at its final value from `anneal_fraction` on (`schedule.anneal_fraction`; 0.8
ends the anneal where the decay starts) gives the decay a fixed penalty to settle under. This measurement chose the
study's arms' `anneal_fraction: 0.8` (docs/method.md, "Anneal, then settle"); `--fractions` sets both explicitly.

Per arm and anneal fraction, runs are trained with the default arm's settings otherwise (seed 0, 1,024 latents,
500,000 tokens), at λ chosen as in `regime_curve.py` (the first from the study's own calibrated λ for the target,
then L0 ∝ λ^-1.75) until two runs bracket the target or `--max-runs` is reached. Per run: held-out L0 at 90% of the
steps and at the end (the drift is their ratio − 1, as the report's), explained variance, dead fraction and the
CE-loss score on `--ce-sequences` held-out sequences; each read at the target off the runs that bracket it. One
seed: a lead for the decision, not a verdict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from taulib.config import RunConfig, load_run_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402
from quality_curve import L0_EXPONENT, at_target, bracketed_runs, study_inputs  # noqa: E402

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"
DEFAULT_ARMS = ("cosine_0.3_to_0.05_tightened", "linear_0.3_to_0.05", "baseline_plain_l1")


def calibrated_lambda(outputs: Path, arm: str, target: float) -> float | None:
    """The λ the study's calibration chose for this arm and target (its generated seed-0 parameter file), if any."""
    for path in sorted((outputs / "sweeps" / "parameters").glob(f"{arm}__lam*__seed0.yaml")):
        config = load_run_config(path)
        if config.sweep is not None and config.sweep.l0_target == target and config.sweep.arm == arm:
            return config.training.l1_coefficient
    return None


def arm_config(arm: str, fraction: float, coefficient: float) -> RunConfig:
    base = load_run_config(PARAMETERS / f"{arm}.yaml")
    schedule = base.schedule.model_dump()
    if schedule["kind"] in ("cosine", "linear"):  # plain L1 has no anneal to end early
        schedule["anneal_fraction"] = fraction
    return load_run_config(PARAMETERS / f"{arm}.yaml", {"schedule": schedule, "training": {"l1_coefficient": coefficient}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS))
    parser.add_argument("--fractions", nargs="+", type=float, default=[1.0, 0.8], help="schedule.anneal_fraction values")
    parser.add_argument("--target", type=float, default=50.0)
    parser.add_argument("--max-runs", type=int, default=3, help="runs per arm and fraction")
    parser.add_argument("--ce-sequences", type=int, default=32)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/taulib-equilibrium"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    for arm in args.arms:  # every arm file and fraction checked before any work
        if not (PARAMETERS / f"{arm}.yaml").is_file():
            raise SystemExit(f"--arms: no parameter file {PARAMETERS / arm}.yaml")
        for fraction in args.fractions:
            arm_config(arm, fraction, 0.1)
    torch.set_num_threads(2)

    inputs = study_inputs(args.outputs, args.ce_sequences)
    rows, notes = [], []
    for arm in args.arms:
        first = calibrated_lambda(args.outputs, arm, args.target)
        for fraction in args.fractions if arm_config(arm, 1.0, 0.1).schedule.kind in ("cosine", "linear") else [1.0]:
            # another anneal span moves the mean penalty: start from the λ the study calibrated for the arm file's own span,
            # scaled by the ratio of the mean of 1/τ
            coefficient = first if first is not None else 0.1
            calibrated_span = load_run_config(PARAMETERS / f"{arm}.yaml").schedule.anneal_fraction
            if first is not None and fraction != calibrated_span:
                study, this = (arm_config(arm, f, first).schedule.to_schedule() for f in (calibrated_span, fraction))
                ratio = np.mean([1 / this.at_step(s, 1000) for s in range(1000)]) / np.mean([1 / study.at_step(s, 1000) for s in range(1000)])
                coefficient = first / ratio ** (1 / L0_EXPONENT)
            measured, _ = bracketed_runs(
                lambda c, arm=arm, fraction=fraction: arm_config(arm, fraction, c),
                args.scratch / f"{arm}__anneal{fraction:g}",
                coefficient,
                inputs,
                args.target,
                args.max_runs,
                f"{arm} anneal {fraction:g}",
            )
            lambdas = sorted(measured)

            def read(name: str, digits: str = ".3f", measured=measured) -> str:
                return at_target(measured, name, args.target, digits)

            label = arm_config(arm, 1.0, 0.1).schedule.label  # the range; the next column says the span
            rows.append([arm, label, f"{fraction:g}", read("drift", "+.1%"), read("ev"), read("ce"), read("dead", ".1%")])
            notes.append(
                f"{arm}, anneal fraction {fraction:g}: "
                + "; ".join(f"λ {c:g} → L0 {measured[c]['l0']:.1f}, drift {measured[c]['drift']:+.1%}" for c in lambdas)
            )

    target = f"{args.target:g}"
    table = markdown_table(
        [
            "arm",
            "schedule",
            "τ anneals over (fraction of training)",
            f"L0 drift over the last 10% at L0 {target}",
            f"EV at L0 {target}",
            f"CE-loss score at L0 {target}",
            "dead latents",
        ],
        rows,
    )
    command = " ".join(["benchmarks/equilibrium.py", *sys.argv[1:]])
    body = (
        f"{provenance(command)}\n\n{table}\n\n"
        f"The default regime (lr 3e-3 with a 5% warm-up, decayed linearly to 0 over the last 20% of steps, batch 512, 500,000 tokens, seed 0); "
        f"each column read at L0 {target} linearly in log L0 between the two runs of the row that bracket it (unmatched: none do). "
        f"Held-out L0, EV and dead fraction on {len(inputs.heldout):,} tokens; CE-loss score on {len(inputs.sequences)} held-out sequences. "
        f"L0 drift: final L0 over the L0 at 90% of the steps, minus 1 (the report's measure).\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    )
    print(body)
    if args.write:
        write_section(
            "equilibrium", "Annealed over all of training, or annealed and then held while the learning rate decays (`benchmarks/equilibrium.py`)", body
        )


if __name__ == "__main__":
    main()
