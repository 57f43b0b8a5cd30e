"""What a metric family declares about itself, read by everything that does not compute it.

Each family's folder (taulib/metrics/<family>/) holds a `settings.py` with its `DECLARATION`: its name, the
model it needs, its parameters (the `evaluation.<family>` section of a parameter file), its version, the
columns it adds to a checkpoint's row with their labels, the details it records, the families whose results
it reads, and the flat parameter keys it had before the families had sections. The configuration composes
the parameters (taulib.config), the evaluation caches each family's records under its own key
(taulib.metrics.evaluate), and the analysis and plots take labels from here. The computation, its inputs,
its cost timing and its plan needs are the family's class (`family.py`, taulib.metrics.family.Family).

This module and the settings modules sit at the configuration's layer: they import nothing that computes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from taulib.strict_model import StrictModel

# which model a family can be computed on: any, a language model (to splice into, prompt or probe), or
# the synthetic model (whose true dictionary is known); on the other kind it is recorded as not applicable
Needs = Literal["any", "language_model", "known_dictionary"]


@dataclass(frozen=True)
class Column:
    """A scalar a family adds to every checkpoint it evaluates: its `metrics.csv` column. `name` may be a
    pattern (fnmatch) for columns that depend on the settings, such as one per probing task."""

    name: str
    label: str
    higher_is_better: bool | None = None  # None: neither (a count, a bound, a diagnostic)

    def matches(self, column: str) -> bool:
        return fnmatch.fnmatchcase(column, self.name)


@dataclass(frozen=True)
class FamilyDeclaration:
    name: str
    summary: str  # what it measures, in a few words (the parameters' section description)
    needs: Needs
    parameters: type[StrictModel]  # its `evaluation.<name>` section
    columns: tuple[Column, ...]
    details: tuple[str, ...] = ()  # per-checkpoint arrays and tables it records beside its columns
    reads: tuple[str, ...] = ()  # families whose results or settings its own depend on (evaluated before it)
    version: int = 1  # bump when a change moves its numbers: its records (and only its) are made again
    old_keys: Mapping[str, str] = field(default_factory=dict)  # `evaluation.<old>` → its parameter, accepted for one release
    check_requested: Callable[[Any], None] | None = None  # raises ValueError on parameters unusable when the family is requested

    def owns(self, column: str) -> bool:
        return any(declared.matches(column) for declared in self.columns)

    def column(self, column: str) -> Column | None:
        return next((declared for declared in self.columns if declared.matches(column)), None)
