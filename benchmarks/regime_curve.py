"""Which training settings bring plain L1 into the regime SAE researchers recognise, and what each costs: at the
default study's middle L0 target, held-out explained variance, the spliced CE-loss score, how far the dictionary
moved from its initialisation and how far L0 still drifts at the end, against the learning rate, a final
learning-rate decay, the batch size and the passes over the cached tokens.

    .venv/bin/python benchmarks/regime_curve.py OUTPUTS [--grid LR:DECAY:BATCH:TOKENS ...] [--target 50] \
        [--ce-sequences 32] [--max-runs 3] [--scratch DIR] [--write]

OUTPUTS is a finished default study's outputs folder (`make study`); its caches are read, never written. Each grid
point is a plain-L1 configuration (the default arm's settings otherwise: 1,024 latents, its seed, its 5% warm-up):
learning rate, the fraction of final steps over which it decays linearly to 0 (`training.lr_decay_fraction`),
batch size and training tokens (beyond the cache's 500,000, further reshuffled passes). Per point, runs are trained
to the end (a decay ends a run, so no point's run is another's checkpoint) at λ chosen adaptively as in
`quality_curve.py` (the first λ from the learning rate, L0 ∝ λ^-1.75) until two runs bracket the target or
`--max-runs` is reached; each run is checkpointed at 0, at 90% of its steps and at the end.

Per run, at the end: held-out L0, explained variance and dead fraction (`taulib.metrics.core`), the CE-loss score on
`--ce-sequences` held-out sequences, the decoder's cosine to its initialisation (median over latents, and the median
weighted by each latent's held-out firing frequency: `taulib.metrics.decoder_drift`), and the L0 drift over the last
10% of training (final L0 / L0 at 90% − 1). Each is read at the target L0 off the point's runs, linearly in log L0
between the two that bracket it (`taulib.analysis.frontier.read_at_l0`); the CE interval is the reading's own, the
sequences resampled alike for every run. One seed: a lead for choosing the default, not a verdict between settings.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from taulib.config import RunConfig, load_run_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402
from quality_curve import ARM, L0_EXPONENT, at_target, bracketed_runs, reading_interval, study_inputs  # noqa: E402

DEFAULT_GRID = (
    "3e-4:0:1024:500000",
    "1e-3:0:1024:500000",
    "3e-3:0:1024:500000",
    "3e-4:0.2:1024:500000",
    "1e-3:0.2:1024:500000",
    "3e-3:0.2:1024:500000",
    "1e-3:0.2:1024:1000000",
    "3e-3:0.2:1024:1000000",
    "3e-3:0.2:512:500000",
    "3e-3:0.2:256:500000",
    "3e-3:0.2:4096:500000",
    "1e-2:0.2:4096:500000",
    "3e-3:0.2:1024:2000000",
)
# the default study's plain L1 at lr 3e-4: λ 0.6459 → L0 51; at a higher lr the same λ lands sparser (L0 ∝ lr^-0.49
# between 3e-4 and 3e-3 at λ 0.6456 on its cache), so the first λ aims at the target from there
FIRST_LAMBDA, FIRST_L0, LR_EXPONENT = 0.6459, 51.2, -0.49


@dataclass(frozen=True)
class Point:
    lr: float
    decay: float
    batch: int
    tokens: int

    @classmethod
    def parse(cls, text: str) -> Point:
        try:
            lr, decay, batch, tokens = text.split(":")
            return cls(float(lr), float(decay), int(batch), int(tokens))
        except ValueError as error:
            raise SystemExit(f"--grid {text!r}: expected LR:DECAY:BATCH:TOKENS, e.g. 3e-3:0.2:1024:500000 ({error})") from None

    def config(self, coefficient: float) -> RunConfig:
        overrides = {"n_tokens": self.tokens, "l1_coefficient": coefficient, "lr": self.lr, "lr_decay_fraction": self.decay, "batch_size": self.batch}
        return load_run_config(ARM, {"sae": {"width": 1024}, "training": overrides})

    def first_lambda(self, target: float) -> float:
        return FIRST_LAMBDA * (FIRST_L0 * (self.lr / 3e-4) ** LR_EXPONENT / target) ** (1 / L0_EXPONENT)

    @property
    def folder(self) -> str:
        return f"lr{self.lr:g}_decay{self.decay:g}_b{self.batch}_t{self.tokens}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path)
    parser.add_argument("--grid", nargs="+", default=list(DEFAULT_GRID), help="LR:DECAY:BATCH:TOKENS per point")
    parser.add_argument("--target", type=float, default=50.0)
    parser.add_argument("--max-runs", type=int, default=3, help="runs per point")
    parser.add_argument("--ce-sequences", type=int, default=32)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/taulib-regime-curve"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    points = [Point.parse(text) for text in args.grid]  # every point parsed before any work
    torch.set_num_threads(2)

    inputs = study_inputs(args.outputs, args.ce_sequences)
    cache_tokens = inputs.train.activations.shape[0]
    print(f"cache: {cache_tokens:,} training tokens; CE on {len(inputs.sequences)} sequences; target L0 {args.target:g}", flush=True)

    rows, notes = [], []
    for point in points:
        measured, losses = bracketed_runs(
            point.config, args.scratch / point.folder, point.first_lambda(args.target), inputs, args.target, args.max_runs, point.folder
        )
        lambdas = sorted(measured)
        l0s = [measured[c]["l0"] for c in lambdas]

        def read(name: str, digits: str = ".3f", measured=measured) -> str:
            return at_target(measured, name, args.target, digits)

        ce = read("ce")
        if ce != "unmatched":
            low, high = reading_interval(l0s, [losses[c] for c in lambdas], args.target, "linear", seed=math.ceil(point.tokens / point.batch))
            ce = f"{ce} [{low:.3f}, {high:.3f}]"
        rows.append(
            [
                f"{point.lr:g}",
                f"{point.decay:g}",
                f"{point.batch:,}",
                f"{point.tokens:,} ({point.tokens / cache_tokens:g})",
                read("ev"),
                ce,
                read("cos"),
                read("wcos"),
                read("drift", "+.1%"),
                read("dead", ".1%"),
                f"{np.median([measured[c]['seconds'] for c in lambdas]):.0f}",
            ]
        )
        notes.append(f"{point.folder}: " + "; ".join(f"λ {c:g} → L0 {measured[c]['l0']:.1f}, dead {measured[c]['dead']:.1%}" for c in lambdas))

    target = f"{args.target:g}"
    table = markdown_table(
        [
            "lr",
            "final decay (fraction of steps)",
            "batch",
            "training tokens (passes)",
            f"EV at L0 {target}",
            f"CE-loss score at L0 {target} [95% CI]",
            "decoder cosine to init, median",
            "the same, firing-weighted",
            "L0 drift over the last 10%",
            "dead latents",
            "training seconds",
        ],
        rows,
    )
    command = " ".join(["benchmarks/regime_curve.py", *sys.argv[1:]])
    body = (
        f"{provenance(command)}\n\n{table}\n\n"
        f"Plain L1 at 1,024 latents, the default arm's settings otherwise (one seed, a 5% learning-rate warm-up); each column read at L0 {target} "
        f"linearly in log L0 between the two runs of the point that bracket it (unmatched: none do). Held-out EV and firing on {len(inputs.heldout):,} tokens; "
        f"CE-loss score on {len(inputs.sequences)} held-out sequences, its interval the reading's own. Decoder cosine to init: per latent, between its final "
        f"decoder row and its initial one; firing-weighted: each latent weighted by its held-out firing frequency. L0 drift: final L0 over the L0 at 90% "
        f"of the steps, minus 1. Training seconds: median over the point's runs, from the initial checkpoint's file to the final one's "
        f"(a run trained before is reused with its times; runs that shared the machine with other work read slower: compare the study's stages for cost).\n\n"
        + "\n".join(f"- {note}" for note in notes)
        + "\n"
    )
    print(body)
    if args.write:
        write_section(
            "regime_curve", "Quality against learning rate, its decay, batch size and passes at the middle L0 target (`benchmarks/regime_curve.py`)", body
        )


if __name__ == "__main__":
    main()
