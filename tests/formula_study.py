"""A study folder written from formulas (no model, no training): what the analysis code reads.

Four arms with known curves over checkpoints 0, 1, 3, 10, 30, 100 (batch 256):
  baseline        plain L1            L0 falls 64 → 40, absorption rises
  tightened       cosine 0.3 → 0.05   L0 falls 64 → 8,  absorption falls 0.30 → 0.02
  higher_floor    cosine 0.3 → 0.1    L0 falls 64 → 16, absorption falls 0.30 → 0.06
  linear          linear 0.3 → 0.05   L0 falls 64 → 8,  slower
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from taulib.config import RunConfig
from taulib.metrics.core.metric import DENSITY_BIN_EDGES
from taulib.metrics.orthogonality.family import COSINE_HISTOGRAM_EDGES

STEPS = [0, 1, 3, 10, 30, 100]
BATCH = 256
WIDTH = 128
LETTERS = "abcdefghijklmnopqrstuvwxyz"
HELDOUT_TOKENS = 16 * 127  # 16 sequences of the default context (128, BOS dropped)
ARMS = {
    "baseline": ({"kind": "none"}, 40.0, (0.30, 0.40), 10.0),
    "tightened": ({"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.05}, 8.0, (0.30, 0.02), 10.0),
    "higher_floor": ({"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.1}, 16.0, (0.30, 0.06), 10.0),
    "linear": ({"kind": "linear", "tau_initial": 0.3, "tau_final": 0.05}, 8.0, (0.30, 0.02), 30.0),
}


def curve(step: np.ndarray, start: float, end: float, scale: float) -> np.ndarray:
    """start at step 0, exponentially approaching `end` with time constant `scale`, exactly `end` at step 100."""
    shape = (1 - np.exp(-np.asarray(step, dtype=float) / scale)) / (1 - np.exp(-100 / scale))
    return start + (end - start) * shape


def _config(name: str, schedule: dict) -> RunConfig:
    return RunConfig.model_validate(
        {
            "run_name": name,
            "description": f"synthetic arm {name}",
            "sae": {"width": WIDTH},
            "schedule": schedule,
            "training": {"n_tokens": STEPS[-1] * BATCH, "batch_size": BATCH, "n_checkpoints": len(STEPS)},
            "activations": {"heldout_tokens": HELDOUT_TOKENS},
        }
    )


def _details(step: int, index: int) -> dict:
    rng = np.random.default_rng(1000 * index + step)
    density = np.zeros(len(DENSITY_BIN_EDGES) - 1, dtype=int)
    density[min(len(density) - 1, 10 + step // 10)] = WIDTH  # all latents in one bin that moves with the step
    cosines = np.zeros(len(COSINE_HISTOGRAM_EDGES) - 1, dtype=int)
    cosines[20 + step // 10] = WIDTH
    random = np.zeros_like(cosines)
    random[18] = WIDTH
    return {
        "density_histogram": {"log10_density_edges": DENSITY_BIN_EDGES.tolist(), "counts": density.tolist(), "dead": 0},
        "cosine_histogram_edges": COSINE_HISTOGRAM_EDGES.tolist(),
        "max_cosine_histogram": cosines.tolist(),
        "random_max_cosine_histogram": random.tolist(),
        "encoder_decoder_cosine_histogram": cosines.tolist(),
        "absorption_letters": [
            {
                "letter": letter,
                "probe_f1": 0.9 if i % 5 else 0.3,
                "k1_f1": float(min(1.0, step / 100 + 0.01 * i)),
                "k1_latent": int((i * 7 + step) % WIDTH),
                "split_latents": [int((i * 7 + step) % WIDTH)],
                "n_split_latents": 1,
                "n_probe_true_positives": 5,
                "absorption_fraction": float(rng.uniform(0, 0.2)),
                "absorption_fraction_unthresholded": 0.3,
                "full_absorption_rate": 0.1,
            }
            for i, letter in enumerate(LETTERS)
        ],
        "probing_tasks": [
            {"task": "sentiment", "positive_class": label, "n_train": 16, "n_test": 4, "top_1_accuracy": 0.5 + step / 250, "top_latents": [step % WIDTH, 3]}
            for label in ("positive", "negative")
        ],
    }


def _write_run(outputs: Path, config: RunConfig, table: pd.DataFrame, index: int) -> None:
    """One run folder as the trainer and the evaluation leave it: config, training log, checkpoint index, evaluation."""
    name = config.run_name
    run_dir = outputs / name
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"fingerprint": config.fingerprint(), "config": config.to_dict()}))
    tau = config.schedule.to_schedule()
    coefficient = config.training.l1_coefficient
    log_steps = np.arange(1, STEPS[-1] + 1)
    taus = np.array([tau.at_step(s - 1, STEPS[-1]) for s in log_steps])
    pd.DataFrame({"step": log_steps, "tokens": log_steps * BATCH, "tau": taus, "l1_coefficient_effective": coefficient / taus, "l0": 10.0}).to_csv(
        run_dir / "metrics.csv", index=False
    )
    step_taus = [tau.at_step(max(s - 1, 0), STEPS[-1]) for s in STEPS]
    (run_dir / "checkpoints" / "index.json").write_text(json.dumps([{"step": s, "tokens": s * BATCH, "tau": t} for s, t in zip(STEPS, step_taus, strict=True)]))
    table = table.assign(step=STEPS, tokens=np.array(STEPS) * BATCH, tau=step_taus, l1_coefficient_effective=[coefficient / t for t in step_taus])
    key = hashlib.sha256(name.encode()).hexdigest()[:12]
    records = run_dir / "evaluation" / f"records-{key}"
    records.mkdir(parents=True)
    table.to_csv(run_dir / "evaluation" / "metrics.csv", index=False)
    (run_dir / "evaluation" / "evaluation.json").write_text(json.dumps({"key": key}))
    for row in table.to_dict("records"):
        step = int(row["step"])
        (records / f"step_{step:07d}.json").write_text(json.dumps({"scalars": row, "details": _details(step, index)}))


def write_synthetic_study(outputs: Path) -> Path:
    outputs.mkdir(parents=True, exist_ok=True)
    runs = []
    steps = np.array(STEPS)
    n_pairs = WIDTH * (WIDTH - 1) // 2
    for index, (name, (schedule, l0_end, (absorption_start, absorption_end), scale)) in enumerate(ARMS.items()):
        table = pd.DataFrame(
            {
                "l0": curve(steps, 64.0, l0_end, scale),
                "explained_variance": curve(steps, 0.0, 0.9 - 0.01 * index, scale),
                "ce_loss_score": curve(steps, 0.0, 0.95, scale),
                "sae_top_1_accuracy": curve(steps, 0.5, 0.7, scale),
                "absorption_fraction": curve(steps, absorption_start, absorption_end, scale),
                "full_absorption_rate": curve(steps, 0.1, 0.05, scale),
                "mean_max_cosine": curve(steps, 0.3, 0.5, scale),
                "random_mean_max_cosine": 0.25,
                "near_duplicate_pair_fraction": np.array([0, 0, 1, 2, 3, 4 + index]) / n_pairs,
                "near_duplicate_latent_fraction": np.array([0, 0, 2, 4, 6, 8 + index]) / WIDTH,
                "random_near_duplicate_pair_fraction": 0.0,
            }
        )
        _write_run(outputs, _config(name, schedule), table, index)
        runs.append({"run_name": name, "status": "ok"})
    (outputs / "study_summary.json").write_text(json.dumps({"seconds": 1.0, "runs": runs}))
    return outputs


# ----------------------------------------------------------------------------- a matched-L0 sweep
# Per arm: (schedule, final mean max cosine, time constant of formation and absorption). Every run
# ends at its L0 target (±2%); the final explained variance rises with L0 and is the same for every
# arm, so differences in it are seed noise; tightened ends with clearly lower cosines and forms
# faster; linear forms slowest.
SWEEP_ARMS = {
    "baseline": ({"kind": "none"}, 0.45, 10.0),
    "tightened": ({"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.05}, 0.38, 3.0),
    "higher_floor": ({"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.1}, 0.45, 10.0),
    "linear": ({"kind": "linear", "tau_initial": 0.3, "tau_final": 0.05}, 0.45, 30.0),
}
SWEEP_TARGETS = (10.0, 30.0)
SWEEP_SEEDS = (0, 1, 2)
NOISE = 0.01  # standard deviation of the seed noise on explained variance and probing accuracy


AA_ARM = "baseline_again"  # write_synthetic_sweep(aa=True): baseline's formulas again, with seed noise of its own


def sweep_metrics(arm: str, target: float, seed: int) -> pd.DataFrame:
    """The evaluation table of one synthetic sweep run (before step/tokens/τ columns are added)."""
    _, cosine_end, scale = SWEEP_ARMS["baseline" if arm == AA_ARM else arm]
    rng = np.random.default_rng(zlib.crc32(f"{arm}|{target}|{seed}".encode()))
    scale *= 1 + rng.normal(0, 0.05)  # seeds form a little faster or slower
    steps = np.array(STEPS)
    l0_end = target * (1 + rng.uniform(-0.02, 0.02))
    ev_end = 0.5 + 0.1 * np.log(target / 10) + rng.normal(0, NOISE)
    return pd.DataFrame(
        {
            "l0": curve(steps, 64.0, l0_end, scale),
            "explained_variance": curve(steps, 0.0, ev_end, scale),
            "ce_loss_score": curve(steps, 0.0, 0.8 + ev_end / 10, scale),
            "sae_top_1_accuracy": curve(steps, 0.5, 0.7 + rng.normal(0, NOISE), scale),
            "k1_f1": curve(steps, 0.0, 0.6 + rng.normal(0, NOISE), scale),
            "absorption_fraction": curve(steps, 0.3, 0.03 + rng.normal(0, 0.002), scale),
            "mean_max_cosine": curve(steps, 0.3, cosine_end + rng.normal(0, 0.003), scale),
            "near_duplicate_latent_fraction": curve(steps, 0.0, 0.05 + rng.normal(0, 0.005), scale),
            # no dead latents here, so the alive-latent statistics are the all-latent ones against a 0.25 baseline
            "dead_fraction": 0.0,
            "alive_mean_max_cosine": curve(steps, 0.3, cosine_end + rng.normal(0, 0.003), scale),
            "alive_random_mean_max_cosine": 0.25,
            "alive_covariance_mean_max_cosine": 0.3,
            "alive_excess_mean_max_cosine": curve(steps, 0.05, cosine_end - 0.25 + rng.normal(0, 0.003), scale),
            "alive_near_duplicate_latent_fraction": curve(steps, 0.0, 0.05 + rng.normal(0, 0.005), scale),
            "decoder_init_cosine_median": curve(steps, 1.0, 0.7, scale),  # the dictionary moves from its start
            "decoder_init_cosine_weighted_median": curve(steps, 1.0, 0.45, scale),
        }
    )


def sweep_lambda(arm: str, target: float) -> float:
    schedule = SWEEP_ARMS["baseline" if arm == AA_ARM else arm][0]
    return round(0.4 * 10 / target * schedule.get("tau_final", 1.0) * (1.1 if arm == AA_ARM else 1.0), 6)


def write_synthetic_sweep(outputs: Path, aa: bool = False) -> Path:
    """A sweep study (4 arms × 2 L0 targets × 3 seeds) as `make study` leaves it, metrics from formulas; `aa`: with
    baseline's A/A control (AA_ARM: the same formulas, noise of its own), as the sweep plans it."""
    outputs.mkdir(parents=True, exist_ok=True)
    runs = []
    arms = dict(SWEEP_ARMS) | ({AA_ARM: SWEEP_ARMS["baseline"]} if aa else {})
    for index, (arm, (schedule, _, _)) in enumerate(arms.items()):
        for target in SWEEP_TARGETS:
            for seed in SWEEP_SEEDS:
                name = f"{arm}__lam{sweep_lambda(arm, target):.4g}__seed{seed}"
                config = RunConfig.model_validate(
                    {
                        "run_name": name,
                        "seed": seed,
                        "sweep": {"arm": arm, "l0_target": target} | ({"aa_of": "baseline"} if arm == AA_ARM else {}),
                        "sae": {"width": WIDTH},
                        "schedule": schedule,
                        "training": {
                            "l1_coefficient": sweep_lambda(arm, target),
                            "n_tokens": STEPS[-1] * BATCH,
                            "batch_size": BATCH,
                            "n_checkpoints": len(STEPS),
                        },
                    }
                )
                _write_run(outputs, config, sweep_metrics(arm, target, seed), index)
                runs.append({"run_name": name, "status": "ok", "seed": seed, "sweep": {"arm": arm, "l0_target": target}})
    (outputs / "sweeps").mkdir(exist_ok=True)
    plan = {"tolerance": 0.15, "runs": runs} | ({"aa_controls": {AA_ARM: "baseline"}} if aa else {})
    (outputs / "sweeps" / "plan.json").write_text(json.dumps(plan))
    (outputs / "study_summary.json").write_text(
        json.dumps({"seconds": 600.0, "extraction_seconds": 60.0, "calibration_seconds": 120.0, "profile": "default", "runs": runs})
    )
    return outputs


