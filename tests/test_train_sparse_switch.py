"""The sparse switch: the crossover search, its per-machine cache, and a run's use of it."""

import pytest
import torch
from references import sparse_directions_dataset

import taulib.train.sparse_switch as switch
from taulib.config import RunConfig
from taulib.train.trainer import AnnealedTrainer


def _batch(tokens=1000, d_in=16, seed=0):
    return torch.randn(tokens, d_in, generator=torch.Generator().manual_seed(seed))


def _timer(sparse_cost):
    """A fake step timer: the dense step costs 1, the sparse one `sparse_cost(density of its SAE)`."""

    def timer(sae, x, dtype, max_density):
        density = float((sae.encode(x) > 0).float().mean())
        return 1.0 if max_density == 0.0 else sparse_cost(density)

    return timer


@pytest.mark.parametrize(
    ("sparse_cost", "expected"),
    [
        (lambda d: d / 0.05, 0.04),  # faster below 5%: the highest ladder density under it
        (lambda d: d / 0.015, 0.01),
        (lambda d: 2.0, 0.0),  # never faster: always dense
        (lambda d: 0.5, switch.DENSITY_LADDER[-1]),  # faster everywhere tried
        (lambda d: 0.5 if d < 0.004 or d > 0.009 else 2.0, 0.0025),  # stops at the first density it loses
    ],
)
def test_the_crossover_is_the_highest_density_below_the_first_loss(sparse_cost, expected):
    assert switch.measure_crossover(_batch(), 64, torch.float32, _timer(sparse_cost)) == expected


def test_an_sae_at_a_density_fires_that_share_of_each_latents_tokens():
    x = _batch(tokens=400)
    for density in (0.0025, 0.04, 0.16):
        sae = switch.sae_at_density(x, 48, density)
        with torch.no_grad():
            per_latent = (sae.encode(x) > 0).float().mean(dim=0)
        assert torch.allclose(per_latent, torch.full_like(per_latent, density), atol=1 / 400 + 1e-6)


def test_the_real_timer_times_each_side_at_its_density_and_the_search_stops_at_the_first_loss():
    """With the real step timer (machine-dependent seconds, so the answer is recomputed from the timings it gave): the
    dense step is timed once, the sparse one up the ladder on SAEs at each density, until the first density it loses at."""
    x, calls = _batch(tokens=400), []

    def recording(sae, x, dtype, max_density):
        seconds = switch.step_seconds(sae, x, dtype, max_density)
        calls.append((max_density, float((sae.encode(x) > 0).float().mean()), seconds))
        return seconds

    crossover = switch.measure_crossover(x, 64, torch.float32, recording)
    (dense_side, _, dense), *sparse = calls
    assert dense_side == 0.0 and all(side == 1.0 for side, _, _ in sparse) and all(seconds > 0 for _, _, seconds in calls)
    tried = switch.DENSITY_LADDER[: len(sparse)]
    assert [fired for _, fired, _ in sparse] == pytest.approx(list(tried), abs=1 / 400 + 1e-6)  # each sparse step at its density
    won = [seconds < dense for _, _, seconds in sparse]
    assert all(won[:-1]) and (won[-1] is False or len(sparse) == len(switch.DENSITY_LADDER))  # it stopped at the first loss
    assert crossover == (tried[-1] if won[-1] else (tried[-2] if len(tried) > 1 else 0.0))


def test_the_crossover_is_measured_once_per_machine_dtype_and_shape(monkeypatch, tmp_path):
    monkeypatch.setenv("TAULIB_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(switch, "measure_crossover", lambda x, d_sae, dtype: calls.append((x.shape, d_sae, dtype)) or 0.02)
    x = _batch()
    assert switch.machine_crossover(x, 64, torch.float32) == 0.02
    assert switch.machine_crossover(x + 1, 64, torch.float32) == 0.02  # same shape: read from the cache
    switch.machine_crossover(x, 128, torch.float32)
    switch.machine_crossover(x, 64, torch.bfloat16)
    switch.machine_crossover(x[:128], 64, torch.float32)
    assert len(calls) == 4
    assert (tmp_path / "machine_speed.json").is_file()


def test_a_configured_switch_wins_and_other_devices_run_dense(monkeypatch):
    monkeypatch.setattr(switch, "machine_crossover", lambda *args: pytest.fail("measured although configured"))
    assert switch.sparse_step_max_density(0.25, torch.float32, _batch(), 64) == 0.25
    assert switch.sparse_step_max_density(None, torch.float32, torch.empty(8, 4, device="meta"), 64) == 0.0


def _config(**training):
    base = {"n_tokens": 20_000, "batch_size": 500, "lr": 1e-3, "log_every_steps": 5, "n_checkpoints": 6, "resume_every_steps": 7}
    return RunConfig.model_validate(
        {"run_name": "tiny", "sae": {"width": 24}, "schedule": {"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.05}, "training": {**base, **training}}
    )


def test_a_resumed_run_keeps_the_switch_it_started_with(monkeypatch, tmp_path):
    """Measured again after an interruption, the crossover may differ: the run's state decides, so the
    resumed run repeats the uninterrupted one."""
    import taulib.train.trainer as trainer

    data = sparse_directions_dataset(n=3_000, d=12, n_features=16, mean_active=2.0)
    measured = []

    def resolve(configured, *args):
        measured.append(configured)
        return 0.5 if len(measured) == 1 else 0.0  # the machine measures differently the second time

    monkeypatch.setattr(trainer, "sparse_step_max_density", lambda configured, *args: configured if configured is not None else resolve(configured))
    AnnealedTrainer(_config(), data.activations, tmp_path / "a", show_progress=False).train(until_step=13)
    assert AnnealedTrainer(_config(), data.activations, tmp_path / "a", show_progress=False).train()["sparse_step_max_density"] == 0.5
    assert measured == [None]  # measured once, when the run started
    # a configured value is the user's choice, also when resuming (it changes speed, not what is learnt)
    AnnealedTrainer(_config(), data.activations, tmp_path / "b", show_progress=False).train(until_step=13)
    resumed = AnnealedTrainer(_config(sparse_step_max_density=0.25), data.activations, tmp_path / "b", show_progress=False)
    assert resumed.train()["sparse_step_max_density"] == 0.25
