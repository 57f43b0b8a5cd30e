"""Per-latent formation and seed stability of a study's runs, from their saved checkpoints.

`run_formation` matches every latent of a run's final SAE to its counterpart at every checkpoint
(taulib.metrics.latent_formation) and records when each formed; the record is cached beside the
run's evaluation (`evaluation/latent_formation-<key>.json`, written atomically), keyed by the
run's configuration and the matching settings, so a re-analysis reads it back. `formation_summary`
turns it into per-run numbers on the share-of-training axis the report uses. `seed_stability`
matches the seeds of one arm and L0 target to each other at every checkpoint.

Nulls, so that a number can be read: the same matching between independent random dictionaries of
the run's shape, and the run's own initialisation (checkpoint 0) against its final SAE.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taulib import atomic
from taulib.analysis.study_data import Arm, StudyData
from taulib.metrics.latent_formation import MatchMethod, formation_steps, match_latents, matched_cosines_over_checkpoints, random_matched_cosines
from taulib.sae import load_sae

SHARES_BY = (0.1, 0.25, 0.5)  # "formed by 10/25/50% of training"
STABILITY_THRESHOLDS = (0.7, 0.9)


@dataclass(frozen=True)
class FormationSettings:
    threshold: float = 0.9  # a latent has formed once its matched cosine to its final self stays at or above this
    method: MatchMethod = "hungarian"  # "max": nearest direction, faster and not one-to-one (for very wide SAEs)


def _decoders(arm: Arm, only: set[int] | None = None) -> tuple[list[int], list[Any]] | None:
    """The decoder of every checkpoint (or of the steps in `only`), in step order; None if one is missing."""
    steps = sorted(step for step in arm.steps if only is None or step in only)
    folders = [arm.run_dir / "checkpoints" / f"step_{step:07d}" for step in steps]
    if not all((folder / "sae.safetensors").is_file() for folder in folders):
        return None
    return steps, [load_sae(folder)[0].W_dec for folder in folders]


def _cache_path(arm: Arm, settings: FormationSettings) -> Path:
    key = hashlib.sha256(json.dumps({"run": arm.config.fingerprint(), "steps": sorted(arm.steps), **asdict(settings)}, sort_keys=True).encode()).hexdigest()[:12]
    return arm.run_dir / "evaluation" / f"latent_formation-{key}.json"


def run_formation(arm: Arm, settings: FormationSettings | None = None) -> dict[str, Any] | None:
    """The run's per-latent formation record (cached); None when its checkpoints are not on disk."""
    settings = settings or FormationSettings()
    path = _cache_path(arm, settings)
    if path.is_file():
        return atomic.read_json(path)
    loaded = _decoders(arm)
    if loaded is None:
        return None
    steps, decoders = loaded
    matched = matched_cosines_over_checkpoints(decoders, settings.method)
    formed = formation_steps(matched, steps, settings.threshold)
    # which final latents say something about formation: alive at the end (a dead latent's decoder
    # gets no gradient, so it "forms" when it dies) and moved away from where it started (a latent
    # dead from the start keeps its initial direction and would read as formed at step 0)
    try:
        density = arm.details(steps[-1]).get("latent_density")
    except FileNotFoundError:
        density = None
    alive = np.asarray(density) > 0 if density is not None else np.ones(len(formed), dtype=bool)
    moved = matched[:, 0] < settings.threshold
    n, d = decoders[-1].shape
    null = random_matched_cosines(n, d, settings.method)
    tokens = dict(zip(arm.evaluation["step"].astype(int), arm.evaluation["tokens"].astype(float), strict=True))
    record = {
        "settings": asdict(settings),
        "steps": steps,
        "tokens": [tokens[step] for step in steps],
        "formation_step": formed.tolist(),
        "alive_at_end": alive.tolist(),
        "alive_known": density is not None,
        "moved_from_initialisation": moved.tolist(),
        "mean_matched_cosine": matched.mean(axis=0).tolist(),  # per checkpoint
        "share_at_threshold": (matched >= settings.threshold).mean(axis=0).tolist(),
        "random_mean_matched_cosine": float(null.mean()),
        "random_share_at_threshold": float((null >= settings.threshold).mean()),
    }
    atomic.write_json(path, record)
    return record


