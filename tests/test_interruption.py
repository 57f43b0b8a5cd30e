"""A training process killed at a random moment resumes to the same weights and metrics."""

import json
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from references import sparse_directions_dataset

from taulib.activations import cache
from taulib.activations.cache import activation_spec, cache_folder
from taulib.config import load_run_config

PARAMS = """run_name: killable
sae: {width: 64}
schedule: {kind: cosine, tau_initial: 0.3, tau_final: 0.05}
training: {n_tokens: 600_000, batch_size: 256, lr: 1.0e-3, resume_every_steps: 40, log_every_steps: 5, compute_dtype: float32, threads: 1}
"""


def _synthetic_cache(outputs, config):
    spec = activation_spec(config, "train", 9)  # the embedded model's middle block, as the config resolves it
    folder = cache_folder(outputs, spec)
    folder.mkdir(parents=True)
    data = sparse_directions_dataset(n=spec.n_tokens if spec.n_tokens < 20_000 else 20_000, d=16, n_features=32, mean_active=2.0)
    shards = [cache.write_shard(folder, 0, data.activations.to(torch.float16), torch.zeros(data.activations.shape[0], dtype=torch.int32))]
    cache.write_manifest(folder, spec, shards, 16, {})


def _train(params, outputs):
    return subprocess.Popen([sys.executable, "-m", "taulib", "train", str(params), "--outputs", str(outputs), "--quiet", "--set", "activations.n_tokens=20000"])


def test_killed_training_resumes_bit_identically(tmp_path):
    params = tmp_path / "killable.yaml"
    params.write_text(PARAMS)
    config = load_run_config(params, {"activations": {"n_tokens": 20000}})
    for name in ("straight", "killed"):
        _synthetic_cache(tmp_path / name, config)

    assert _train(params, tmp_path / "straight").wait(timeout=600) == 0

    run = tmp_path / "killed" / "killable"
    process = _train(params, tmp_path / "killed")
    deadline = time.time() + 300
    while not (run / "trainer_state.safetensors").exists():  # past the first saved state
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    delay = random.uniform(0.0, 2.0)
    time.sleep(delay)
    if process.poll() is not None:
        pytest.fail(f"training finished within {delay:.2f} s of its first state; make the run longer")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "summary.json").exists(), "killed before the end"

    assert _train(params, tmp_path / "killed").wait(timeout=600) == 0
    straight = tmp_path / "straight" / "killable"
    assert (straight / "final" / "sae.safetensors").read_bytes() == (run / "final" / "sae.safetensors").read_bytes(), f"killed after {delay:.2f} s"
    assert (straight / "metrics.csv").read_bytes() == (run / "metrics.csv").read_bytes()
    assert (straight / "checkpoints" / "index.json").read_bytes() == (run / "checkpoints" / "index.json").read_bytes()
    assert not list(run.rglob("*.tmp")), "temporaries a kill left behind are cleared by the resumed run"


@pytest.mark.model
def test_killed_extraction_is_never_read_as_complete_and_resumes(tmp_path):
    """Kill `taulib extract` on the real model after its first shard; the cache reads as incomplete,
    and extracting again finishes it with shards identical to an uninterrupted extraction."""
    params = tmp_path / "parameters"
    params.mkdir()
    (params / "arm.yaml").write_text(
        "activations: {n_tokens: 5080, heldout_tokens: 254, context_length: 128, batch_size: 4, shard_tokens: 1016, storage_dtype: float32}\n"
        "model: {autocast: null}\n"
        "evaluation: {families: [core, orthogonality], core: {tokens: 254}}\n"  # no model-side evaluation inputs: this test is about the cache
    )
    config = load_run_config(params / "arm.yaml")
    spec = activation_spec(config, "train", 9)
    extract = [sys.executable, "-m", "taulib", "extract", "--parameters", str(params), "--outputs"]

    killed = tmp_path / "killed"
    folder = cache_folder(killed, spec)
    process = subprocess.Popen([*extract, str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (folder / "progress.json").exists():
        assert process.poll() is None and time.time() < deadline, "extraction ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / "manifest.json").exists()
    with pytest.raises(cache.CacheError, match="interrupted"):
        cache.load_cache(folder, spec)
    done_before_kill = len(cache.read_progress(folder, spec))
    assert 1 <= done_before_kill < 5

    assert subprocess.run([*extract, str(killed)], capture_output=True).returncode == 0
    straight = tmp_path / "straight"
    assert subprocess.run([*extract, str(straight)], capture_output=True).returncode == 0
    resumed, reference = cache.load_cache(folder, spec), cache.load_cache(cache_folder(straight, spec), spec)
    assert torch.equal(resumed.activations, reference.activations) and torch.equal(resumed.token_ids, reference.token_ids)
    assert [s["sha256"] for s in resumed.manifest["shards"]] == [s["sha256"] for s in reference.manifest["shards"]]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.model
@pytest.mark.notebook
def test_ctrl_c_on_the_study_stops_cleanly_and_the_same_command_resumes(repo_root, tmp_path):
    """SIGINT once the first run is training: exit status 130, the stage and the command to resume on
    stderr, no torn file; the same command then finishes the study without extracting again."""
    from tiny_study import TINY

    params = tmp_path / "parameters"
    params.mkdir()
    for name in ("_study", "baseline_plain_l1", "cosine_0.3_to_0.05_tightened"):
        shutil.copy(repo_root / "parameters" / f"{name}.yaml", params)
    outputs = tmp_path / "outputs"
    command = [sys.executable, "-m", "taulib", "study", "--parameters", str(params), "--outputs", str(outputs), *TINY]
    # the output goes to files: a pipe nobody reads while the study runs could fill and stall it
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        # a shell without job control starts background commands with SIGINT ignored, and the child would
        # inherit that: the study gets the default action, as from a terminal, however the tests were started
        process = subprocess.Popen(command, cwd=repo_root, stdout=stdout, stderr=stderr, preexec_fn=_default_sigint)
    started_training = outputs / "baseline_plain_l1" / "config.json"  # the trainer's first file
    deadline = time.time() + 900
    while not started_training.exists():
        assert process.poll() is None and time.time() < deadline, "the study ended before training began"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=300)
    stderr = (tmp_path / "stderr").read_text()
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted during training and evaluation of run baseline_plain_l1" in stderr
    assert shlex.join(["python", "-m", "taulib", *command[3:]]) in stderr  # the exact command to resume
    assert not (outputs / "baseline_plain_l1" / "summary.json").exists(), "interrupted before the run finished"
    torn = [path for path in outputs.rglob("*") if path.name.endswith((".tmp", ".partial.ipynb"))]
    assert torn == [], "no temporary or partial file after a Ctrl-C"
    summary = json.loads((outputs / "study_summary.json").read_text())
    assert summary["interrupted"] == "training and evaluation of run baseline_plain_l1"
    reused = {path: path.stat().st_mtime_ns for path in (outputs / "activations").rglob("*") if path.is_file() and path.suffix != ".ipynb"}
    assert any(path.name == "manifest.json" for path in reused) and any(path.name == "probing_manifest.json" for path in reused)

    resumed = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in reused} == reused, "the caches and evaluation inputs are reused, not made again"
    summary = json.loads((outputs / "study_summary.json").read_text())
    assert summary["interrupted"] is None and [run["status"] for run in summary["runs"]] == ["ok", "ok"]
    assert (outputs / "baseline_plain_l1" / "evaluation" / "metrics.csv").is_file()
