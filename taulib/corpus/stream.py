"""Documents → fixed-length token sequences for extraction, and which document each token came from.

Documents are tokenised without special tokens, optionally cut to their first `max_document_tokens` (so that a
sample of the stream spans many documents, not a few long ones), joined by a blank-line separator and packed;
every sequence is BOS followed by context_length − 1 corpus tokens. No padding is ever needed,
and the BOS position (whose residual norm is far larger than any other's) is dropped at extraction.
The packed tokens without their BOS are one stream (the held-out cache holds its start); a token's
document is the one it was tokenised from, the separator after a document counting as that document's.
Evaluation samples are resampled by document, since a document spans several sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch


def _documents_tokens(documents: Iterable[str], tokenizer: Any, chunk_documents: int, max_document_tokens: int | None = None) -> Iterator[list[int]]:
    """Each document's token ids (its first `max_document_tokens`, if given) followed by the separator, tokenised
    `chunk_documents` at a time."""
    separator = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    batch: list[str] = []
    for document in documents:
        batch.append(document)
        if len(batch) == chunk_documents:
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                yield [*ids[:max_document_tokens], *separator]
            batch = []
    if batch:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            yield [*ids[:max_document_tokens], *separator]


def token_sequences(
    documents: Iterable[str], tokenizer: Any, context_length: int, n_sequences: int, chunk_documents: int = 256, max_document_tokens: int | None = None
) -> Iterator[torch.Tensor]:
    """Yield `n_sequences` LongTensors of shape (context_length,), each starting with BOS; a document contributes at
    most its first `max_document_tokens` tokens (None: all of them)."""
    if context_length < 2:
        raise ValueError("context_length must be at least 2 (BOS plus one token)")
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the tokenizer has no BOS token")
    body = context_length - 1
    buffer: list[int] = []
    produced = 0
    for ids in _documents_tokens(documents, tokenizer, chunk_documents, max_document_tokens):
        buffer.extend(ids)
        while len(buffer) >= body and produced < n_sequences:
            yield torch.tensor([bos, *buffer[:body]], dtype=torch.long)
            buffer = buffer[body:]
            produced += 1
        if produced >= n_sequences:
            return
    raise ValueError(f"the corpus split holds only {produced} sequences of {context_length} tokens; {n_sequences} were asked for")


def stream_documents(documents: Iterable[str], tokenizer: Any, n_tokens: int, chunk_documents: int = 256, max_document_tokens: int | None = None) -> np.ndarray:
    """The document (its place in `documents`, from 0) of each of the packed stream's first `n_tokens` tokens:
    the tokens of `token_sequences`' sequences (with the same `max_document_tokens`) without their BOS, in order."""
    lengths: list[int] = []
    for ids in _documents_tokens(documents, tokenizer, chunk_documents, max_document_tokens):
        lengths.append(len(ids))
        if sum(lengths) >= n_tokens:
            return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)[:n_tokens]
    raise ValueError(f"the corpus split holds only {sum(lengths)} tokens; {n_tokens} were asked for")


def sequence_documents(stream: np.ndarray, context_length: int, n_sequences: int) -> np.ndarray:
    """(n_sequences, context_length): the document of each position of `token_sequences`' sequences, read off
    `stream_documents`; the BOS position reads the document of the token after it."""
    body = context_length - 1
    if len(stream) < n_sequences * body:
        raise ValueError(f"the stream's documents cover {len(stream)} tokens; {n_sequences} sequences need {n_sequences * body}")
    bodies = stream[: n_sequences * body].reshape(n_sequences, body)
    return np.concatenate([bodies[:, :1], bodies], axis=1)
