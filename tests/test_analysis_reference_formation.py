"""Per-latent formation against a consensus reference dictionary (taulib.analysis.reference_formation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taulib.analysis.reference_formation import HeldInRun, ReferenceSettings, consensus_directions, formation_against


def _orthonormal(rows: int, d: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))[0][:rows]


def _random_rows(rows: int, d: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(rows, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_the_consensus_keeps_what_every_seed_shares_and_not_a_seeds_common_start():
    d, width = 64, 24
    basis = _orthonormal(12, d, 0)
    shared, seed_zero_start, lone = basis[:6], basis[6:8], basis[8:9]
    runs = []
    for seed in (0, 1, 2):
        for arm in range(2):
            noise = 0.05 * _random_rows(6, d, 100 * seed + arm)
            rows = [torch.nn.functional.normalize(shared + noise, dim=1)]  # each run's own noisy copy of the features
            if seed == 0:
                rows.append(seed_zero_start)  # both arms of seed 0 kept two directions of their shared initialisation
            if (seed, arm) == (1, 0):
                rows.append(lone)
            filler = width - sum(len(r) for r in rows)
            rows.append(_random_rows(filler, d, 1000 + 10 * seed + arm))
            runs.append(HeldInRun(torch.cat(rows), seed))
    reference = consensus_directions(runs, ReferenceSettings(threshold=0.9, quorum=0.5))
    assert reference.shape == (6, d)
    best = (reference @ shared.T).max(dim=1).values
    assert (best > 0.99).all()  # each a shared feature, the mean of its noisy copies
    assert torch.allclose(reference.norm(dim=1), torch.ones(6))
    # dead latents do not vote: with the shared features marked dead in one seed's runs, no seed holds them all
    dead = [HeldInRun(run.decoder, run.seed, np.r_[np.zeros(6, bool), np.ones(width - 6, bool)] if run.seed == 2 else None) for run in runs]
    assert len(consensus_directions(dead)) == 0
    with pytest.raises(ValueError, match="two seeds"):
        consensus_directions([runs[0], runs[1]])


def test_a_run_is_timed_to_when_each_reference_direction_stays_in_its_dictionary():
    d, width = 32, 16
    reference = _orthonormal(4, d, 1)
    positions = [0.0, 0.1, 0.25, 0.5, 1.0]
    # direction j is held from checkpoint start[j] on (None: never); direction 2 is held at 0.1, lost at 0.25, back at 0.5
    held = {0: {1, 2, 3, 4}, 1: {3, 4}, 2: {1, 3, 4}, 3: set()}
    decoders = []
    for checkpoint in range(len(positions)):
        rows = [reference[j] if checkpoint in held[j] else _random_rows(1, d, 10 * checkpoint + j)[0] for j in range(4)]
        decoders.append(torch.cat([torch.stack(rows), _random_rows(width - 4, d, 500 + checkpoint)]))
    result = formation_against(reference, decoders, positions, threshold=0.9)
    times = np.array([0.1, 0.5, 0.5, 1.0])  # direction 3 never: censored at 1
    assert result["reference_directions"] == 4
    assert result["reference_formation_median"] == pytest.approx(np.median(times))
    assert result["reference_formation_median_censored"] == 0.0  # one of four never formed: the median is observed
    assert result["reference_formed_by_25%"] == pytest.approx(0.25)
    assert result["reference_held_at_end"] == pytest.approx(0.75)
    never = formation_against(reference, [decoders[0]] * 5, positions, threshold=0.9)
    assert never["reference_formation_median"] == 1.0 and never["reference_formation_median_censored"] == 1.0


def test_the_run_table_times_every_run_against_the_other_seeds_consensus_without_the_aa_control_voting(tmp_path, monkeypatch):
    """A sweep whose runs all end on the same concept directions (tests/formula_study.py): each run's reference is the
    other two seeds' consensus, the A/A control's runs do not vote, and every latent direction stays within 0.9 of its
    concept from the checkpoint where the mix reaches 0.8 (step 10 of 100) on."""
    from formula_study import MIX, STEPS, WIDTH, write_checkpoints, write_synthetic_sweep

    import taulib.analysis.reference_formation as reference_formation
    from taulib.analysis.matched import MatchedSettings, run_table
    from taulib.analysis.study_data import load_study

    outputs = write_synthetic_sweep(tmp_path / "study", aa=True)
    study = load_study(outputs)
    for run in study.runs:
        write_checkpoints(outputs, run.name)
    voters = []
    consensus = reference_formation.consensus_directions
    monkeypatch.setattr(reference_formation, "consensus_directions", lambda runs, settings: voters.append(len(runs)) or consensus(runs, settings))
    table = run_table(load_study(outputs), MatchedSettings())
    arms, seeds, targets = table["arm"].nunique(), table["seed"].nunique(), table["l0_target"].nunique()
    assert voters == [(arms - 1) * (seeds - 1)] * (seeds * targets)  # every arm but the A/A control, of the other seeds
    assert (table["reference_directions"] == WIDTH).all()
    formed_at = STEPS[MIX.index(0.8)] / STEPS[-1]
    assert (table["reference_formation_median"] == formed_at).all() and (table["reference_held_at_end"] == 1.0).all()
    assert (table["reference_formed_by_25%"] == 1.0).all() and (table["reference_formation_median_censored"] == 0.0).all()
