"""The base of every settings model (a run's sections, a metric family's parameters, the sweep): unknown keys
refused, no coercion, frozen. A leaf, so that a metric family's settings can be declared beside the family
without importing the configuration that composes them (taulib.config)."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _is_tuple_type(annotation: Any) -> bool:
    """A tuple type, or a union holding one (`tuple[int, ...] | None`)."""
    if typing.get_origin(annotation) is tuple or annotation is tuple:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(member) for member in typing.get_args(annotation))
    return False


class StrictModel(BaseModel):
    """Unknown keys refused, no coercion, frozen."""

    # strict: "0.3" is not a float and 1.0 is not an int; allow_inf_nan: .nan / .inf are refused.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _yaml_lists_as_tuples(cls, data: Any) -> Any:
        # YAML and JSON give lists where the settings hold tuples (frozen, hashable); strict mode would refuse
        # them. Only the list itself becomes a tuple: its items stay strictly typed.
        if not isinstance(data, dict):
            return data
        tuples = {name for name, field in cls.model_fields.items() if _is_tuple_type(field.annotation)}
        return {key: tuple(value) if key in tuples and isinstance(value, list) else value for key, value in data.items()}
