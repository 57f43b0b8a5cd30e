"""The probing endpoints' test-set bootstrap on constructed runs whose per-example records are known."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from taulib.analysis.intervals import paired_difference
from taulib.analysis.matched import MatchedSettings, run_row
from taulib.analysis.probe_bootstrap import accuracy_replicates, probe_replicates, resample_test_sets, run_probe_replicates
from taulib.analysis.sequence_bootstrap import replicated_difference
from taulib.analysis.study_data import Run, StudyData
from taulib.config import RunConfig

N_TEST = 100
STEPS = [0, 10, 20, 40, 60, 80, 100]
KEYS = [("sentiment", "positive"), ("topic", "a"), ("topic", "b")]


def _correct(accuracy: float, seed: int) -> np.ndarray:
    """N_TEST examples, round(accuracy × N_TEST) of them correct, in a seeded order."""
    hits = np.zeros(N_TEST, dtype=int)
    hits[: int(round(accuracy * N_TEST))] = 1
    return np.random.default_rng(seed).permutation(hits)


def _arm(tmp_path, name: str, accuracies: list[float], seed: int = 0, l0_target: float = 20.0, random_final: dict | None = None) -> Run:
    """A run with per-checkpoint probing records whose top-1 accuracy follows `accuracies`; which
    examples are right depends on the arm (the part of the name before _s), not on the seed. `random_final`, per
    binary task ("task|class"), is the random-SAE baseline's per-example correctness recorded at the final checkpoint."""
    run_dir = tmp_path / name
    records = run_dir / "evaluation" / "records-k"
    records.mkdir(parents=True)
    (run_dir / "evaluation" / "evaluation.json").write_text(json.dumps({"key": "k"}))
    table = []
    for index, (step, accuracy) in enumerate(zip(STEPS, accuracies, strict=True)):
        rows = [
            {"task": task, "positive_class": positive, "top_1_correct": _correct(accuracy, zlib.crc32(f"{name.split('_s')[0]}|{index}|{j}".encode())).tolist()}
            for j, (task, positive) in enumerate(KEYS)
        ]
        details = {"probing_tasks": rows}
        final = index == len(STEPS) - 1
        if final and random_final is not None:
            details["random_top_1_correct"] = random_final
        (records / f"step_{step:07d}.json").write_text(json.dumps({"details": details}))
        topic = np.mean([np.mean(row["top_1_correct"]) for row in rows if row["task"] == "topic"])
        sentiment = np.mean(rows[0]["top_1_correct"])
        l0 = 200.0 * (l0_target / 200.0) ** (index / (len(STEPS) - 1))  # falls to its target
        table.append({"step": step, "tokens": 100 * step, "l0": l0, "sae_top_1_accuracy": (sentiment + topic) / 2})
        if random_final is not None:  # the baseline's accuracy as the family records it: the mean over binary tasks, then tasks
            by_task = {task: np.mean([np.mean(v) for k, v in random_final.items() if k.split("|")[0] == task]) for task in ("sentiment", "topic")}
            table[-1]["random_sae_top_1_accuracy"] = float(np.mean(list(by_task.values()))) if final else 0.5
    config = RunConfig.model_validate({"run_name": name, "seed": seed, "sae": {"width": 16}, "training": {"n_tokens": 10_000, "batch_size": 100}})
    training = pd.DataFrame({"step": STEPS, "tau": 1.0, "l1_coefficient_effective": 0.04})
    return Run(name, run_dir, config, pd.DataFrame(table), training, name.split("_s")[0], l0_target)


def test_identity_draws_give_back_the_run_tables_values(tmp_path):
    arm = _arm(tmp_path, "rising_s0", [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8])
    identity = {key: np.arange(N_TEST)[None, :] for key in KEYS}
    replicates = run_probe_replicates(arm, MatchedSettings(latent_formation=None), identity)
    row = run_row(arm, MatchedSettings(latent_formation=None))
    assert replicates["formation_sae_top_1_accuracy"][0] == pytest.approx(row["formation_sae_top_1_accuracy"])
    assert replicates["current_sae_top_1_accuracy"][0] == pytest.approx(row["current_sae_top_1_accuracy"])
    assert math.isfinite(row["current_sae_top_1_accuracy"]) and 0 < row["formation_sae_top_1_accuracy"] < 1


def test_the_replicates_spread_as_the_binomial_sampling_error():
    p = 0.7
    correct = {("sentiment", "positive"): _correct(p, 1)}
    draws = resample_test_sets({("sentiment", "positive"): N_TEST}, n_resamples=4000, seed=2)
    accuracy = accuracy_replicates(correct, draws)
    assert accuracy.mean() == pytest.approx(p, abs=0.005)
    assert accuracy.std() == pytest.approx(math.sqrt(p * (1 - p) / N_TEST), rel=0.06)


