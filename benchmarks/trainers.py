"""One training step of each SAE trainer the benchmarks compare, on an in-memory float32 batch.

Every adapter builds its library's own SAE and optimiser at the same width, learning rate and
batch size and exposes `step(x)`: what that library runs per batch in its training loop, data
loading excluded (all of them read the same pre-scaled activations from memory).

* taulib: `taulib.train.trainer.optimiser_step` (hand-written gradients, fused Adam, unit-norm decoder,
  the three latent-wide float32 products on oneDNN) plus the dead-latent counter, i.e. the
  annealed trainer's loop body without logging and checkpoints. `TaulibAutograd` is the same step
  the way taulib ran it before: module forward, autograd backward, foreach Adam.
* dictionary_learning 0.1.0: `StandardTrainer.update` (ConstrainedAdam: unit-norm decoder,
  gradient projection; LambdaLR). It has no mixed-precision option; for bfloat16 its forward
  and loss run inside torch.autocast, the backward and optimiser outside, as torch recommends.
* SAELens 6: `SAETrainer.step` with a `StandardTrainingSAE` (decoder-norm-weighted L1, gradient
  clipping, dead-feature and firing-frequency counters); `SAETrainerConfig.autocast` is its own
  bfloat16 option. wandb logging, evaluation and checkpoints are off, as in a benchmark of the loop.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Protocol

import torch

from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.models import hooked_layer
from taulib.config import RunConfig, load_run_config
from taulib.sae import SparseAutoencoder
from taulib.train.kernels import torch_blas_only
from taulib.train.sparse_switch import sparse_step_max_density
from taulib.train.trainer import make_optimiser, optimiser_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the references the package is checked against
from references import sae_loss, sparse_directions_dataset  # noqa: E402

L1_COEFFICIENT = 0.04  # the default study's λ; the sparsity level does not change a dense step's cost
LAYER, MODEL = 9, "gemma-3-270m"  # recorded by the reference trainers' configs only


class Step(Protocol):
    name: str

    def step(self, x: torch.Tensor) -> None: ...


class ComparedStep(Step, Protocol):
    """A trainer of the side-by-side comparison: it also encodes and reconstructs, and takes another SAE's weights.
    The three libraries share the architecture f = ReLU((x − b_dec)·W_enc + b_enc), x̂ = f·W_dec + b_dec."""

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...

    def load_weights(self, sae: SparseAutoencoder) -> None: ...


def _taulib_config(d_sae: int, lr: float, compute_dtype: str) -> RunConfig:
    return RunConfig.model_validate({"run_name": "bench", "sae": {"width": d_sae}, "training": {"lr": lr, "compute_dtype": compute_dtype}})


class TaulibStep:
    def __init__(
        self,
        d_in: int,
        d_sae: int,
        lr: float,
        dtype: torch.dtype,
        seed: int = 0,
        fused_adam: bool = True,
        coefficient: float = L1_COEFFICIENT,
        sparse_max_density: float | None = None,
        onednn: bool = True,
    ) -> None:
        self.name = "taulib" if fused_adam else "taulib, foreach Adam"
        self.dtype, self.coefficient = dtype, coefficient
        # False: every matmul on torch.mm, as before taulib.train.kernels routed three of them to oneDNN
        self.kernels = contextlib.nullcontext if onednn else torch_blas_only
        # the trainer's switch to the sparse latent side (None: this machine's measured crossover, resolved
        # on the first step's batch, as the trainer does)
        self.sparse_max_density = sparse_max_density
        config = _taulib_config(d_sae, lr, "bfloat16" if dtype == torch.bfloat16 else "float32")
        self.sae = SparseAutoencoder(d_in, d_sae)
        self.sae.initialise(torch.Generator().manual_seed(seed))
        self.optimiser = make_optimiser(self.sae, config.training) if fused_adam else torch.optim.Adam(self.sae.parameters(), lr=lr, foreach=True)
        self.lr = lr
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.int64)

    def step(self, x: torch.Tensor) -> None:
        if self.sparse_max_density is None:
            self.sparse_max_density = sparse_step_max_density(None, self.dtype, x, self.sae.d_sae)
        with self.kernels():
            result = optimiser_step(self.sae, self.optimiser, x, self.coefficient, self.lr, self.dtype, self.sparse_max_density)
        self.tokens_since_fired += x.shape[0]
        self.tokens_since_fired[result.fired] = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae.encode(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae(x)[0]

    @torch.no_grad()
    def load_weights(self, sae: SparseAutoencoder) -> None:
        self.sae.load_state_dict(sae.state_dict())


class TaulibAutograd:
    """taulib's step as it was: nn.Module forward (under autocast for bfloat16), autograd, foreach Adam."""

    def __init__(self, d_in: int, d_sae: int, lr: float, dtype: torch.dtype, seed: int = 0, compile_forward: bool = False) -> None:
        self.name = "taulib, autograd" + (" + torch.compile" if compile_forward else "")
        self.dtype = dtype
        self.sae = SparseAutoencoder(d_in, d_sae)
        self.sae.initialise(torch.Generator().manual_seed(seed))
        self.optimiser = torch.optim.Adam(self.sae.parameters(), lr=lr)
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.int64)

        def forward_loss(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                x_hat, f = self.sae(x)
            return sae_loss(x, x_hat, f, L1_COEFFICIENT).loss, f

        self.forward_loss = torch.compile(forward_loss) if compile_forward else forward_loss

    def step(self, x: torch.Tensor) -> None:
        loss, f = self.forward_loss(x)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.sae.remove_parallel_decoder_grad()
        self.optimiser.step()
        self.sae.normalise_decoder()
        with torch.no_grad():
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[(f > 0).any(dim=0)] = 0


class DictionaryLearningStep:
    def __init__(self, d_in: int, d_sae: int, lr: float, dtype: torch.dtype, total_steps: int, seed: int = 0, coefficient: float = L1_COEFFICIENT) -> None:
        from dictionary_learning.trainers.standard import StandardTrainer

        self.name = "dictionary_learning StandardTrainer"
        self.autocast = dtype == torch.bfloat16
        self.trainer = StandardTrainer(
            steps=total_steps,
            activation_dim=d_in,
            dict_size=d_sae,
            layer=LAYER,
            lm_name=MODEL,
            lr=lr,
            l1_penalty=coefficient,
            warmup_steps=1,
            sparsity_warmup_steps=None,
            seed=seed,
            device="cpu",
            wandb_name=None,
        )
        self.n = 0

    def step(self, x: torch.Tensor) -> None:
        if not self.autocast:
            self.trainer.update(self.n, x)
        else:  # StandardTrainer.update with its forward and loss under autocast
            trainer = self.trainer
            trainer.optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = trainer.loss(x, step=self.n)
            loss.backward()
            trainer.optimizer.step()
            trainer.scheduler.step()
        self.n += 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainer.ae.encode(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainer.ae(x)

    @torch.no_grad()
    def load_weights(self, sae: SparseAutoencoder) -> None:
        ae = self.trainer.ae  # nn.Linear layouts: encoder.weight is W_encᵀ, decoder.weight is W_decᵀ
        ae.encoder.weight.copy_(sae.W_enc.t()), ae.encoder.bias.copy_(sae.b_enc), ae.decoder.weight.copy_(sae.W_dec.t()), ae.bias.copy_(sae.b_dec)


class SAELensStep:
    def __init__(
        self,
        d_in: int,
        d_sae: int,
        lr: float,
        dtype: torch.dtype,
        total_steps: int,
        batch_size: int,
        seed: int = 0,
        coefficient: float = L1_COEFFICIENT,
    ) -> None:
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
        from sae_lens.training.sae_trainer import SAETrainer

        self.name = "SAELens SAETrainer (standard)"
        torch.manual_seed(seed)
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=coefficient, dtype="float32", device="cpu"))
        config = SAETrainerConfig(
            total_training_samples=total_steps * batch_size,
            train_batch_size_samples=batch_size,
            lr=lr,
            lr_end=lr / 10,  # what its runner config fills in; unused by the constant schedule
            device="cpu",
            autocast=dtype == torch.bfloat16,
            logger=LoggingConfig(log_to_wandb=False),
        )
        self.trainer = SAETrainer(config, sae, data_provider=iter(()))

    def step(self, x: torch.Tensor) -> None:
        self.trainer.step(x)  # the public per-batch seam of SAETrainer.fit()
        self.trainer.n_training_steps += 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainer.sae.encode(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainer.sae(x)

    @torch.no_grad()
    def load_weights(self, sae: SparseAutoencoder) -> None:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):  # the same names and layouts as taulib's
            getattr(self.trainer.sae, name).copy_(getattr(sae, name))


