"""τ(t) schedules. The L1 penalty is divided by τ(t), so the effective coefficient is λ/τ(t).

Progress t runs from 0 at the first step to 1 at the last. A schedule anneals from `tau_initial`
to `tau_final` over the first `anneal_fraction` of training and then holds `tau_final`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["none", "constant", "linear", "cosine", "exponential"]
SCHEDULE_KINDS: tuple[str, ...] = ("none", "constant", "linear", "cosine", "exponential")


class ScheduleError(ValueError):
    """A τ schedule whose values are not usable as a divisor."""


def _check_tau(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ScheduleError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class TauSchedule:
    kind: ScheduleKind
    tau_initial: float = 1.0
    tau_final: float = 1.0
    anneal_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ScheduleError(f"unknown schedule kind {self.kind!r}; allowed: {', '.join(SCHEDULE_KINDS)}")
        _check_tau("tau_initial", self.tau_initial)
        _check_tau("tau_final", self.tau_final)
        if not (math.isfinite(self.anneal_fraction) and 0 < self.anneal_fraction <= 1):
            raise ScheduleError(f"anneal_fraction must be in (0, 1], got {self.anneal_fraction!r}")

    def tau(self, progress: float) -> float:
        """τ at training progress `progress` in [0, 1]."""
        if self.kind == "none":
            return 1.0  # plain L1: the penalty is λ·‖f‖₁
        if self.kind == "constant":
            return self.tau_initial
        s = min(max(progress / self.anneal_fraction, 0.0), 1.0)
        start, end = self.tau_initial, self.tau_final
        if self.kind == "linear":
            return start + (end - start) * s
        if self.kind == "cosine":
            return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * s))
        # exponential: geometric interpolation, equal ratios per unit of progress
        return start * (end / start) ** s

    def at_step(self, step: int, total_steps: int) -> float:
        """τ at optimiser step `step` (0-based) of `total_steps`; the last step reaches progress 1."""
        progress = step / max(total_steps - 1, 1)
        return self.tau(progress)
