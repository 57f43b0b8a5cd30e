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
from taulib.analysis.frontier import MATCH_TOLERANCE
from taulib.analysis.statistics import ALPHA, holm
from taulib.analysis.study_data import Run, StudyData
from taulib.metrics.latent_formation import MatchMethod, formation_steps, match_latents, matched_cosines_over_checkpoints, random_matched_cosines
from taulib.sae import load_sae

SHARES_BY = (0.1, 0.25, 0.5)  # "formed by 10/25/50% of training"
STABILITY_THRESHOLDS = (0.7, 0.9)
FREQUENCY_BANDS = ("rarest third", "middle third", "commonest third")  # final firing density, among the latents considered
RECORD_VERSION = 2  # part of the cache key: a record of an older layout is computed again


@dataclass(frozen=True)
class FormationSettings:
    threshold: float = 0.9  # a latent has formed once its matched cosine to its final self stays at or above this
    method: MatchMethod = "hungarian"  # "max": nearest direction, faster and not one-to-one (for very wide SAEs)


def checkpoint_decoders(run: Run, only: set[int] | None = None) -> tuple[list[int], list[Any]] | None:
    """The decoder of every checkpoint (or of the steps in `only`), in step order; None if one is missing."""
    steps = sorted(step for step in run.steps if only is None or step in only)
    folders = [run.run_dir / "checkpoints" / f"step_{step:07d}" for step in steps]
    if not all((folder / "sae.safetensors").is_file() for folder in folders):
        return None
    return steps, [load_sae(folder)[0].W_dec for folder in folders]


def _cache_path(run: Run, settings: FormationSettings) -> Path:
    fields = {"run": run.config.fingerprint(), "steps": sorted(run.steps), "version": RECORD_VERSION, **asdict(settings)}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return run.run_dir / "evaluation" / f"latent_formation-{key}.json"


