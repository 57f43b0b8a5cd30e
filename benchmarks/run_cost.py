"""One default-study run's estimated cost on this machine, by metric family and L0 target: where the run stage goes.

    .venv/bin/python benchmarks/run_cost.py [--arm cosine_0.3_to_0.05_tightened] [--write]

The study's estimate (taulib.study.cost) prices a run as its training steps plus every family's evaluation of its
checkpoints (`Family.run_seconds`), from unit timings measured once per machine and kept in its speed cache
(taulib.timing.SpeedCache; measured here where missing). This prints those parts for one arm's run at each of the
sweep's L0 targets (a family's cost may depend on the run's L0: the support refit's does), without the notebook's own
start. It is the estimate, not a measurement of a study: compare the study's stages (`study_stages.py`) for that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

from taulib.activations.models import model_footprint  # noqa: E402
from taulib.metrics.families import evaluated  # noqa: E402
from taulib.study.cost import Costs  # noqa: E402
from taulib.sweep.spec import load_sweep, run_config  # noqa: E402
from taulib.timing import SpeedCache  # noqa: E402
from taulib.train.trainer import training_checkpoint_steps  # noqa: E402

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", default="cosine_0.3_to_0.05_tightened")
    parser.add_argument("--parameters", type=Path, default=PARAMETERS)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    sweep = load_sweep(args.parameters)
    arm = sweep.arm(args.arm)
    costs = Costs(SpeedCache(), show_progress=False)
    found: dict[str, dict[str, float]] = {}
    try:
        for target in sweep.l0_targets:
            config = run_config(arm, arm.config.training.l1_coefficient, sweep.calibration_seed, target)
            d_model = model_footprint(config.model).d_model
            checkpoints = len(training_checkpoint_steps(config.training))
            parts = {family.name: family.run_seconds(costs, config, d_model, checkpoints) for family in evaluated(config)}
            parts["training"] = config.training.total_steps() * costs.step(config, d_model)
            found[f"{target:g}"] = parts
    finally:
        costs.close()
    names = list(next(iter(found.values())))
    rows = [[name, *(f"{found[target][name]:.1f}" for target in found)] for name in names]
    rows.append(["**run, without its notebook's start**", *(f"**{sum(found[target].values()):.1f}**" for target in found)])
    table = markdown_table(["part", *(f"L0 {target}: seconds" for target in found)], rows)
    command = " ".join(["benchmarks/run_cost.py", *(argv if argv is not None else sys.argv[1:])])
    body = (
        f"{provenance(command)}\n\n{table}\nThe `{args.arm}` arm's run at each L0 target of the default sweep, {checkpoints} checkpoints, "
        "priced from this machine's unit timings as the study's estimate prices it (families evaluated at the final checkpoint only "
        "are priced once). An estimate, not a measured study.\n"
    )
    print(body)
    if args.write:
        write_section("run_cost", "One run's estimated cost by metric family and L0 target (`benchmarks/run_cost.py`)", body)
    return found


if __name__ == "__main__":
    main()