# ----------------------------------------------------------------------------- checkpoints and held-out activations
# The latent browser needs what the formulas above do not write: every checkpoint's SAE and a held-out
# activation cache. Every token id belongs to one concept (id mod WIDTH), a held-out activation is
# 3 × that concept's direction (orthonormal directions in D_MODEL = WIDTH dimensions), and the final
# SAE's latent j reads and writes concept j with threshold 1: it fires exactly on concept-j tokens,
# at 2. Earlier checkpoints mix a random direction in: latent j's direction is normalise((1 − a)·r_j +
# a·concept_j) with a = MIX[checkpoint], threshold a, and the latents sit one slot along
# (slot (j + 1) mod WIDTH) before the final checkpoint, so following a latent by index and by its
# matched decoder direction differ.
D_MODEL = WIDTH
LAYER = 9  # the embedded model's middle block, where the default configuration reads
MIX = [0.0, 0.2, 0.5, 0.8, 0.95, 1.0]


def concept_directions() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.linalg.qr(rng.normal(size=(D_MODEL, D_MODEL)))[0].T.astype(np.float32)  # rows orthonormal


def concept_of(token_ids: np.ndarray) -> np.ndarray:
    return np.asarray(token_ids) % WIDTH


def write_latent_checkpoints(outputs: Path, run_name: str, token_ids: np.ndarray) -> None:
    """Every checkpoint's SAE of one run and the held-out cache its configuration names (token ids given)."""
    import torch

    from taulib.activations.cache import activation_spec, cache_folder, write_manifest, write_shard

    config = write_checkpoints(outputs, run_name)
    directions = concept_directions()
    spec = activation_spec(config, "heldout", LAYER)
    folder = cache_folder(outputs, spec)
    if (folder / "manifest.json").is_file():
        return
    ids = np.asarray(token_ids)[: spec.n_tokens]
    if len(ids) != spec.n_tokens:
        raise ValueError(f"{len(ids)} token ids for a held-out cache of {spec.n_tokens}")
    activations = torch.from_numpy(3.0 * directions[concept_of(ids)]).to(torch.float16)
    folder.mkdir(parents=True, exist_ok=True)
    shard = write_shard(folder, 0, activations, torch.from_numpy(ids.astype(np.int64)))
    write_manifest(folder, spec, [shard], D_MODEL, {})


