"""The ground-truth track's verdicts: every endpoint at matched final L0, paired over replicates, Holm per question.

- **Matched sparsity.** Per (arm, replicate, budget), an endpoint is read at each L0 target off the arm's
  frontier of runs on its coefficient grid (taulib.analysis.frontier.read_at_l0: linear in log L0
  between the two runs that bracket the target; unmatched, never filled, where none do).
- **Paired contrasts.** Arms of a replicate share its world, its training samples and its
  initialisation: a contrast is the mean over replicates of the within-replicate difference, with the
  paired t interval (taulib.analysis.intervals.paired_difference).
- **Questions.** Formation speed (primary: mean MCC over training, `mcc_area`) and absorption-reduction
  speed (primary: mean absorption after the warm-up, `absorption_area`). Each question's primary
  contrasts — tightened against plain L1 and against the L1 warm-up — over targets and budgets are one
  Holm family; its secondary endpoints and the other arms are a second family. A difference whose
  Holm-adjusted p is ≥ α is "unresolved", never a direction.
- **A/A.** Plain L1 against its own second calibration, on every endpoint, targets and budgets, as one
  Holm family: it must come out unresolved everywhere.
- **Dose-response.** The τ_initial and τ_final families: per replicate and target, each endpoint is
  fitted as a + b·x + c·x² in x = log τ (centred); the slope b and the curvature c are tested over
  replicates (t), Holm within each family.
- **Proxies.** The language model's formation and orthogonality proxies against the ground-truth endpoint
  each claims to stand for, across the full-budget runs: Spearman ρ, raw and partial on log final L0
  (both ranks residualised on it: sparsity moves both), with a cluster bootstrap over replicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from taulib import atomic
from taulib.analysis.frontier import read_at_l0
from taulib.analysis.intervals import Estimate, paired_difference, t_interval
from taulib.analysis.report import Endpoint  # the language model's report's endpoint: the same concept
from taulib.analysis.statistics import ALPHA, holm
from taulib.groundtruth.endpoints import FEATURE_TYPES
from taulib.groundtruth.track import AGAIN, FAMILY_FLOOR_TAU, FAMILY_START_TAU, PLAIN, TIGHTENED, WARMUP, family_name, load_decoder
from taulib.metrics.latent_formation import match_latents

CURRENT_L0_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # where along training absorption is also read at matched *current* L0
# what is read at matched current L0 as well. Not MCC: its A/A control resolved there (runs' current L0 are not
# calibrated, so a reading spans runs far apart)
CURRENT_MEASURES = ("absorption",)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("formation", "mcc_area", "mean MCC over training (area under MCC against tokens, per token)", True, primary=True),
    Endpoint("formation", "recovery_time", "restricted mean recovery time of a true feature, share of budget (never: the budget)", False),
    Endpoint("formation", "share_time", "tokens until the declared share of features is recovered, restricted mean, share of budget", False),
    Endpoint("formation", "final_mcc", "final MCC (Hungarian-matched cosine, mean over true features)", True),
    Endpoint("formation", "final_recall", "final share of true features recovered (matched cosine > 0.9)", True),
    Endpoint("formation", "final_precision", "final recovered features per alive latent", True),
    Endpoint("formation", "final_f1", "final firing F1 of recovered features' latents", True),
    Endpoint("absorption", "absorption_area", "mean ground-truth absorption rate after the warm-up", False, primary=True),
    Endpoint("absorption", "absorption_settle_time", "tokens until absorption stays below the declared level, restricted mean, share of budget", False),
    Endpoint("absorption", "final_absorption", "final ground-truth absorption rate", False),
    *(
        Endpoint("absorption", f"absorption_current_{q:g}", f"absorption at matched current L0, {q:.0%} into training", False)
        for q in CURRENT_L0_FRACTIONS[:-1]
    ),
)
QUESTIONS = {
    "formation": "Early concept formation: does tightened annealing recover the true features faster?",
    "absorption": "Absorption-reduction speed: does tightened annealing absorb parents into children less, sooner?",
}
PRIMARY_CONTRASTS = ((TIGHTENED, PLAIN), (TIGHTENED, WARMUP))
PROXIES = (
    # (proxy column, ground-truth column, expected sign, what the proxy claims)
    ("formation_time", "recovery_time", 1, "per-latent formation against the run's own final decoder tracks recovery time"),
    ("seed_stability", "final_mcc", 1, "seed stability (Hungarian decoder cosine between two seeds) tracks recovery of the truth"),
    ("max_decoder_cosine", "final_splits", 1, "max decoder cosine (redundancy) tracks split latents"),
    ("max_decoder_cosine", "final_mcc", -1, "max decoder cosine (redundancy) tracks worse recovery of the truth"),
)


# ----------------------------------------------------------------------------- tables
def load_runs(root: Path) -> pd.DataFrame:
    """One row per grid run (calibration probes excluded): its design, summary endpoints and proxies."""
    rows = []
    for path in sorted((root / "runs").glob("*/*/b*_g*.json")):
        record = atomic.read_json(path)
        row = {key: record[key] for key in ("arm", "world_seed", "training_seed", "budget", "coefficient", "grid_index")}
        row |= record["summary"] | record.get("proxies", {})
        checkpoints = record["checkpoints"]
        tokens = np.array([c["tokens"] for c in checkpoints], dtype=float)
        for q in CURRENT_L0_FRACTIONS:
            k = int(np.argmin(np.abs(tokens - q * record["budget"])))
            row[f"l0_current_{q:g}"] = checkpoints[k]["l0"]
            row |= {f"{measure}_at_{q:g}": checkpoints[k][measure] for measure in CURRENT_MEASURES}
        row["path"] = str(path)
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{root}: no ground-truth runs (python -m taulib groundtruth)")
    runs = pd.DataFrame(rows)
    runs["replicate"] = "w" + runs["world_seed"].astype(str) + "_s" + runs["training_seed"].astype(str)
    return runs


def seed_stability(runs: pd.DataFrame) -> pd.Series:
    """Per full-budget run, the mean Hungarian-matched decoder cosine to the run of the same world, arm and grid
    point with the next training seed (cyclically): the language model's seed-stability proxy."""
    full = runs["budget"] == runs["budget"].max()
    values = pd.Series(math.nan, index=runs.index)
    for _, group in runs[full].groupby(["arm", "world_seed", "grid_index"]):
        ordered = group.sort_values("training_seed")
        if len(ordered) < 2:
            continue
        decoders = [load_decoder(Path(p)) for p in ordered["path"]]
        for i, index in enumerate(ordered.index):
            other = decoders[(i + 1) % len(decoders)]
            values[index] = float(np.mean(match_latents(decoders[i], other, "hungarian")[1]))
    return values


