"""The per-machine speed cache (taulib.timing.SpeedCache): measured once, shared by the processes of a
study without a lost entry, and measured again when asked to recalibrate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from taulib.timing import SpeedCache

# a process that misses `name`: its measurement takes a second and returns its own pid, logged where it ran
MEASURER = """
import os, sys, time
from pathlib import Path
from taulib.timing import SpeedCache
cache_file, name, log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

def measure():
    time.sleep(1.0)
    with log.open("a") as handle:
        handle.write(f"{os.getpid()}\\n")
    return float(os.getpid())

print(SpeedCache(cache_file, key="this machine").get(name, measure))
"""


def _start(cache_file, name, log):
    return subprocess.Popen([sys.executable, "-c", MEASURER, str(cache_file), name, str(log)], stdout=subprocess.PIPE, text=True)


def test_processes_missing_the_same_value_measure_it_once_and_all_use_it(tmp_path):
    cache_file, log = tmp_path / "machine_speed.json", tmp_path / "measured.log"
    first, second = _start(cache_file, "crossover", log), _start(cache_file, "crossover", log)
    values = {float(process.communicate(timeout=120)[0]) for process in (first, second)}
    assert len(values) == 1  # both runs use the one measurement
    assert len(log.read_text().split()) == 1
    assert json.loads(cache_file.read_text())["this machine"]["crossover"] == values.pop()


def test_processes_measuring_different_values_keep_each_others_entries(tmp_path):
    cache_file, log = tmp_path / "machine_speed.json", tmp_path / "measured.log"
    processes = [_start(cache_file, name, log) for name in ("a", "b", "c")]
    for process in processes:
        process.communicate(timeout=120)
    assert set(json.loads(cache_file.read_text())["this machine"]) == {"a", "b", "c"}


def test_recalibrating_measures_again_and_drops_the_stale_values(tmp_path):
    cache_file = tmp_path / "machine_speed.json"
    cache = SpeedCache(cache_file, key="k")
    assert cache.get("a", lambda: 1.0) == 1.0 and cache.get("b", lambda: 2.0) == 2.0
    assert SpeedCache(cache_file, key="k").get("a", lambda: 99.0) == 1.0  # cached: not measured
    again = SpeedCache(cache_file, key="k", recalibrate=True)
    assert again.get("a", lambda: 3.0) == 3.0 and again.measured == ["a"]
    assert json.loads(cache_file.read_text())["k"] == {"a": 3.0}  # b's stale value is gone, to be measured when needed


def test_a_measurement_may_read_other_cached_values_without_waiting_for_itself(tmp_path):
    """A timing that needs another cached timing (the training step's needs the sparse switch's crossover) nests a miss
    inside a miss: the lock is re-entrant in one process, and both values are saved."""
    cache_file = tmp_path / "machine_speed.json"
    inner = SpeedCache(cache_file, key="k")
    outer = SpeedCache(cache_file, key="k")
    assert outer.get("step", lambda: inner.get("crossover", lambda: 0.02) + 1.0) == 1.02
    assert json.loads(cache_file.read_text())["k"] == {"crossover": 0.02, "step": 1.02}


def test_a_busy_spell_while_timing_does_not_price_the_machine_as_busy():
    """The first round runs while the machine is 'busy' (each call 5× slower): the timing is the quiet rounds' median."""
    import time

    from taulib.timing import timed

    calls = []

    def operation():
        calls.append(None)
        time.sleep(0.05 if len(calls) <= 4 else 0.01)  # the warm-up and the first round's calls are slow

    seconds = timed(operation, min_seconds=0.1)
    assert 0.01 <= seconds < 0.03  # the quiet speed, not the busy one (sleep overshoots, never undershoots)
    assert len(calls) > 4 + 10  # a second round, and a third because the first two disagreed


def test_a_busy_mark_cleared_by_one_process_is_not_written_back_by_another(tmp_path):
    """Two processes share the cache: one times a busy-marked value again on a quiet machine; the other, which read the
    mark before, saves another value afterwards and must not restore the mark (the value would be timed yet again)."""
    cache_file = tmp_path / "machine_speed.json"
    first = SpeedCache(cache_file, key="k")
    assert first.get("step", lambda: 1.0, busy=1.5) == 1.0
    second = SpeedCache(cache_file, key="k")
    assert second.busy_marks == {"step": 1.5}
    assert first.get("step", lambda: 0.5, busy=0.1, retime=True) == 0.5  # quiet now: timed again, unmarked
    assert second.get("load", lambda: 2.0) == 2.0  # the other process saves something else afterwards
    stored = json.loads(cache_file.read_text())
    assert stored == {"k": {"step": 0.5, "load": 2.0}}
    assert second.get("step", lambda: pytest.fail("timed again"), retime=True) == 0.5