def test_a_difference_without_seed_spread_is_tested_against_the_test_sets_error(tmp_path):
    """Two arms whose seeds agree exactly: a paired t interval has no spread (untestable); with the
    test set's error, the difference is tested, its interval set by the test sets' binomial error."""
    better = [_arm(tmp_path, f"better_s{s}", [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8], seed=s) for s in range(3)]
    worse = [_arm(tmp_path, f"worse_s{s}", [0.5, 0.5, 0.55, 0.6, 0.65, 0.65, 0.65], seed=s) for s in range(3)]
    study = StudyData(tmp_path, tuple(better + worse))
    settings = MatchedSettings(latent_formation=None)
    runs = pd.DataFrame([run_row(run, settings) | {"final_l0": 20.0} for run in study.runs])
    found = probe_replicates(study, settings, n_resamples=2000)
    assert set(found) == {run.name for run in study.runs}
    column = "current_sae_top_1_accuracy"
    points = dict(zip(runs["run"], runs[column], strict=True))
    gap = replicated_difference(runs, points, {run: r[column] for run, r in found.items()}, "better", "worse", 20.0, on_frontier=False)
    assert gap.n == 3 and gap.value == pytest.approx(points["better_s0"] - points["worse_s0"])
    seeds_only = paired_difference(np.array([points[f"better_s{s}"] for s in range(3)]), np.array([points[f"worse_s{s}"] for s in range(3)]))
    assert math.isnan(seeds_only.p_value)  # no spread between seeds: the paired t interval cannot test it
    # the seeds agree, so the interval is the test sets' alone: t(2) × the bootstrap SE of the difference
    # of the two arms' readings, each read between the same two checkpoints with the same weight
    both = np.mean([found[f"better_s{s}"][column] - found[f"worse_s{s}"][column] for s in range(3)], axis=0)
    assert (gap.high - gap.low) / 2 == pytest.approx(stats.t.ppf(0.975, 2) * both.std(ddof=1))
    assert 0.01 < both.std() < 0.1 and gap.p_value < 0.05


def _final_correct(arm: Run) -> dict[str, list[int]]:
    rows = json.loads((arm.run_dir / "evaluation" / "records-k" / f"step_{STEPS[-1]:07d}.json").read_text())["details"]["probing_tasks"]
    return {f"{row['task']}|{row['positive_class']}": row["top_1_correct"] for row in rows}


def test_the_probing_lift_of_a_random_sae_over_itself_is_zero_in_every_replicate(tmp_path):
    """A run whose final checkpoint answers every test example as its recorded baseline does: lift 0, and 0 under every
    resample of the test set (the two are scored on the same examples, so their error cancels)."""
    plain = _arm(tmp_path, "itself_s0", [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8])
    arm = _arm(tmp_path / "again", "itself_s0", [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8], random_final=_final_correct(plain))
    row = run_row(arm, MatchedSettings(latent_formation=None))
    draws = resample_test_sets(dict.fromkeys(KEYS, N_TEST), n_resamples=500, seed=3)
    lift = run_probe_replicates(arm, MatchedSettings(latent_formation=None), draws)["final_sae_top_1_lift"]
    assert row["final_sae_top_1_lift"] == pytest.approx(0.0, abs=1e-12)
    assert np.abs(lift).max() == pytest.approx(0.0, abs=1e-12)


def test_the_probing_lift_is_resampled_on_the_examples_both_were_scored_on(tmp_path):
    """Identity draws give back the run table's lift; resampled, the lift spreads as the paired per-example differences
    do (its standard error is theirs over the test examples), not as two independent accuracies would."""
    generator = np.random.default_rng(7)
    # a baseline that agrees with the run on most examples: the paired error is far below the unpaired one
    plain = _arm(tmp_path, "lifted_s0", [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8])
    trained = _final_correct(plain)
    baseline = {key: [hit if generator.random() < 0.9 else 0 for hit in hits] for key, hits in trained.items()}
    arm = _arm(tmp_path / "with_baseline", "lifted_s0", [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8], random_final=baseline)
    settings = MatchedSettings(latent_formation=None)
    identity = {key: np.arange(N_TEST)[None, :] for key in KEYS}
    row = run_row(arm, settings)
    assert run_probe_replicates(arm, settings, identity)["final_sae_top_1_lift"][0] == pytest.approx(row["final_sae_top_1_lift"])
    assert row["final_sae_top_1_lift"] > 0
    lift = run_probe_replicates(arm, settings, resample_test_sets(dict.fromkeys(KEYS, N_TEST), n_resamples=4000, seed=4))["final_sae_top_1_lift"]
    # the metric averages sentiment's one binary task with topic's two: the lift's variance follows from the per-example differences
    differences = {key: np.asarray(trained[f"{key[0]}|{key[1]}"], dtype=float) - np.asarray(baseline[f"{key[0]}|{key[1]}"], dtype=float) for key in KEYS}
    variance = {key: values.var() / N_TEST for key, values in differences.items()}
    expected = math.sqrt(variance[KEYS[0]] / 4 + (variance[KEYS[1]] + variance[KEYS[2]]) / 16)
    assert lift.std() == pytest.approx(expected, rel=0.08)