def matched(runs: pd.DataFrame, targets: Sequence[float]) -> pd.DataFrame:
    """One row per (arm, replicate, budget, target): every endpoint read at the target off that frontier; the
    absorption at matched *current* L0 read off the checkpoint's own L0 frontier."""
    columns = [e.column for e in ENDPOINTS if e.column in runs and "_current_" not in e.column]
    by_type = [f"final_{kind}_{feature}" for kind in ("recall", "f1") for feature in FEATURE_TYPES]
    current_l0 = tuple(f"l0_current_{q:g}" for q in CURRENT_L0_FRACTIONS[:-1])  # each arm's sparsity along training, at matched final L0
    extra = (*current_l0, "formation_time", "seed_stability", "max_decoder_cosine", "final_splits", "final_l0", "final_explained_variance", *by_type)
    columns += [c for c in extra if c in runs]
    rows = []
    for (arm, replicate, budget), frontier in runs.groupby(["arm", "replicate", "budget"], sort=False):
        l0s = frontier["final_l0"].to_numpy(dtype=float)
        for target in targets:
            reading = read_at_l0(l0s, l0s, target)
            row: dict[str, Any] = {"arm": arm, "replicate": replicate, "budget": int(budget), "l0_target": float(target), "match": reading.status}
            for column in columns:
                row[column] = read_at_l0(l0s, frontier[column].to_numpy(dtype=float), target).value
            for q in CURRENT_L0_FRACTIONS[:-1]:
                current = frontier[f"l0_current_{q:g}"].to_numpy(dtype=float)
                for measure in CURRENT_MEASURES:
                    row[f"{measure}_current_{q:g}"] = read_at_l0(current, frontier[f"{measure}_at_{q:g}"].to_numpy(dtype=float), target).value
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- contrasts
@dataclass(frozen=True)
class Contrast:
    question: str
    endpoint: Endpoint
    arm: str
    reference: str
    budget: int
    target: float
    estimate: Estimate
    family: str  # the Holm family it was corrected in
    adjusted_p: float = math.nan

    @property
    def verdict(self) -> str:
        """ "better" / "worse" for `arm` against `reference` where Holm resolves it; else "unresolved"."""
        if not (self.adjusted_p < ALPHA):
            return "unresolved"
        return "better" if (self.estimate.value > 0) == self.endpoint.higher_is_better else "worse"

    def row(self) -> dict[str, Any]:
        return {
            "question": self.question, "endpoint": self.endpoint.column, "arm": self.arm, "reference": self.reference, "budget": self.budget,
            "l0_target": self.target, "difference": self.estimate.value, "low": self.estimate.low, "high": self.estimate.high,
            "pairs": self.estimate.n, "p": self.estimate.p_value, "holm_p": self.adjusted_p, "family": self.family, "verdict": self.verdict,
        }  # fmt: skip


