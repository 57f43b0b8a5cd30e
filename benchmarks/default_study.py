"""Report the measured figures of a finished study, read from its outputs/.

    .venv/bin/python benchmarks/default_study.py [outputs]

Prints a table of each arm's held-out L0 / explained variance / dead fraction (final SAE
on the held-out cache), its training throughput and wall time, the extraction throughput, and the
study's total wall time. The throughputs are those the pipeline recorded while it ran
(`summary.json`, the cache manifests).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from taulib import atomic
from taulib.evaluation import study_results


def main(outputs: Path) -> None:
    torch.set_num_threads(2)
    table = study_results(outputs)
    total = atomic.read_json(outputs / "study_summary.json")["seconds"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nstudy wall time recorded by the runner (extraction notebook + training): {total / 60:.1f} min")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs"))
