"""The probing baseline: sparse probing of a random SAE of the same width at a checkpoint's L0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taulib.metrics.probing.metric import ProbingData, ProbingSettings, TaskData, _binary_tasks, evaluate_sparse_probing_many, stratified_test_mask
from taulib.metrics.probing_baseline.metric import baseline_at, baseline_correct_at, baseline_grid, held_out_l0, random_sae_at_l0

D, WIDTH = 16, 64


def _probing_data() -> ProbingData:
    generator = torch.Generator().manual_seed(0)
    tasks = []
    for name, classes in (("a", 2), ("b", 3)):
        labels = [f"c{c}" for c in range(classes) for _ in range(20)]
        is_test = stratified_test_mask(labels, 0.3, 0)
        lengths = torch.randint(1, 9, (len(labels),), generator=generator)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        shift = torch.tensor([float(label[1]) for label in labels]).repeat_interleave(lengths)[:, None]
        tasks.append(TaskData(name, labels, (torch.randn(int(offsets[-1]), D, generator=generator) + shift).half(), offsets, is_test, _binary_tasks(name, labels, is_test, 0)))
    return ProbingData(tasks, ProbingSettings(tasks=("a", "b"), examples_per_class=20, ks=(1, 5)))


def _heldout() -> torch.Tensor:
    return torch.randn(4000, D, generator=torch.Generator().manual_seed(1)) * 2 + 0.5


def test_a_random_sae_fires_the_l0_it_was_thresholded_for():
    heldout = _heldout()
    for l0 in (2.0, 8.0, 30.0):
        assert held_out_l0(random_sae_at_l0(heldout, WIDTH, l0, seed=0), heldout) == pytest.approx(l0, rel=0.02)
    with pytest.raises(ValueError, match="between 0 and its width"):
        random_sae_at_l0(heldout, WIDTH, 64, seed=0)


def test_a_random_sae_against_itself_has_no_lift():
    """A grid SAE probed as if it were a checkpoint: the baseline read at its own held-out L0 is its own accuracy."""
    heldout, data = _heldout(), _probing_data()
    grid = baseline_grid(heldout, WIDTH, data, (2, 8, 30, 100), seed=0, autocast=False)
    assert len(grid) == 3  # L0 100 is not below the width: left out
    for target in (2, 8, 30):
        sae = random_sae_at_l0(heldout, WIDTH, target, seed=0)
        ((own, _),) = evaluate_sparse_probing_many([sae], data, autocast=False)
        read = baseline_at(grid, held_out_l0(sae, heldout))
        assert {key: read[key] - own[key] for key in read} == dict.fromkeys(read, 0.0)


def test_the_baseline_is_read_linearly_in_log_l0_and_not_outside_the_grid():
    grid = [{"l0": 10.0, "accuracy": {"sae_top_1_accuracy": 0.6}}, {"l0": 40.0, "accuracy": {"sae_top_1_accuracy": 0.8}}]
    assert baseline_at(grid, 20.0)["sae_top_1_accuracy"] == pytest.approx(0.7)  # halfway in log L0
    assert math.isnan(baseline_at(grid, 5.0)["sae_top_1_accuracy"]) and math.isnan(baseline_at(grid, 80.0)["sae_top_1_accuracy"])
    assert math.isnan(baseline_at(grid, float("nan"))["sae_top_1_accuracy"])


def test_the_family_reads_each_checkpoints_baseline_at_its_l0_and_probes_the_grid_once(tmp_path, monkeypatch):
    from taulib.config import RunConfig
    from taulib.metrics.family import Chunk, RunInputs
    from taulib.metrics.probing_baseline.family import FAMILY

    heldout, data = _heldout(), _probing_data()
    config = RunConfig(run_name="x", sae={"width": WIDTH}, training={"compute_dtype": "float32"}, evaluation={"core": {"tokens": 4000}, "probing_baseline": {"l0s": [2, 8, 30]}})
    run = RunInputs(config, tmp_path, 0, tmp_path, tmp_path, heldout)
    from taulib.metrics.probing.family import FAMILY as PROBING

    monkeypatch.setattr(PROBING, "load", lambda run: data)  # the prepared texts, without a model
    grid = FAMILY.load(run)
    assert len(list(tmp_path.glob("probing_baseline-*.json"))) == 1
    assert FAMILY.load(run) == grid  # read back: one grid per width and settings
    chunk = Chunk([0, 1], 1, [{}, {}], [{}, {}], [np.full(WIDTH, 8.0 / WIDTH), np.full(WIDTH, 1000.0 / WIDTH)])
    FAMILY.evaluate([None, None], grid, run, chunk)
    assert chunk.scalars[0] == {f"random_{key}": value for key, value in baseline_at(grid, 8.0).items()}
    assert set(chunk.scalars[0]) == {"random_sae_top_1_accuracy", "random_sae_top_5_accuracy"}
    assert all(math.isnan(value) for value in chunk.scalars[1].values())  # L0 1,000: beyond the grid
    # the per-example baseline the lift's test-set bootstrap resamples, recorded where the grid reaches
    assert chunk.details[0]["random_top_1_correct"] == baseline_correct_at(grid, 8.0) and "random_top_1_correct" not in chunk.details[1]


def test_the_per_example_baseline_averages_to_the_baselines_accuracy():
    """Between and at the grid's L0s, each binary task's per-example baseline averages (over its examples, then over
    the task's binary tasks, then over tasks, as the metric does) to `baseline_at`'s top-1 accuracy; a grid recorded
    without per-example answers, or an L0 outside it, has none."""
    heldout, data = _heldout(), _probing_data()
    grid = baseline_grid(heldout, WIDTH, data, (2, 8, 30), seed=0, autocast=False)
    for l0 in (grid[0]["l0"], 4.0, 13.0, grid[-1]["l0"]):
        correct = baseline_correct_at(grid, l0)
        by_task: dict[str, list[float]] = {}
        for key, values in correct.items():
            assert all(0.0 <= value <= 1.0 for value in values)
            by_task.setdefault(key.split("|")[0], []).append(float(np.mean(values)))
        accuracy = np.mean([np.mean(values) for values in by_task.values()])
        assert accuracy == pytest.approx(baseline_at(grid, l0)["sae_top_1_accuracy"], abs=1e-6)  # per-example values rounded to 1e-6
    assert baseline_correct_at(grid, 1000.0) is None
    assert baseline_correct_at([{key: value for key, value in point.items() if key != "top_1_correct"} for point in grid], 4.0) is None
