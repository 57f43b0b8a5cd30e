"""From the playground's schedule controls to an arm file's `schedule:` mapping, validated by the study's rules.

Every kind reads only the controls it declares (`uses` in taulib.schedules): plain L1 none, constant τ its
τ_initial, the L1 warm-up its ramp (anneal_fraction), the annealed kinds all three; the others are left out,
as an arm file leaves them out. Validation is the parameter files' own (`taulib.config.config_from_mapping`), so a refusal
carries the study's message.
"""

from __future__ import annotations

from typing import Any

from taulib.config import ScheduleConfig, config_from_mapping
from taulib.schedules import SCHEDULE_KIND_SPECS


def controls_of(kind: str) -> tuple[str, ...] | None:
    """The controls a kind reads (its declared `uses`), None for a kind not declared."""
    spec = SCHEDULE_KIND_SPECS.get(kind)
    return spec.uses if spec is not None else None


def schedule_mapping(kind: str, tau_initial: float, tau_final: float, anneal_fraction: float) -> dict[str, Any]:
    """The `schedule:` mapping of an arm file for these control values (only the keys the kind reads)."""
    values = {"tau_initial": float(tau_initial), "tau_final": float(tau_final), "anneal_fraction": float(anneal_fraction)}
    used = controls_of(kind)
    used = tuple(values) if used is None else used  # an unknown kind keeps every key: validation names the kind
    return {"kind": kind, **{key: values[key] for key in used if not (key == "anneal_fraction" and values[key] == 1.0)}}


def validated_schedule(mapping: dict[str, Any], source: str = "schedule") -> ScheduleConfig:
    """The schedule as a parameter file's; ConfigError with the study's message when a parameter file would be refused."""
    return config_from_mapping({"run_name": "playground", "schedule": mapping}, source).schedule
