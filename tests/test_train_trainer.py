import json

import numpy as np
import pandas as pd
import pytest
import torch
from references import mean_max_cosine, sparse_directions_dataset

from taulib.config import RunConfig
from taulib.sae import load_sae
from taulib.train.trainer import METRIC_COLUMNS, AnnealedTrainer, RunMismatchError, checkpoint_steps, read_checkpoint_index, training_checkpoint_steps


def _config(**training):
    base = {"n_tokens": 60_000, "batch_size": 500, "lr": 1e-3, "log_every_steps": 5, "n_checkpoints": 8, "resume_every_steps": 7}
    return RunConfig.model_validate(
        {
            "run_name": "tiny",
            "sae": {"width": 24},
            "schedule": {"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.05},
            "training": {**base, **training},
        }
    )


def test_checkpoints_mix_log_and_even_spacing_and_include_ends():
    steps = checkpoint_steps(10_000, 20)
    assert steps[0] == 0 and steps[-1] == 10_000
    assert steps == sorted(set(steps)) and len(steps) <= 20
    gaps = [b - a for a, b in zip(steps[:-1], steps[1:], strict=True)]
    assert gaps[0] < gaps[-1] / 50  # far denser at the start than at the end
    assert sum(s <= 1000 for s in steps) >= 8  # the log half: dense in the first 10% of training
    # the even half: no gap after the first tenth is longer than 1/9 of the run (10 evenly spaced points)
    late = [b - a for a, b in zip(steps[:-1], steps[1:], strict=True) if a >= 1000]
    assert max(late) <= 10_000 / 9 + 1
    assert checkpoint_steps(489, 17)[:3] == [0, 1, 2]
    # exactly as many as asked, or every step of a run shorter than that
    assert all(len(checkpoint_steps(total, n)) == min(n, total + 1) for total in range(2, 300) for n in range(2, 40))


def test_checkpoints_skip_the_warmup_and_start_their_log_half_at_its_end():
    """The default study's shape: 489 steps, a 24-step warm-up, 17 checkpoints. Only initialisation lies
    inside the warm-up; the log-spaced half starts at its end, so 16 checkpoints span the part of
    training where a time to formation is read."""
    steps = checkpoint_steps(489, 17, 24)
    assert len(steps) == 17 and steps[:2] == [0, 24] and steps[-1] == 489
    assert not [s for s in steps if 0 < s < 24]
    after = np.array(steps[1:], dtype=float)
    assert steps[2] - steps[1] <= 489 / 40 and sum(s <= 0.2 * 489 for s in steps[1:]) >= 4  # dense just after the warm-up
    assert np.diff(after).max() <= (489 - 24) / 8 + 1  # the even half: no gap wider than 1/8 of the window
    assert all(
        len(checkpoint_steps(total, n, warmup)) == min(n, total + 1)
        for total in range(2, 200)
        for n in range(2, 30)
        for warmup in (1, total // 20, total // 4)
    )
    assert checkpoint_steps(489, 17, 0) == checkpoint_steps(489, 17)  # no warm-up: from the first step


def test_a_run_checkpointed_on_another_grid_is_refused_before_anything_is_written(tmp_path):
    data = sparse_directions_dataset(n=2_000, d=12, n_features=16, mean_active=2.0)
    AnnealedTrainer(_config(n_tokens=20_000), data.activations, tmp_path, show_progress=False).train()
    index = tmp_path / "checkpoints" / "index.json"
    saved = json.loads(index.read_text())
    saved[1]["step"] = 1  # inside the warm-up: where an earlier grid put checkpoints
    index.write_text(json.dumps(saved))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="checkpointed at steps .* move the run folder away"):
        AnnealedTrainer(_config(n_tokens=20_000), data.activations, tmp_path, show_progress=False).train()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_recovers_known_sparse_directions():
    data = sparse_directions_dataset(n=20_000, d=32, n_features=48, mean_active=2.0, seed=1)
    config = RunConfig.model_validate(
        {
            "run_name": "sparse_directions",
            "sae": {"width": 96},
            "schedule": {"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.05},
            "training": {"n_tokens": 400_000, "batch_size": 512, "lr": 3e-3, "l1_coefficient": 0.1, "log_every_steps": 50},
        }
    )
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        AnnealedTrainer(config, data.activations, folder, show_progress=False).train()
        sae, _ = load_sae(f"{folder}/final")
    score = mean_max_cosine(data.directions, sae.W_dec.detach())
    assert score >= 0.9, f"mean max cosine between true and learned directions is {score:.3f}"


def test_run_folder_contents_and_metrics(tmp_path):
    data = sparse_directions_dataset(n=5_000, d=12, n_features=16, mean_active=2.0)
    summary = AnnealedTrainer(_config(), data.activations, tmp_path, show_progress=False).train()
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert metrics["step"].is_monotonic_increasing and metrics["step"].iloc[-1] == 120
    assert metrics["tau"].iloc[0] == pytest.approx(0.3, rel=1e-3) and metrics["tau"].iloc[-1] == pytest.approx(0.05)
    assert np.allclose(metrics["l1_coefficient_effective"], 0.04 / metrics["tau"])
    assert metrics["tokens"].iloc[-1] == 120 * 500
    index = read_checkpoint_index(tmp_path)
    assert [e["step"] for e in index] == training_checkpoint_steps(_config().training) == checkpoint_steps(120, 8, 6)
    assert [e["step"] for e in index][:2] == [0, 6]  # initialisation, then the 5% warm-up's end
    for entry in index:
        _, meta = load_sae(tmp_path / "checkpoints" / f"step_{entry['step']:07d}")
        assert meta.extra["step"] == entry["step"]
    assert summary["complete"] and summary["steps"] == 120
    assert (tmp_path / "final" / "sae.safetensors").is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_interrupted_run_resumes_bit_identically(tmp_path):
    data = sparse_directions_dataset(n=5_000, d=12, n_features=16, mean_active=2.0)
    AnnealedTrainer(_config(), data.activations, tmp_path / "straight", show_progress=False).train()
    partial = AnnealedTrainer(_config(), data.activations, tmp_path / "resumed", show_progress=False).train(until_step=53)
    assert partial == {"run_name": "tiny", "steps": 53, "complete": False}
    AnnealedTrainer(_config(), data.activations, tmp_path / "resumed", show_progress=False).train()
    straight, _ = load_sae(tmp_path / "straight" / "final")
    resumed, _ = load_sae(tmp_path / "resumed" / "final")
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert (tmp_path / "straight" / "metrics.csv").read_bytes() == (tmp_path / "resumed" / "metrics.csv").read_bytes()


def test_same_seed_same_result_and_other_seed_differs(tmp_path):
    data = sparse_directions_dataset(n=3_000, d=12, n_features=16, mean_active=2.0)
    short = {"n_tokens": 10_000}
    for name in ("a", "b"):
        AnnealedTrainer(_config(**short), data.activations, tmp_path / name, show_progress=False).train()
    other = _config(**short).model_copy(update={"seed": 1})
    AnnealedTrainer(other, data.activations, tmp_path / "c", show_progress=False).train()
    a, b, c = (load_sae(tmp_path / n / "final")[0].W_dec for n in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()


def test_run_folder_of_another_configuration_is_refused(tmp_path):
    data = sparse_directions_dataset(n=2_000, d=12, n_features=16, mean_active=2.0)
    AnnealedTrainer(_config(n_tokens=5_000), data.activations, tmp_path, show_progress=False).train()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(RunMismatchError, match="differs in: training"):
        AnnealedTrainer(_config(n_tokens=6_000), data.activations, tmp_path, show_progress=False).train()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_finished_run_is_not_retrained(tmp_path):
    data = sparse_directions_dataset(n=2_000, d=12, n_features=16, mean_active=2.0)
    first = AnnealedTrainer(_config(n_tokens=5_000), data.activations, tmp_path, show_progress=False).train()
    stamp = (tmp_path / "final" / "sae.safetensors").stat().st_mtime_ns
    again = AnnealedTrainer(_config(n_tokens=5_000), data.activations, tmp_path, show_progress=False).train()
    assert again == first and (tmp_path / "final" / "sae.safetensors").stat().st_mtime_ns == stamp


def test_bfloat16_autocast_trains_close_to_float32(tmp_path):
    data = sparse_directions_dataset(n=5_000, d=12, n_features=16, mean_active=2.0)
    ev = {}
    for dtype in ("float32", "bfloat16"):
        summary = AnnealedTrainer(_config(compute_dtype=dtype), data.activations, tmp_path / dtype, show_progress=False).train()
        ev[dtype] = summary["final"]["explained_variance"]
    assert abs(ev["float32"] - ev["bfloat16"]) < 0.02


def test_activation_storage_changes_where_batches_come_from_not_the_result(tmp_path):
    """'host', 'device' (here the CPU) and 'mmap' storage give bit-identical runs, and share a fingerprint."""
    from taulib.activations import cache

    data = sparse_directions_dataset(n=3_000, d=12, n_features=16, mean_active=2.0)
    spec = cache.ActivationSpec("m", "float32", 0, 8, "default", "train", 3_000, "float32", 1_000)
    folder = tmp_path / "cache"
    folder.mkdir()
    records = [cache.write_shard(folder, i, data.activations[i * 1_000 : (i + 1) * 1_000], torch.zeros(1_000, dtype=torch.int32)) for i in range(3)]
    cache.write_manifest(folder, spec, records, 12, {})
    short = {"n_tokens": 10_000}
    for storage in ("host", "device", "mmap"):
        config = _config(**short, activation_storage=storage, device="cpu")
        activations = cache.load_cache(folder, spec, mmap=storage == "mmap").activations
        AnnealedTrainer(config, activations, tmp_path / storage, show_progress=False).train()
    assert len({_config(**short, activation_storage=s).fingerprint() for s in ("host", "device", "mmap")}) == 1
    reference = load_sae(tmp_path / "host" / "final")[0].state_dict()
    for storage in ("device", "mmap"):
        for name, tensor in load_sae(tmp_path / storage / "final")[0].state_dict().items():
            assert torch.equal(tensor, reference[name]), (storage, name)
        assert (tmp_path / storage / "metrics.csv").read_bytes() == (tmp_path / "host" / "metrics.csv").read_bytes()


def test_sparse_step_changes_the_kernels_not_the_result(tmp_path):
    """A run always on the sparse latent side and one always dense share a fingerprint and train the same SAE
    (float32: the same arithmetic up to summation order, over 120 steps)."""
    data = sparse_directions_dataset(n=5_000, d=12, n_features=16, mean_active=2.0)
    summaries = {}
    for label, density in (("dense", 0.0), ("sparse", 1.0)):
        config = _config(sparse_step_max_density=density)
        summaries[label] = AnnealedTrainer(config, data.activations, tmp_path / label, show_progress=False).train()
    assert _config(sparse_step_max_density=0.0).fingerprint() == _config(sparse_step_max_density=1.0).fingerprint() == _config().fingerprint()
    dense, sparse = (load_sae(tmp_path / label / "final")[0] for label in ("dense", "sparse"))
    assert torch.allclose(dense.W_dec, sparse.W_dec, atol=1e-3) and torch.allclose(dense.b_enc, sparse.b_enc, atol=1e-3)
    assert summaries["sparse"]["final"]["explained_variance"] == pytest.approx(summaries["dense"]["final"]["explained_variance"], abs=1e-4)
    dense_metrics, sparse_metrics = (pd.read_csv(tmp_path / label / "metrics.csv") for label in ("dense", "sparse"))
    assert np.allclose(dense_metrics["l0"], sparse_metrics["l0"], atol=0.05)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_constant_tau_at_lambda_times_tau_trains_the_plain_l1_run_bit_for_bit(tmp_path, compute_dtype):
    """Why a sweep gives a constant-τ arm one identity run instead of a calibration of its own
    (taulib.sweep.spec): λ/τ·‖f‖₁ with τ constant is plain L1 at λ/τ, and at the identity run's λ the
    trainer computes the very same thing, step for step, in either compute precision."""
    from taulib.sweep.spec import SweepArm, identity_l1_coefficient

    data = sparse_directions_dataset(n=5_000, d=12, n_features=16, mean_active=2.0)
    base = _config(compute_dtype=compute_dtype, n_tokens=20_000).to_dict()
    plain_lambda = 0.6459  # a calibrated λ (4 significant figures)
    constant = RunConfig.model_validate({**base, "schedule": {"kind": "constant", "tau_initial": 0.3}})
    identity_lambda = identity_l1_coefficient(SweepArm("constant", tmp_path / "constant.yaml", constant), plain_lambda)
    assert identity_lambda == 0.19377
    runs = {}
    for name, schedule, lam in (("plain", {"kind": "none"}, plain_lambda), ("constant", constant.schedule.model_dump(), identity_lambda)):
        config = RunConfig.model_validate({**base, "schedule": schedule, "training": {**base["training"], "l1_coefficient": lam}})
        AnnealedTrainer(config, data.activations, tmp_path / name, show_progress=False).train()
        runs[name] = load_sae(tmp_path / name / "final")[0].state_dict()
    for key, tensor in runs["plain"].items():
        assert torch.equal(tensor, runs["constant"][key]), key


def test_the_arms_of_a_seed_share_their_batch_order_and_initialisation(tmp_path):
    """A seed's runs differ in λ and schedule only: they see the same batches in the same order (every pass, a
    batch straddling two included) and start from the same SAE, so the arms of a seed are paired on the same
    tokens; another seed draws another order and another start."""
    data = torch.randn(1_300, 16, generator=torch.Generator().manual_seed(0))
    annealed = _config(n_tokens=5_000, batch_size=500)
    plain = RunConfig.model_validate({**annealed.to_dict(), "run_name": "plain", "schedule": {"kind": "none"}, "training": {**annealed.training.model_dump(), "l1_coefficient": 0.3}})
    other_seed = RunConfig.model_validate({**annealed.to_dict(), "run_name": "other", "seed": annealed.seed + 1})
    trainers = {name: AnnealedTrainer(config, data, tmp_path / name, show_progress=False) for name, config in (("annealed", annealed), ("plain", plain), ("other", other_seed))}
    steps = range(annealed.training.total_steps())  # 10 steps of 500 over 1,300 rows: nearly four passes
    same = [torch.equal(trainers["annealed"]._batch(step, 1.0), trainers["plain"]._batch(step, 1.0)) for step in steps]
    assert all(same)
    assert not any(torch.equal(trainers["annealed"]._batch(step, 1.0), trainers["other"]._batch(step, 1.0)) for step in steps)
    for trainer in trainers.values():
        trainer.train(until_step=1)
    start = {name: load_sae(tmp_path / name / "checkpoints" / "step_0000000")[0] for name in trainers}
    assert torch.equal(start["annealed"].W_dec, start["plain"].W_dec) and not torch.equal(start["annealed"].W_dec, start["other"].W_dec)
