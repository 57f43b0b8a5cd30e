"""The analysis numbers against curves with known answers (taulib.analysis)."""


import pytest
from formula_study import STEPS, WIDTH, write_synthetic_study

from taulib.analysis.checkpoint_state import cosine_histograms, density_bins, first_letter_latents, probing_latents
from taulib.analysis.matched import formation_table
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


# ---------------------------------------------------------------- formation, as notebook 03 shows it
def test_formation_table_is_the_reports_formation_measures_per_run(study):
    table = formation_table(study)
    assert list(table.index) == [run.name for run in study.runs]
    column = "formation_sae_top_1_accuracy"
    # the synthetic linear arm approaches its final values with a 3× longer time constant; the two
    # cosine arms share one, and a time is a share of the change, so theirs are equal. Their accuracy
    # moves by less than formation_min_change after the warm-up: formed before the window, at its start
    start = table.loc["tightened", "formation_start_position"]
    assert 1 > table.loc["linear", column] > table.loc["tightened", column] == pytest.approx(start)
    assert table.loc["tightened", column] == pytest.approx(table.loc["higher_floor", column])
    assert table["current_l0_level"].isna().all()  # no L0 target outside a sweep: no matched current L0


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
    baseline = tau_trajectory_summary(study.run("baseline"))
    assert baseline["mean_l1_coefficient"] == pytest.approx(0.04) and baseline["tau_final"] == 1.0
    tightened = tau_trajectory_summary(study.run("tightened"))
    assert tightened["tau_initial"] == pytest.approx(0.3) and tightened["final_l1_coefficient"] == pytest.approx(0.8)
    # cosine 0.3 → 0.05 spends longer near 0.3 than the linear schedule at the start, so its mean τ is
    # the same (both are symmetric about the midpoint) but its mean λ/τ differs
    linear = tau_trajectory_summary(study.run("linear"))
    assert tightened["mean_tau"] == pytest.approx(linear["mean_tau"], rel=1e-3)
    assert tightened["late_mean_l1_coefficient"] > linear["late_mean_l1_coefficient"]
    table = trajectory_vs_outcome(study)
    assert table.loc["tightened", "l0"] == pytest.approx(8.0) and table.loc["baseline", "explained_variance"] == pytest.approx(0.9)


def test_checkpoint_at_position_picks_the_nearest_fraction_of_training(study):
    arm = study.run("tightened")
    assert checkpoint_at_position(arm, 1.0) == 100 and checkpoint_at_position(arm, 0.0) == 0 and checkpoint_at_position(arm, 0.25) == 30


# ---------------------------------------------------------------- one checkpoint's details
def test_checkpoint_state_tables(study):
    details = study.run("tightened").details(10)
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
