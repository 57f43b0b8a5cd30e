"""The numbers a tiny training run and a tiny evaluation produce at the current code versions (taulib.versions).

Caches and runs are keyed by a version of the code that makes them, which a person bumps. These tests are what
makes forgetting to bump it fail: each recomputes, in float32, numbers recorded with the versions in
tests/code_versions.json, so a change that moves them fails here until the version is bumped and the numbers
are re-recorded (`.venv/bin/python tests/test_code_versions.py --record`). A refactor that moves nothing passes.

The tolerance: float32 carries 24 bits (relative rounding 6e-8 per operation); a CPU's kernels may sum in
another order, and 24 Adam steps on a 16 × 32 SAE carry such differences forward without amplifying them
past ~1e-6 relative on the aggregates below. 1e-4 leaves a hundredfold margin for that and still fails on
any change that alters what the code computes (a changed penalty, step or metric moves them by percent).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from taulib.config import RunConfig
from taulib.metrics.core.metric import reconstruction_metrics
from taulib.metrics.orthogonality.metric import orthogonality_metrics
from taulib.sae import SparseAutoencoder, load_sae
from taulib.train.trainer import AnnealedTrainer, read_metrics
from taulib.versions import EVALUATION_VERSION, TRAINING_VERSION

RECORD = Path(__file__).with_name("code_versions.json")
RELATIVE = 1e-4  # the module docstring
ABSOLUTE = 1e-7  # for values that are zero or cancel (float32's resolution near 1)
D_IN, WIDTH = 16, 32


def _activations(n: int, seed: int) -> torch.Tensor:
    """Sparse non-negative codes of 48 fixed directions plus noise: something for an SAE to learn (torch's CPU
    generator gives the same numbers on every machine)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(48, D_IN, generator=generator), dim=1)
    codes = torch.rand(n, 48, generator=generator) * (torch.rand(n, 48, generator=generator) < 0.06)
    return codes @ directions + 0.01 * torch.randn(n, D_IN, generator=generator)


def training_numbers(folder: Path) -> dict[str, float]:
    """A 24-step float32 run of the annealed trainer (cosine τ 0.3 → 0.05, with its learning-rate warm-up): its logged
    losses and its final weights' norms. Not its L0: a count, which one pre-activation rounding across zero moves
    by 1/256 of a latent (4e-3 of the batch), more than the tolerance, on a CPU whose kernels sum in another order."""
    config = RunConfig.model_validate(
        {
            "run_name": "versioned",
            "sae": {"width": WIDTH},
            "schedule": {"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.05},
            "training": {
                "n_tokens": 24 * 256,
                "batch_size": 256,
                "lr": 3e-3,
                "l1_coefficient": 0.02,
                "compute_dtype": "float32",
                "log_every_steps": 4,
                "n_checkpoints": 3,
                "threads": 1,
            },
        }
    )
    AnnealedTrainer(config, _activations(24 * 256, seed=1), folder, show_progress=False).train()
    log = read_metrics(folder)
    sae, _ = load_sae(folder / "final")
    numbers = {f"{column}@{int(step)}": float(value) for step, row in log.set_index("step").iterrows() for column, value in row.items() if column in ("mse", "l1", "loss")}
    numbers |= {f"norm_{name}": float(parameter.detach().double().norm()) for name, parameter in sae.named_parameters()}
    return numbers


def evaluation_numbers() -> dict[str, float]:
    """The core and orthogonality metrics of a fixed SAE (weights drawn from a seeded generator) on fixed activations."""
    generator = torch.Generator().manual_seed(2)
    sae = SparseAutoencoder(D_IN, WIDTH)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, WIDTH, generator=generator) / D_IN**0.5)
        sae.b_enc.copy_(-0.1 * torch.rand(WIDTH, generator=generator))
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(WIDTH, D_IN, generator=generator), dim=1))
        sae.b_dec.copy_(0.01 * torch.randn(D_IN, generator=generator))
    core, _ = reconstruction_metrics(sae, _activations(4096, seed=3))
    orthogonality, _ = orthogonality_metrics(sae)
    return {f"core_{k}": float(v) for k, v in core.as_dict().items()} | {
        f"orthogonality_{k}": float(v) for k, v in orthogonality.__dict__.items() if isinstance(v, float) and v == v
    }


def _compare(computed: dict[str, float], recorded: dict[str, float], stage: str, version_name: str) -> None:
    assert set(computed) == set(recorded), f"{stage}: the recorded numbers are of other quantities; re-record them"
    moved = {k: (recorded[k], computed[k]) for k in recorded if computed[k] != pytest.approx(recorded[k], rel=RELATIVE, abs=ABSOLUTE)}
    assert not moved, (
        f"{stage} numbers moved at the recorded {version_name} ({moved}): the code now computes something else. Bump "
        f"{version_name} in taulib/versions.py (its caches/runs are then made again) and re-record: .venv/bin/python tests/test_code_versions.py --record"
    )


def _recorded() -> dict:
    return json.loads(RECORD.read_text())


def test_training_numbers_are_those_recorded_at_this_training_version(tmp_path):
    recorded = _recorded()
    assert recorded["training_version"] == TRAINING_VERSION, "TRAINING_VERSION was bumped: re-record (module docstring)"
    _compare(training_numbers(tmp_path / "run"), recorded["training"], "training", "TRAINING_VERSION")