def contrast(table: pd.DataFrame, endpoint: Endpoint, arm: str, reference: str, budget: int, target: float, family: str) -> Contrast:
    """`arm` minus `reference` on `endpoint`, paired by replicate at (budget, target)."""
    cell = table[(table["budget"] == budget) & np.isclose(table["l0_target"], target)]
    a = cell[cell["arm"] == arm].set_index("replicate")[endpoint.column]
    b = cell[cell["arm"] == reference].set_index("replicate")[endpoint.column]
    replicates = sorted(set(a.index) & set(b.index))
    return Contrast(endpoint.question, endpoint, arm, reference, budget, target, paired_difference(a[replicates].to_numpy(), b[replicates].to_numpy()), family)


def corrected(contrasts: list[Contrast]) -> list[Contrast]:
    """Holm within each family."""
    out: list[Contrast] = []
    for family in dict.fromkeys(c.family for c in contrasts):
        members = [c for c in contrasts if c.family == family]
        adjusted = holm([c.estimate.p_value for c in members])
        out += [Contrast(**{**c.__dict__, "adjusted_p": float(p)}) for c, p in zip(members, adjusted, strict=True)]
    return out


def question_contrasts(table: pd.DataFrame, arms: Sequence[str], budgets: Sequence[int], targets: Sequence[float]) -> list[Contrast]:
    """Per question: the primary family (primary endpoint, primary contrasts, every budget and target) and the
    secondary one (secondary endpoints on the primary contrasts, and the other study arms against plain L1 on
    the primary endpoint, at the full budget)."""
    full = max(budgets)
    contrasts: list[Contrast] = []
    for question in QUESTIONS:
        endpoints = [e for e in ENDPOINTS if e.question == question]
        primary = next(e for e in endpoints if e.primary)
        for arm, reference in PRIMARY_CONTRASTS:
            for budget in budgets:
                for target in targets:
                    contrasts.append(contrast(table, primary, arm, reference, budget, target, f"{question}: primary"))
        for arm, reference in PRIMARY_CONTRASTS:
            for endpoint in endpoints:
                if not endpoint.primary:
                    for target in targets:
                        contrasts.append(contrast(table, endpoint, arm, reference, full, target, f"{question}: secondary"))
        for arm in arms:
            if arm not in (PLAIN, AGAIN, TIGHTENED, WARMUP):
                for target in targets:
                    contrasts.append(contrast(table, primary, arm, PLAIN, full, target, f"{question}: secondary"))
    return corrected(contrasts)