def mean_l0(trainer: ComparedStep, x: torch.Tensor) -> float:
    """Active latents per token of a trainer's current SAE on the (scaled) batch x."""
    with torch.no_grad():
        return float((trainer.encode(x) > 0).sum(dim=-1).float().mean())


def reference_missing(module: str) -> str | None:
    """None if `module` imports, else why not (the references live in .venv-bench only)."""
    with contextlib.suppress(ImportError):
        __import__(module)
        return None
    return f"{module} is not installed here (`make bench` installs it in .venv-bench); its rows are skipped"


def study_activations(parameters: str, outputs: str, quick: bool) -> tuple[RunConfig, torch.Tensor, torch.Tensor]:
    """(config, train activations as stored, held-out activations as stored) of a study parameter file;
    with `quick`, a tiny synthetic set and SAE instead."""
    if quick:
        config = RunConfig.model_validate({"run_name": "quick", "sae": {"width": 256}, "training": {"batch_size": 128, "compute_dtype": "bfloat16"}})
        train = sparse_directions_dataset(n=8192, d=64, n_features=128, mean_active=3.0, seed=0).activations
        heldout = sparse_directions_dataset(n=2048, d=64, n_features=128, mean_active=3.0, seed=1).activations
        return config, train, heldout
    config = load_run_config(parameters)
    layer = hooked_layer(config.model)
    caches = []
    for split in ("train", "heldout"):
        spec = activation_spec(config, split, layer)
        caches.append(load_cache(cache_folder(Path(outputs), spec), spec, verify_checksums=False).activations)
    return config, caches[0], caches[1]


def timed_batches(train: torch.Tensor, batch_size: int, count: int, scale: float) -> list[torch.Tensor]:
    """`count` distinct float32 batches, scaled as taulib's trainer scales them, drawn at random once."""
    rows = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(0))[: batch_size * count]
    data = train[rows].float() / scale
    return [batch.contiguous() for batch in data.split(batch_size)]