def test_evaluation_numbers_are_those_recorded_at_this_evaluation_version():
    recorded = _recorded()
    assert recorded["evaluation_version"] == EVALUATION_VERSION, "EVALUATION_VERSION was bumped: re-record (module docstring)"
    _compare(evaluation_numbers(), recorded["evaluation"], "evaluation", "EVALUATION_VERSION")


def test_a_changed_computation_fails_the_check(tmp_path):
    """The check can fail: a penalty 1% off, as a changed loss would give, moves the recorded training numbers."""
    recorded = _recorded()["training"]
    shifted = {k: v * 1.01 if k.startswith("l1@") else v for k, v in recorded.items()}
    with pytest.raises(AssertionError, match="Bump TRAINING_VERSION"):
        _compare(shifted, recorded, "training", "TRAINING_VERSION")


def test_a_bumped_version_keys_new_runs_and_caches_and_names_the_old_run(tmp_path, monkeypatch):
    """Version 1 leaves every key as it was before versions were recorded (so no finished run is retrained by their
    introduction); a bumped version changes the run fingerprint and the cache key, and a run folder of the old version
    is refused with the reason, not reused."""
    import taulib.activations.cache as cache
    import taulib.config as config_module
    from taulib.activations.cache import activation_spec
    from taulib.config import load_run_config
    from taulib.train.trainer import RunMismatchError, check_run_folder

    parameters = Path(__file__).resolve().parents[1] / "parameters" / "baseline_plain_l1.yaml"
    config = load_run_config(parameters)
    spec = activation_spec(config, "train", 9)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"fingerprint": config.fingerprint(), "training_version": 1, "config": config.to_dict()}))
    before = (config.fingerprint(), spec.key())
    assert check_run_folder(config, run_dir)
    monkeypatch.setattr(config_module, "TRAINING_VERSION", 2)
    monkeypatch.setattr(cache, "EXTRACTION_VERSION", 2)
    assert config.fingerprint() != before[0] and spec.key() != before[1]
    with pytest.raises(RunMismatchError, match="another version of the training code"):
        check_run_folder(config, run_dir)


def test_a_study_of_two_code_versions_is_refused_naming_the_runs(tmp_path):
    from formula_study import write_synthetic_sweep

    from taulib.analysis.matched import run_table
    from taulib.analysis.study_data import StudyDataError, load_study
    from taulib.metrics.evaluate import evaluation_fingerprint, evaluation_key

    outputs = write_synthetic_sweep(tmp_path / "study")
    run_table(load_study(outputs))  # one version throughout: accepted
    study = load_study(outputs)
    first, second = study.runs[0], study.runs[1]
    record = json.loads((first.run_dir / "config.json").read_text())
    (first.run_dir / "config.json").write_text(json.dumps(record | {"training_version": 2}))
    with pytest.raises(StudyDataError, match=f"trained by different versions.*{first.run_dir.name}"):
        run_table(load_study(outputs))
    (first.run_dir / "config.json").write_text(json.dumps(record))
    # an evaluation recorded by this code beside one recorded by another: refused, the runs named
    (second.run_dir / "evaluation" / "evaluation.json").write_text(json.dumps({"key": evaluation_key(second.config), "fingerprint": evaluation_fingerprint(second.config)}))
    with pytest.raises(StudyDataError, match=f"evaluated by different versions.*{second.run_dir.name}"):
        run_table(load_study(outputs))


# keys of the default study's runs, its activation caches and its evaluation records, as the default's regime of
# 2026-12-07 (lr 3e-3 decayed over the last 20% of steps, batch 512) writes them; the caches' as a study made at
# commit dd27d16 wrote them: a change that moves one (a renamed key, a new field with a default, a refactor of
# the configuration) would make `make study` retrain or re-evaluate every finished run and re-extract its caches
DEFAULT_STUDY_KEYS = {
    ("cosine_0.3_to_0.05_tightened", 0.06319, 1, 20.0): ("3d357e32d612e8d7", "8ccabed496b6"),
    ("baseline_plain_l1", 1.108, 1, 20.0): ("7721ea3b0924aadc", "7d9c373d3d86"),
}
DEFAULT_CACHE_KEYS = ("embedded-gemma-3-270m_L9_ctx128_default_train_500000_0ed1e266e0", "embedded-gemma-3-270m_L9_ctx128_default_heldout_65536_7aae39bc4e")


def test_a_study_made_before_keeps_its_runs_caches_and_evaluations():
    """The keys a finished default study's runs were stored under are the keys this code computes: nothing finished is
    trained, evaluated or extracted again. A deliberate change of the study's settings or of a code version moves them:
    update these values with it, knowing that every existing study is then made again."""
    from taulib.activations.cache import activation_spec
    from taulib.metrics.evaluate import evaluation_key
    from taulib.sweep.spec import load_sweep, run_config

    sweep = load_sweep(Path(__file__).resolve().parents[1] / "parameters")
    for (arm, l1_coefficient, seed, target), (fingerprint, key) in DEFAULT_STUDY_KEYS.items():
        config = run_config(sweep.arm(arm), l1_coefficient, seed, target)
        assert (config.fingerprint(), evaluation_key(config)) == (fingerprint, key), arm
    config = sweep.arm("baseline_plain_l1").config
    assert (activation_spec(config, "train", 9).key(), activation_spec(config, "heldout", 9).key()) == DEFAULT_CACHE_KEYS


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        record = {
            "training_version": TRAINING_VERSION,
            "training": training_numbers(Path(folder) / "run"),
            "evaluation_version": EVALUATION_VERSION,
            "evaluation": evaluation_numbers(),
        }
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORD}")
