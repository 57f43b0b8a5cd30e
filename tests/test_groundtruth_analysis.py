"""taulib.groundtruth.analysis: matched readings, paired contrasts, Holm families, dose-response and proxy checks
on constructed tables whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from taulib.groundtruth import analysis as gta
from taulib.groundtruth.track import AGAIN, PLAIN, TIGHTENED, WARMUP

REPLICATES = [f"w{w}_s{s}" for w in range(3) for s in range(2)]


def frontier_runs(arm: str, replicate: str, budget: int, l0s: list[float], value) -> list[dict]:
    w, s = replicate[1:].split("_s")
    return [
        {"arm": arm, "replicate": replicate, "world_seed": int(w), "training_seed": int(s), "budget": budget, "grid_index": i, "final_l0": l0, "mcc_area": value(l0)}
        | {f"l0_current_{q:g}": l0 * 2 for q in gta.CURRENT_L0_FRACTIONS} | {f"absorption_at_{q:g}": q for q in gta.CURRENT_L0_FRACTIONS}
        for i, l0 in enumerate(l0s)
    ]  # fmt: skip


def test_an_endpoint_is_read_at_the_target_off_the_arms_frontier_and_unmatched_outside_it():
    runs = pd.DataFrame(frontier_runs(PLAIN, "w0_s0", 100, [4.0, 8.0, 16.0], lambda l0: math.log2(l0)))
    table = gta.matched(runs, [8.0, 11.3137, 40.0])
    by_target = table.set_index("l0_target")
    assert by_target.loc[8.0, "mcc_area"] == pytest.approx(3.0)
    assert by_target.loc[11.3137, "mcc_area"] == pytest.approx(3.5, abs=1e-4)  # linear in log L0
    assert by_target.loc[40.0, "match"] == "unmatched" and math.isnan(by_target.loc[40.0, "mcc_area"])
    # absorption at matched current L0: read off each run's checkpoint L0 (twice its final L0 here)
    assert by_target.loc[8.0, "absorption_current_0.5"] == pytest.approx(0.5)
    # and each arm's current L0 along training, at the matched final L0 (twice it here)
    assert by_target.loc[8.0, "l0_current_0.5"] == pytest.approx(16.0)


def constructed_table(effect: float, noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """A matched table where tightened's mcc_area exceeds plain L1's by `effect` in every replicate (plus noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for replicate in REPLICATES:
        base = rng.normal(0.6, 0.05)
        for arm, shift in ((PLAIN, 0.0), (AGAIN, 0.0), (TIGHTENED, effect), (WARMUP, 0.0)):
            rows.append(
                {"arm": arm, "replicate": replicate, "budget": 100, "l0_target": 8.0, "match": "bracketed", "mcc_area": base + shift + rng.normal(0, noise)}
            )
    return pd.DataFrame(rows)


def test_a_paired_contrast_finds_a_known_difference_and_states_its_direction():
    table = constructed_table(0.05)
    endpoint = next(e for e in gta.ENDPOINTS if e.column == "mcc_area")
    [better] = gta.corrected([gta.contrast(table, endpoint, TIGHTENED, PLAIN, 100, 8.0, "f")])
    assert better.estimate.low < 0.05 < better.estimate.high and better.estimate.n == len(REPLICATES)
    assert better.verdict == "better"
    # the same difference on an endpoint where lower is better reads "worse"
    lower = gta.Endpoint("formation", "mcc_area", "", higher_is_better=False)
    assert gta.corrected([gta.contrast(table, lower, TIGHTENED, PLAIN, 100, 8.0, "f")])[0].verdict == "worse"


def test_holm_over_the_family_can_leave_a_nominally_significant_contrast_unresolved():
    table = constructed_table(0.012, noise=0.005, seed=3)
    endpoint = next(e for e in gta.ENDPOINTS if e.column == "mcc_area")
    alone = gta.corrected([gta.contrast(table, endpoint, TIGHTENED, PLAIN, 100, 8.0, "f")])[0]
    assert alone.estimate.p_value < 0.05 and alone.verdict == "better"
    family = [gta.contrast(table, endpoint, TIGHTENED, PLAIN, 100, 8.0, "f")] + [gta.contrast(table, endpoint, AGAIN, PLAIN, 100, 8.0, "f") for _ in range(9)]
    corrected = gta.corrected(family)
    assert corrected[0].adjusted_p > alone.adjusted_p
    assert corrected[0].verdict == "unresolved"  # a family of ten: the same difference no longer resolves


def test_a_contrast_with_no_matched_pair_is_untested_and_unresolved():
    table = constructed_table(0.05)
    table.loc[table["arm"] == TIGHTENED, "mcc_area"] = np.nan  # every tightened cell unmatched
    endpoint = next(e for e in gta.ENDPOINTS if e.column == "mcc_area")
    [contrast] = gta.corrected([gta.contrast(table, endpoint, TIGHTENED, PLAIN, 100, 8.0, "f")])
    assert contrast.estimate.n == 0 and math.isnan(contrast.adjusted_p) and contrast.verdict == "unresolved"


def dose_table(curvature: float, slope: float, members: list[tuple[float, str]]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    centre = np.mean([math.log(t) for t, _ in members])
    for replicate in REPLICATES:
        for tau, arm in members:
            x = math.log(tau) - centre
            value = 0.5 + slope * x + curvature * x * x + rng.normal(0, 0.002)
            rows.append({"arm": arm, "replicate": replicate, "budget": 100, "l0_target": 8.0, "match": "bracketed", "mcc_area": value, "absorption_area": 0.1})
    return pd.DataFrame(rows)


def test_dose_response_recovers_a_known_slope_and_an_inverted_u():
    members = [(0.05, PLAIN), (0.1, "cosine_0.1_to_0.05"), (0.2, "cosine_0.2_to_0.05"), (0.3, TIGHTENED), (0.5, "wider")]
    identities = {"cosine_0.05_to_0.05": PLAIN, "cosine_0.3_to_0.05": TIGHTENED, "cosine_0.5_to_0.05": "wider"}
    table = dose_table(curvature=-0.05, slope=0.02, members=members)
    results = gta.dose_response(table, identities, [t for t, _ in members], [], [8.0])
    [mcc] = [d for d in results if d.family == "tau_initial" and d.endpoint.column == "mcc_area"]
    assert mcc.curvature.low < -0.05 < mcc.curvature.high and mcc.adjusted_curvature_p < 0.05
    assert mcc.slope.low < 0.02 < mcc.slope.high and mcc.adjusted_slope_p < 0.05
    assert mcc.members == (0.05, 0.1, 0.2, 0.3, 0.5)
    # a flat endpoint: neither slope nor curvature resolves (absorption_area is constant here)
    [flat] = [d for d in results if d.family == "tau_initial" and d.endpoint.column == "absorption_area"]
    assert "unresolved" in flat.reading()


def test_a_proxy_that_only_shares_sparsity_with_the_truth_does_not_track_it_but_a_faithful_one_does():
    rng = np.random.default_rng(0)
    rows = []
    for replicate in REPLICATES:
        for _ in range(12):
            l0 = float(np.exp(rng.uniform(1, 3)))
            truth = rng.normal()
            rows.append({
                "replicate": replicate, "budget": 100, "final_l0": l0, "recovery_time": 3 * math.log(l0) + truth,
                "formation_time": 3 * math.log(l0) + rng.normal(),  # moves with L0 only
                "final_mcc": truth, "seed_stability": truth + 0.3 * rng.normal(),  # tracks the truth itself
            })  # fmt: skip
    checks = {c.proxy: c for c in gta.proxy_checks(pd.DataFrame(rows))}
    assert checks["formation_time"].rho.value > 0.3  # raw correlation through L0
    assert not checks["formation_time"].tracks
    assert checks["seed_stability"].tracks and checks["seed_stability"].partial_rho.value > 0.8


def test_a_proxy_check_resamples_the_cluster_it_is_given():
    """Runs of one world share what they are scored against: resampled by world, the interval counts worlds, and a
    proxy equal to the truth up to a monotone map has ρ and partial ρ exactly 1 in every resample."""
    rng = np.random.default_rng(1)
    rows = [
        {"world_seed": world, "replicate": f"w{world}_s{seed}", "final_l0": float(np.exp(rng.uniform(1, 3))), "truth": truth, "proxy": math.exp(truth)}
        for world in range(4)
        for seed in range(3)
        for truth in rng.normal(size=5)
    ]
    frame = pd.DataFrame(rows)
    by_world = gta.proxy_check(frame, "proxy", "truth", +1, cluster="world_seed")
    by_replicate = gta.proxy_check(frame, "proxy", "truth", +1)
    assert by_world.rho.n == 4 and by_replicate.rho.n == 12
    for estimate in (by_world.rho, by_world.partial_rho):
        assert estimate.value == pytest.approx(1.0) and estimate.low == pytest.approx(1.0) and estimate.high == pytest.approx(1.0)
    assert by_world.tracks
