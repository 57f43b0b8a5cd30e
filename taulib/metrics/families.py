"""The metric families' classes, in the catalogue's order (taulib.metrics.catalogue, the one list): each is
`FAMILY` in taulib/metrics/<name>/family.py, found by its declared name.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from taulib.metrics.catalogue import DECLARATIONS
from taulib.metrics.family import Family

if TYPE_CHECKING:
    from taulib.config import RunConfig


def _family(name: str) -> Family:
    family = import_module(f"taulib.metrics.{name}.family").FAMILY
    if family.declaration is not next(d for d in DECLARATIONS if d.name == name):
        raise RuntimeError(f"taulib.metrics.{name}.family.FAMILY does not carry the declaration of taulib/metrics/{name}/settings.py")
    return family


# evaluated in this order (core before orthogonality, which reads its alive latents)
FAMILIES: tuple[Family, ...] = tuple(_family(declaration.name) for declaration in DECLARATIONS)
BY_NAME: dict[str, Family] = {family.name: family for family in FAMILIES}


def evaluated(config: RunConfig) -> list[Family]:
    """The families a run evaluates (requested, and possible for its model), in the order they run."""
    names = set(config.evaluated_families())
    return [family for family in FAMILIES if family.name in names]


def inputs_key(config: RunConfig, layer: int) -> dict[str, Any]:
    """What the SAE-independent inputs of this model and layer depend on: the model, and every family's settings."""
    key = {
        "model": config.model.name,
        "model_dtype": config.model.dtype,
        "autocast": config.model.autocast,
        "layer": layer,
        "corpus": config.activations.corpus,
        "context_length": config.activations.context_length,
    }
    if config.activations.max_document_tokens is not None:  # the CE text and the held-out documents (uncapped: the key as before)
        key["max_document_tokens"] = config.activations.max_document_tokens
    for family in FAMILIES:
        key |= family.data_key(config)
    return key
