"""Residual-stream extraction with nnsight into the sharded activation cache.

nnsight traces the model on packed corpus sequences, saves the output of decoder block `layer`
and stops the forward pass there: blocks after it, the final norm and the 262k-way unembedding
never run. The BOS position of every sequence is dropped (its residual norm is an outlier that
SAE work conventionally excludes), as is any padding.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from taulib import atomic
from taulib.activations import cache
from taulib.activations.models import LoadedModel, decoder_layers_path
from taulib.config import RunConfig
from taulib.corpus import iter_documents, load_corpus_manifest, token_sequences
from taulib.corpus.build import corpus_digest
from taulib.progress import progress_bar


class TracedBlock:
    """A causal LM traced by nnsight, with a handle on decoder block `layer` and the forward's autocast."""

    def __init__(self, loaded: LoadedModel, autocast: str | None = None) -> None:
        from nnsight import TransformersModel

        self.loaded = loaded
        self.traced = TransformersModel(loaded.model, tokenizer=loaded.tokenizer, task="text-generation")
        self.layer_path = decoder_layers_path(loaded.model)
        self.device = next(loaded.model.parameters()).device
        self.autocast = getattr(torch, autocast) if autocast else None
        self.block_returns_tuple: bool | None = None  # known after the first forward

    def _layer_envoy(self) -> Any:
        envoy: Any = self.traced
        for part in self.layer_path.split("."):
            envoy = getattr(envoy, part)
        return envoy[self.loaded.layer]

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None)


class ResidualReader(TracedBlock):
    """Reads the residual stream after one decoder block through nnsight, stopping the forward there."""

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq, d_model) residual stream after block `layer`."""
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
        with self._autocast():
            with self.traced.trace(inputs) as tracer:
                output = self._layer_envoy().output
                # transformers 5 decoder layers return a tensor; older ones and other families a tuple
                self.block_returns_tuple = isinstance(output, tuple)
                hidden = (output[0] if self.block_returns_tuple else output).save()
                tracer.stop()
        return hidden


@torch.inference_mode()
def residuals_per_sequence(reader: ResidualReader, sequences: list[torch.Tensor], batch_size: int, progress: Any = None) -> list[torch.Tensor]:
    """The residuals (len, d) of each token sequence, batched by similar length.

    Sequences are right-padded: in a causal model a real token never attends to the padding after
    it, and its position ids are unchanged, so its residual is the unpadded one.
    """
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    result: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
    pad = reader.loaded.tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, index in enumerate(chunk):
            ids[row, : len(sequences[index])] = sequences[index]
            mask[row, : len(sequences[index])] = 1
        hidden = reader(ids, mask).float().cpu()
        for row, index in enumerate(chunk):
            result[index] = hidden[row, : len(sequences[index])].clone()
        if progress is not None:
            progress(int(mask.sum()))
    return result


def keep_positions(attention_mask: torch.Tensor, input_ids: torch.Tensor, bos_token_id: int) -> torch.Tensor:
    """Boolean mask of the positions whose activations are kept: real tokens that are not BOS."""
    return attention_mask.bool() & (input_ids != bos_token_id)


def extract_split(config: RunConfig, loaded: LoadedModel, outputs_root: Path, split: str, show_progress: bool = True) -> Path:
    """Extract one split into its cache folder (resuming a partial one); return the folder."""
    spec = cache.activation_spec(config, split, loaded.layer)
    folder = cache.cache_folder(outputs_root, spec)
    if cache.is_complete(folder, spec):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temporaries(folder)
    body = spec.context_length - 1
    n_sequences = math.ceil(spec.n_tokens / body)
    sequences_per_shard = max(1, spec.shard_tokens // body)
    done = cache.read_progress(folder, spec)
    start_sequence = len(done) * sequences_per_shard
    storage = cache.STORAGE_DTYPES[spec.storage_dtype]
    reader = ResidualReader(loaded, config.model.autocast)
    batch_size = config.activations.batch_size

    stream = token_sequences(iter_documents(split, seed=0), loaded.tokenizer, spec.context_length, n_sequences, max_document_tokens=spec.max_document_tokens)
    for _ in range(start_sequence):  # sequences already in finished shards (tokenising is cheap)
        next(stream)
    progress = progress_bar(
        total=spec.n_tokens, initial=min(start_sequence * body, spec.n_tokens), desc=f"extract {split}", unit="tok", unit_scale=True, disable=not show_progress
    )
    shards = list(done)
    rows: list[torch.Tensor] = []
    ids: list[torch.Tensor] = []
    pending_sequences = 0
    started, extracted = time.perf_counter(), 0
    remaining = n_sequences - start_sequence
    while remaining > 0:
        take = min(batch_size, remaining, sequences_per_shard - pending_sequences)
        batch = torch.stack([next(stream) for _ in range(take)])
        mask = torch.ones_like(batch)
        hidden = reader(batch, mask).float().cpu()
        keep = keep_positions(mask, batch, loaded.bos_token_id)
        rows.append(hidden[keep])
        ids.append(batch[keep])
        pending_sequences += take
        remaining -= take
        progress.update(min(int(keep.sum()), spec.n_tokens - progress.n))
        if pending_sequences == sequences_per_shard or remaining == 0:
            shard_acts, shard_ids = torch.cat(rows), torch.cat(ids)
            total_before = sum(record["n_tokens"] for record in shards)
            overshoot = total_before + shard_acts.shape[0] - spec.n_tokens
            if overshoot > 0:  # the last shard stops at exactly n_tokens
                shard_acts, shard_ids = shard_acts[:-overshoot], shard_ids[:-overshoot]
            shards.append(cache.write_shard(folder, len(shards), shard_acts.to(storage), shard_ids))
            extracted += shard_acts.shape[0]
            cache.write_progress(folder, spec, shards)
            rows, ids, pending_sequences = [], [], 0
    progress.close()
    elapsed = time.perf_counter() - started
    stats = {
        "corpus_sha256": corpus_digest(load_corpus_manifest()),
        "seconds_this_session": elapsed,
        "tokens_per_second": extracted / elapsed if elapsed else None,
        "tokens_this_session": extracted,
    }
    cache.write_manifest(folder, spec, shards, loaded.d_model, stats)
    return folder


def ensure_activations(config: RunConfig, loaded: LoadedModel, outputs_root: Path, show_progress: bool = True) -> dict[str, Path]:
    """Extract (or reuse) the train and held-out caches of a run configuration."""
    return {split: extract_split(config, loaded, outputs_root, split, show_progress) for split in cache.SPLITS}


def cached_activation_folders(config: RunConfig, layer: int, outputs_root: Path) -> dict[str, Path]:
    """Where a run's caches are, without loading the model (for training)."""
    return {split: cache.cache_folder(outputs_root, cache.activation_spec(config, split, layer)) for split in cache.SPLITS}