def formation_summary(record: dict[str, Any] | None, start_tokens: float = 0.0) -> dict[str, float]:
    """Per-run numbers, on the share-of-training axis, over the final latents that say something
    about formation (alive at the end, moved away from their initial direction): the median
    formation time, a latent never formed before the end counted at 1 (censored, not dropped); the
    share formed by 10/25/50% of training; the share never formed; and what was left out and the
    nulls beside them. `start_tokens` (the end of warm-up) is reported with them."""
    keys = ["latent_formation_median", "latents_never_formed", "latents_considered", "init_share_at_threshold", "random_share_at_threshold"]
    keys += [f"latents_formed_by_{share:.0%}" for share in SHARES_BY]
    if record is None:
        return dict.fromkeys(keys, math.nan)
    steps, tokens = record["steps"], np.asarray(record["tokens"], dtype=float)
    total = tokens[-1]
    at_step = dict(zip(steps, tokens / total, strict=True))
    formed = np.array([at_step[step] for step in record["formation_step"]])
    considered = np.asarray(record["alive_at_end"], dtype=bool) & np.asarray(record["moved_from_initialisation"], dtype=bool)
    summary = {
        "latents_considered": float(considered.mean()),
        "init_share_at_threshold": float(record["share_at_threshold"][0]),
        "random_share_at_threshold": float(record["random_share_at_threshold"]),
        "formation_start_position": float(start_tokens / total),
    }
    if not considered.any():
        return dict.fromkeys(keys, math.nan) | summary
    times = formed[considered]  # formed only at the final checkpoint: never formed before the end, censored at 1
    summary |= {"latent_formation_median": float(np.median(times)), "latents_never_formed": float((times >= 1.0).mean())}
    summary |= {f"latents_formed_by_{share:.0%}": float((times <= share).mean()) for share in SHARES_BY}
    return summary


def seed_stability(arms: list[Arm], method: MatchMethod = "hungarian", steps: set[int] | None = None) -> pd.DataFrame:
    """Seeds of one arm and target matched to each other at every checkpoint they share (or at those
    of `steps`): per step, the mean over seed pairs of the share of latents matched at cos ≥ 0.7 and
    ≥ 0.9 and of the mean matched cosine (PW-MCC), with the same for random dictionaries of the shape."""
    decoders = {arm.seed: _decoders(arm, steps) for arm in arms}
    decoders = {seed: loaded for seed, loaded in decoders.items() if loaded is not None}
    if len(decoders) < 2:
        return pd.DataFrame()
    shared = sorted(set.intersection(*(set(steps) for steps, _ in decoders.values())))
    rows = []
    for step in shared:
        pairs = []
        for first, second in itertools.combinations(sorted(decoders), 2):
            a = decoders[first][1][decoders[first][0].index(step)]
            b = decoders[second][1][decoders[second][0].index(step)]
            pairs.append(match_latents(a, b, method)[1])
        rows.append(
            {"step": step, "pw_mcc": float(np.mean([p.mean() for p in pairs]))}
            | {f"share_matched_{t:g}": float(np.mean([(p >= t).mean() for p in pairs])) for t in STABILITY_THRESHOLDS}
        )
    n, d = next(iter(decoders.values()))[1][-1].shape
    null = random_matched_cosines(n, d, method)
    table = pd.DataFrame(rows)
    table["random_pw_mcc"] = float(null.mean())
    for t in STABILITY_THRESHOLDS:
        table[f"random_share_matched_{t:g}"] = float((null >= t).mean())
    return table


def stability_table(study: StudyData, names: dict[str, str] | None = None, method: MatchMethod = "hungarian") -> pd.DataFrame:
    """Seed stability at the final checkpoint, arms × L0 targets: PW-MCC and the share of latents
    matched at cos ≥ 0.9 between the seeds of one arm (mean over seed pairs), with the random null.
    Descriptive: it is one number per arm and target, not a per-seed quantity a paired test can use."""
    names = names or {}
    rows: dict[str, dict[str, str]] = {}
    for arm_name in study.arm_names:
        cells = {}
        for target in study.l0_targets:
            runs = [arm for arm in study.arms if arm.arm_name == arm_name and arm.l0_target == target]
            table = seed_stability(runs, method, steps={max(arm.steps) for arm in runs})  # the final checkpoint only
            if table.empty:
                cells[f"L0 = {target:g}"] = "–"
                continue
            final = table.iloc[-1]
            cells[f"L0 = {target:g}"] = (
                f"PW-MCC {final['pw_mcc']:.3f} (random {final['random_pw_mcc']:.3f}); ≥ 0.9: {final['share_matched_0.9']:.1%} (random {final['random_share_matched_0.9']:.1%})"
            )
        rows[names.get(arm_name, arm_name)] = cells
    return pd.DataFrame.from_dict(rows, orient="index")
