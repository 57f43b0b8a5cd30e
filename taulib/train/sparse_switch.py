"""Where a training step switches to its sparse latent side: the crossover density, measured on this machine.

Below some density of active (token, latent) pairs the step's sparse latent side
(taulib.train.gradients) beats its dense matmuls. Where that crossover lies depends on the machine
and the step's shape: it is the density at which the sparse side's gather-and-scatter costs as much
as the dense matmuls, and the dense matmuls' speed differs between CPU kinds several times over
(benchmarks/RESULTS.md: "Sparse latents" on an AVX512-BF16 and on an AVX2 CPU, and the matmul ceilings
per CPU kind). A fixed table would make some machine slower, so the crossover is timed here, once
per machine, compute dtype and step shape, on the run's own activations, and cached with the
machine's other speeds (taulib.study.machine_speed).

The timing: a freshly initialised SAE whose encoder biases are lowered so that each latent fires on
a chosen fraction of the batch, one dense step, then sparse steps at rising densities until the
sparse side is no longer faster. The threshold is the highest density at which it was faster, all
lower ones being faster too (0: never sparse). The two sides compute the same gradients up to
summation order, so the threshold changes speed, never what a run learns beyond rounding; a run
records the threshold it used in its resumable state, so a resumed run repeats an uninterrupted one
bit for bit even if the cache is measured again in between.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from taulib.sae import SparseAutoencoder

# the densities tried, in rising order: they span the crossovers measured so far (benchmarks/RESULTS.md)
DENSITY_LADDER = (0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16)
TIMING_REPEATS = 5  # timed steps per side and density (their median), after one warm-up step
# λ/τ at the end of the tightened schedule: the coefficient changes the gradients' values, not their cost
_COEFFICIENT = 0.8

StepTimer = Callable[[SparseAutoencoder, torch.Tensor, torch.dtype, float], float]


def sae_at_density(x: torch.Tensor, d_sae: int, density: float) -> SparseAutoencoder:
    """A freshly initialised SAE (seed 0) whose encoder biases are lowered so that each latent fires on
    `density` of the tokens of `x` (the k-th largest pre-activation of each latent becomes its threshold)."""
    sae = SparseAutoencoder(x.shape[1], d_sae)
    sae.initialise(torch.Generator().manual_seed(0), x.mean(dim=0))
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        rank = max(1, min(x.shape[0], round((1 - density) * x.shape[0])))
        sae.b_enc.sub_(pre.kthvalue(rank, dim=0).values)  # kthvalue: torch.quantile refuses over 16M entries
    return sae


def step_seconds(sae: SparseAutoencoder, x: torch.Tensor, compute_dtype: torch.dtype, sparse_max_density: float) -> float:
    """The median of TIMING_REPEATS calls of the step's loss and gradients, after a warm-up call."""
    from taulib.timing import timed
    from taulib.train.gradients import loss_and_gradients

    return timed(lambda: loss_and_gradients(sae, x, _COEFFICIENT, compute_dtype, sparse_max_density), min_seconds=math.inf, max_repeats=TIMING_REPEATS)


def measure_crossover(x: torch.Tensor, d_sae: int, compute_dtype: torch.dtype, timer: StepTimer = step_seconds) -> float:
    """The highest density of DENSITY_LADDER at which the sparse step beat the dense one on batch `x`
    (float32, divided by the input scale), all lower densities beating it too; 0.0 if none did.

    The dense step's cost does not depend on the density, so it is timed once, at the first density.
    `timer(sae, x, dtype, max_density)` gives a step's seconds (max_density 0: dense, 1: sparse).
    """
    with torch.no_grad():
        dense = timer(sae_at_density(x, d_sae, DENSITY_LADDER[0]), x, compute_dtype, 0.0)
    crossover = 0.0
    for density in DENSITY_LADDER:
        with torch.no_grad():
            sparse = timer(sae_at_density(x, d_sae, density), x, compute_dtype, 1.0)
        if sparse >= dense:
            break
        crossover = density
    return crossover


def machine_crossover(x: torch.Tensor, d_sae: int, compute_dtype: torch.dtype) -> float:
    """`measure_crossover` for this machine and step shape, measured once and cached (taulib.study.machine_speed).

    Keyed by the CPU model and torch version but not the thread count: runs of one study on several
    thread counts (a study process and its one-thread workers) then share one switch, so that runs
    meant to be identical (constant τ's identity run and plain L1's) take the same kernels.
    """
    from taulib.timing import SpeedCache, machine_key

    dtype = str(compute_dtype).removeprefix("torch.")
    name = f"sparse_step_crossover {dtype} {x.shape[1]}x{d_sae} batch {x.shape[0]}"
    return SpeedCache(key=machine_key(threads=False)).get(name, lambda: measure_crossover(x, d_sae, compute_dtype))


def sparse_step_max_density(configured: float | None, compute_dtype: torch.dtype, sample_batch: torch.Tensor, d_sae: int) -> float:
    """The density threshold a run uses: the configured one; else, on a CPU, this machine's measured
    crossover for the step's shape (`sample_batch`: one of the run's batches); else 0 (always dense:
    not measured on GPUs, whose dense matmuls the sparse kernels are not expected to beat)."""
    if configured is not None:
        return configured
    if sample_batch.device.type != "cpu":
        return 0.0
    return machine_crossover(sample_batch, d_sae, compute_dtype)
