"""Per-latent formation against a reference dictionary that is not the run's own.

Timing each latent against its own run's final decoder (taulib.analysis.latent_formation) has two faults: every final
latent matches itself at the end, and a run that ends on a poorer dictionary is timed towards it just the same. Here
each run is timed against directions it did not make: the consensus of the final SAEs of the study's *other* seeds,
every arm of them, at the same L0 target.

The consensus (`consensus_directions`): a latent of a held-in run is shared when another run holds a near copy of it
(decoder cosine ≥ `threshold`); it enters the reference when near copies are held by runs of every held-in seed (each
seed is its own initialisation, so a direction that only one seed's arms share is their common random start, not a
feature) and by at least `quorum` of the held-in runs. Taken from the most shared down, each reference direction is the
normalised mean of its near copies, and a latent within `threshold` of a direction already taken is not taken again.

A run's formation (`formation_against`): for each reference direction, the run's best decoder cosine to it at every
checkpoint; the direction has formed from the first checkpoint from which that cosine stays ≥ `threshold` to the end,
and never, censored at the end of training, when the run's final dictionary does not hold it. The run's numbers are
on the share-of-training axis the report uses: the median formation time (censored when half the directions or more
never formed), the share formed by 25% of training, and the share held at the end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from taulib.analysis.latent_formation import checkpoint_decoders, median_is_censored
from taulib.analysis.study_data import Run, StudyData
from taulib.metrics.latent_formation import unit_rows

SHARE_BY = 0.25


@dataclass(frozen=True)
class ReferenceSettings:
    threshold: float = 0.9  # a near copy: decoder cosine at least this
    quorum: float = 0.5  # a reference direction is held by at least this share of the held-in runs (and by every held-in seed)


@dataclass(frozen=True)
class HeldInRun:
    """A final decoder that votes on the reference, and the seed (initialisation) it started from."""

    decoder: torch.Tensor  # (latents, d)
    seed: int
    alive: np.ndarray | None = None  # latents firing at the end; None: all (a dead latent's direction is no feature)


@torch.no_grad()
def consensus_directions(runs: Sequence[HeldInRun], settings: ReferenceSettings | None = None) -> torch.Tensor:
    """The reference directions (k, d), unit rows, that the held-in runs share (see the module docstring)."""
    settings = settings or ReferenceSettings()
    seeds = {run.seed for run in runs}
    if len(runs) < 2 or len(seeds) < 2:
        raise ValueError(f"a consensus needs runs of at least two seeds (different initialisations); got {len(runs)} runs of seeds {sorted(seeds)}")
    units = [unit_rows(run.decoder)[torch.as_tensor(run.alive, dtype=torch.bool)] if run.alive is not None else unit_rows(run.decoder) for run in runs]
    # best[r][s]: for each latent of run r, its nearest latent in run s and their cosine
    best: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for r, s in itertools.permutations(range(len(runs)), 2):
        cosines = units[r] @ units[s].T
        value, index = cosines.max(dim=1) if cosines.shape[1] else (torch.full((len(units[r]),), -1.0), torch.zeros(len(units[r]), dtype=torch.long))
        best[(r, s)] = (value, index)
    candidates = []  # (runs holding a copy, run, latent)
    for r in range(len(runs)):
        held = torch.stack([best[(r, s)][0] >= settings.threshold if s != r else torch.ones(len(units[r]), dtype=torch.bool) for s in range(len(runs))], dim=1)
        for latent in range(len(units[r])):
            holders = held[latent].nonzero().flatten().tolist()
            if {runs[s].seed for s in holders} == seeds and len(holders) >= settings.quorum * len(runs):
                candidates.append((len(holders), r, latent, holders))
    candidates.sort(key=lambda candidate: (-candidate[0], candidate[1], candidate[2]))
    chosen: list[torch.Tensor] = []
    for _, r, latent, holders in candidates:
        direction = units[r][latent]
        if chosen and float((torch.stack(chosen) @ direction).max()) >= settings.threshold:
            continue
        copies = [direction] + [units[s][best[(r, s)][1][latent]] for s in holders if s != r]
        chosen.append(torch.nn.functional.normalize(torch.stack(copies).mean(dim=0), dim=0))
    d = runs[0].decoder.shape[1]
    return torch.stack(chosen) if chosen else torch.empty(0, d)


@torch.no_grad()
def best_cosines(reference: torch.Tensor, decoders: Sequence[torch.Tensor]) -> np.ndarray:
    """(reference directions × checkpoints): each direction's best decoder cosine in each checkpoint's dictionary."""
    if len(reference) == 0:
        return np.empty((0, len(decoders)))
    return np.stack([(unit_rows(reference) @ unit_rows(decoder).T).max(dim=1).values.numpy() for decoder in decoders], axis=1)


def formation_against(reference: torch.Tensor, decoders: Sequence[torch.Tensor], positions: Sequence[float], threshold: float) -> dict[str, float]:
    """A run's formation of the reference directions over its checkpoints (`decoders`, at `positions`: shares of
    training, the last 1): the median formation time (never formed: 1, censored), whether that median is censored,
    the share formed by 25% of training, the share held at the end, and how many directions there were."""
    positions = np.asarray(positions, dtype=float)
    if len(decoders) != len(positions):
        raise ValueError(f"{len(decoders)} checkpoints for {len(positions)} positions")
    cosines = best_cosines(reference, decoders) >= threshold
    if len(cosines) == 0:
        return {"reference_directions": 0.0} | dict.fromkeys(
            ("reference_formation_median", "reference_formation_median_censored", f"reference_formed_by_{SHARE_BY:.0%}", "reference_held_at_end"), math.nan
        )
    # the first checkpoint from which the direction stays held to the end: after the last checkpoint it is not held
    not_held = ~cosines
    last_gap = np.where(not_held.any(axis=1), not_held.shape[1] - 1 - np.argmax(not_held[:, ::-1], axis=1), -1)
    held_at_end = cosines[:, -1]
    times = np.where(held_at_end, positions[np.minimum(last_gap + 1, len(positions) - 1)], 1.0)
    never = ~held_at_end
    return {
        "reference_directions": float(len(reference)),
        "reference_formation_median": float(np.median(times)),
        "reference_formation_median_censored": float(median_is_censored(never)),
        f"reference_formed_by_{SHARE_BY:.0%}": float((held_at_end & (times <= SHARE_BY)).mean()),
        "reference_held_at_end": float(held_at_end.mean()),
    }


def study_reference_formation(study: StudyData, settings: ReferenceSettings | None = None, excluded_arms: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Per run of a sweep (by name), its formation against the consensus of the other seeds' final SAEs at its L0
    target. The voters: every run of the target but the A/A control's and those of `excluded_arms` (an identity arm's
    run repeats its plain-L1 twin), each latent alive at the end. A run whose checkpoints are not on disk is left out."""
    settings = settings or ReferenceSettings()
    found: dict[str, dict[str, float]] = {}
    for target in study.l0_targets:
        runs = [run for run in study.runs if run.l0_target == target]
        finals = {run.name: loaded[1][-1] for run in runs if (loaded := checkpoint_decoders(run, {max(run.steps)})) is not None}
        voters = [run for run in runs if run.name in finals and run.aa_of is None and run.arm not in excluded_arms]
        for seed in sorted({run.seed for run in runs}):
            held_in = [HeldInRun(finals[run.name], run.seed, _alive_at_end(run)) for run in voters if run.seed != seed]
            if len({run.seed for run in held_in}) < 2:
                continue
            reference = consensus_directions(held_in, settings)
            for run in runs:
                if run.seed != seed or (loaded := checkpoint_decoders(run)) is None:
                    continue
                steps, decoders = loaded
                tokens = dict(zip(run.evaluation["step"].astype(int), run.evaluation["tokens"].astype(float), strict=True))
                positions = [tokens[step] / tokens[steps[-1]] for step in steps]
                found[run.name] = formation_against(reference, decoders, positions, settings.threshold)
    return found


def _alive_at_end(run: Run) -> np.ndarray | None:
    try:
        density = run.details(max(run.steps)).get("latent_density")
    except FileNotFoundError:
        return None
    return None if density is None else np.asarray(density) > 0
