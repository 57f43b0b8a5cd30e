"""The on-disk activation cache: safetensors shards plus a manifest that is written last.

A cache folder counts as complete only when its `manifest.json` exists; shards are written
atomically and recorded in `progress.json` as they finish, so an interrupted extraction resumes
from the last whole shard and is never read as complete. Reading checks the manifest against
the expected spec, every shard's size and sha256, and refuses non-finite activations.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.versions import EXTRACTION_VERSION, versioned

if TYPE_CHECKING:
    from taulib.config import RunConfig

MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"
CACHE_FORMAT = "taulib-activations-v1"
STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class CacheError(RuntimeError):
    """An activation cache that is missing, incomplete, corrupted or made for something else."""


@dataclass(frozen=True)
class ActivationSpec:
    """Everything that determines the content of one split of an activation cache."""

    model_name: str
    model_dtype: str
    layer: int
    context_length: int
    corpus: str
    split: str  # "train" or "heldout"
    n_tokens: int
    storage_dtype: str
    shard_tokens: int
    max_document_tokens: int | None = None  # each document's first tokens only (None: all)

    def record(self) -> dict[str, Any]:
        """The spec as manifests record it and keys hash it: an uncapped spec as it was before the cap existed, so
        caches extracted then keep their keys and manifests."""
        return {name: value for name, value in asdict(self).items() if not (name == "max_document_tokens" and value is None)}

    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(versioned(self.record(), "extraction_version", EXTRACTION_VERSION), sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.model_name).strip("-").lower()
        return f"{slug}_L{self.layer}_ctx{self.context_length}_{self.corpus}_{self.split}_{self.n_tokens}_{digest}"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def write_shard(folder: Path, index: int, activations: torch.Tensor, token_ids: torch.Tensor) -> dict[str, Any]:
    """Write one shard atomically and return its manifest record."""
    if activations.ndim != 2 or token_ids.shape != (activations.shape[0],):
        raise ValueError(f"shard {index}: activations {tuple(activations.shape)} and token ids {tuple(token_ids.shape)} disagree")
    if not torch.isfinite(activations).all():
        raise CacheError(f"shard {index}: non-finite activations after casting; the storage dtype may overflow (use storage_dtype: bfloat16 or float32)")
    path = folder / shard_name(index)
    with atomic.atomic_path(path) as tmp:
        save_file({"activations": activations.contiguous(), "token_ids": token_ids.to(torch.int32).contiguous()}, str(tmp))
    return {"file": path.name, "n_tokens": int(activations.shape[0]), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def read_progress(folder: Path, spec: ActivationSpec) -> list[dict[str, Any]]:
    """Shards finished by an earlier, interrupted extraction with the same spec (checked again)."""
    path = folder / PROGRESS_FILE
    if not path.is_file():
        return []
    try:
        progress = atomic.read_json(path)
    except (OSError, json.JSONDecodeError):
        return []
    if progress.get("spec") != spec.record():
        return []
    kept = []
    for index, record in enumerate(progress.get("shards", [])):
        shard = folder / record["file"]
        if record["file"] != shard_name(index) or not shard.is_file() or sha256_file(shard) != record["sha256"]:
            break
        kept.append(record)
    return kept


def write_progress(folder: Path, spec: ActivationSpec, shards: list[dict[str, Any]]) -> None:
    atomic.write_json(folder / PROGRESS_FILE, {"spec": spec.record(), "shards": shards})


def write_manifest(folder: Path, spec: ActivationSpec, shards: list[dict[str, Any]], d_model: int, stats: dict[str, Any]) -> None:
    manifest = {
        "format": CACHE_FORMAT,
        "extraction_version": EXTRACTION_VERSION,
        "spec": spec.record(),
        "d_model": d_model,
        "n_tokens": sum(record["n_tokens"] for record in shards),
        "shards": shards,
        "stats": stats,
    }
    atomic.write_json(folder / MANIFEST_FILE, manifest)
    (folder / PROGRESS_FILE).unlink(missing_ok=True)


def is_complete(folder: Path, spec: ActivationSpec) -> bool:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return False
    try:
        return atomic.read_json(path).get("spec") == spec.record()
    except (OSError, json.JSONDecodeError):
        return False


class MappedActivations:
    """A cache's activation rows, memory-mapped from its shards: a batch reads only its own rows, so a
    cache larger than RAM trains (`training.activation_storage: mmap`). Indexing with a 1-D tensor of
    row numbers or a slice returns a torch tensor, as indexing the loaded matrix would."""

    def __init__(self, shards: list[np.ndarray], dtype: torch.dtype) -> None:
        self.shards, self.dtype = shards, dtype
        self.ends = np.cumsum([shard.shape[0] for shard in shards])
        self.shape = torch.Size((int(self.ends[-1]), int(shards[0].shape[1])))
        self.ndim, self.device = 2, torch.device("cpu")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        if isinstance(index, slice):
            rows = np.arange(*index.indices(self.shape[0]))
        elif isinstance(index, torch.Tensor) and index.ndim == 1 and not index.is_floating_point():
            rows = index.cpu().numpy()
        else:
            raise TypeError(f"index mapped activations with a slice or a 1-D integer tensor, not {type(index).__name__}")
        out = np.empty((len(rows), self.shape[1]), dtype=self.shards[0].dtype)
        shard_of_row = np.searchsorted(self.ends, rows, side="right")
        for shard_index in np.unique(shard_of_row):
            where = shard_of_row == shard_index
            first_row = 0 if shard_index == 0 else self.ends[shard_index - 1]
            out[where] = self.shards[shard_index][rows[where] - first_row]
        tensor = torch.from_numpy(out)
        return tensor.view(self.dtype) if self.dtype == torch.bfloat16 else tensor

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise TypeError("mapped activations are read batch by batch; use activation_storage 'host' or 'device' to load the whole cache")


# safetensors' dtype codes; bfloat16 is read as its raw 16 bits (numpy has no bfloat16) and viewed back in torch
_NUMPY_DTYPES = {"F16": (np.float16, torch.float16), "BF16": (np.uint16, torch.bfloat16), "F32": (np.float32, torch.float32)}


def map_shard_activations(path: Path) -> tuple[np.ndarray, torch.dtype]:
    """The `activations` tensor of a shard as a read-only memory map (the safetensors layout: an
    8-byte little-endian header length, a JSON header, then the tensors' bytes)."""
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_length))
    entry = header["activations"]
    numpy_dtype, torch_dtype = _NUMPY_DTYPES[entry["dtype"]]
    begin, _ = entry["data_offsets"]
    mapped = np.memmap(path, dtype=numpy_dtype, mode="r", offset=8 + header_length + begin, shape=tuple(entry["shape"]))
    return mapped, torch_dtype


