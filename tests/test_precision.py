"""`auto` precision: bfloat16 where the hardware has fast bfloat16 matmuls, float32 elsewhere, resolved where a configuration is loaded."""

from __future__ import annotations

import pytest
import torch

from taulib import precision
from taulib.config import load_run_config

AUTO_BOTH = {"model": {"autocast": "auto"}, "training": {"compute_dtype": "auto"}}


@pytest.fixture
def cpu_with(monkeypatch):
    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))

    return set_flags


@pytest.mark.parametrize(
    ("flags", "autocast", "compute_dtype"),
    [
        (("avx2", "fma"), None, "float32"),  # an AVX2-only CPU: torch's bfloat16 matmul is a slow reference loop
        (("avx512f",), None, "float32"),  # AVX-512 without its bfloat16 extension
        (("avx512f", "avx512_bf16"), "bfloat16", "bfloat16"),
        (("amx_tile", "amx_bf16"), "bfloat16", "bfloat16"),
    ],
)
def test_auto_follows_the_cpu_flags(cpu_with, repo_root, flags, autocast, compute_dtype):
    cpu_with(*flags)
    config = load_run_config(repo_root / "parameters" / "cosine_0.3_to_0.05_tightened.yaml", AUTO_BOTH)
    assert (config.model.autocast, config.training.compute_dtype) == (autocast, compute_dtype)


def test_a_resolved_configuration_is_the_explicit_one(cpu_with, repo_root):
    """A run records, fingerprints and keys its caches by the concrete dtype, never by 'auto'."""
    path = repo_root / "parameters" / "cosine_0.3_to_0.05_tightened.yaml"
    cpu_with("avx2")
    automatic = load_run_config(path, AUTO_BOTH)
    explicit = load_run_config(path, {"model": {"autocast": None}, "training": {"compute_dtype": "float32"}})
    assert automatic.to_dict() == explicit.to_dict() and automatic.fingerprint() == explicit.fingerprint()
    cpu_with("amx_bf16")
    assert load_run_config(path, AUTO_BOTH).fingerprint() != explicit.fingerprint()


def test_explicit_choices_are_kept_whatever_the_hardware(cpu_with, repo_root):
    cpu_with("avx2")
    config = load_run_config(
        repo_root / "parameters" / "cosine_0.3_to_0.05_tightened.yaml", {"model": {"autocast": "bfloat16"}, "training": {"compute_dtype": "bfloat16"}}
    )
    assert (config.model.autocast, config.training.compute_dtype) == ("bfloat16", "bfloat16")


def test_each_part_resolves_for_its_own_device(cpu_with, repo_root):
    cpu_with("avx2")
    config = load_run_config(
        repo_root / "parameters" / "cosine_0.3_to_0.05_tightened.yaml", AUTO_BOTH | {"training": {"compute_dtype": "auto", "device": "cuda"}}
    )
    expected = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else True
    assert config.model.autocast is None and (config.training.compute_dtype == "bfloat16") == expected


def test_devices_without_a_known_fast_path_get_float32():
    assert precision.resolve_compute_dtype("auto", "mps") == "float32"
    assert precision.resolve_autocast("auto", "mps") is None
    assert precision.resolve_autocast("float16", "mps") == "float16"


def test_the_cpu_flags_are_read_from_this_machine():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        assert flags == frozenset()
        return
    first = next(line for line in text.splitlines() if line.startswith("flags"))
    assert flags == frozenset(first.partition(":")[2].split())


def test_a_section_made_on_its_own_is_resolved_too(cpu_with):
    """ModelConfig and TrainingConfig resolve 'auto' themselves, so code handed a bare section never sees it."""
    from taulib.config import ModelConfig, TrainingConfig

    cpu_with("avx2")
    assert ModelConfig(autocast="auto").autocast is None and TrainingConfig(compute_dtype="auto").compute_dtype == "float32"
    cpu_with("amx_bf16")
    assert ModelConfig(autocast="auto").autocast == "bfloat16" and TrainingConfig(compute_dtype="auto").compute_dtype == "bfloat16"
