"""Atomic writes: every artefact is written to a temporary name in the same folder and renamed.

A crash or kill therefore leaves either the old file or the complete new one, never a torn file
that a notebook or a resumed run would read.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success, fsync it and rename it over `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_bytes_if_changed(target: str | os.PathLike[str], data: bytes) -> None:
    """`write_bytes`, leaving the file untouched when it already holds `data` (a re-run changes nothing it need not)."""
    path = Path(target)
    if not (path.is_file() and path.read_bytes() == data):
        write_bytes(path, data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete temporaries that a killed writer left in `folder` (recursively); return how many.

    Call only where one process owns the folder (a run folder, a cache being extracted).
    """
    stale = [path for path in Path(folder).rglob(".*.tmp") if path.is_file()]
    for path in stale:
        path.unlink()
    return len(stale)
