"""λ for a target L0 in the playground: probes, each a whole run, until one lands near the target.

The search is the ground-truth track's (`taulib.groundtruth.track.next_coefficient`: a secant in log L0
against log coefficient inside a bracket, a clamped slope outside one), so a playground run lands where the
track's calibration would. Every probe is a complete run, and the one nearest the target is the result:
nothing is trained twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from taulib.groundtruth.track import CALIBRATION_TOLERANCE, next_coefficient

Result = TypeVar("Result")


@dataclass(frozen=True)
class Probe(Generic[Result]):
    coefficient: float  # the final effective coefficient λ/τ_final the probe ran with
    final_l0: float
    result: Result


def log_distance(l0: float, target: float) -> float:
    return abs(math.log(max(l0, 1e-9) / target))


def probe_to_target(
    run: Callable[[float], tuple[Result, float]], target: float, start: float, max_probes: int, tolerance: float = CALIBRATION_TOLERANCE
) -> list[Probe[Result]]:
    """Probes of `run(coefficient) -> (result, final L0)` from `start` until one lands within `tolerance`
    (relative) of `target` or `max_probes` are spent; every probe, in order (the nearest: `nearest`)."""
    if not (target > 0 and start > 0 and max_probes >= 1):
        raise ValueError(f"target ({target}) and start ({start}) must be > 0 and max_probes ({max_probes}) >= 1")
    probes: list[Probe[Result]] = []
    while len(probes) < max_probes and not any(abs(p.final_l0 / target - 1) < tolerance for p in probes):
        coefficient = next_coefficient([(p.coefficient, p.final_l0) for p in probes], target, start)
        result, final_l0 = run(coefficient)
        probes.append(Probe(coefficient, final_l0, result))
    return probes


def nearest(probes: list[Probe[Result]], target: float) -> Probe[Result]:
    """The probe whose final L0 is nearest the target in log L0."""
    return min(probes, key=lambda p: log_distance(p.final_l0, target))
