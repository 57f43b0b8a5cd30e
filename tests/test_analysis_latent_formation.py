"""Per-latent formation and seed stability on dictionaries whose answer is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from taulib.analysis.latent_formation import (
    FREQUENCY_BANDS,
    FormationSettings,
    compare_stability,
    formation_by_frequency,
    formation_summary,
    median_is_censored,
    run_formation,
    seed_stability,
    stability_comparison_table,
    stability_over_training,
)
from taulib.analysis.study_data import Run
from taulib.config import RunConfig
from taulib.metrics.latent_formation import formation_steps, match_latents, matched_cosines_over_checkpoints, random_matched_cosines
from taulib.sae import SAEMetadata, SparseAutoencoder, save_sae

N, D = 48, 32


def noisy(directions: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return directions + noise * torch.randn(directions.shape, generator=generator)


def random_dictionary(seed: int, n: int = N, d: int = D) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["hungarian", "max"])
def test_matching_recovers_a_known_permutation_under_noise(method):
    final = random_dictionary(0)
    permutation = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    shuffled = noisy(final[permutation], 0.05, 2)
    partner, cosines = match_latents(final, shuffled, method)
    # row permutation[j] of `final` sits at row j of `shuffled`
    assert (partner == torch.argsort(permutation).numpy()).all()
    assert cosines.min() > 0.95


def test_hungarian_is_one_to_one_where_nearest_is_not():
    final = torch.eye(4, 8)
    other = torch.stack([torch.eye(8)[0], torch.eye(8)[0] + 0.1 * torch.eye(8)[1], torch.eye(8)[2], torch.eye(8)[3]])
    assert len(set(match_latents(final, other, "hungarian")[0])) == 4
    assert match_latents(final, other, "max")[0][1] == 1  # the second latent's nearest is the near-copy of the first


def test_a_dictionary_that_forms_at_known_steps_gets_those_steps():
    final = random_dictionary(0)
    steps = [0, 10, 20, 30, 40]
    early, late = slice(0, N // 2), slice(N // 2, N)
    decoders = []
    for index, step in enumerate(steps):
        decoder = random_dictionary(100 + index)  # unrelated directions before a latent forms
        if step >= 20:
            decoder[early] = noisy(final[early], 0.02, index)
        if step >= 40:
            decoder[late] = final[late]
        decoders.append(decoder)
    # a dip below the threshold after forming resets it: latent 0 is perturbed at step 30 only
    decoders[3][0] = random_dictionary(999)[0]
    matched = matched_cosines_over_checkpoints(decoders)
    formed = formation_steps(matched, steps, threshold=0.9)
    assert formed[0] == 40 and (formed[1 : N // 2] == 20).all() and (formed[late] == 40).all()
    assert (matched[:, -1] > 0.999).all()  # the final checkpoint matches itself


def test_random_dictionaries_score_at_the_null():
    null = random_matched_cosines(N, D)
    observed = match_latents(random_dictionary(5), random_dictionary(6))[1]
    assert abs(observed.mean() - null.mean()) < 0.05
    assert (null < 0.9).all() and 0.1 < null.mean() < 0.7


def _arm(tmp_path, name: str, seed: int, decoders: list[torch.Tensor], steps: list[int]) -> Run:
    run_dir = tmp_path / name
    for step, decoder in zip(steps, decoders, strict=True):
        sae = SparseAutoencoder(D, N)
        with torch.no_grad():
            sae.W_dec.copy_(torch.nn.functional.normalize(decoder, dim=1))
        save_sae(sae, run_dir / "checkpoints" / f"step_{step:07d}", SAEMetadata(d_in=D, d_sae=N, input_scale=1.0, model_name="m", layer=0, hook_name="h", extra={}))
    config = RunConfig.model_validate({"run_name": name, "seed": seed, "sae": {"width": N}, "training": {"n_tokens": 4000, "batch_size": 100}})
    evaluation = pd.DataFrame({"step": steps, "tokens": [100 * s for s in steps]})
    return Run(name, run_dir, config, evaluation, pd.DataFrame())


def test_run_formation_is_cached_and_summarised_on_the_training_axis(tmp_path):
    final = random_dictionary(0)
    steps = [0, 10, 20, 40]
    decoders = [random_dictionary(50), random_dictionary(51), noisy(final, 0.01, 3), final]
    arm = _arm(tmp_path, "run", 0, decoders, steps)
    record = run_formation(arm, FormationSettings())
    assert record["formation_step"] == [20] * N
    cached = list((arm.run_dir / "evaluation").glob("latent_formation-*.json"))
    assert len(cached) == 1 and run_formation(arm) == record  # read back, not recomputed
    summary = formation_summary(record, start_tokens=1000)
    assert summary["latent_formation_median"] == pytest.approx(0.5)  # step 20 of 40
    assert summary["latents_formed_by_50%"] == 1.0 and summary["latents_formed_by_25%"] == 0.0
    assert summary["latents_never_formed"] == 0.0 and summary["init_share_at_threshold"] == 0.0
    assert summary["latent_formation_median_censored"] == 0.0  # every latent formed: the median is a time
    assert summary["random_share_at_threshold"] == 0.0 and summary["formation_start_position"] == 0.25
    assert math.isnan(formation_summary(None)["latent_formation_median"])


def test_seed_stability_of_identical_and_unrelated_seeds(tmp_path):
    final = random_dictionary(0)
    steps = [0, 40]
    permutation = torch.randperm(N, generator=torch.Generator().manual_seed(4))
    same = [_arm(tmp_path, f"same{s}", s, [random_dictionary(60 + s), noisy(final[permutation] if s else final, 0.01, s)], steps) for s in (0, 1)]
    table = seed_stability(same)
    final_row = table[table["step"] == 40].iloc[0]
    assert final_row["share_matched_0.9"] == 1.0 and final_row["pw_mcc"] > 0.99
    start_row = table[table["step"] == 0].iloc[0]  # independent random initialisations: at the null
    assert start_row["share_matched_0.9"] == 0.0 and abs(start_row["pw_mcc"] - start_row["random_pw_mcc"]) < 0.05
    assert np.isclose(table["random_share_matched_0.7"], 0.0).all()
    # one step asked for: only its checkpoints are read, and it reads as in the full table
    final_only = seed_stability(same, steps={40})
    assert final_only["step"].tolist() == [40] and final_only.iloc[0].equals(final_row)


def test_formation_curve_draws_the_share_formed_at_each_checkpoint(tmp_path):
    from taulib.analysis.study_data import StudyData
    from taulib.plots.latent_formation import formation_curves

    final = random_dictionary(0)
    steps = [0, 10, 20, 40]
    decoders = [random_dictionary(70), noisy(final, 0.01, 1), noisy(final, 0.01, 2), final]
    decoders[1][N // 2 :] = random_dictionary(71)[N // 2 :]  # half the latents form at step 10, the rest at 20
    arm = _arm(tmp_path, "curve", 0, decoders, steps)
    figure = formation_curves(StudyData(tmp_path, (arm,)), {"curve": run_formation(arm)}, 0.9)
    (trace,) = figure.data
    assert list(trace.x) == [0.0, 0.25, 0.5, 1.0] and list(trace.y) == [0.0, 0.5, 1.0, 1.0]


def test_latents_that_never_moved_are_left_out_and_those_never_formed_are_censored(tmp_path):
    final = random_dictionary(0)
    steps = [0, 10, 20, 40]
    start = random_dictionary(80)
    start[:8] = final[:8]  # eight latents never leave their initial direction (as a latent dead from the start)
    before_end = noisy(final, 0.01, 5)
    before_end[8:16] = random_dictionary(81)[8:16]  # eight take their final direction only at the last checkpoint
    decoders = [start, noisy(final, 0.01, 4), before_end, final]
    decoders[1][8:16] = random_dictionary(82)[8:16]
    arm = _arm(tmp_path, "censored", 0, decoders, steps)
    summary = formation_summary(run_formation(arm))
    assert summary["latents_considered"] == pytest.approx((N - 8) / N)
    assert summary["latents_never_formed"] == pytest.approx(8 / (N - 8))  # kept, at 1, not dropped
    assert summary["latents_formed_by_25%"] == pytest.approx((N - 16) / (N - 8))
    assert summary["latent_formation_median"] == pytest.approx(0.25)


def _write_final_density(run: Run, density: np.ndarray) -> None:
    """The evaluation record of the final checkpoint, holding only the per-latent firing density."""
    folder = run.run_dir / "evaluation"
    (folder / "records-k").mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps({"key": "k"}))
    (folder / "records-k" / f"step_{max(run.steps):07d}.json").write_text(json.dumps({"details": {"latent_density": density.tolist()}}))


def test_formation_is_split_by_final_firing_frequency(tmp_path):
    final = random_dictionary(0)
    steps = [0, 10, 20, 40]
    # the commonest third of the latents forms at step 10, the middle third at 20, the rarest third only at the end
    density = np.linspace(0.001, 0.1, N)[torch.randperm(N, generator=torch.Generator().manual_seed(9)).numpy()]
    order = np.argsort(density)
    middle, common = order[N // 3 : 2 * N // 3], order[2 * N // 3 :]
    decoders = [random_dictionary(90), random_dictionary(91), random_dictionary(92), final]
    decoders[1][common] = noisy(final, 0.01, 1)[common]
    decoders[2][common] = noisy(final, 0.01, 2)[common]
    decoders[2][middle] = noisy(final, 0.01, 3)[middle]
    arm = _arm(tmp_path, "bands", 0, decoders, steps)
    _write_final_density(arm, density)
    record = run_formation(arm)
    bands = formation_by_frequency(record)
    assert list(bands.index) == list(FREQUENCY_BANDS) and bands["latents"].tolist() == [N // 3] * 3
    assert bands["median_formation"].tolist() == pytest.approx([1.0, 0.5, 0.25])
    assert bands["never_formed"].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert bands.loc["rarest third", "density_high"] < bands.loc["middle third", "density_low"]
    summary = formation_summary(record)
    assert summary["latents_never_formed"] == pytest.approx(1 / 3) and summary["latent_formation_median_censored"] == 0.0  # a third censored: below the median
    assert summary["latent_formation_median_rarest"] == 1.0 and summary["latent_formation_median_commonest"] == 0.25
    assert formation_by_frequency(None).empty


def _sweep_arm(tmp_path, arm_name: str, seed: int, decoder: torch.Tensor, l0: float = 20.0) -> Run:
    arm = _arm(tmp_path, f"{arm_name}_s{seed}", seed, [random_dictionary(500 + seed), decoder], [0, 40])
    arm.evaluation["l0"] = [100.0, l0]
    return Run(arm.name, arm.run_dir, arm.config, arm.evaluation, arm.training, arm_name, 20.0)


def test_an_arm_that_reproduces_its_dictionary_across_seeds_is_more_stable_by_an_exact_permutation_test(tmp_path):
    final = random_dictionary(0)
    seeds = range(6)
    # the stable arm finds the same dictionary (permuted, slightly perturbed) from every seed; the other a different one each time
    stable = [_sweep_arm(tmp_path, "stable", s, noisy(final[torch.randperm(N, generator=torch.Generator().manual_seed(s))], 0.01, s)) for s in seeds]
    unstable = [_sweep_arm(tmp_path, "unstable", s, random_dictionary(200 + s)) for s in seeds]
    comparison = compare_stability(stable, unstable)
    assert comparison.seeds == tuple(seeds) and len(comparison.pair_differences) == 15
    assert comparison.difference > 0.5 and comparison.smallest_p == pytest.approx(2 / 64)
    # the observed labelling and its mirror are the two most extreme of the 64
    assert comparison.p_value == pytest.approx(2 / 64)
    table = stability_comparison_table([comparison])
    assert "more stable" in table.loc["stable", "L0 = 20"]
    # three seeds: the same, very large difference cannot be resolved (smallest p 0.25), and the table says so
    few = compare_stability(stable[:3], unstable[:3])
    assert few.difference > 0.5 and few.p_value == pytest.approx(0.25) and few.smallest_p == pytest.approx(0.25)
    assert "unresolved" in stability_comparison_table([few]).loc["stable", "L0 = 20"]


def test_two_arms_of_the_same_kind_are_not_told_apart(tmp_path):
    a = [_sweep_arm(tmp_path, "a", s, random_dictionary(300 + s)) for s in range(6)]
    b = [_sweep_arm(tmp_path, "b", s, random_dictionary(400 + s)) for s in range(6)]
    comparison = compare_stability(a, b)
    assert abs(comparison.difference) < 0.02 and comparison.p_value > 0.05
    assert "unresolved" in stability_comparison_table([comparison]).loc["a", "L0 = 20"]


def test_a_comparison_off_the_l0_target_draws_no_verdict(tmp_path):
    final = random_dictionary(0)
    stable = [_sweep_arm(tmp_path, "stable", s, noisy(final, 0.01, s), l0=25.0) for s in range(6)]  # 25% dense
    unstable = [_sweep_arm(tmp_path, "unstable", s, random_dictionary(200 + s)) for s in range(6)]
    comparison = compare_stability(stable, unstable)
    assert comparison.max_l0_deviation == pytest.approx(0.25)
    assert "off target" in stability_comparison_table([comparison]).loc["stable", "L0 = 20"]


def test_stability_over_training_and_its_figure(tmp_path):
    from taulib.analysis.study_data import StudyData
    from taulib.plots.latent_formation import stability_figure

    final = random_dictionary(0)
    stable = [_sweep_arm(tmp_path, "stable", s, noisy(final, 0.01, s)) for s in range(3)]
    unstable = [_sweep_arm(tmp_path, "unstable", s, random_dictionary(200 + s)) for s in range(3)]
    study = StudyData(tmp_path, (*stable, *unstable))
    table = stability_over_training(study, 20.0)
    assert table["arm"].tolist() == ["stable", "stable", "unstable", "unstable"] and table["position"].tolist() == [0.0, 1.0, 0.0, 1.0]
    final_rows = table[table["position"] == 1.0].set_index("arm")
    assert final_rows.loc["stable", "share_matched_0.9"] == 1.0 and final_rows.loc["unstable", "share_matched_0.9"] == 0.0
    figure = stability_figure(study, table)
    pw_mcc = {trace.name: list(trace.y) for trace in figure.data if trace.xaxis == "x"}
    assert pw_mcc == {arm: table.loc[table["arm"] == arm, "pw_mcc"].tolist() for arm in ("stable", "unstable")}
    assert stability_figure(study, stability_over_training(study, 99.0)).data == ()  # no runs at that target: an empty figure


@pytest.mark.parametrize(
    ("censored", "expected"),
    [([], False), ([False, False, True], False), ([False, True], True), ([True, True, False], True), ([False, False, True, True], True)],
)
def test_a_median_is_censored_once_half_the_times_are(censored, expected):
    """Times censored at one fixed end: with fewer than half censored, every censored one lies above the median,
    which is then exact; with half or more, the median is (or averages in) the end itself, a bound."""
    assert median_is_censored(np.array(censored, dtype=bool)) is expected
    times = np.where(censored, 1.0, np.linspace(0.1, 0.5, len(censored)))
    if len(censored) and not expected:  # the exact median: what the true times, however late the censored ones, give
        assert np.median(times) == np.median(np.where(censored, 7.0, times))


def test_the_seeds_the_stability_table_needs_follow_from_its_permutation_test_and_holm():
    """seeds_needed against the definition: the fewest seeds n at which Holm's smallest adjusted p over m tests, each
    at its smallest exact permutation p 2/2ⁿ, falls below α. The default study's table (6 arms × 3 targets) needs 10."""
    from taulib.analysis.latent_formation import seeds_needed
    from taulib.analysis.statistics import ALPHA, holm

    for tests in (1, 2, 5, 12, 15, 18, 40):
        brute = next(n for n in range(1, 40) if holm([2 / 2**n] * tests)[0] < ALPHA)
        assert seeds_needed(tests) == brute, tests
    assert seeds_needed(18) == 10 and seeds_needed(1) == 6
