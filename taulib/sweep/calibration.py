"""Calibrating λ per arm so that runs end at a chosen L0.

The design: a root search in log λ over full-length training runs (probes) of the arm with the
sweep's first seed. A probe's outcome is the final SAE's L0 on the held-out core tokens, the
number the evaluation reports. L0 falls with λ roughly as a power law, so the search works on
log L0 against log λ:

* no probe yet: λ = initial_effective_coefficient × τ_final (the same final penalty for every arm);
* one probe: step along an assumed slope (initial_slope);
* probes on both sides of the target: interpolate log-linearly between the two nearest (regula
  falsi, so the proposal stays inside the bracket);
* otherwise: the secant through the two probes nearest the target, if its slope is negative.

Every step is limited to max_step_factor from the nearest probe. A probe within the tolerance of
a target is accepted and kept as that target's seed-0 run (the probes are full-length runs, so no
short-run bias enters). The grid's edge targets (its sparsest and densest, where a sweep has two or
more) are read off the frontier only where a run lies beyond them (taulib.analysis.frontier), and
no other target's run does: so with `bracket_edges` their window is the tolerance on the outside
only, and the search aims at its middle, so that the other seeds, which reuse the λ and scatter
a few percent in L0, land outside too. After max_probes_per_target the closest probe is taken and flagged. Any
probe informs every target's search, so later targets often start from a bracket, but a probe is
one run and becomes at most one target's run: a target whose search lands on another target's run
(a flat stretch of L0(λ)) trains one of its own, a step off it. The state is written
after every probe, so an interrupted calibration resumes without retraining.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taulib import atomic
from taulib.progress import progress_bar
from taulib.sweep.spec import CalibrationSettings, round_lambda

CALIBRATION_VERSION = 1
_MIN_L0 = 0.01  # an SAE with (almost) no active latents: log L0 stays finite, "far too sparse"
TWIN_STEP = 1.1  # λ's step off another target's run when the search converges on it (L0 moves ~10% with it)


@dataclass(frozen=True)
class Probe:
    l1_coefficient: float
    l0: float  # final held-out L0
    explained_variance: float
    run_name: str
    proposed_for: float  # the target the probe was proposed for


@dataclass(frozen=True)
class TargetResult:
    l0_target: float
    l1_coefficient: float
    l0: float
    run_name: str
    within_tolerance: bool
    probes_tried: int

    @property
    def relative_error(self) -> float:
        return self.l0 / self.l0_target - 1


@dataclass
class ArmCalibration:
    arm: str
    tau_final: float
    settings: CalibrationSettings
    key: str  # what the probes depend on (the arm's configuration without λ); a change starts over
    probes: list[Probe] = field(default_factory=list)
    targets: list[TargetResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CALIBRATION_VERSION,
            "arm": self.arm,
            "key": self.key,
            "tau_final": self.tau_final,
            "settings": self.settings.model_dump(mode="json"),
            "probes": [asdict(p) for p in self.probes],
            "targets": [asdict(t) | {"relative_error": t.relative_error} for t in self.targets],
        }

    def target(self, l0_target: float) -> TargetResult:
        for result in self.targets:
            if math.isclose(result.l0_target, l0_target):
                return result
        raise KeyError(l0_target)


def log_distance(l0: float, target: float) -> float:
    return abs(math.log(max(l0, _MIN_L0) / target))


def within_tolerance(l0: float, target: float, tolerance: float) -> bool:
    return abs(l0 / target - 1) <= tolerance


@dataclass(frozen=True)
class Window:
    """The final L0s a target's run is accepted at, and the L0 the search aims for."""

    low: float
    high: float
    aim: float

    def holds(self, l0: float) -> bool:
        return self.low <= l0 <= self.high


def target_window(target: float, targets: tuple[float, ...], settings: CalibrationSettings) -> Window:
    """± the tolerance around `target`; only outward for the grid's edge targets with `settings.bracket_edges` (the
    module docstring)."""
    tolerance = settings.tolerance
    if settings.bracket_edges and len(targets) >= 2:
        if math.isclose(target, max(targets)):
            return Window(target, target * (1 + tolerance), target * (1 + tolerance / 2))
        if math.isclose(target, min(targets)):
            return Window(target * (1 - tolerance), target, target * (1 - tolerance / 2))
    return Window(target * (1 - tolerance), target * (1 + tolerance), target)


