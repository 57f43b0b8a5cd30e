"""Synthetic activations of known sparse directions: the ground-truth track of the study, and test data.

The synthetic model (`model.name: synthetic`, configured by `model.synthetic`, taulib.config.SyntheticConfig)
stands in for a language model's residual stream with one whose dictionary is known: n_features unit
directions u_i in d_model dimensions (more features than dimensions: superposition), pushed apart until no
two have |cosine| above max_coherence; feature i fires on a sample with probability p_i ∝ (i+1)^−α (a power
law), with a log-normal magnitude; dense Gaussian noise is added to every coordinate:

    x = Σ_{i fires} m_i·u_i + ε,     m_i = exp(σ·z),  z ~ N(0, 1),  ε ~ N(0, noise_std²·I)

Its "extraction" writes the activation cache of taulib.activations.cache (shards, progress, manifest last:
resumable and atomic) for the train and held-out splits, so that calibration, training, checkpoints and
the evaluation run unchanged, and saves the true dictionary (`dictionary.safetensors`) in each split's
cache folder, its checksum in the manifest. Every shard is drawn from its own generator, seeded by the
configuration's seed, the split and the shard's index, so a resumed extraction writes the same bytes.
A shard's `token_ids` hold the index of the sample's largest firing feature (−1: none fired).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.activations import cache
from taulib.config import RunConfig, SyntheticConfig
from taulib.progress import progress_bar

DICTIONARY_FILE = "dictionary.safetensors"
GENERATION_ROWS = 8192  # samples drawn at once: the (rows × n_features) firing matrix stays small
COHERENCE_STEPS = 5000  # gradient steps pushing the directions apart, at most
SPLIT_STREAMS = {"train": 1, "heldout": 2}  # the dictionary draws from stream 0


class SyntheticError(RuntimeError):
    """A synthetic configuration the generator cannot realise, or a synthetic cache without its dictionary."""


# ----------------------------------------------------------------------------- the synthetic model
def _generator(config: SyntheticConfig, stream: int, index: int = 0) -> torch.Generator:
    digest = hashlib.sha256(f"{config.seed}|{stream}|{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def mutual_coherence(directions: torch.Tensor) -> float:
    """The largest |cosine| between two distinct rows."""
    unit = directions / directions.norm(dim=1, keepdim=True)
    gram = (unit @ unit.T).abs()
    gram.fill_diagonal_(0)
    return float(gram.max()) if len(unit) > 1 else 0.0


def true_dictionary(config: SyntheticConfig) -> torch.Tensor:
    """The (n_features, d_model) unit directions, float32, with mutual coherence at most max_coherence.

    Random Gaussian directions, then gradient steps on Σ relu(|cos_ij| − μ′)² (μ′ a little below the bound)
    with renormalisation, until the bound holds; in float64, so that the result depends on the seed only."""
    directions = torch.randn(config.n_features, config.d_model, generator=_generator(config, 0), dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    if config.max_coherence < 1:
        aim = 0.97 * config.max_coherence
        for _ in range(COHERENCE_STEPS):
            if mutual_coherence(directions) <= config.max_coherence:
                break
            gram = directions @ directions.T
            gram.fill_diagonal_(0)
            excess = torch.sign(gram) * torch.relu(gram.abs() - aim)
            directions -= 0.5 * excess @ directions
            directions /= directions.norm(dim=1, keepdim=True)
        reached = mutual_coherence(directions)
        if reached > config.max_coherence:
            raise SyntheticError(
                f"model.synthetic.max_coherence: {COHERENCE_STEPS} steps reached a mutual coherence of {reached:.3f}, not "
                f"{config.max_coherence:g}; raise max_coherence, lower n_features or raise d_model"
            )
    return directions.float()


def synthetic_samples(config: SyntheticConfig, directions: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples (n, d_model) float32 and the index of each one's largest firing feature (−1: none)."""
    probabilities = torch.tensor(config.firing_probabilities(), dtype=torch.float32)
    rows, largest = [], []
    for start in range(0, n, GENERATION_ROWS):
        count = min(GENERATION_ROWS, n - start)
        fires = torch.rand(count, config.n_features, generator=generator) < probabilities
        magnitudes = torch.exp(config.magnitude_log_std * torch.randn(count, config.n_features, generator=generator))
        coefficients = fires * magnitudes
        noise = config.noise_std * torch.randn(count, config.d_model, generator=generator)
        rows.append(coefficients @ directions + noise)
        top, index = coefficients.max(dim=1)
        largest.append(torch.where(top > 0, index, -1))
    return torch.cat(rows), torch.cat(largest)


