"""τ(t) schedules. The L1 penalty is divided by τ(t), so the effective coefficient is λ/τ(t).

Progress t runs from 0 at the first step to 1 at the last. A schedule anneals from `tau_initial`
to `tau_final` over the first `anneal_fraction` of training and then holds `tau_final`.

`l1_warmup` is the practitioners' L1 warm-up (SAELens `l1_warm_up_steps`, dictionary_learning's
sparsity warm-up) written as a τ schedule: the coefficient λ·min(1, t/anneal_fraction) ramps
linearly from 0, so τ = 1/min(1, t/anneal_fraction) falls from +∞ to 1 and then holds 1. Every
annealed τ schedule is also a rising coefficient; this is the rising coefficient in common use.

Adding a kind: its name in `ScheduleKind` (SCHEDULE_KINDS and the config's validation read it from
here), its formula in `TauSchedule.tau`, ANNEALED_KINDS or CONSTANT_COEFFICIENT_KINDS where it
belongs, and a test in tests/test_schedules.py (docs/method.md, "Adding a schedule kind").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

ScheduleKind = Literal["none", "constant", "linear", "cosine", "exponential", "l1_warmup"]
SCHEDULE_KINDS: tuple[str, ...] = get_args(ScheduleKind)
# kinds whose τ moves from tau_initial down to tau_final (the τ-annealed arms)
ANNEALED_KINDS: tuple[str, ...] = ("linear", "cosine", "exponential")
# kinds with one penalty coefficient throughout: constant τ is plain L1 with λ/τ
CONSTANT_COEFFICIENT_KINDS: tuple[str, ...] = ("none", "constant")


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
        """τ at training progress `progress` in [0, 1] (+∞ for l1_warmup at progress 0: no penalty)."""
        if self.kind == "none":
            return 1.0  # plain L1: the penalty is λ·‖f‖₁
        if self.kind == "constant":
            return self.tau_initial
        s = min(max(progress / self.anneal_fraction, 0.0), 1.0)
        if self.kind == "l1_warmup":
            return math.inf if s == 0 else 1.0 / s
        start, end = self.tau_initial, self.tau_final
        if self.kind == "linear":
            return start + (end - start) * s
        if self.kind == "cosine":
            return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * s))
        # exponential: geometric interpolation, equal ratios per unit of progress
        return start * (end / start) ** s

    def at_step(self, step: int, total_steps: int) -> float:
        """τ at optimiser step `step` (0-based) of `total_steps`; the last step reaches progress 1.

        l1_warmup counts the step being taken, as the learning-rate warm-up does: step 0 of a
        ramp of R steps already carries 1/R of λ, so τ is always finite."""
        if self.kind == "l1_warmup":
            return self.tau((step + 1) / max(total_steps, 1))
        progress = step / max(total_steps - 1, 1)
        return self.tau(progress)