def aa_contrasts(table: pd.DataFrame, budgets: Sequence[int], targets: Sequence[float]) -> list[Contrast]:
    """The A/A control: plain L1's second calibration against the first, on every endpoint, one Holm family."""
    contrasts = [
        contrast(table, endpoint, AGAIN, PLAIN, budget, target, "A/A")
        for endpoint in ENDPOINTS
        for budget in budgets
        for target in targets
        if endpoint.column in table
    ]
    return corrected(contrasts)


# ----------------------------------------------------------------------------- dose-response
@dataclass(frozen=True)
class DoseResponse:
    family: str  # "tau_initial" | "tau_final"
    endpoint: Endpoint
    target: float
    slope: Estimate  # d endpoint / d log τ, over replicates
    curvature: Estimate  # the quadratic term in log τ
    members: tuple[float, ...]
    adjusted_slope_p: float = math.nan
    adjusted_curvature_p: float = math.nan

    def reading(self) -> str:
        parts = []
        for name, estimate, p in (("slope", self.slope, self.adjusted_slope_p), ("curvature", self.curvature, self.adjusted_curvature_p)):
            state = ("positive" if estimate.value > 0 else "negative") if p < ALPHA else "unresolved"
            parts.append(f"{name} {estimate.format()} ({state}, Holm p {p:.3g})")
        return "; ".join(parts)


def dose_response(
    table: pd.DataFrame, identities: dict[str, str], tau_initials: Sequence[float], tau_finals: Sequence[float], targets: Sequence[float]
) -> list[DoseResponse]:
    """Per family, primary endpoint and target: the slope and curvature in log τ, fitted per replicate."""
    full = table["budget"].max()
    families = {
        "tau_initial": [(t, identities.get(family_name(t, FAMILY_FLOOR_TAU), family_name(t, FAMILY_FLOOR_TAU))) for t in tau_initials],
        "tau_final": [(t, identities.get(family_name(FAMILY_START_TAU, t), family_name(FAMILY_START_TAU, t))) for t in tau_finals],
    }
    results: list[DoseResponse] = []
    for family, members in families.items():
        fitted: list[DoseResponse] = []
        for endpoint in (e for e in ENDPOINTS if e.primary):
            for target in targets:
                cell = table[(table["budget"] == full) & np.isclose(table["l0_target"], target)]
                slopes, curvatures = [], []
                for _, replicate in cell.groupby("replicate"):
                    by_arm = replicate.set_index("arm")[endpoint.column]
                    points = [(math.log(tau), by_arm.get(arm, math.nan)) for tau, arm in members]
                    points = [(x, y) for x, y in points if math.isfinite(y)]
                    if len(points) < 3:
                        continue
                    x, y = np.array(points).T
                    x = x - x.mean()
                    curvature, slope, _ = np.polyfit(x, y, 2)
                    slopes.append(slope)
                    curvatures.append(curvature)
                fitted.append(DoseResponse(family, endpoint, target, _tested(slopes), _tested(curvatures), tuple(t for t, _ in members)))
        adjusted = holm([p for d in fitted for p in (d.slope.p_value, d.curvature.p_value)])
        results += [
            DoseResponse(**{**d.__dict__, "adjusted_slope_p": float(adjusted[2 * i]), "adjusted_curvature_p": float(adjusted[2 * i + 1])})
            for i, d in enumerate(fitted)
        ]
    return results


def _tested(values: Sequence[float]) -> Estimate:
    """The mean with its t interval and the one-sample t test's p-value (0: no effect)."""
    estimate = t_interval(values)
    if estimate.n < 2 or not estimate.defined:
        return estimate
    if float(np.std(values, ddof=1)) <= 1e-12 * max(1.0, abs(estimate.value)):
        return estimate  # no spread but rounding's: untestable, not infinite evidence (as paired_difference)
    return Estimate(**{**estimate.__dict__, "p_value": float(stats.ttest_1samp(values, 0.0).pvalue)})


