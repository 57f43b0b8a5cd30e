"""What per-latent formation and seed stability cost per checkpoint, by width and matching method.

    flock /tmp/taulib-cpu.lock .venv/bin/python benchmarks/latent_formation_cost.py
    .venv/bin/python benchmarks/latent_formation_cost.py --quick --results /tmp/results.md   # seconds

One checkpoint's share of `taulib.analysis.latent_formation`: matching a final dictionary's latents
to one checkpoint's (`taulib.metrics.latent_formation.match_latents`, d_model 640 as in the study),
Hungarian (one-to-one, scipy's linear_sum_assignment) and nearest direction ("max"). Seed stability
costs one such matching per seed pair and checkpoint. Random dictionaries: the assignment's cost
depends on the cosine matrix, and random directions (no clear partners) are its hard case; trained
SAEs with formed latents solve faster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, best_of, markdown_table, provenance, write_section  # noqa: E402

from taulib.metrics.latent_formation import match_latents  # noqa: E402

D_MODEL = 640


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small widths, one repeat (a smoke test)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.widths, args.repeats = [64, 256], 1
    if any(width <= 0 for width in args.widths) or args.repeats <= 0:
        parser.error("--widths and --repeats must be positive")
    return args


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    args = parse(argv)
    rows, measured = [], {}
    for width in args.widths:
        generator = torch.Generator().manual_seed(width)
        final, other = torch.randn(width, D_MODEL, generator=generator), torch.randn(width, D_MODEL, generator=generator)
        seconds = {
            method: best_of(lambda method=method, final=final, other=other: match_latents(final, other, method), args.repeats)
            for method in ("hungarian", "max")
        }
        measured[width] = seconds
        rows.append([f"{width:,}", seconds["hungarian"], seconds["max"], 17 * seconds["hungarian"]])
        print(f"width {width}: hungarian {seconds['hungarian']:.3f} s, max {seconds['max']:.3f} s", flush=True)
    command = "python benchmarks/latent_formation_cost.py" + (" --quick" if args.quick else "")
    body = provenance(command, ("torch", "scipy")) + "\n"
    body += "Seconds to match one checkpoint's latents to the final SAE's (d_model 640, random dictionaries: the hard case):\n\n"
    body += markdown_table(["latents", "Hungarian (s)", "nearest (s)", "a run of 17 checkpoints, Hungarian (s)"], rows)
    write_section("latent_formation_cost", "Per-latent formation: matching cost per checkpoint (`benchmarks/latent_formation_cost.py`)", body, args.results)
    return measured


if __name__ == "__main__":
    main()