def _write_dictionary(folder: Path, config: SyntheticConfig, directions: torch.Tensor) -> dict[str, object]:
    path = folder / DICTIONARY_FILE
    probabilities = torch.tensor(config.firing_probabilities(), dtype=torch.float32)
    # one metadata entry: safetensors writes several in no fixed order, and the file's bytes must depend on the seed only
    metadata = {"synthetic": json.dumps({"config": config.model_dump(mode="json"), "mutual_coherence": mutual_coherence(directions)}, sort_keys=True)}
    with atomic.atomic_path(path) as tmp:
        save_file({"directions": directions.contiguous(), "firing_probabilities": probabilities}, str(tmp), metadata=metadata)
    return {"file": DICTIONARY_FILE, "sha256": cache.sha256_file(path), "mutual_coherence": mutual_coherence(directions)}


def extract_synthetic_split(config: RunConfig, outputs_root: Path, split: str, directions: torch.Tensor | None = None, show_progress: bool = True) -> Path:
    """Generate one split into its cache folder (resuming a partial one), with the true dictionary beside it."""
    synthetic = config.model.synthetic
    if synthetic is None:
        raise SyntheticError(f"{config.run_name}: model.name is {config.model.name!r}, not the synthetic model")
    spec = cache.activation_spec(config, split, 0)
    folder = cache.cache_folder(outputs_root, spec)
    if cache.is_complete(folder, spec):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temporaries(folder)
    directions = true_dictionary(synthetic) if directions is None else directions
    storage = cache.STORAGE_DTYPES[spec.storage_dtype]
    shards = cache.read_progress(folder, spec)
    written = sum(record["n_tokens"] for record in shards)
    progress = progress_bar(total=spec.n_tokens, initial=written, desc=f"synthetic {split}", unit="tok", unit_scale=True, disable=not show_progress)
    started, generated = time.perf_counter(), 0
    while written < spec.n_tokens:
        count = min(spec.shard_tokens, spec.n_tokens - written)
        rows, largest = synthetic_samples(synthetic, directions, count, _generator(synthetic, SPLIT_STREAMS[split], len(shards)))
        shards.append(cache.write_shard(folder, len(shards), rows.to(storage), largest))
        cache.write_progress(folder, spec, shards)
        written, generated = written + count, generated + count
        progress.update(count)
    progress.close()
    elapsed = time.perf_counter() - started
    stats = {
        "dictionary": _write_dictionary(folder, synthetic, directions),
        "seconds_this_session": elapsed,
        "tokens_per_second": generated / elapsed if elapsed else None,
        "tokens_this_session": generated,
    }
    cache.write_manifest(folder, spec, shards, synthetic.d_model, stats)  # last: the folder is complete only now
    return folder


def ensure_synthetic_activations(config: RunConfig, outputs_root: Path, show_progress: bool = True) -> dict[str, Path]:
    """Generate (or reuse) the train and held-out caches of a synthetic run configuration."""
    folders = {split: cache.cache_folder(outputs_root, cache.activation_spec(config, split, 0)) for split in cache.SPLITS}
    directions = None
    for split in cache.SPLITS:
        if not cache.is_complete(folders[split], cache.activation_spec(config, split, 0)):
            directions = true_dictionary(config.model.synthetic) if directions is None else directions
            extract_synthetic_split(config, outputs_root, split, directions, show_progress)
    return folders


def load_true_dictionary(cache_folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(directions (n_features, d_model), firing probabilities) saved beside a synthetic cache, checked against its manifest."""
    manifest = atomic.read_json(Path(cache_folder) / cache.MANIFEST_FILE)
    record = manifest.get("stats", {}).get("dictionary")
    path = Path(cache_folder) / DICTIONARY_FILE
    if record is None or not path.is_file():
        raise SyntheticError(f"{cache_folder}: no true dictionary beside this cache (not a synthetic model's cache)")
    if cache.sha256_file(path) != record["sha256"]:
        raise SyntheticError(f"{path}: sha256 checksum mismatch with the manifest; delete {cache_folder} to generate it again")
    tensors = load_file(str(path))
    return tensors["directions"], tensors["firing_probabilities"]
