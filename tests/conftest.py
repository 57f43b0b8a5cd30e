from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

from taulib.timing import CACHE_ENV

REPO = Path(__file__).resolve().parents[1]

# The machine-speed cache of the wall-time estimate: timings taken while the suite loads both cores
# must never become the ones a later `make study` estimates from, so the tests keep their own.
os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="taulib-test-speed-")

# The SAE Bench cross-check runs in its own environment (`make saebench-check`, also run by CI):
# sae-bench pins numpy < 2, which the project environment does not share. It is not collected here.
collect_ignore = [] if importlib.util.find_spec("sae_bench") else ["test_sae_bench_crosscheck.py"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