# ----------------------------------------------------------------------------- proxies
@dataclass(frozen=True)
class ProxyCheck:
    proxy: str
    truth: str
    expected_sign: int
    claim: str
    rho: Estimate  # Spearman over runs, cluster bootstrap over replicates
    partial_rho: Estimate  # both ranks residualised on log final L0

    @property
    def tracks(self) -> bool:
        """The partial correlation's interval excludes 0 on the expected side."""
        return (self.partial_rho.low > 0) if self.expected_sign > 0 else (self.partial_rho.high < 0)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ; NaN where either side is constant (a resample can be), instead of scipy's warning."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def _partial_spearman(x: np.ndarray, y: np.ndarray, control: np.ndarray) -> float:
    ranks = [stats.rankdata(v) for v in (x, y, control)]
    design = np.column_stack([np.ones(len(x)), ranks[2]])
    residuals = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in ranks[:2]]
    if min(np.ptp(residuals[0]), np.ptp(residuals[1])) == 0:
        return math.nan
    return float(stats.pearsonr(*residuals).statistic)


def _cluster_bootstrap(frame: pd.DataFrame, statistic, resamples: int = 1000, seed: int = 0) -> Estimate:
    point = statistic(frame)
    clusters = [group for _, group in frame.groupby("replicate")]
    if len(clusters) < 3 or not math.isfinite(point):
        return Estimate(point, math.nan, math.nan, len(clusters), "cluster bootstrap")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        picked = pd.concat([clusters[i] for i in rng.integers(0, len(clusters), len(clusters))])
        values.append(statistic(picked))
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return Estimate(point, float(low), float(high), len(clusters), "cluster bootstrap")


def proxy_check(frame: pd.DataFrame, proxy: str, truth: str, sign: int, claim: str = "", cluster: str = "replicate") -> ProxyCheck:
    """Whether `proxy` tracks `truth` over the runs of `frame`: Spearman ρ and the partial ρ with both ranks
    residualised on log final L0, each with a bootstrap over the `cluster` column's groups (the units that are
    independent of each other: replicates, or worlds where runs of one world share what they are scored against).
    Runs missing either value, or with no positive final L0, are left out."""
    data = frame.assign(replicate=frame[cluster])[["replicate", proxy, truth, "final_l0"]].replace([np.inf, -np.inf], np.nan).dropna()
    data = data[data["final_l0"] > 0]
    rho = _cluster_bootstrap(data, lambda f: _spearman(f[proxy].to_numpy(), f[truth].to_numpy()))
    partial = _cluster_bootstrap(
        data, lambda f: _partial_spearman(f[proxy].to_numpy(), f[truth].to_numpy(), np.log(f["final_l0"].to_numpy())) if len(f) > 3 else math.nan
    )
    return ProxyCheck(proxy, truth, sign, claim, rho, partial)


def proxy_checks(runs: pd.DataFrame) -> list[ProxyCheck]:
    """Every declared proxy (`PROXIES`) against its truth, on the full budget's runs, bootstrapped over replicates."""
    full = runs[runs["budget"] == runs["budget"].max()]
    return [proxy_check(full, proxy, truth, sign, claim) for proxy, truth, sign, claim in PROXIES if proxy in full and truth in full]


# ----------------------------------------------------------------------------- per-arm summaries
def arm_summary(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per (arm, budget, target): each column's mean over replicates with its t interval, and the replicates matched."""
    rows = []
    for (arm, budget, target), cell in table.groupby(["arm", "budget", "l0_target"], sort=False):
        row: dict[str, Any] = {
            "arm": arm,
            "budget": int(budget),
            "l0_target": target,
            "matched": int((cell["match"] != "unmatched").sum()),
            "replicates": len(cell),
        }
        for column in columns:
            row[column] = t_interval(cell[column].to_numpy(dtype=float))
        rows.append(row)
    return pd.DataFrame(rows)
