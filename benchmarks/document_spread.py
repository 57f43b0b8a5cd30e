"""How many corpus documents the held-out samples span, against a cap on each document's tokens.

    .venv/bin/python benchmarks/document_spread.py [--caps 0 256 512 1024] [--write]

The held-out text behind explained variance (the first `evaluation.core.tokens` held-out tokens) and the CE-loss score
(`evaluation.downstream.final_sequences` sequences) is the start of the packed held-out stream (taulib.corpus.stream):
a few long documents can fill it. Their intervals resample documents, so the number of documents is the sample size
that matters. Per cap (`activations.max_document_tokens`; 0: none), the documents spanned by the EV sample, the CE
sequences, the whole held-out cache and the training cache, and the largest document's share of the EV sample,
from the built corpus and the default study's tokenizer; nothing is extracted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from taulib.activations.models import load_tokenizer
from taulib.config import load_run_config
from taulib.corpus.build import iter_documents
from taulib.corpus.stream import stream_documents

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, provenance, write_section  # noqa: E402

ARM = Path(__file__).resolve().parents[1] / "parameters" / "baseline_plain_l1.yaml"


def spread(documents: np.ndarray) -> tuple[int, float]:
    """(documents spanned, the largest one's share of the tokens)."""
    counts = np.bincount(documents)
    counts = counts[counts > 0]
    return len(counts), float(counts.max() / counts.sum())


def main(argv: list[str] | None = None) -> dict[str, list[list[object]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", nargs="+", type=int, default=[0, 256, 512, 1024])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    config = load_run_config(ARM)
    tokenizer = load_tokenizer(config.model)
    acts, body = config.activations, config.activations.context_length - 1
    ev_tokens, ce_tokens = config.evaluation.core.tokens, config.evaluation.downstream.final_sequences * body
    heldout_documents, train_documents = list(iter_documents("heldout", seed=0)), list(iter_documents("train", seed=0))
    rows = []
    for cap in args.caps:
        limit = cap or None
        heldout = stream_documents(heldout_documents, tokenizer, acts.heldout_tokens, max_document_tokens=limit)
        train = stream_documents(train_documents, tokenizer, acts.n_tokens, max_document_tokens=limit)
        ev, largest = spread(heldout[:ev_tokens])
        rows.append([cap or "none", ev, f"{largest:.0%}", spread(heldout[:ce_tokens])[0], spread(heldout)[0], spread(train)[0]])
    table = markdown_table(
        [
            "tokens per document at most",
            f"documents in the EV sample ({ev_tokens:,} tokens)",
            "largest document's share of it",
            f"documents in the CE sequences ({ce_tokens:,} tokens)",
            f"documents in the held-out cache ({acts.heldout_tokens:,})",
            f"documents in the training cache ({acts.n_tokens:,})",
        ],
        rows,
    )
    command = " ".join(["benchmarks/document_spread.py", *(argv if argv is not None else sys.argv[1:])])
    body_text = f"{provenance(command, ('torch', 'transformers'))}\n\n{table}\nThe default study caps at {acts.max_document_tokens or 'none'} (`activations.max_document_tokens`, parameters/_study.yaml).\n"
    print(body_text)
    if args.write:
        write_section(
            "document_spread",
            "How many documents the held-out samples span, against a cap on each document's tokens (`benchmarks/document_spread.py`)",
            body_text,
        )
    return {"rows": rows}


if __name__ == "__main__":
    main()
