"""The base of every settings model (a run's sections, a metric family's parameters, the sweep): unknown keys
refused, no coercion, frozen. A leaf, so that a metric family's settings can be declared beside the family
without importing the configuration that composes them (taulib.config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys refused, no coercion, frozen."""

    # strict: "0.3" is not a float and 1.0 is not an int; allow_inf_nan: .nan / .inf are refused.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
