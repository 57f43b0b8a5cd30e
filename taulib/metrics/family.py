"""What a metric family's class does, the base every family's `family.py` extends: what it prepares once per
model and layer, how it evaluates a chunk of checkpoints, what that costs, and what a plan needs for it.

A family's declaration (name, model needed, parameters, columns, version: taulib.metrics.declaration) is in
its folder's settings.py; its class (taulib/metrics/<family>/family.py) holds the work. The registry
(taulib.metrics.families) lists the classes in the catalogue's order; the evaluation driver
(taulib.metrics.evaluate) runs them, the extraction step prepares their inputs, the wall-time estimate prices
them (taulib.study.cost) and the plan check asks them for memory, disk and consistency (taulib.study.plan_check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch

from taulib.metrics.declaration import FamilyDeclaration, Needs

if TYPE_CHECKING:
    from taulib.activations.models import LoadedModel
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

# checkpoints evaluated together: one pass over the held-out, probing and CE data for all; also the resume granularity
DOWNSTREAM_CHUNK = 8


class Costs(Protocol):
    """This machine's costs per unit, as a family's cost estimate reads them (taulib.study.cost.Costs is one)."""

    def measured(self, name: str, measure: Callable[[], float]) -> float: ...

    def model(self, config: RunConfig, name: str) -> float: ...


@dataclass(frozen=True)
class MemoryPart:
    """Memory a family's evaluation holds at once, for the plan check (taulib.study.plan_check)."""

    bytes: int
    hint: str  # what would lower it, named as a parameter
    beside_model: bool = False  # held where the language model runs (its device), not in host memory


@dataclass
class RunInputs:
    """What a run's evaluation reads once and every family may use."""

    config: RunConfig
    outputs_root: Path
    layer: int
    data_folder: Path  # the SAE-independent inputs of this model and layer (taulib.metrics.evaluate.evaluation_data_folder)
    heldout_folder: Path  # the held-out activation cache
    heldout: torch.Tensor  # its first evaluation.core.tokens activations, float32
    model: LoadedModel | None = None  # the caller's language model, if it has one loaded
    show_progress: bool = True
    run_dir: Path | None = None  # the run's folder (its checkpoints), where the caller has one


@dataclass
class Chunk:
    """Checkpoints one family evaluates together, and what the families before it found (in catalogue order)."""

    steps: list[int]
    final_step: int  # the run's last checkpoint
    scalars: list[dict[str, Any]]
    details: list[dict[str, Any]]
    density: list[np.ndarray | None] = field(default_factory=list)  # per SAE: each latent's firing frequency on the held-out tokens (core)

    @property
    def alive(self) -> list[np.ndarray | None]:
        """Per SAE: the latents firing on the held-out tokens (core)."""
        return [None if density is None else density > 0 for density in self.density]


class Family:
    """A metric family's work; the defaults are those of a family that needs no prepared input."""

    declaration: ClassVar[FamilyDeclaration]

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def needs(self) -> Needs:
        return self.declaration.needs

    def parameters(self, config: RunConfig) -> Any:
        """Its `evaluation.<name>` section."""
        return config.evaluation.section(self.name)

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        """The settings its prepared inputs depend on (part of the inputs folder's name)."""
        return {}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        """Files in the inputs folder that say its inputs are prepared."""
        return ()

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool, inputs_key: dict[str, Any]) -> None:
        """Compute its SAE-independent inputs into `folder`, once per model and layer (the extraction step);
        `inputs_key` is what the folder's inputs depend on (taulib.metrics.families.inputs_key), for its manifest."""

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        """The estimated seconds of `prepare`."""
        return 0.0

    def load(self, run: RunInputs) -> Any:
        """What its evaluation of a run reads once (its prepared inputs)."""
        return None

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        """Add its scalars and details to every checkpoint of the chunk."""
        raise NotImplementedError

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        """The estimated seconds of one checkpoint's evaluation (evaluated in chunks)."""
        raise NotImplementedError

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        """The estimated seconds of a run's evaluation of `checkpoints` checkpoints."""
        return checkpoints * self.checkpoint_seconds(costs, config, d_model)

    def finish(self, run_dir: Path, records: dict[int, dict[str, Any]], by_step: dict[int, dict[str, Any]], config: RunConfig) -> None:
        """Write any per-run table, once every checkpoint is evaluated (`records`: its record per step)."""

    # ------------------------------------------------------------------ what a plan needs (taulib.study.plan_check)
    def evaluation_memory(self, config: RunConfig, d_model: int, vocab_size: int) -> dict[str, MemoryPart]:
        """Memory its evaluation of a run holds at once, by what holds it."""
        return {}

    def input_bytes(self, config: RunConfig, d_model: int) -> int:
        """Disk its prepared inputs take (once per model and layer)."""
        return 0

    def plan_problems(self, config: RunConfig, source: str) -> list[str]:
        """Settings of a run that cannot work with this family, each naming the fields and what would."""
        return []


def timing_sae(d_model: int, width: int) -> Any:
    """A random SAE of this shape, sparse-ish as the checkpoints after the first are: what the cost timings evaluate."""
    from taulib.sae import SparseAutoencoder

    sae = SparseAutoencoder(d_model, width)
    sae.initialise(torch.Generator().manual_seed(0))  # a fresh SAE's weights are uninitialised memory
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)  # a sparse-ish SAE, as the checkpoints after the first are
    return sae