def run_formation(run: Run, settings: FormationSettings | None = None) -> dict[str, Any] | None:
    """The run's per-latent formation record (cached); None when its checkpoints are not on disk."""
    settings = settings or FormationSettings()
    path = _cache_path(run, settings)
    if path.is_file():
        return atomic.read_json(path)
    loaded = checkpoint_decoders(run)
    if loaded is None:
        return None
    steps, decoders = loaded
    matched = matched_cosines_over_checkpoints(decoders, settings.method)
    formed = formation_steps(matched, steps, settings.threshold)
    # which final latents say something about formation: alive at the end (a dead latent's decoder
    # gets no gradient, so it "forms" when it dies) and moved away from where it started (a latent
    # dead from the start keeps its initial direction and would read as formed at step 0)
    try:
        density = run.details(steps[-1]).get("latent_density")
    except FileNotFoundError:
        density = None
    alive = np.asarray(density) > 0 if density is not None else np.ones(len(formed), dtype=bool)
    moved = matched[:, 0] < settings.threshold
    n, d = decoders[-1].shape
    null = random_matched_cosines(n, d, settings.method)
    tokens = dict(zip(run.evaluation["step"].astype(int), run.evaluation["tokens"].astype(float), strict=True))
    record = {
        "settings": asdict(settings),
        "steps": steps,
        "tokens": [tokens[step] for step in steps],
        "formation_step": formed.tolist(),
        "alive_at_end": alive.tolist(),
        "alive_known": density is not None,
        "final_density": np.asarray(density, dtype=float).tolist() if density is not None else None,
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
    formation time, a latent never formed before the end counted at 1 (censored, not dropped; the median itself
    censored, `latent_formation_median_censored`, when half of them or more never formed); the
    share formed by 10/25/50% of training; the share never formed; and what was left out and the
    nulls beside them. `start_tokens` (the end of warm-up) is reported with them."""
    keys = ["latent_formation_median", "latent_formation_median_censored", "latents_never_formed", "latents_considered", "init_share_at_threshold", "random_share_at_threshold"]
    keys += [f"latents_formed_by_{share:.0%}" for share in SHARES_BY]
    keys += [f"latent_formation_median_{_band_key(band)}" for band in (FREQUENCY_BANDS[0], FREQUENCY_BANDS[-1])]
    if record is None:
        return dict.fromkeys(keys, math.nan)
    total = float(record["tokens"][-1])
    formed, considered = formation_positions(record)
    summary = {
        "latents_considered": float(considered.mean()),
        "init_share_at_threshold": float(record["share_at_threshold"][0]),
        "random_share_at_threshold": float(record["random_share_at_threshold"]),
        "formation_start_position": float(start_tokens / total),
    }
    if not considered.any():
        return dict.fromkeys(keys, math.nan) | summary
    times = formed[considered]  # formed only at the final checkpoint: never formed before the end, censored at 1
    summary |= {
        "latent_formation_median": float(np.median(times)),
        "latent_formation_median_censored": float(median_is_censored(times >= 1.0)),
        "latents_never_formed": float((times >= 1.0).mean()),
    }
    summary |= {f"latents_formed_by_{share:.0%}": float((times <= share).mean()) for share in SHARES_BY}
    bands = formation_by_frequency(record)
    for band in (FREQUENCY_BANDS[0], FREQUENCY_BANDS[-1]):
        summary[f"latent_formation_median_{_band_key(band)}"] = float(bands.loc[band, "median_formation"]) if band in bands.index else math.nan
    return summary


def median_is_censored(censored: np.ndarray) -> bool:
    """Whether the median of times censored at the end (`censored`: the end stands in for the time) is itself
    censored: when half of them or more are, the median is (or averages in) the stand-in, a bound and not a time.
    With fewer, every censored time lies above the median and it is the exact median (censoring at one fixed end)."""
    return bool(len(censored) and np.mean(censored) >= 0.5)


def _band_key(band: str) -> str:
    return band.split()[0]  # "rarest", "middle", "commonest"


def formation_positions(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(each final latent's formation time as a share of training, whether it says something about
    formation: alive at the end and moved away from its initial direction)."""
    tokens = np.asarray(record["tokens"], dtype=float)
    at_step = dict(zip(record["steps"], tokens / tokens[-1], strict=True))
    formed = np.array([at_step[step] for step in record["formation_step"]])
    considered = np.asarray(record["alive_at_end"], dtype=bool) & np.asarray(record["moved_from_initialisation"], dtype=bool)
    return formed, considered


def formation_by_frequency(record: dict[str, Any] | None) -> pd.DataFrame:
    """Formation split by how often a latent fires at the end: the latents considered, in thirds of
    their final firing density (rarest, middle, commonest), each with its density range, count,
    median formation time (share of training, never formed counted at 1) and share never formed.

    Rare latents see fewer gradient updates, so a difference between arms in when latents form can be
    a difference in how many rare latents they keep; read the bands beside the overall median. Empty
    when the record has no final densities."""
    if record is None or record.get("final_density") is None:
        return pd.DataFrame()
    formed, considered = formation_positions(record)
    density = np.asarray(record["final_density"], dtype=float)[considered]
    times = formed[considered]
    if len(times) < len(FREQUENCY_BANDS):
        return pd.DataFrame()
    order = np.argsort(density, kind="stable")
    rows = {}
    for band, members in zip(FREQUENCY_BANDS, np.array_split(order, len(FREQUENCY_BANDS)), strict=True):
        rows[band] = {
            "density_low": float(density[members].min()),
            "density_high": float(density[members].max()),
            "latents": len(members),
            "median_formation": float(np.median(times[members])),
            "never_formed": float((times[members] >= 1.0).mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def seed_stability(arms: list[Run], method: MatchMethod = "hungarian", steps: set[int] | None = None) -> pd.DataFrame:
    """Seeds of one arm and target matched to each other at every checkpoint they share (or at those
    of `steps`): per step, the mean over seed pairs of the share of latents matched at cos ≥ 0.7 and
    ≥ 0.9 and of the mean matched cosine (PW-MCC), with the same for random dictionaries of the shape."""
    decoders = {arm.seed: checkpoint_decoders(arm, steps) for arm in arms}
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


def stability_over_training(study: StudyData, l0_target: float | None, method: MatchMethod = "hungarian") -> pd.DataFrame:
    """`seed_stability` at every checkpoint for each arm's runs at `l0_target` (all runs of an arm
    outside a sweep), long format with `arm` and `position` (share of training) columns."""
    frames = []
    for arm_name in study.arm_names:
        runs = [run for run in study.runs if run.arm == arm_name and run.l0_target == l0_target]
        table = seed_stability(runs, method)
        if table.empty:
            continue
        tokens = dict(zip(runs[0].evaluation["step"].astype(int), runs[0].evaluation["tokens"].astype(float), strict=True))
        table.insert(0, "arm", arm_name)
        table.insert(2, "position", [tokens[step] / max(tokens.values()) for step in table["step"]])
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class StabilityComparison:
    """Seed stability (PW-MCC at the final checkpoint) of one arm against a reference arm at one L0 target."""

    arm: str
    reference: str
    l0_target: float
    seeds: tuple[int, ...]
    difference: float  # mean over seed pairs of PW-MCC(arm) − PW-MCC(reference)
    pair_differences: tuple[float, ...]
    p_value: float  # exact permutation test, arm labels swapped within seeds
    smallest_p: float  # the smallest p-value this many seeds can give
    max_l0_deviation: float  # the largest |final L0 / target − 1| among the runs compared

    def matched(self, tolerance: float) -> bool:
        return self.max_l0_deviation <= tolerance


def compare_stability(
    arm_runs: list[Run], reference_runs: list[Run], method: MatchMethod = "hungarian", pair_cache: dict | None = None
) -> StabilityComparison | None:
    """Is one arm's dictionary more reproducible across seeds than the reference's, at one target?

    Statistic: the mean over seed pairs of the difference in PW-MCC between the final SAEs of the two
    seeds. The seed pairs share seeds, so they are not independent draws and a t-test over them would
    be wrong. The test is exact: under the null the two arms' runs of one seed are exchangeable
    (same initialisation and batch order, different schedule), so swapping the arm labels within
    any subset of seeds gives an equally likely statistic; every run is matched to every other of
    the same target (cross-arm pairs included) and the statistic is recomputed for all 2^n
    relabellings. With n seeds the smallest two-sided p is 2 / 2^n (0.25 with 3 seeds): fewer than 6
    seeds cannot resolve a difference at α = 0.05, and the report says so rather than draw one.
    None when fewer than two seeds have both arms' final checkpoints."""
    pair_cache = {} if pair_cache is None else pair_cache
    by_seed = {arm.seed: arm for arm in arm_runs}
    reference_by_seed = {arm.seed: arm for arm in reference_runs}
    seeds = sorted(set(by_seed) & set(reference_by_seed))
    final = {}
    for seed in seeds:
        for label, run in (("arm", by_seed[seed]), ("reference", reference_by_seed[seed])):
            loaded = checkpoint_decoders(run, {max(run.steps)})
            if loaded is not None:
                final[(label, seed)] = (run, loaded[1][-1])
    seeds = [seed for seed in seeds if ("arm", seed) in final and ("reference", seed) in final]
    if len(seeds) < 2:
        return None

    def pw_mcc(first: tuple[str, int], second: tuple[str, int]) -> float:
        key = tuple(sorted((final[first][0].name, final[second][0].name)))
        if key not in pair_cache:
            pair_cache[key] = float(match_latents(final[first][1], final[second][1], method)[1].mean())
        return pair_cache[key]

    pairs = list(itertools.combinations(seeds, 2))

    def statistic(swapped: frozenset[int]) -> tuple[float, list[float]]:
        def side(label: str, seed: int) -> tuple[str, int]:
            flipped = {"arm": "reference", "reference": "arm"}[label] if seed in swapped else label
            return (flipped, seed)

        differences = [pw_mcc(side("arm", a), side("arm", b)) - pw_mcc(side("reference", a), side("reference", b)) for a, b in pairs]
        return float(np.mean(differences)), differences

    observed, differences = statistic(frozenset())
    relabelled = [statistic(frozenset(subset))[0] for r in range(len(seeds) + 1) for subset in itertools.combinations(seeds, r)]
    p_value = float(np.mean([abs(value) >= abs(observed) - 1e-12 for value in relabelled]))
    deviations = [abs(float(run.evaluation.sort_values("step")["l0"].iloc[-1]) / run.l0_target - 1) for run, _ in final.values() if run.l0_target]
    return StabilityComparison(
        arm=arm_runs[0].arm,
        reference=reference_runs[0].arm,
        l0_target=float(arm_runs[0].l0_target) if arm_runs[0].l0_target is not None else math.nan,
        seeds=tuple(seeds),
        difference=observed,
        pair_differences=tuple(differences),
        p_value=p_value,
        smallest_p=2 / 2 ** len(seeds),
        max_l0_deviation=max(deviations) if deviations else math.nan,
    )


def stability_comparisons(study: StudyData, reference: str, method: MatchMethod = "hungarian") -> list[StabilityComparison]:
    """`compare_stability` of every other arm against `reference` at every L0 target of a sweep."""
    cache: dict = {}
    comparisons = []
    for target in study.l0_targets:
        reference_runs = [run for run in study.runs if run.arm == reference and run.l0_target == target]
        for arm_name in study.arm_names:
            runs = [run for run in study.runs if run.arm == arm_name and run.l0_target == target]
            if arm_name == reference or not runs or not reference_runs:
                continue
            comparison = compare_stability(runs, reference_runs, method, cache)
            if comparison is not None:
                comparisons.append(comparison)
    return comparisons


def stability_table(study: StudyData, names: dict[str, str] | None = None, method: MatchMethod = "hungarian") -> pd.DataFrame:
    """Seed stability at the final checkpoint, arms × L0 targets: PW-MCC and the share of latents
    matched at cos ≥ 0.9 between the seeds of one arm (mean over seed pairs), with the random null.
    Descriptive: it is one number per arm and target, not a per-seed quantity a paired test can use."""
    names = names or {}
    rows: dict[str, dict[str, str]] = {}
    for arm_name in study.arm_names:
        cells = {}
        for target in study.l0_targets:
            runs = [run for run in study.runs if run.arm == arm_name and run.l0_target == target]
            table = seed_stability(runs, method, steps={max(run.steps) for run in runs})  # the final checkpoint only
            if table.empty:
                cells[f"L0 = {target:g}"] = "–"
                continue
            final = table.iloc[-1]
            cells[f"L0 = {target:g}"] = (
                f"PW-MCC {final['pw_mcc']:.3f} (random {final['random_pw_mcc']:.3f}); ≥ 0.9: {final['share_matched_0.9']:.1%} (random {final['random_share_matched_0.9']:.1%})"
            )
        rows[names.get(arm_name, arm_name)] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def seeds_needed(tests: int, alpha: float = ALPHA) -> int:
    """The fewest seeds with which any of `tests` exact permutation comparisons (arm labels swapped within seeds: 2ⁿ
    orderings, smallest two-sided p 2/2ⁿ) can be resolved under Holm, whose smallest adjusted p is tests × 2/2ⁿ."""
    return math.floor(math.log2(2 * max(tests, 1) / alpha)) + 1  # the smallest n with tests · 2/2ⁿ < alpha


def stability_comparison_table(comparisons: list[StabilityComparison], names: dict[str, str] | None = None) -> pd.DataFrame:
    """Arms × L0 targets: each arm's PW-MCC minus the reference's (mean over seed pairs), its exact
    permutation p Holm-corrected over the table (one family), and the verdict — a direction only
    where the corrected p is below α and every run compared is within the frontier's L0 tolerance
    of the target ("off target" otherwise; seed stability cannot be read between runs)."""
    if not comparisons:
        return pd.DataFrame()
    names = names or {}
    adjusted = holm([c.p_value for c in comparisons])
    rows: dict[str, dict[str, str]] = {}
    for comparison, p in zip(comparisons, adjusted, strict=True):
        if not comparison.matched(MATCH_TOLERANCE):
            verdict = f"off target (an L0 {comparison.max_l0_deviation:.0%} from it)"
        elif p < ALPHA:
            verdict = "more stable" if comparison.difference > 0 else "less stable"
        else:
            verdict = "unresolved"
        cell = f"{comparison.difference:+.3f} · Holm p {p:.2f} (smallest possible {comparison.smallest_p:.2f}) · {verdict}"
        rows.setdefault(names.get(comparison.arm, comparison.arm), {})[f"L0 = {comparison.l0_target:g}"] = cell
    return pd.DataFrame.from_dict(rows, orient="index")
