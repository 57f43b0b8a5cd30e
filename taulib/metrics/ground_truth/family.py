"""The ground_truth family's work: recovery of the synthetic model's known dictionary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from taulib import atomic
from taulib.activations.synthetic import load_true_dictionary
from taulib.metrics.family import Chunk, Costs, Family, RunInputs, timing_sae
from taulib.metrics.ground_truth.metric import ground_truth_metrics, recovery_steps
from taulib.metrics.ground_truth.settings import DECLARATION
from taulib.timing import timed

if TYPE_CHECKING:
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

RECOVERY_FILE = "ground_truth_recovery.csv"


class GroundTruth(Family):
    declaration = DECLARATION

    def load(self, run: RunInputs) -> Any:
        return load_true_dictionary(run.heldout_folder)[0]

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        threshold = self.parameters(run.config).recovery_threshold
        for index, sae in enumerate(saes):
            truth, best = ground_truth_metrics(state, sae.W_dec, threshold)
            chunk.scalars[index] |= truth.as_dict()
            chunk.details[index]["gt_max_cosine"] = best.tolist()  # per true feature: its recovery step over the checkpoints

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        if config.model.synthetic is None:
            return 0.0
        width, n_features = config.sae.width, config.model.synthetic.n_features
        return costs.measured(f"ground_truth|d{d_model}|w{width}|n{n_features}", lambda: ground_truth_seconds(d_model, width, n_features))

    def finish(self, run_dir: Path, records: dict[int, dict[str, Any]], by_step: dict[int, dict[str, Any]], config: RunConfig) -> None:
        """Per true feature: its recovery step and tokens (first checkpoint from which it stays recovered; -1: not
        recovered at the last one) and its best decoder cosine at the last checkpoint."""
        steps = sorted(records)
        cosines = np.array([records[step]["details"]["gt_max_cosine"] for step in steps])
        recovered_at = recovery_steps(steps, cosines, self.parameters(config).recovery_threshold)
        tokens = {step: by_step[step]["tokens"] for step in steps}
        table = pd.DataFrame(
            {
                "feature": np.arange(cosines.shape[1]),
                "recovery_step": recovered_at,
                "recovery_tokens": [tokens[int(step)] if step >= 0 else -1 for step in recovered_at],
                "final_max_cosine": cosines[-1],
            }
        )
        atomic.write_bytes_if_changed(run_dir / "evaluation" / RECOVERY_FILE, table.to_csv(index=False).encode())


def ground_truth_seconds(d_model: int, width: int, n_features: int) -> float:
    sae, true = timing_sae(d_model, width), torch.randn(n_features, d_model)
    return timed(lambda: ground_truth_metrics(true, sae.W_dec))


FAMILY = GroundTruth()