def propose_lambda(probes: list[Probe], target: float, tau_final: float, settings: CalibrationSettings) -> float:
    """The next λ to try for `target`, from every probe so far (rounded to 4 significant figures)."""
    if not probes:
        return round_lambda(settings.initial_effective_coefficient * tau_final)
    points = sorted((math.log(p.l1_coefficient), math.log(max(p.l0, _MIN_L0))) for p in probes)
    goal = math.log(target)
    # L0 falls with λ: probes left of the target are too dense (L0 above it), right of it too sparse
    dense = [pt for pt in points if pt[1] > goal]
    sparse = [pt for pt in points if pt[1] < goal]
    if dense and sparse:
        # the tightest bracket: the largest λ still too dense, the smallest λ already too sparse
        (x0, y0), (x1, y1) = max(dense), min(sparse)
        if x0 < x1 and y0 != y1:
            proposal = x0 + (goal - y0) * (x1 - x0) / (y1 - y0)
            return _clamped(proposal, points, settings)
    nearest = sorted(points, key=lambda pt: abs(pt[1] - goal))
    slope = settings.initial_slope
    if len(nearest) >= 2:
        (xa, ya), (xb, yb) = nearest[0], nearest[1]
        if xa != xb and (yb - ya) / (xb - xa) < -0.05:
            slope = (yb - ya) / (xb - xa)
    x, y = nearest[0]
    return _clamped(x + (goal - y) / slope, points, settings)


def _clamped(log_lambda: float, points: list[tuple[float, float]], settings: CalibrationSettings) -> float:
    nearest = min(points, key=lambda pt: abs(pt[0] - log_lambda))[0]
    limit = math.log(settings.max_step_factor)
    return round_lambda(math.exp(min(max(log_lambda, nearest - limit), nearest + limit)))


def _best(probes: list[Probe], target: float) -> Probe:
    return min(probes, key=lambda p: log_distance(p.l0, target))


def calibrate_arm(
    calibration: ArmCalibration,
    targets: tuple[float, ...],
    train_probe: Callable[[float, float], Probe],
    save: Callable[[ArmCalibration], None] | None = None,
    show_progress: bool = True,
) -> ArmCalibration:
    """Find, for each target, a probe whose final L0 is within tolerance (see the module docstring).

    `train_probe(λ, target)` trains (or resumes) the full-length seed-0 run at λ and measures it.
    `calibration` may already hold probes from an interrupted session; they are reused.
    """
    settings = calibration.settings
    calibration.targets = []
    assigned: set[str] = set()  # a probe is one run: it is one target's run, never two targets'
    bar = progress_bar(total=len(targets), desc=f"calibrate λ {calibration.arm}", unit="target", disable=not show_progress)
    for target in targets:
        window = target_window(target, targets, settings)
        tried = 0
        while True:
            free = [p for p in calibration.probes if p.run_name not in assigned]
            hits = [p for p in free if window.holds(p.l0)]
            if hits or (free and tried >= settings.max_probes_per_target):
                break
            proposal = propose_lambda(calibration.probes, window.aim, calibration.tau_final, settings)
            twin = next((p for p in calibration.probes if math.isclose(p.l1_coefficient, proposal, rel_tol=1e-9)), None)
            if twin is not None and twin.run_name not in assigned:
                break  # the search has converged on a λ already tried: more probes would repeat it
            if twin is not None:  # it converged on another target's run: this target needs a run of its own, one step off it
                proposal = round_lambda(proposal * (TWIN_STEP if twin.l0 > window.aim else 1 / TWIN_STEP))
            calibration.probes.append(train_probe(proposal, target))
            tried += 1
            if save is not None:
                save(calibration)
        free = [p for p in calibration.probes if p.run_name not in assigned]
        best = _best([p for p in free if window.holds(p.l0)] or free, window.aim)
        assigned.add(best.run_name)
        calibration.targets.append(TargetResult(target, best.l1_coefficient, best.l0, best.run_name, window.holds(best.l0), tried))
        bar.update(1)
    bar.close()
    if save is not None:
        save(calibration)
    return calibration


def load_calibration(path: Path, arm: str, tau_final: float, settings: CalibrationSettings, key: str) -> ArmCalibration:
    """The saved probes of this arm if they were made under the same configuration, else a fresh start."""
    fresh = ArmCalibration(arm, tau_final, settings, key)
    if not path.is_file():
        return fresh
    saved = atomic.read_json(path)
    if saved.get("version") != CALIBRATION_VERSION or saved.get("key") != key:
        return fresh
    fresh.probes = [Probe(**p) for p in saved.get("probes", [])]
    return fresh


def save_calibration(path: Path, calibration: ArmCalibration) -> None:
    atomic.write_json(path, calibration.to_json())