def write_checkpoints(outputs: Path, run_name: str) -> RunConfig:
    """Every checkpoint's SAE of one run (the mix of random and concept directions above); its configuration."""
    import torch

    from taulib.sae import SAEMetadata, SparseAutoencoder, save_sae

    config = RunConfig.model_validate(json.loads((outputs / run_name / "config.json").read_text())["config"])
    directions = concept_directions()
    rng = np.random.default_rng(11)
    random = rng.normal(size=(WIDTH, D_MODEL))
    for index, (step, a) in enumerate(zip(STEPS, MIX, strict=True)):
        mixed = (1 - a) * random / np.linalg.norm(random, axis=1, keepdims=True) + a * directions
        mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
        slots = np.arange(WIDTH) if index == len(STEPS) - 1 else (np.arange(WIDTH) + 1) % WIDTH
        placed = np.empty_like(mixed)
        placed[slots] = mixed
        sae = SparseAutoencoder(D_MODEL, WIDTH)
        with torch.no_grad():
            sae.W_dec.copy_(torch.from_numpy(placed).float())
            sae.W_enc.copy_(torch.from_numpy(placed.T.copy()).float())
            sae.b_enc.fill_(-a)
            sae.b_dec.zero_()
        save_sae(sae, outputs / run_name / "checkpoints" / f"step_{step:07d}", SAEMetadata(D_MODEL, WIDTH, model_name=config.model.name, layer=LAYER))
    return config
