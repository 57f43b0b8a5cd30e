"""The analysis numbers against curves with known answers (taulib.analysis)."""

import math

import numpy as np
import pytest
from synthetic_study import BATCH, STEPS, WIDTH, curve, write_synthetic_study

from taulib.analysis.checkpoint_state import cosine_histograms, density_bins, first_letter_latents, probing_latents
from taulib.analysis.formation import first_settled_below, formation_table, mean_over_log_tokens, time_to_fraction_of_final
from taulib.analysis.orthogonality import (
    checkpoint_at_position,
    lower_bound_pairs,
    near_duplicates_over_training,
    tau_trajectory_summary,
    trajectory_vs_outcome,
)
from taulib.analysis.study_data import StudyDataError, load_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return load_study(write_synthetic_study(tmp_path_factory.mktemp("synthetic") / "outputs"))


# ---------------------------------------------------------------- time to a fraction of the final value
def test_time_to_90_percent_of_a_ramp_rising_or_falling():
    tokens = np.arange(0, 1001, 100)
    assert time_to_fraction_of_final(tokens, tokens / 1000) == pytest.approx(900)
    assert time_to_fraction_of_final(tokens, 5 - 3 * tokens / 1000) == pytest.approx(900)  # falling: same progress
    assert time_to_fraction_of_final(tokens, tokens / 1000, fraction=0.25) == pytest.approx(250)


def test_time_to_90_percent_of_an_exponential_matches_its_closed_form():
    steps = np.linspace(0, 100, 20_001)  # dense enough that linear interpolation is exact to ~1e-6
    scale = 10.0
    values = curve(steps, 64.0, 8.0, scale)
    # progress(s) = (1 − e^(−s/scale)) / (1 − e^(−100/scale)) = 0.9
    expected = -scale * math.log(1 - 0.9 * (1 - math.exp(-100 / scale)))
    assert time_to_fraction_of_final(steps, values) == pytest.approx(expected, rel=1e-5)


def test_first_crossing_and_settled_crossing_differ_on_an_overshoot():
    tokens = np.array([0.0, 10, 20, 30, 40])
    values = np.array([0.0, 1.0, 0.5, 0.95, 1.0])
    assert time_to_fraction_of_final(tokens, values, mode="first") == pytest.approx(9.0)  # 0 → 1 between 0 and 10
    assert time_to_fraction_of_final(tokens, values, mode="settled") == pytest.approx(20 + 10 * 0.4 / 0.45)


def test_time_to_final_is_nan_without_change_and_skips_missing_points():
    assert math.isnan(time_to_fraction_of_final([0, 1, 2], [3.0, 3.0, 3.0]))
    assert math.isnan(time_to_fraction_of_final([0], [1.0]))
    assert time_to_fraction_of_final([0, 50, 100, 200], [np.nan, 0.0, np.nan, 1.0]) == pytest.approx(50 + 0.9 * 150)
    with pytest.raises(ValueError, match="fraction"):
        time_to_fraction_of_final([0, 1], [0, 1], fraction=0)


# ---------------------------------------------------------------- absorption-reduction speed
def test_mean_over_log_tokens_of_known_curves():
    tokens = np.array([0, 10, 100, 1000])  # the 0-token point is off the log axis and left out
    assert mean_over_log_tokens(tokens, [99.0, 0.2, 0.2, 0.2]) == pytest.approx(0.2)
    assert mean_over_log_tokens(tokens, [99.0, 1.0, 2.0, 3.0]) == pytest.approx(2.0)  # linear in log10(t): the midpoint
    # a curve that falls early has the lower mean
    assert mean_over_log_tokens(tokens, [0, 0.3, 0.05, 0.05]) < mean_over_log_tokens(tokens, [0, 0.3, 0.3, 0.05])


def test_first_settled_below_threshold():
    tokens = np.arange(7) * 10.0
    values = [0.1, 0.3, 0.2, 0.04, 0.06, 0.03, 0.02]
    assert first_settled_below(tokens, values, 0.05) == 50.0  # 0.04 at 30 does not count: it rises above again
    assert math.isnan(first_settled_below(tokens[:3], [0.1, 0.01, 0.2], 0.05))  # ends above
    assert first_settled_below(tokens[:3], [0.01, 0.02, 0.03], 0.05) == 0.0