@dataclass
class ActivationSet:
    """A loaded cache split: activations (n, d) in the storage dtype (in memory, or memory-mapped), and the token id of each row."""

    activations: torch.Tensor | MappedActivations
    token_ids: torch.Tensor
    manifest: dict[str, Any]

    @property
    def n_tokens(self) -> int:
        return int(self.activations.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.activations.shape[1])


def verify_cache(folder: str | Path, spec: ActivationSpec | None = None) -> None:
    """Check a complete cache without keeping it in memory (used before a study starts any work)."""
    load_cache(folder, spec, verify_checksums=True, mmap=True)


def _count_non_finite_rows(activations: torch.Tensor | np.ndarray, dtype: torch.dtype, chunk: int = 65_536) -> int:
    bad = 0
    for start in range(0, activations.shape[0], chunk):
        block = activations[start : start + chunk]
        if isinstance(block, np.ndarray):  # a memory-mapped shard: read this chunk only
            block = torch.from_numpy(np.array(block))
            block = block.view(dtype) if dtype == torch.bfloat16 else block
        bad += int((~torch.isfinite(block)).any(dim=1).sum())
    return bad


def load_cache(folder: str | Path, spec: ActivationSpec | None = None, verify_checksums: bool = True, mmap: bool = False) -> ActivationSet:
    """Load a complete cache split, refusing anything missing, truncated, altered or non-finite.

    `mmap` leaves the activations on disk (MappedActivations) instead of reading them into memory."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        hint = " (an extraction was interrupted; run the extraction again to finish it)" if (folder / PROGRESS_FILE).is_file() else ""
        raise CacheError(f"{folder}: no complete activation cache here{hint}; run notebooks/01_extract_activations first")
    try:
        manifest = atomic.read_json(manifest_path)
    except json.JSONDecodeError as error:
        raise CacheError(f"{manifest_path}: unreadable manifest ({error})") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise CacheError(f"{manifest_path}: not a {CACHE_FORMAT} manifest")
    if spec is not None and manifest.get("spec") != spec.record():
        differing = sorted(k for k, v in spec.record().items() if manifest["spec"].get(k) != v)
        raise CacheError(f"{manifest_path}: cache was made for another spec (differs in: {', '.join(differing)})")
    parts: list[Any] = []
    ids, mapped_dtype = [], torch.float32
    for record in manifest["shards"]:
        shard = folder / record["file"]
        if not shard.is_file():
            raise CacheError(f"{shard}: shard listed in the manifest is missing")
        if shard.stat().st_size != record["bytes"]:
            raise CacheError(f"{shard}: truncated or altered ({shard.stat().st_size} bytes, manifest says {record['bytes']})")
        if verify_checksums and sha256_file(shard) != record["sha256"]:
            raise CacheError(f"{shard}: sha256 checksum mismatch; the shard was altered or corrupted")
        try:
            if mmap:
                activations, mapped_dtype = map_shard_activations(shard)
                with safe_open(str(shard), framework="pt") as handle:
                    token_ids = handle.get_tensor("token_ids")
            else:
                tensors = load_file(str(shard))
                activations, token_ids = tensors["activations"], tensors["token_ids"]
        except (SafetensorError, OSError, KeyError, ValueError) as error:
            raise CacheError(f"{shard}: unreadable shard ({error})") from None
        bad = _count_non_finite_rows(activations, mapped_dtype if mmap else activations.dtype)
        if bad:
            raise CacheError(f"{shard}: {bad} activation rows contain NaN or inf; the cache cannot be trained on")
        parts.append(activations)
        ids.append(token_ids)
    if not parts:
        raise CacheError(f"{manifest_path}: the manifest lists no shards")
    activations = MappedActivations(parts, mapped_dtype) if mmap else torch.cat(parts)
    if activations.shape[0] != manifest["n_tokens"] or activations.shape[1] != manifest["d_model"]:
        raise CacheError(f"{manifest_path}: shards hold {tuple(activations.shape)}, manifest says ({manifest['n_tokens']}, {manifest['d_model']})")
    return ActivationSet(activations, torch.cat(ids), manifest)


SPLITS = ("train", "heldout")  # the corpus splits extracted per model and layer


def activation_spec(config: RunConfig, split: str, layer: int) -> ActivationSpec:
    acts = config.activations
    model_name, corpus = config.model.name, acts.corpus
    if config.model.synthetic is not None:
        # the generator's settings name its caches; no corpus is read
        digest = hashlib.sha256(json.dumps(config.model.synthetic.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:10]
        model_name, corpus = f"{config.model.name}-{digest}", "none"
    return ActivationSpec(
        model_name=model_name,
        model_dtype=config.model.dtype + (f"+autocast-{config.model.autocast}" if config.model.autocast else ""),
        layer=layer,
        context_length=acts.context_length,
        corpus=corpus,
        split=split,
        n_tokens=acts.n_tokens if split == "train" else acts.heldout_tokens,
        storage_dtype=acts.storage_dtype,
        shard_tokens=acts.shard_tokens,
        max_document_tokens=None if config.model.synthetic is not None else acts.max_document_tokens,
    )


def cache_folder(outputs_root: Path, spec: ActivationSpec) -> Path:
    return Path(outputs_root) / "activations" / spec.key()
