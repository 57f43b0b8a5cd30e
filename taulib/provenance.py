"""What produced a result: package versions, the git commit, the machine."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("taulib", "torch", "transformers", "nnsight", "gguf", "safetensors", "numpy", "pandas", "scikit-learn", "papermill", "plotly")


def git_commit(start: Path | None = None) -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=start or Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=start or Path(__file__).parent, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    """The CPU's model name (lscpu's "Model name"), which every measured figure is quoted with."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def cpu_kind() -> str:
    """The CPU's model with the bfloat16 features that set which precision runs fast (model names alone do not
    tell the AMD EPYC kinds apart): e.g. "AMD EPYC (avx512_bf16; no amx_bf16)"."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(next((line.partition(":")[2].split() for line in text.splitlines() if line.startswith("flags")), []))
    present = [flag for flag in ("avx2", "avx512_bf16", "amx_bf16") if flag in flags]
    absent = [flag for flag in ("avx512_bf16", "amx_bf16") if flag not in flags]
    return f"{cpu_model()} ({', '.join(present) or 'no avx2'}{'; no ' + ', '.join(absent) if absent else ''})"


def environment_record() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
