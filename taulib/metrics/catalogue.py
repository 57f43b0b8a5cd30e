"""The metric families, in the order they are evaluated: the one list.

Each entry is a family's declaration (taulib.metrics.declaration), from its folder's settings.py. A family
evaluates after the families it reads (core before orthogonality, which reads its alive latents). The
configuration composes their parameters into `evaluation.<family>` sections (taulib.config), the evaluation
registry finds each family's class in `taulib.metrics.<name>.family` (taulib.metrics.families), and the
analysis reads their columns' labels here. Adding a family: docs/metrics.md, "Adding a metric family".
"""

from __future__ import annotations

from taulib.metrics.absorption.settings import DECLARATION as ABSORPTION
from taulib.metrics.core.settings import DECLARATION as CORE
from taulib.metrics.declaration import Column, FamilyDeclaration, Needs
from taulib.metrics.decoder_drift.settings import DECLARATION as DECODER_DRIFT
from taulib.metrics.downstream.settings import DECLARATION as DOWNSTREAM
from taulib.metrics.ground_truth.settings import DECLARATION as GROUND_TRUTH
from taulib.metrics.orthogonality.settings import DECLARATION as ORTHOGONALITY
from taulib.metrics.probing.settings import DECLARATION as PROBING
from taulib.metrics.probing_baseline.settings import DECLARATION as PROBING_BASELINE
from taulib.metrics.support_refit.settings import DECLARATION as SUPPORT_REFIT

DECLARATIONS: tuple[FamilyDeclaration, ...] = (CORE, DOWNSTREAM, ORTHOGONALITY, DECODER_DRIFT, SUPPORT_REFIT, ABSORPTION, PROBING, PROBING_BASELINE, GROUND_TRUTH)
FAMILY_NAMES: tuple[str, ...] = tuple(declaration.name for declaration in DECLARATIONS)
FAMILY_NEEDS: dict[str, Needs] = {declaration.name: declaration.needs for declaration in DECLARATIONS}
DECLARED: dict[str, FamilyDeclaration] = {declaration.name: declaration for declaration in DECLARATIONS}
# the scalars every checkpoint's record carries beside the families' columns (taulib.metrics.evaluate)
HEAD_COLUMNS: tuple[Column, ...] = (
    Column("step", "optimiser step"),
    Column("tokens", "training tokens seen"),
    Column("tau", "τ(t)"),
    Column("l1_coefficient_effective", "λ/τ(t)"),
)


def _check_order() -> None:
    for position, declaration in enumerate(DECLARATIONS):
        if late := [name for name in declaration.reads if name not in FAMILY_NAMES[:position]]:
            raise RuntimeError(f"metric family {declaration.name!r} reads {late}, which are not evaluated before it in DECLARATIONS")


_check_order()


def column(name: str) -> Column:
    """The declared column `name` (its label and direction), whichever family adds it."""
    for declared in HEAD_COLUMNS + tuple(c for d in DECLARATIONS for c in d.columns):
        if declared.matches(name):
            return declared if declared.name == name else Column(name, declared.label, declared.higher_is_better)
    raise KeyError(f"no metric family declares the column {name!r} (taulib/metrics/<family>/settings.py)")


def label(name: str) -> str:
    """The label of a declared column."""
    return column(name).label


def family_of(name: str) -> str | None:
    """The family that adds the column `name`, or None for a head column or an undeclared one."""
    return next((declaration.name for declaration in DECLARATIONS if declaration.owns(name)), None)
