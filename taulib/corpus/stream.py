"""Documents → fixed-length token sequences for extraction.

Documents are tokenised without special tokens, joined by a blank-line separator and packed;
every sequence is BOS followed by context_length − 1 corpus tokens. No padding is ever needed,
and the BOS position (whose residual norm is far larger than any other's) is dropped at extraction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch


def token_sequences(documents: Iterable[str], tokenizer: Any, context_length: int, n_sequences: int, chunk_documents: int = 256) -> Iterator[torch.Tensor]:
    """Yield `n_sequences` LongTensors of shape (context_length,), each starting with BOS."""
    if context_length < 2:
        raise ValueError("context_length must be at least 2 (BOS plus one token)")
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the tokenizer has no BOS token")
    separator = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    body = context_length - 1
    buffer: list[int] = []
    produced = 0
    batch: list[str] = []

    def drain() -> Iterator[torch.Tensor]:
        nonlocal buffer, produced
        while len(buffer) >= body and produced < n_sequences:
            yield torch.tensor([bos, *buffer[:body]], dtype=torch.long)
            buffer = buffer[body:]
            produced += 1

    for document in documents:
        batch.append(document)
        if len(batch) < chunk_documents:
            continue
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            buffer.extend(ids)
            buffer.extend(separator)
        batch = []
        yield from drain()
        if produced >= n_sequences:
            return
    if batch:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            buffer.extend(ids)
            buffer.extend(separator)
        yield from drain()
    if produced < n_sequences:
        raise ValueError(f"the corpus split holds only {produced} sequences of {context_length} tokens; {n_sequences} were asked for")
