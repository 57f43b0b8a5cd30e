"""The annealed trainer: loss = ‖x − x̂‖² + (λ/τ(t))·‖f‖₁, Adam with learning-rate warm-up.

Everything a run writes lives in its folder:
  config.json                 the fully resolved run configuration (and its fingerprint)
  metrics.csv                 one row every `log_every_steps` steps (see METRIC_COLUMNS)
  checkpoints/step_NNNNNNN/   SAE snapshots for the analyses (checkpoint_steps: 0, then from the warm-up's end half evenly, half log-spaced)
  checkpoints/index.json      step, tokens seen and τ of every snapshot
  final/                      the SAE after the last step
  trainer_state.safetensors   everything needed to resume bit-identically (weights, Adam, data order)
  summary.json                final metrics and throughput

All files are written atomically. Rerunning a finished run is a no-op; rerunning an interrupted one
resumes from the last saved trainer state and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.activations.cache import MappedActivations
from taulib.config import RunConfig, TrainingConfig
from taulib.progress import progress_bar
from taulib.provenance import environment_record
from taulib.sae import SAEMetadata, SparseAutoencoder, save_sae
from taulib.train.gradients import StepResult, loss_and_gradients
from taulib.train.sparse_switch import sparse_step_max_density
from taulib.versions import TRAINING_VERSION

METRIC_COLUMNS = ["step", "tokens", "tau", "l1_coefficient_effective", "lr", "loss", "mse", "explained_variance", "l1", "l0", "dead_fraction"]
STATE_FILE = "trainer_state.safetensors"


class RunMismatchError(RuntimeError):
    """A run folder holding results of a different configuration."""


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """1 − residual variance / total variance, over all dimensions of the batch (SAE Bench's definition)."""
    residual = (x - x_hat.float()).pow(2).sum()
    total = (x - x.mean(dim=0)).pow(2).sum()
    return float(1.0 - residual / total)


def checkpoint_steps(total_steps: int, n_checkpoints: int, warmup_steps: int = 0) -> list[int]:
    """`n_checkpoints` optimiser steps in [0, total] (fewer only when the run has fewer steps): 0
    (initialisation), then the rest from the learning-rate warm-up's end (`warmup_steps`; the first
    step of a run without one) to the end: about half of them evenly spaced (so that a curve crossing
    a level late in training is resolved to ~2/n of the run) and the others log-spaced (dense just
    after the warm-up, where a fresh SAE changes fastest), total included. Inside the warm-up the
    weights have barely moved, so no checkpoint is spent there. Where the grids coincide, log-spaced
    steps are added."""
    n = min(n_checkpoints, total_steps + 1)
    start = min(max(warmup_steps, 1), total_steps)
    if n <= 2 or total_steps <= 1:
        return sorted({0, total_steps})
    n_linear = (n - 1) // 2
    linear = np.round(np.linspace(min(warmup_steps, total_steps), total_steps, n_linear + 1)[1:]).astype(int)
    steps: set[int] = set()
    for n_log in range(n - 1 - n_linear, total_steps + 1):
        logarithmic = np.round(np.geomspace(start, total_steps, n_log)).astype(int) if n_log > 1 else np.array([total_steps])
        steps = {0, *map(int, linear), *map(int, logarithmic), total_steps}
        if len(steps) >= n:
            break
    # short runs: fill in, after the warm-up first
    candidates = [step for step in range(start, total_steps + 1) if step not in steps] + [step for step in range(1, start) if step not in steps]
    ordered = sorted(steps | set(candidates[: max(n - len(steps), 0)]))
    while len(ordered) > n:  # one log step too many: drop the one nearest (by ratio) to its predecessor
        interior = [i for i in range(2, len(ordered) - 1) if ordered[i] not in linear]
        ordered.pop(min(interior, key=lambda i: ordered[i] / ordered[i - 1]))
    return ordered


def warmup_steps(total_steps: int, training: TrainingConfig) -> int:
    """The learning-rate warm-up's length in optimiser steps (learning_rate ramps over exactly these)."""
    return int(training.lr_warmup_fraction * total_steps)


def training_checkpoint_steps(training: TrainingConfig) -> list[int]:
    """The steps a run with these training settings saves (and the study evaluates)."""
    total = training.total_steps()
    return checkpoint_steps(total, training.n_checkpoints, warmup_steps(total, training))


def learning_rate(step: int, total_steps: int, training: TrainingConfig) -> float:
    warmup = warmup_steps(total_steps, training)
    decay = int(training.lr_decay_fraction * total_steps)
    if warmup and step < warmup:
        return training.lr * (step + 1) / warmup
    if decay and step >= total_steps - decay:
        return training.lr * (total_steps - step) / decay
    return training.lr


def make_optimiser(sae: SparseAutoencoder, training: TrainingConfig) -> torch.optim.Adam:
    # fused: one pass over each parameter's weights, gradient and moments instead of several
    return torch.optim.Adam(sae.parameters(), lr=training.lr, betas=(training.adam_beta1, training.adam_beta2), fused=True)


def optimiser_step(
    sae: SparseAutoencoder,
    optimiser: torch.optim.Adam,
    x: torch.Tensor,
    coefficient: float,
    lr: float,
    compute_dtype: torch.dtype,
    sparse_max_density: float = 0.0,
) -> StepResult:
    """One step of the annealed trainer on the (scaled) batch x: the training loop without its bookkeeping.

    The gradients are written out by hand (taulib.train.gradients: the loss of `sae_loss` in tests/references.py, in fewer passes);
    the decoder's rows stay unit-norm, and Adam sees only the gradient across them.
    """
    for group in optimiser.param_groups:
        group["lr"] = lr
    result = loss_and_gradients(sae, x, coefficient, compute_dtype, sparse_max_density)
    sae.remove_parallel_decoder_grad()
    optimiser.step()
    sae.normalise_decoder()
    return result


class BatchOrder:
    """Seeded reshuffles of the cache, one permutation per pass, so any step's batch is reproducible."""

    def __init__(self, n_rows: int, batch_size: int, seed: int) -> None:
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self._permutations: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            # keep only the previous pass: a batch straddles at most two
            self._permutations = {k: v for k, v in self._permutations.items() if k == epoch - 1}
            self._permutations[epoch] = torch.randperm(self.n_rows, generator=generator)
        return self._permutations[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        first_epoch, last_epoch = start // self.n_rows, (start + self.batch_size - 1) // self.n_rows
        positions = torch.arange(start, start + self.batch_size)
        if first_epoch == last_epoch:
            return self._permutation(first_epoch)[positions - first_epoch * self.n_rows]
        parts = [self._permutation(epoch)[positions[positions // self.n_rows == epoch] - epoch * self.n_rows] for epoch in range(first_epoch, last_epoch + 1)]
        return torch.cat(parts)


def activation_statistics(activations: torch.Tensor | MappedActivations, chunk: int = 65_536) -> tuple[float, torch.Tensor]:
    """(input_scale, mean of the scaled activations): scale makes the mean squared norm equal d_in.

    Summed in float64 on the CPU, chunk by chunk, wherever the activations live (some devices have no float64)."""
    total_sq, total = 0.0, torch.zeros(activations.shape[1], dtype=torch.float64)
    for start in range(0, activations.shape[0], chunk):
        block = activations[start : start + chunk].to("cpu", torch.float64)
        total_sq += float(block.pow(2).sum())
        total += block.sum(dim=0)
    n = activations.shape[0]
    scale = math.sqrt(total_sq / n / activations.shape[1])
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"activation scale is {scale}; the activations are all zero or not finite")
    return scale, (total / n / scale).float()


def _read_metric_rows(path: Path, n_rows: int) -> list[dict[str, Any]]:
    """The first n_rows logged rows as plain Python numbers (CSV holds round-trippable reprs)."""
    if not path.is_file():
        return []
    frame = pd.read_csv(path).head(n_rows)
    return [{key: int(value) if key in ("step", "tokens") else float(value) for key, value in row.items()} for row in frame.to_dict("records")]


def check_run_folder(config: RunConfig, run_dir: Path, source: str | None = None) -> bool:
    """True if run_dir already belongs to this configuration, False if it is new; raises if it is another's."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return False
    existing = atomic.read_json(path)
    if existing.get("fingerprint") == config.fingerprint():
        return True
    old, new = existing.get("config", {}), config.to_dict()
    differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    prefix = f"{source}: " if source else ""
    if not differing:  # the same settings, another version of the training code
        raise RunMismatchError(
            f"{prefix}{run_dir} holds this configuration trained by another version of the training code (training_version "
            f"{existing.get('training_version', 1)}, this code is {TRAINING_VERSION}); delete that folder to train it again"
        )
    raise RunMismatchError(
        f"{prefix}{run_dir} holds a run of a different configuration (differs in: {', '.join(differing)}); choose another run_name or delete that folder"
    )


class AnnealedTrainer:
    """Trains one SAE for one run configuration on a loaded activation matrix."""

    def __init__(
        self, config: RunConfig, activations: torch.Tensor | MappedActivations, run_dir: str | Path, show_progress: bool = True, layer: int | None = None
    ) -> None:
        if activations.ndim != 2 or activations.shape[0] == 0:
            raise ValueError(f"activations must be a non-empty (n_tokens, d_model) matrix, got shape {tuple(activations.shape)}")
        self.config = config
        self.device = torch.device(config.training.device)
        # 'device' storage: the whole cache on the training device, batches gathered there
        self.activations = activations.to(self.device) if config.training.activation_storage == "device" else activations
        self.run_dir = Path(run_dir)
        self.show_progress = show_progress
        self.schedule = config.schedule.to_schedule()
        self.total_steps = config.training.total_steps()
        self.batch_size = config.training.batch_size
        self.checkpoints = training_checkpoint_steps(config.training)
        self.order = BatchOrder(activations.shape[0], self.batch_size, config.seed)
        # the dtype of the SAE's matmuls (autocast-like: weights, Adam state and biases stay float32)
        self.compute_dtype = torch.bfloat16 if config.training.compute_dtype == "bfloat16" else torch.float32
        self.sparse_max_density = 0.0  # the step's sparse switch, resolved when training starts (`train`)
        # the hooked block, recorded with every saved SAE (the config may leave it to the model's middle)
        self.layer = layer if layer is not None else (config.model.layer if config.model.layer is not None else -1)

    # ---------------------------------------------------------------- run folder bookkeeping
    def _check_or_write_config(self) -> None:
        if check_run_folder(self.config, self.run_dir):
            atomic.remove_stale_temporaries(self.run_dir)
            return
        record = {"fingerprint": self.config.fingerprint(), "training_version": TRAINING_VERSION, "config": self.config.to_dict()}
        path = self.run_dir / "config.json"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, record)
        atomic.write_json(self.run_dir / "environment.json", environment_record())

    def _check_checkpoint_grid(self) -> None:
        """A run folder checkpointed on another grid (an earlier version of checkpoint_steps) would be
        compared step by step with runs on this one: refused, before anything is written."""
        path = self.run_dir / "checkpoints" / "index.json"
        if not path.is_file():
            return
        saved = [entry["step"] for entry in atomic.read_json(path)]
        if not set(saved) <= set(self.checkpoints):
            raise ValueError(
                f"{self.run_dir}: checkpointed at steps {saved}, but this version of taulib checkpoints this "
                f"configuration at {self.checkpoints}; move the run folder away to train it again"
            )

    def _metadata(self, input_scale: float, extra: dict[str, Any]) -> SAEMetadata:
        return SAEMetadata(
            d_in=self.activations.shape[1],
            d_sae=self.config.sae.width,
            input_scale=input_scale,
            model_name=self.config.model.name,
            layer=self.layer,
            hook_name=f"blocks.{self.layer}.hook_resid_post",
            extra={"run_name": self.config.run_name, **extra},
        )

    # ---------------------------------------------------------------- resumable state
    def _save_state(
        self, step: int, sae: SparseAutoencoder, optimiser: torch.optim.Adam, tokens_since_fired: torch.Tensor, input_scale: float, n_metric_rows: int
    ) -> None:
        tensors: dict[str, torch.Tensor] = {f"sae.{k}": v for k, v in sae.state_dict().items()}
        for name, parameter in sae.named_parameters():
            state = optimiser.state.get(parameter, {})
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in state:
                    tensors[f"adam.{name}.{key}"] = state[key].detach().reshape(-1) if key == "step" else state[key]
        tensors["tokens_since_fired"] = tokens_since_fired
        metadata = {
            "step": str(step),
            "input_scale": repr(input_scale),
            "metric_rows": str(n_metric_rows),
            "fingerprint": self.config.fingerprint(),
            "sparse_max_density": repr(self.sparse_max_density),
        }
        with atomic.atomic_path(self.run_dir / STATE_FILE) as tmp:
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp), metadata=metadata)

    def _load_state(self, sae: SparseAutoencoder, optimiser: torch.optim.Adam) -> tuple[int, torch.Tensor, float, int, float | None] | None:
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        if metadata.get("fingerprint") != self.config.fingerprint():
            raise RunMismatchError(f"{path}: trainer state from a different configuration; delete the run folder to start over")
        tensors = load_file(str(path), device=str(self.device))
        sae.load_state_dict({k.removeprefix("sae."): v for k, v in tensors.items() if k.startswith("sae.")})
        for name, parameter in sae.named_parameters():
            if f"adam.{name}.step" in tensors:
                optimiser.state[parameter] = {
                    "step": tensors[f"adam.{name}.step"].reshape(()),
                    "exp_avg": tensors[f"adam.{name}.exp_avg"],
                    "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"],
                }
        # the switch the run started with (absent from states saved before it was measured per machine)
        switch = float(metadata["sparse_max_density"]) if "sparse_max_density" in metadata else None
        return int(metadata["step"]), tensors["tokens_since_fired"], float(metadata["input_scale"]), int(metadata["metric_rows"]), switch

    def _write_checkpoint(self, step: int, sae: SparseAutoencoder, input_scale: float, index: list[dict[str, Any]]) -> None:
        tau = self.schedule.at_step(max(step - 1, 0), self.total_steps)
        extra = {"step": step, "tokens": step * self.batch_size, "tau": tau}
        save_sae(sae, self.run_dir / "checkpoints" / f"step_{step:07d}", self._metadata(input_scale, extra))
        index[:] = [entry for entry in index if entry["step"] != step] + [extra]
        atomic.write_json(self.run_dir / "checkpoints" / "index.json", sorted(index, key=lambda e: e["step"]))

    # ---------------------------------------------------------------- training
    def _batch(self, step: int, input_scale: float) -> torch.Tensor:
        indices = self.order.indices(step)  # the order is drawn on the CPU, so every device sees the same batches
        return self.activations[indices.to(self.activations.device)].to(self.device, torch.float32) / input_scale

    def train(self, until_step: int | None = None) -> dict[str, Any]:
        """Train (or resume, or return at once if finished); returns the run summary.

        `until_step` stops early after that many optimiser steps, saving resumable state, and
        returns a partial summary; calling `train()` again continues to the end.
        """
        summary_path = self.run_dir / "summary.json"
        self._check_or_write_config()
        self._check_checkpoint_grid()
        if summary_path.is_file():
            return atomic.read_json(summary_path)
        if self.config.training.threads:
            torch.set_num_threads(self.config.training.threads)
        training = self.config.training
        sae = SparseAutoencoder(self.activations.shape[1], self.config.sae.width).to(self.device)
        optimiser = make_optimiser(sae, self.config.training)
        metrics_path = self.run_dir / "metrics.csv"
        index_path = self.run_dir / "checkpoints" / "index.json"

        resumed = self._load_state(sae, optimiser)
        switch: float | None = None
        if resumed is None:
            input_scale, data_mean = activation_statistics(self.activations)
            sae.initialise(torch.Generator().manual_seed(self.config.seed), data_mean)
            start_step, tokens_since_fired, rows = 0, torch.zeros(sae.d_sae, dtype=torch.int64, device=self.device), []
            index: list[dict[str, Any]] = []
        else:
            start_step, tokens_since_fired, input_scale, n_rows, switch = resumed
            rows = _read_metric_rows(metrics_path, n_rows)
            index = [e for e in atomic.read_json(index_path) if e["step"] <= start_step] if index_path.is_file() else []

        # the sparse switch: as configured; else the one the run started with; else this machine's
        # crossover for the step's shape, timed on the run's first batch (taulib.train.sparse_switch)
        if training.sparse_step_max_density is not None or switch is None:
            switch = sparse_step_max_density(training.sparse_step_max_density, self.compute_dtype, self._batch(0, input_scale), sae.d_sae)
        self.sparse_max_density = switch
        if start_step == 0 and 0 in self.checkpoints:
            self._write_checkpoint(0, sae, input_scale, index)
        started = time.perf_counter()
        stop_step = self.total_steps if until_step is None else min(max(until_step, start_step), self.total_steps)
        bar = progress_bar(total=self.total_steps, initial=start_step, desc=f"train {self.config.run_name}", unit="step", disable=not self.show_progress)
        for step in range(start_step, stop_step):
            tau = self.schedule.at_step(step, self.total_steps)
            coefficient = training.l1_coefficient / tau
            lr = learning_rate(step, self.total_steps, training)
            x = self._batch(step, input_scale)
            terms = optimiser_step(sae, optimiser, x, coefficient, lr, self.compute_dtype, self.sparse_max_density)
            tokens_since_fired += self.batch_size
            tokens_since_fired[terms.fired] = 0
            done = step + 1
            if done % training.log_every_steps == 0 or done == self.total_steps or step == start_step == 0:
                with torch.no_grad():
                    row = {
                        "step": done,
                        "tokens": done * self.batch_size,
                        "tau": tau,
                        "l1_coefficient_effective": coefficient,
                        "lr": lr,
                        "loss": float(terms.loss),
                        "mse": float(terms.mse),
                        "explained_variance": explained_variance(x, terms.x_hat),
                        "l1": float(terms.l1),
                        "l0": float((terms.f > 0).sum(dim=-1).float().mean()),
                        "dead_fraction": float((tokens_since_fired >= training.dead_window()).float().mean()),
                    }
                if not all(math.isfinite(v) for v in row.values()):
                    raise FloatingPointError(f"{self.config.run_name}: non-finite training metrics at step {done}: {row}")
                rows.append(row)
                with atomic.atomic_path(metrics_path) as tmp:
                    pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(tmp, index=False)
                bar.set_postfix(tau=f"{tau:.3g}", l0=f"{row['l0']:.1f}", ev=f"{row['explained_variance']:.3f}", refresh=False)
            if done in self.checkpoints:
                self._write_checkpoint(done, sae, input_scale, index)
            if done in self.checkpoints or done % training.resume_every_steps == 0 or done == stop_step:
                self._save_state(done, sae, optimiser, tokens_since_fired, input_scale, len(rows))
            bar.update(1)
        bar.close()
        if stop_step < self.total_steps:
            return {"run_name": self.config.run_name, "steps": stop_step, "complete": False}
        elapsed = time.perf_counter() - started
        trained_tokens = (self.total_steps - start_step) * self.batch_size
        save_sae(sae, self.run_dir / "final", self._metadata(input_scale, {"step": self.total_steps, "tokens": self.total_steps * self.batch_size}))
        final = rows[-1]
        summary = {
            "run_name": self.config.run_name,
            "complete": True,
            "steps": self.total_steps,
            "tokens": self.total_steps * self.batch_size,
            "final": final,
            "input_scale": input_scale,
            "resumed_from_step": start_step,
            "sparse_step_max_density": self.sparse_max_density,
            "train_seconds_this_session": elapsed,
            "tokens_per_second_this_session": trained_tokens / elapsed if elapsed > 0 else float("nan"),
        }
        atomic.write_json(summary_path, summary)
        return summary


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics; has the run been trained?")
    return pd.read_csv(path)


def read_checkpoint_index(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "checkpoints" / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoints; has the run been trained?")
    return json.loads(path.read_text(encoding="utf-8"))
