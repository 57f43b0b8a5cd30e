"""τ(t) schedules. The L1 penalty is divided by τ(t), so the effective coefficient is λ/τ(t).

Progress t runs from 0 at the first step to 1 at the last. A schedule anneals from `tau_initial`
to `tau_final` over the first `anneal_fraction` of training and then holds `tau_final`.

`l1_warmup` is the practitioners' L1 warm-up (SAELens `l1_warm_up_steps`, dictionary_learning's
sparsity warm-up) written as a τ schedule: the coefficient λ·min(1, t/anneal_fraction) ramps
linearly from 0, so τ = 1/min(1, t/anneal_fraction) falls from +∞ to 1 and then holds 1. Every
annealed τ schedule is also a rising coefficient; this is the rising coefficient in common use.

Each kind is declared once, as a `ScheduleKindSpec` in SCHEDULE_KIND_SPECS: its formula, the parameters it
reads, its rules, whether it anneals τ downwards, keeps one coefficient throughout or is plain L1 itself, its
label and dash style. The configuration, the sweep, the report, the plots and the playground read these
declarations and name no kind. Adding a kind is one `register_kind(ScheduleKindSpec(...))` here (or in a
module imported before the parameter files are read) and an arm file that uses it (docs/method.md,
"Adding a schedule kind"; tests/test_schedules.py adds one in a temporary module).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

TAU_PARAMETERS = ("tau_initial", "tau_final", "anneal_fraction")


class ScheduleError(ValueError):
    """A τ schedule whose values are not usable as a divisor."""


@dataclass(frozen=True)
class ScheduleKindSpec:
    """Everything the study needs to know about one kind of schedule."""

    name: str
    # τ at `s`, the share of the anneal done (progress / anneal_fraction, clamped to [0, 1]), from (tau_initial, tau_final)
    tau: Callable[[float, float, float], float]
    # the arm's label in figures and the report, from (tau_initial, tau_final, anneal_fraction)
    label: Callable[[float, float, float], str]
    # a sentence describing an arm of this kind (the playground's kept arm files), from the same three
    sentence: Callable[[float, float, float], str]
    uses: tuple[str, ...]  # the TAU_PARAMETERS it reads: an arm file sets only these, the playground shows only these
    # the kind's own rule on (tau_initial, tau_final, anneal_fraction): the refusal's message, or None
    check: Callable[[float, float, float], str | None] = lambda a, b, f: None
    dash: str = "solid"  # plotly dash style of its arms
    annealed: bool = False  # τ moves from tau_initial down to tau_final: the τ-floor ablation pairs such arms
    constant_coefficient: bool = False  # one penalty coefficient throughout: plain L1 with λ/τ (an equivalence check)
    plain: bool = False  # plain L1 itself (τ ≡ 1): the arm the constant-coefficient arms are checked against
    tau_final_is_initial: bool = False  # τ holds tau_initial: an omitted tau_final is tau_initial
    # the coefficient ramps from 0 over anneal_fraction: τ at a step counts the step being taken (never +∞ in training),
    # and formation is timed from the ramp's end when that is later than the learning-rate warm-up
    coefficient_ramp: bool = False


def _span(fraction: float) -> str:
    return "over all of training" if fraction == 1.0 else f"over the first {fraction:.0%} of training, then held"


def _annealed(name: str, dash: str, tau: Callable[[float, float, float], float]) -> ScheduleKindSpec:
    def downwards(a: float, b: float, f: float) -> str | None:
        return f"kind {name!r} anneals τ downwards: tau_final ({b}) must be <= tau_initial ({a})" if b > a else None

    return ScheduleKindSpec(
        name,
        tau,
        # the span shows where it is not the whole of training: one range annealed over two spans reads differently
        label=lambda a, b, f: f"{name} τ {a:g} → {b:g}" + ("" if f == 1.0 else f" over {100 * f:.3g}%"),
        sentence=lambda a, b, f: f"{name.capitalize()} τ {a:g} → {b:g} {_span(f)}",
        uses=TAU_PARAMETERS,
        check=downwards,
        dash=dash,
        annealed=True,
    )


SCHEDULE_KIND_SPECS: dict[str, ScheduleKindSpec] = {}


def register_kind(spec: ScheduleKindSpec) -> ScheduleKindSpec:
    """Declare a kind (a kind of that name already declared is refused: one declaration each)."""
    if spec.name in SCHEDULE_KIND_SPECS:
        raise ValueError(f"schedule kind {spec.name!r} is declared already")
    unknown = set(spec.uses) - set(TAU_PARAMETERS)
    if unknown:
        raise ValueError(f"schedule kind {spec.name!r} uses unknown parameters {sorted(unknown)}; known: {', '.join(TAU_PARAMETERS)}")
    SCHEDULE_KIND_SPECS[spec.name] = spec
    return spec


def schedule_kinds() -> tuple[str, ...]:
    """The declared kinds' names, in declaration order."""
    return tuple(SCHEDULE_KIND_SPECS)


