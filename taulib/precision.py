"""Which matmul precision a device runs fast: what `auto` means for `model.autocast` and `training.compute_dtype`.

bfloat16 matmuls are a 4-7x lever on CPUs with AVX512-BF16 or AMX and on CUDA GPUs, but a CPU
without them has no bfloat16 matmul kernel worth the name: torch falls back to a reference loop
orders of magnitude slower than its float32 GEMM (benchmarks/RESULTS.md, "Figures recorded by hand").
`auto` therefore resolves to bfloat16 where the hardware has it and to float32 elsewhere. The
resolved value is what a run records, fingerprints and keys its caches by, so the same parameter
file gives each machine its fast path and never mixes the two within one run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import torch

AUTO = "auto"
# CPU flags (Linux /proc/cpuinfo names) whose presence gives oneDNN a native bfloat16 matmul
FAST_BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def fast_bfloat16(device: str) -> bool:
    """Whether bfloat16 matmuls on this torch device are faster than float32 ones (as far as can be known without timing)."""
    kind = torch.device(device).type
    if kind == "cpu":
        return bool(cpu_flags() & FAST_BFLOAT16_CPU_FLAGS)
    if kind == "cuda":
        # a configuration may be resolved on a machine without the GPU (a sweep planned on a login
        # node); every CUDA GPU since Ampere has bfloat16 tensor cores
        return torch.cuda.is_bf16_supported() if torch.cuda.is_available() else True
    return False  # mps and others: float32, the safe choice


def resolve_autocast(value: str | None, device: str) -> Literal["bfloat16", "float16"] | None:
    """`model.autocast`: `auto` → bfloat16 where it is fast on `device`, else no autocast."""
    if value != AUTO:
        return value  # type: ignore[return-value]
    return "bfloat16" if fast_bfloat16(device) else None


def resolve_compute_dtype(value: str, device: str) -> Literal["float32", "bfloat16"]:
    """`training.compute_dtype`: `auto` → bfloat16 where it is fast on `device`, else float32."""
    if value != AUTO:
        return value  # type: ignore[return-value]
    return "bfloat16" if fast_bfloat16(device) else "float32"
