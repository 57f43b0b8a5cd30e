"""Timing this machine: short timings of a piece of code, and the per-machine cache they are kept in.

A leaf module (nothing of taulib above it): the trainer's sparse switch (taulib.train.sparse_switch) and the
study's wall-time estimate (taulib.study.machine_speed, taulib.study.cost) both time code and keep what they
measured here. The cache is one JSON file (TAULIB_CACHE_DIR, else ~/.cache/taulib), under a key of the CPU
model, torch version and thread count, written atomically and settled under a file lock, so that processes
sharing it measure a value once. A value timed while other processes kept the machine busy is marked so: it prices
what is estimated meanwhile, and is timed again by the first estimate that finds the machine quiet (a busy spell's
timing kept unmarked would price every later study on this machine as if it stayed busy).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from taulib import atomic
from taulib.provenance import cpu_model

CACHE_ENV = "TAULIB_CACHE_DIR"
CACHE_FILE = "machine_speed.json"
MIN_SECONDS = 0.3  # each timing repeats its operation until at least this long (the first call warms up)
BUSY_CORES = 0.5  # other processes keeping half a core busy or more as a timing starts: the value is marked as timed busy
BUSY_MARKS = " | timed while busy"  # the cache's entry, beside a machine's key, of its values timed busy (name → cores)


def cache_path() -> Path:
    root = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else Path.home() / ".cache" / "taulib"
    return root / CACHE_FILE


def machine_key(threads: bool = True) -> str:
    """The cache's key for this machine: its CPU model and torch version, and the thread count unless `threads` is False."""
    key = f"{cpu_model()} | torch {torch.__version__}"
    return f"{key} | {torch.get_num_threads()} threads" if threads else key


def busy_cores(interval: float = 0.25) -> float:
    """Cores kept busy over `interval` seconds by the machine's processes while this one waits: other work that would
    slow a timing taken now."""
    import psutil

    return psutil.cpu_percent(interval=interval) / 100 * (psutil.cpu_count() or 1)


def once(operation: Callable[[], Any]) -> float:
    """Seconds of one call: for the operations that take a second or more (their warm-up is negligible)."""
    started = time.perf_counter()
    operation()
    return time.perf_counter() - started


ROUNDS_AGREE = 0.2  # two rounds of a timing agree when their medians are within 20% of each other


def _round(operation: Callable[[], Any], min_seconds: float, max_repeats: int) -> float:
    times: list[float] = []
    while len(times) < max_repeats and (not times or sum(times) < min_seconds):
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed(operation: Callable[[], Any], min_seconds: float = MIN_SECONDS, max_repeats: int = 20) -> float:
    """Seconds per call of `operation` after one warm-up call: within a round, the median of the repeats that fit in
    `min_seconds`; over rounds, the lower median of two, or of three when the first two disagree by more than
    ROUNDS_AGREE. The median within a round, not the best repeat: a study's stages run at the machine's typical speed,
    and the fastest repeat made every estimate optimistic (benchmarks/RESULTS.md, "The wall-time estimate"). The lower
    round: another process busy on the machine for a while slows a whole round, and a value timed then would price the
    whole study as if it stayed busy (the cache keeps it)."""
    operation()
    rounds = [_round(operation, min_seconds, max_repeats) for _ in range(2)]
    if max(rounds) > (1 + ROUNDS_AGREE) * min(rounds):
        rounds.append(_round(operation, min_seconds, max_repeats))
    return min(rounds)


class SpeedCache:
    """The measurements of this machine, by name; a missing one is measured once and saved."""

    def __init__(self, path: Path | None = None, recalibrate: bool = False, key: str | None = None) -> None:
        self.path = path or cache_path()
        self.key = key or machine_key()
        stored = atomic.read_json(self.path) if self.path.is_file() else {}
        self.all: dict[str, dict[str, float]] = stored if isinstance(stored, dict) else {}
        # recalibrating: this machine's stored values are stale, unless another process measures them again meanwhile
        self.stale: dict[str, float] = dict(self.all.pop(self.key, {})) if recalibrate else {}
        self.measured: list[str] = []  # names measured in this process (not read from the cache)

    def get(self, name: str, measure: Callable[[], float], busy: float | None = None, retime: bool = False) -> float:
        """The cached value, else measured and saved. A miss is settled under a file lock, so that processes sharing
        the cache (a study's workers) measure a value once and all use that one, and none loses another's entries. The
        lock is re-entrant within a process: a measurement may itself read other cached values.

        `busy`: the cores other processes kept busy as this timing starts (`busy_cores`); at BUSY_CORES or more the
        value is saved marked as timed busy. `retime`: measure a value marked so again (the caller found the machine
        quiet), saved unmarked unless `busy` says otherwise."""
        if name in self.all.get(self.key, {}) and not (retime and name in self.busy_marks):
            return self.all[self.key][name]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _cache_lock(self.path):
            self._merge_stored()
            values = self.all.setdefault(self.key, {})
            if name not in values or (retime and name in self.busy_marks):
                value = float(measure())
                self._merge_stored()  # what a nested measurement saved meanwhile
                values = self.all.setdefault(self.key, {})
                values[name] = value
                marks = self.all.setdefault(self.key + BUSY_MARKS, {})
                if busy is not None and busy >= BUSY_CORES:
                    marks[name] = busy
                else:
                    marks.pop(name, None)
                self.measured.append(name)
                stored = atomic.read_json(self.path) if self.path.is_file() else {}
                written = {**(stored if isinstance(stored, dict) else {}), self.key: values, self.key + BUSY_MARKS: marks}
                if not marks:
                    del written[self.key + BUSY_MARKS]
                atomic.write_json(self.path, written)
        return values[name]

    @property
    def busy_marks(self) -> dict[str, float]:
        """This machine's values timed while other processes kept it busy: name → the cores they kept busy."""
        return self.all.get(self.key + BUSY_MARKS, {})

    def _merge_stored(self) -> None:
        """What other processes (or nested measurements) saved: their values win, they are in use; stale ones do not.
        This machine's busy marks are the file's: a mark another process cleared (timing the value again) stays cleared."""
        stored = atomic.read_json(self.path) if self.path.is_file() else {}
        stored = stored if isinstance(stored, dict) else {}
        for key, found in stored.items():
            fresh = {n: v for n, v in found.items() if key != self.key or self.stale.get(n) != v}
            self.all.setdefault(key, {}).update(fresh)
        self.all[self.key + BUSY_MARKS] = dict(stored.get(self.key + BUSY_MARKS, {}))


_HELD_LOCKS: set[str] = set()  # the cache files whose lock this process holds


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock beside the cache file, shared by processes and re-entrant within one (flock on a second open
    of the same file in one process would wait for itself)."""
    key = str(path.resolve())
    if key in _HELD_LOCKS:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        _HELD_LOCKS.add(key)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(key)