def kind_spec(kind: str) -> ScheduleKindSpec:
    try:
        return SCHEDULE_KIND_SPECS[kind]
    except KeyError:
        raise ScheduleError(f"unknown schedule kind {kind!r}; allowed: {', '.join(schedule_kinds())}") from None


def _none_rule(a: float, b: float, f: float) -> str | None:
    # plain L1 has τ ≡ 1; the defaults are accepted so a resolved config.json validates again
    return "kind 'none' is plain L1 (τ ≡ 1): remove tau_initial, tau_final and anneal_fraction" if (a, b, f) != (1.0, 1.0, 1.0) else None


def _constant_rule(a: float, b: float, f: float) -> str | None:
    return "kind 'constant' holds tau_initial: tau_final must be omitted or equal to it" if b != a else None


def _warmup_rule(a: float, b: float, f: float) -> str | None:
    if (a, b) != (1.0, 1.0):
        return "kind 'l1_warmup' ramps λ from 0 to λ (τ from +∞ to 1): remove tau_initial and tau_final, set the ramp with anneal_fraction"
    return None


register_kind(
    ScheduleKindSpec(
        "none",
        lambda s, a, b: 1.0,  # plain L1: the penalty is λ·‖f‖₁
        label=lambda a, b, f: "plain L1 (τ ≡ 1)",
        sentence=lambda a, b, f: "Plain L1, τ ≡ 1",
        uses=(),
        check=_none_rule,
        dash="dot",
        constant_coefficient=True,
        plain=True,
    )
)
register_kind(
    ScheduleKindSpec(
        "constant",
        lambda s, a, b: a,
        label=lambda a, b, f: f"constant τ = {a:g}",
        sentence=lambda a, b, f: f"Constant τ = {a:g}",
        uses=("tau_initial",),
        check=_constant_rule,
        dash="dash",
        constant_coefficient=True,
        tau_final_is_initial=True,
    )
)
register_kind(_annealed("linear", "dashdot", lambda s, a, b: a + (b - a) * s))
register_kind(_annealed("cosine", "solid", lambda s, a, b: b + 0.5 * (a - b) * (1.0 + math.cos(math.pi * s))))
register_kind(_annealed("exponential", "longdash", lambda s, a, b: a * (b / a) ** s))  # equal ratios per unit of progress
register_kind(
    ScheduleKindSpec(
        "l1_warmup",
        lambda s, a, b: math.inf if s == 0 else 1.0 / s,
        label=lambda a, b, f: f"L1 warm-up over {f:.0%}",
        sentence=lambda a, b, f: f"L1 warm-up: λ ramps linearly from 0 {_span(f)}",
        uses=("anneal_fraction",),
        check=_warmup_rule,
        dash="longdashdot",
        coefficient_ramp=True,
    )
)


def _check_tau(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ScheduleError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class TauSchedule:
    kind: str
    tau_initial: float = 1.0
    tau_final: float = 1.0
    anneal_fraction: float = 1.0

    def __post_init__(self) -> None:
        kind_spec(self.kind)
        _check_tau("tau_initial", self.tau_initial)
        _check_tau("tau_final", self.tau_final)
        if not (math.isfinite(self.anneal_fraction) and 0 < self.anneal_fraction <= 1):
            raise ScheduleError(f"anneal_fraction must be in (0, 1], got {self.anneal_fraction!r}")

    @property
    def spec(self) -> ScheduleKindSpec:
        return kind_spec(self.kind)

    def tau(self, progress: float) -> float:
        """τ at training progress `progress` in [0, 1] (+∞ for l1_warmup at progress 0: no penalty)."""
        s = min(max(progress / self.anneal_fraction, 0.0), 1.0)
        return self.spec.tau(s, self.tau_initial, self.tau_final)

    @property
    def tau_at_end(self) -> float:
        """τ at the end of training: the final penalty is λ/τ_at_end (calibration's first probe sets it)."""
        return self.tau(1.0)

    def at_step(self, step: int, total_steps: int) -> float:
        """τ at optimiser step `step` (0-based) of `total_steps`; the last step reaches progress 1.

        A coefficient ramp (l1_warmup) counts the step being taken, as the learning-rate warm-up does: step 0
        of a ramp of R steps already carries 1/R of λ, so τ is always finite."""
        if self.spec.coefficient_ramp:
            return self.tau((step + 1) / max(total_steps, 1))
        progress = step / max(total_steps - 1, 1)
        return self.tau(progress)
