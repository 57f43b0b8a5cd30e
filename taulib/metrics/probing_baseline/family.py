"""The probing-baseline family's work: a grid of random SAEs probed once per width, read at each checkpoint's L0."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from taulib import atomic
from taulib.activations.models import model_footprint
from taulib.metrics.family import Chunk, Costs, Family, RunInputs
from taulib.metrics.probing.family import FAMILY as PROBING
from taulib.metrics.probing_baseline.metric import baseline_at, baseline_correct_at, baseline_grid
from taulib.metrics.probing_baseline.settings import DECLARATION

if TYPE_CHECKING:
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder


class ProbingBaseline(Family):
    declaration = DECLARATION

    def load(self, run: RunInputs) -> list[dict[str, Any]]:
        """The grid of this width: read from the evaluation inputs folder, probed there once if missing (every run of a
        width and probing settings shares it)."""
        parameters, config = self.parameters(run.config), run.config
        key = {
            "records": 2,  # 2: each grid point keeps its per-example top-1 correctness (the lift's test-set bootstrap)
            "width": config.sae.width,
            "l0s": parameters.l0s,
            "seed": parameters.seed,
            "heldout": config.evaluation.section("core").tokens,
            "probing": PROBING.settings(config).data_key(),
            "bfloat16": PROBING.bfloat16(config),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        path = run.data_folder / f"probing_baseline-{digest}.json"
        if path.is_file():
            return atomic.read_json(path)["grid"]
        grid = baseline_grid(run.heldout, config.sae.width, PROBING.load(run), parameters.l0s, parameters.seed, PROBING.bfloat16(config))
        atomic.write_json(path, {"key": key, "grid": grid})
        return grid

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        for index in range(len(saes)):
            density = chunk.density[index]
            l0 = float(density.sum()) if density is not None else float("nan")  # mean latents firing per held-out token
            chunk.scalars[index] |= {f"random_{name}": value for name, value in baseline_at(state, l0).items()}
            correct = baseline_correct_at(state, l0)
            if correct is not None:
                chunk.details[index]["random_top_1_correct"] = correct

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        return 0.0  # an interpolation; the grid is priced once per width, with the inputs

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        # the grid, probed at the first run's evaluation: a checkpoint's probing per random SAE
        grid = len([l0 for l0 in self.parameters(config).l0s if l0 < config.sae.width])
        return grid * PROBING.checkpoint_seconds(costs, config, model_footprint(config.model).d_model)


FAMILY = ProbingBaseline()
