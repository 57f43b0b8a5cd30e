"""A short playground run on the study's cached language-model activations: L0 and explained variance over
training, then any latent's top-activating held-out contexts, as the latent browser shows them.

The data are the default study's caches (`outputs/activations/…`, made by `make study` or notebook 01, found from
the parameter folder's first arm file): the first `n_tokens` training activations in cache order and the first
`heldout_tokens` held-out ones. The SAE is the study's (width from the arm file, the same initialisation and
Adam step, `taulib.train.trainer.optimiser_step`), trained in float32 with the study's learning rate and its
warm-up on activations scaled as the study scales them; λ (the study's `training.l1_coefficient`) or a target L0
(probes, taulib.playground.sparsity). A minute of CPU at most: this is a look at the schedule's early behaviour on
real activations, not one of the study's runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from taulib.activations.cache import activation_spec, cache_folder, is_complete, load_cache
from taulib.activations.models import hooked_layer
from taulib.analysis.latent_contexts import ContextSettings, LatentView, checkpoint_contexts, latent_contexts, token_strings_of
from taulib.config import ConfigError, RunConfig, ScheduleConfig, StrictModel, discover_parameter_files, format_validation_error, load_run_config
from taulib.metrics.core.metric import reconstruction_metrics
from taulib.playground.sparsity import nearest, probe_to_target
from taulib.playground.world_runs import tau_final
from taulib.sae import SparseAutoencoder
from taulib.train.trainer import activation_statistics, checkpoint_steps, learning_rate, make_optimiser, optimiser_step, warmup_steps

FIRST_COEFFICIENT = 0.5  # calibration's first probe of λ/τ_final (the sweep's initial_effective_coefficient)


class LanguageModelSettings(StrictModel):
    """What the playground's controls set for one short run on the language model's cache."""

    schedule: ScheduleConfig = Field(description="τ(t), as an arm file's schedule (the controls start from the tested arm's: `world_runs.tested_schedule`)")
    l1_coefficient: float | None = Field(0.02, gt=0, description="λ; the penalty is (λ/τ(t))·‖f‖₁. None: calibrated to target_l0")
    target_l0: float | None = Field(None, gt=0, description="the final held-out L0 λ is calibrated to (each probe a whole run); None with λ given")
    n_tokens: int = Field(65_536, gt=0, description="training tokens (the first of the cache, in order)")
    heldout_tokens: int = Field(8_192, gt=0, description="held-out tokens every checkpoint is scored on, and the contexts are drawn from")
    n_checkpoints: int = Field(8, ge=2, description="checkpoints scored while training")
    seed: int = Field(0, ge=0, description="the SAE's initialisation")
    max_probes: int = Field(4, ge=1, description="calibration probes at most, with a target L0")

    @model_validator(mode="after")
    def _one_sparsity(self) -> LanguageModelSettings:
        if (self.l1_coefficient is None) == (self.target_l0 is None):
            raise ValueError("give either l1_coefficient (λ) or target_l0, not both and not neither")
        return self


def language_model_settings(values: dict[str, Any]) -> LanguageModelSettings:
    try:
        return LanguageModelSettings.model_validate(values)
    except ValidationError as error:
        raise ConfigError(format_validation_error("playground (language model)", error, LanguageModelSettings, what="settings")) from None


@dataclass(frozen=True)
class LanguageModelData:
    """The cached activations a short run reads, already scaled as the study scales them."""

    config: RunConfig  # the arm file the caches belong to
    train: torch.Tensor  # (n_tokens, d) float32, scaled
    heldout: torch.Tensor  # (heldout_tokens, d) float32, scaled
    heldout_token_ids: np.ndarray
    sequence_length: int  # held-out rows per sequence (the cache drops each sequence's first token)
    data_mean: torch.Tensor
    vocabulary: dict[int, str] = field(default_factory=dict)  # the held-out token ids' text, filled once (a tokenizer takes seconds to load)


def load_language_model_data(
    parameters_dir: str | Path, outputs_root: str | Path, settings: LanguageModelSettings, overrides: dict[str, Any] | None = None
) -> LanguageModelData:
    """The study's caches for the parameter folder's first arm file; a clear error when they are not there yet
    or hold fewer tokens than asked for."""
    config = load_run_config(discover_parameter_files(parameters_dir)[0], overrides)
    layer = hooked_layer(config.model)
    splits = {}
    for split, wanted in (("train", settings.n_tokens), ("heldout", settings.heldout_tokens)):
        spec = activation_spec(config, split, layer)
        folder = cache_folder(Path(outputs_root), spec)
        if not is_complete(folder, spec):
            raise ConfigError(f"no complete {split} activation cache at {folder}: run `make study` (or notebook 01) first")
        cache = load_cache(folder, spec, verify_checksums=False, mmap=True)
        if cache.n_tokens < wanted:
            raise ConfigError(f"{folder} holds {cache.n_tokens:,} {split} tokens; the playground asks for {wanted:,}")
        splits[split] = (cache.activations[:wanted].to(torch.float32), cache.token_ids[:wanted].numpy())
    scale, data_mean = activation_statistics(splits["train"][0])
    sequence_length = 1 if config.model.is_synthetic else config.activations.context_length - 1
    return LanguageModelData(config, splits["train"][0] / scale, splits["heldout"][0] / scale, splits["heldout"][1], sequence_length, data_mean)


@dataclass
class LanguageModelRun:
    settings: LanguageModelSettings
    l1_coefficient: float
    rows: list[dict[str, float]]  # per checkpoint: step, tokens, τ, L0, explained variance, dead share
    sae: SparseAutoencoder
    data: LanguageModelData
    seconds: float
    probes: list[tuple[float, float]] = field(default_factory=list)  # every probe's (λ, final L0)
    _contexts: dict[str, np.ndarray] | None = None

    @property
    def final_l0(self) -> float:
        return self.rows[-1]["l0"]

    def most_active(self, n: int = 20) -> list[int]:
        """The latents firing on the most held-out tokens at the end, most first."""
        return np.argsort(-self._context_arrays()["firing"], kind="stable")[:n].tolist()

    def _context_arrays(self) -> dict[str, np.ndarray]:
        if self._contexts is None:
            self._contexts = checkpoint_contexts(self.sae, self.data.heldout, self.data.sequence_length, ContextSettings())
        return self._contexts

    def latent(self, latent: int, token_strings: Callable[[list[int]], list[str]] | None = None) -> LatentView:
        """The final SAE's latent with its top held-out contexts (the latent browser's view; activations in the scaled units)."""
        if not 0 <= latent < self.sae.d_sae:
            raise IndexError(f"latent {latent} out of range: the SAE has {self.sae.d_sae} latents")
        data, settings = self._context_arrays(), ContextSettings()
        if not self.data.vocabulary:
            unique = sorted(set(self.data.heldout_token_ids.tolist()))
            self.data.vocabulary.update(zip(unique, (token_strings or token_strings_of(self.data.config.model))(unique), strict=True))
        contexts = latent_contexts(data, latent, self.data.heldout_token_ids, self.data.vocabulary, self.data.sequence_length, settings.before, settings.after)
        return LatentView(
            latent=latent,
            step=int(self.rows[-1]["step"]),
            shown=latent,
            matched_cosine=1.0,
            contexts=contexts,
            histogram=data["histogram"][latent],
            edges=settings.histogram_edges(),
            density=float(data["firing"][latent] / len(self.data.heldout_token_ids)),
        )


RowHook = Callable[[dict[str, float]], None]


def train_on_cache(
    settings: LanguageModelSettings, data: LanguageModelData, on_checkpoint: RowHook | None = None, on_probe: Callable[[int, float], None] | None = None
) -> LanguageModelRun:
    """A short run of the settings' schedule on the cached activations (probing λ first with a target L0)."""
    schedule = settings.schedule.to_schedule()
    training = data.config.training.model_copy(update={"n_tokens": settings.n_tokens, "lr_decay_fraction": 0.0})
    total = training.total_steps()
    if total < 1:
        raise ConfigError(f"n_tokens ({settings.n_tokens:,}) is less than one batch ({training.batch_size:,})")
    steps = set(checkpoint_steps(total, settings.n_checkpoints, warmup_steps(total, training)))
    final_tau = tau_final(settings.schedule)
    probes_made: list[tuple[float, float]] = []

    def run(coefficient: float) -> tuple[LanguageModelRun, float]:
        started = time.perf_counter()
        l1 = coefficient * final_tau
        if on_probe is not None:
            on_probe(len(probes_made) + 1, l1)
        sae = SparseAutoencoder(data.train.shape[1], data.config.sae.width)
        sae.initialise(torch.Generator().manual_seed(settings.seed), data.data_mean)
        optimiser = make_optimiser(sae, training)
        rows: list[dict[str, float]] = []

        def checkpoint(step: int, tau: float) -> None:
            metrics, density = reconstruction_metrics(sae, data.heldout)
            rows.append(
                {
                    "step": step,
                    "tokens": step * training.batch_size,
                    "tau": tau,
                    "l0": metrics.l0,
                    "explained_variance": metrics.explained_variance,
                    "dead_share": metrics.dead_fraction,
                }
            )
            if on_checkpoint is not None:
                on_checkpoint(rows[-1])

        checkpoint(0, schedule.at_step(0, total))
        for step in range(total):
            tau = schedule.at_step(step, total)
            start = step * training.batch_size
            x = data.train[start : start + training.batch_size]
            optimiser_step(sae, optimiser, x, l1 / tau, learning_rate(step, total, training), torch.float32)
            if step + 1 in steps:
                checkpoint(step + 1, tau)
        if not all(math.isfinite(row["l0"]) and math.isfinite(row["explained_variance"]) for row in rows):
            raise FloatingPointError(f"λ {l1:.4g}: the run diverged (non-finite L0 or explained variance)")
        probes_made.append((l1, rows[-1]["l0"]))
        return LanguageModelRun(settings, l1, rows, sae, data, time.perf_counter() - started), rows[-1]["l0"]

    if settings.l1_coefficient is not None:
        result, _ = run(settings.l1_coefficient / final_tau)
    else:
        assert settings.target_l0 is not None
        result = nearest(probe_to_target(run, settings.target_l0, FIRST_COEFFICIENT, settings.max_probes), settings.target_l0).result
    result.probes = probes_made
    return result
