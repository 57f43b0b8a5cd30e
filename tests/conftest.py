from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The SAE Bench cross-check runs in its own environment (`make saebench-check`, also run by CI):
# sae-bench pins numpy < 2, which the project environment does not share. It is not collected here.
collect_ignore = [] if importlib.util.find_spec("sae_bench") else ["test_sae_bench_crosscheck.py"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