def test_formation_table_orders_arms_by_their_time_constants(study):
    table = formation_table(study, absorption_threshold=0.05)
    for metric in ("l0", "explained_variance", "sae_top_1_accuracy", "absorption_fraction"):
        column = f"tokens_to_90pct_{metric}"
        # the synthetic linear arm approaches its final values with a 3x longer time constant
        assert table.loc["linear", column] > table.loc["tightened", column] > 0
        assert table.loc["tightened", column] == pytest.approx(table.loc["higher_floor", column])
    # tightened absorption: 0.123 at step 10, 0.034 at step 30 → below 0.05 from step 30
    assert table.loc["tightened", "tokens_absorption_fraction_below_0.05"] == 30 * BATCH
    assert math.isnan(table.loc["higher_floor", "tokens_absorption_fraction_below_0.05"])  # ends at 0.06
    assert math.isnan(table.loc["baseline", "tokens_absorption_fraction_below_0.05"])  # rises
    means = table["absorption_fraction_mean_over_log_tokens"]
    assert means["tightened"] < means["higher_floor"] < means["baseline"]
    assert means["tightened"] < means["linear"]


# ---------------------------------------------------------------- orthogonality, lower bound, τ trajectory
def test_lower_bound_pairs_find_arms_differing_only_in_the_floor(study):
    pairs = lower_bound_pairs(study)
    assert [(low.name, high.name) for low, high in pairs] == [("tightened", "higher_floor")]


def test_near_duplicate_counts_are_the_recorded_fractions_times_the_pairs(study):
    table = near_duplicates_over_training(study)
    final = table.groupby("arm").last()
    assert final.loc["baseline", "near_duplicate_pairs"] == 4 and final.loc["linear", "near_duplicate_pairs"] == 7
    assert final.loc["tightened", "near_duplicate_latents"] == 9
    assert (table["random_near_duplicate_pairs"] == 0).all() and len(table) == 4 * len(STEPS)


def test_tau_trajectory_summary_of_known_schedules(study):
    baseline = tau_trajectory_summary(study.arm("baseline"))
    assert baseline["mean_l1_coefficient"] == pytest.approx(0.04) and baseline["tau_final"] == 1.0
    tightened = tau_trajectory_summary(study.arm("tightened"))
    assert tightened["tau_initial"] == pytest.approx(0.3) and tightened["final_l1_coefficient"] == pytest.approx(0.8)
    # cosine 0.3 → 0.05 spends longer near 0.3 than the linear schedule at the start, so its mean τ is
    # the same (both are symmetric about the midpoint) but its mean λ/τ differs
    linear = tau_trajectory_summary(study.arm("linear"))
    assert tightened["mean_tau"] == pytest.approx(linear["mean_tau"], rel=1e-3)
    assert tightened["late_mean_l1_coefficient"] > linear["late_mean_l1_coefficient"]
    table = trajectory_vs_outcome(study)
    assert table.loc["tightened", "l0"] == pytest.approx(8.0) and table.loc["baseline", "explained_variance"] == pytest.approx(0.9)


def test_checkpoint_at_position_picks_the_nearest_fraction_of_training(study):
    arm = study.arm("tightened")
    assert checkpoint_at_position(arm, 1.0) == 100 and checkpoint_at_position(arm, 0.0) == 0 and checkpoint_at_position(arm, 0.25) == 30


# ---------------------------------------------------------------- one checkpoint's details
def test_checkpoint_state_tables(study):
    details = study.arm("tightened").details(10)
    letters = first_letter_latents(details)
    assert len(letters) == 26 and (~letters["evaluated"]).sum() == 6  # a, f, k, p, u, z have a weak probe
    density = density_bins(details)
    assert (
        density["latents"].sum() == WIDTH and density.attrs["dead"] == 0 and density.loc[density["latents"].idxmax(), "left"] == pytest.approx(-7 + 0.25 * 11)
    )
    probing = probing_latents(details)
    assert list(probing["label"]) == ["sentiment: positive", "sentiment: negative"] and (probing["top_latent"] == 10).all()
    cosines = cosine_histograms(details)
    assert cosines["sae"].sum() == WIDTH and cosines["random"].sum() == WIDTH


def test_a_missing_study_is_a_clear_error(tmp_path):
    with pytest.raises(StudyDataError, match="run the study first"):
        load_study(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyDataError, match="no trained and evaluated runs"):
        load_study(tmp_path / "empty")
