"""What the benchmark scripts share: the machine record, timing, FLOP counts and RESULTS.md sections.

Each script owns one section of benchmarks/RESULTS.md, between `<!-- BEGIN name -->` and
`<!-- END name -->`; running the script again rewrites that section in place and leaves the rest
of the file alone.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import torch

from taulib.train.kernels import ONEDNN_LINEAR, onednn_matmul

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REPOSITORY = Path(__file__).resolve().parents[1]
CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def sae_step_flops(d_in: int, d_sae: int) -> int:
    """FLOPs per token of one SAE training step, by the convention all tables here use: 12·d_in·d_sae.

    That is the six (token × d_in × d_sae) matmuls an autograd implementation runs, 2·d_in·d_sae
    each: encoder and decoder forward, and two per layer backward (weight and input gradients).
    Elementwise work and the optimiser are not counted. taulib's hand-written step runs five of
    the six matmuls, so its figure is model FLOPs per second, not what the hardware executed.
    """
    return 12 * d_in * d_sae


def lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in text.splitlines()) if value}


def machine_line() -> str:
    """The machine in one line: CPU model, cores, the relevant instruction-set flags, memory."""
    info = lscpu()
    flags = set(info.get("Flags", "").split())
    present = [flag for flag in CPU_FLAGS if flag in flags]
    absent = [flag for flag in CPU_FLAGS if flag not in flags]
    memory = ""
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return (
        f"{info.get('Model name', platform.processor() or 'unknown CPU')}, {os.cpu_count()} CPUs{memory}; "
        f"flags {' '.join(present) or 'none'} (absent: {' '.join(absent) or 'none'}); torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )


def versions(packages: Sequence[str] = ("torch", "transformers", "nnsight")) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def commit() -> str:
    """The repository's commit, marked where the working tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPOSITORY, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"{head} with uncommitted changes" if changed.strip() else head


def provenance(command: str, packages: Sequence[str] = ("torch", "transformers", "nnsight")) -> str:
    """The lines every generated section starts with: how it was made, where, with what, when, at which commit."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"`{command}` — {today}, commit {commit()}; torch threads: {torch.get_num_threads()}.\nMachine: {machine_line()}.\nVersions: {versions(packages)}.\n"


def best_of(function: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls, in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_section(name: str, title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section `name` of RESULTS.md with a `## title` heading and `body`."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n## {title}\n\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def time_bfloat16(quick: bool = False) -> bool:
    """Whether a benchmark times bfloat16 here: where the CPU has fast bfloat16 matmuls (taulib.precision);
    elsewhere a full run would take hours. `quick` runs with tiny shapes time it everywhere."""
    from taulib.precision import fast_bfloat16

    return quick or fast_bfloat16("cpu")


SKIPPED_BFLOAT16 = (
    "bfloat16 not timed: this CPU has no fast bfloat16 matmuls (no AVX512-BF16 or AMX; torch's bfloat16 matmul is a "
    "reference loop about 200× slower than float32 there), so the study computes in float32 on it (taulib.precision)"
)


def matmul_ceiling(repeats: int = 5, size: int = 2048, dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> dict[str, float]:
    """Achieved GFLOP/s of plain matmuls on this machine now: the ceilings the trainers are held to.

    float32 through numpy (its BLAS) and torch, square and SAE-shaped (1024 × 640 @ 640 × 4096; that
    one also on oneDNN, torch's other float32 GEMM), and bfloat16 through torch (oneDNN: AVX512-BF16
    or AMX where the CPU has them), for the torch `dtypes` asked for.
    """
    import numpy as np

    results: dict[str, float] = {}
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a
    results[f"numpy float32 {size}³"] = 2 * size**3 / best_of(lambda: a @ a, repeats) / 1e9
    for name in dtypes:
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]
        square = torch.randn(size, size).to(dtype)
        torch.mm(square, square)
        results[f"torch {name} {size}³"] = 2 * size**3 / best_of(lambda square=square: torch.mm(square, square), repeats) / 1e9
        x, w = torch.randn(1024, 640).to(dtype), torch.randn(640, 4096).to(dtype)
        torch.mm(x, w)
        results[f"torch {name} 1024×640 @ 640×4096"] = 2 * 1024 * 640 * 4096 / best_of(lambda x=x, w=w: torch.mm(x, w), repeats * 4) / 1e9
        if name == "float32" and ONEDNN_LINEAR is not None:  # the other float32 GEMM in torch (taulib.train.kernels)
            onednn_matmul(x, w)
            results["torch float32 1024×640 @ 640×4096, oneDNN"] = 2 * 1024 * 640 * 4096 / best_of(lambda x=x, w=w: onednn_matmul(x, w), repeats * 4) / 1e9
    return results


def fp32_ceiling(ceilings: dict[str, float]) -> float:
    return max(value for key, value in ceilings.items() if "float32" in key)
