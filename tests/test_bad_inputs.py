"""The catalogue of bad inputs: each is refused before any work starts, with a message naming the
file and the field and what is allowed, and nothing under outputs/ is created or changed."""

import json
from pathlib import Path

import pytest
import torch

from taulib.activations import cache
from taulib.activations.cache import activation_spec, cache_folder
from taulib.cli import main
from taulib.config import load_run_config

# a tiny plan that is consistent as a whole (taulib.study.plan_check): two batches of 20, the held-out cache read whole
BASE = (
    "sae:\n  width: 16\nactivations:\n  n_tokens: 40\n  heldout_tokens: 20\n  shard_tokens: 20\n"
    "training:\n  n_tokens: 40\n  batch_size: 20\n  n_checkpoints: 3\nevaluation:\n  core: {tokens: 20}\n  probing: {ks: [1, 2, 5]}\n"
)
GOOD_ARM = "inherit: _base.yaml\n"

# (id, text of parameters/bad.yaml, fragment the message must contain)
CATALOGUE = [
    ("malformed-yaml", "sae: {width: 64\n", "malformed YAML at line"),
    ("empty-file", "", "the file is empty"),
    ("not-a-mapping", "- a\n- b\n", "top level must be a mapping"),
    ("unknown-top-key", "inherit: _base.yaml\ncolour: blue\n", "field 'colour': unknown key; allowed keys: run_name"),
    ("unknown-nested-key", "inherit: _base.yaml\nsae:\n  widht: 64\n", "field 'sae.widht': unknown key; allowed keys: width"),
    ("string-for-int", "inherit: _base.yaml\nsae:\n  width: '64'\n", "field 'sae.width': Input should be a valid integer"),
    ("float-for-int", "inherit: _base.yaml\nsae:\n  width: 64.5\n", "field 'sae.width': Input should be a valid integer"),
    ("bool-for-float", "inherit: _base.yaml\ntraining:\n  lr: true\n", "field 'training.lr': Input should be a valid number"),
    ("tau-zero", "inherit: _base.yaml\nschedule: {kind: cosine, tau_initial: 0, tau_final: 0.05}\n", "tau_initial must be a finite number > 0"),
    ("tau-negative", "inherit: _base.yaml\nschedule: {kind: linear, tau_initial: 0.3, tau_final: -0.1}\n", "tau_final must be a finite number > 0"),
    (
        "tau-rises-while-annealing",
        "inherit: _base.yaml\nschedule: {kind: cosine, tau_initial: 0.05, tau_final: 0.3}\n",
        "tau_final (0.3) must be <= tau_initial (0.05)",
    ),
    ("tau-nan", "inherit: _base.yaml\nschedule: {kind: cosine, tau_initial: .nan, tau_final: 0.05}\n", "Input should be a finite number"),
    ("lr-inf", "inherit: _base.yaml\ntraining:\n  lr: .inf\n", "field 'training.lr': Input should be a finite number"),
    ("l1-negative", "inherit: _base.yaml\ntraining:\n  l1_coefficient: -0.04\n", "field 'training.l1_coefficient': Input should be greater than or equal to 0"),
    ("constant-with-two-taus", "inherit: _base.yaml\nschedule: {kind: constant, tau_initial: 0.3, tau_final: 0.1}\n", "kind 'constant' holds tau_initial"),
    ("plain-l1-with-tau", "inherit: _base.yaml\nschedule: {kind: none, tau_initial: 0.3}\n", "kind 'none' is plain L1"),
    (
        "unknown-schedule",
        "inherit: _base.yaml\nschedule:\n  kind: sigmoid\n",
        "field 'schedule.kind': Input should be 'none', 'constant', 'linear', 'cosine', 'exponential' or 'l1_warmup'",
    ),
    (
        "anneal-fraction-zero",
        "inherit: _base.yaml\nschedule: {kind: cosine, tau_initial: 0.3, tau_final: 0.05, anneal_fraction: 0}\n",
        "anneal_fraction must be in (0, 1]",
    ),
    (
        "layer-beyond-depth",
        "inherit: _base.yaml\nmodel:\n  layer: 18\n",
        "model.layer 18 is beyond the model's depth: embedded:gemma-3-270m has decoder blocks 0..17",
    ),
    ("layer-negative", "inherit: _base.yaml\nmodel:\n  layer: -1\n", "field 'model.layer': Input should be greater than or equal to 0"),
    ("unknown-model-path", "inherit: _base.yaml\nmodel:\n  name: ./no/such/model\n", "model.name './no/such/model': no such local directory"),
    ("unknown-embedded-model", "inherit: _base.yaml\nmodel:\n  name: embedded:llama-7b\n", "model.name: unknown embedded model 'embedded:llama-7b'"),
    ("unknown-device", "inherit: _base.yaml\nmodel:\n  device: gpu\n", "field 'model.device': must be 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("unknown-dtype", "inherit: _base.yaml\nmodel:\n  dtype: float8\n", "field 'model.dtype': Input should be 'float32', 'bfloat16' or 'float16'"),
    ("zero-width", "inherit: _base.yaml\nsae:\n  width: 0\n", "field 'sae.width': Input should be greater than 0"),
    (
        "probing-k-zero",
        "inherit: _base.yaml\nevaluation:\n  probing: {ks: [0, 5]}\n",
        "field 'evaluation.probing.ks': must be distinct positive integers (got [0, 5])",
    ),
    (
        "unknown-probing-task",
        "inherit: _base.yaml\nevaluation:\n  probing_tasks: [imdb]\n",
        "field 'evaluation.probing.tasks.0': Input should be 'bbc_topic', 'sentiment', 'natural_language', 'code_language' or 'uncertainty'",
    ),
    ("unknown-metric-family", "inherit: _base.yaml\nevaluation:\n  families: [core, vibes]\n", "field 'evaluation.families.1': Input should be 'core'"),
    (
        "absorption-vocab-too-small",
        "inherit: _base.yaml\nevaluation:\n  absorption: {vocab_size: 26}\n",
        "field 'evaluation.absorption.vocab_size': Input should be greater than or equal to 260",
    ),
    ("negative-tokens", "inherit: _base.yaml\ntraining:\n  n_tokens: -5\n", "field 'training.n_tokens': Input should be greater than 0"),
    ("zero-batch", "inherit: _base.yaml\ntraining:\n  batch_size: 0\n", "field 'training.batch_size': Input should be greater than 0"),
    (
        "context-of-one",
        "inherit: _base.yaml\nactivations:\n  context_length: 1\n",
        "field 'activations.context_length': Input should be greater than or equal to 2",
    ),
    (
        "warmup-plus-decay",
        "inherit: _base.yaml\ntraining: {lr_warmup_fraction: 0.6, lr_decay_fraction: 0.5}\n",
        "lr_warmup_fraction + lr_decay_fraction must be < 1",
    ),
    ("reserved-run-name", "inherit: _base.yaml\nrun_name: activations\n", "'activations' is reserved"),
    ("path-in-run-name", "inherit: _base.yaml\nrun_name: ../escape\n", "field 'run_name': must be 1-100 characters"),
    ("same-run-twice", "inherit: _base.yaml\nrun_name: arm\n", "run_name 'arm' is already used by"),
    ("missing-inherit", "inherit: nope.yaml\n", "nope.yaml: parameter file not found"),
    ("unknown-storage-dtype", "inherit: _base.yaml\nactivations:\n  storage_dtype: int8\n", "field 'activations.storage_dtype'"),
]


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def study(tmp_path):
    """A parameter folder with one good arm, and outputs holding that arm's earlier results."""
    params = tmp_path / "parameters"
    params.mkdir()
    (params / "_base.yaml").write_text(BASE)
    (params / "arm.yaml").write_text(GOOD_ARM)
    outputs = tmp_path / "outputs"
    config = load_run_config(params / "arm.yaml")
    run = outputs / "arm"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"fingerprint": config.fingerprint(), "config": config.to_dict()}))
    (run / "metrics.csv").write_text("step,l0\n1,3.0\n")
    for split in ("train", "heldout"):
        spec = activation_spec(config, split, 9)
        folder = cache_folder(outputs, spec)
        folder.mkdir(parents=True)
        shards = [cache.write_shard(folder, 0, torch.randn(spec.n_tokens, 640).half(), torch.arange(spec.n_tokens))]
        cache.write_manifest(folder, spec, shards, 640, {})
    return params, outputs, config


def _refused(params, outputs, capsys):
    before = _snapshot(outputs)
    assert main(["study", "--parameters", str(params), "--outputs", str(outputs)]) == 2
    assert _snapshot(outputs) == before, "outputs/ changed"
    return capsys.readouterr().err


def test_catalogue_is_at_least_25_distinct_inputs():
    assert len({case[0] for case in CATALOGUE}) == len(CATALOGUE) >= 25


@pytest.mark.parametrize(("text", "fragment"), [case[1:] for case in CATALOGUE], ids=[case[0] for case in CATALOGUE])
def test_bad_parameter_file_is_refused(study, capsys, text, fragment):
    params, outputs, _ = study
    (params / "bad.yaml").write_text(text)
    error = _refused(params, outputs, capsys)
    assert "bad.yaml" in error, error
    assert fragment in error, error


def test_run_folder_of_another_configuration_is_refused(study, capsys):
    params, outputs, _ = study
    (params / "arm.yaml").write_text(GOOD_ARM + "seed: 7\n")
    error = _refused(params, outputs, capsys)
    assert "arm.yaml" in error and "holds a run of a different configuration (differs in: seed)" in error


def _corrupt(outputs, config, damage):
    spec = activation_spec(config, "train", 9)
    shard = cache_folder(outputs, spec) / cache.shard_name(0)
    damage(shard)


def test_truncated_cache_is_refused(study, capsys):
    params, outputs, config = study
    _corrupt(outputs, config, lambda shard: shard.write_bytes(shard.read_bytes()[:-100]))
    error = _refused(params, outputs, capsys)
    assert "arm.yaml" in error and "train activation cache is unusable" in error and "truncated" in error


def test_checksum_mismatched_cache_is_refused(study, capsys):
    params, outputs, config = study

    def flip(shard):
        data = bytearray(shard.read_bytes())
        data[-10] ^= 0x55
        shard.write_bytes(bytes(data))

    _corrupt(outputs, config, flip)
    assert "sha256 checksum mismatch" in _refused(params, outputs, capsys)


def test_cache_with_nan_activations_is_refused(study, capsys):
    params, outputs, config = study
    spec = activation_spec(config, "train", 9)
    folder = cache_folder(outputs, spec)
    from safetensors.torch import save_file

    values = torch.randn(spec.n_tokens, 640)
    values[5, 5] = float("nan")
    save_file({"activations": values.half(), "token_ids": torch.arange(spec.n_tokens, dtype=torch.int32)}, str(folder / cache.shard_name(0)))
    shard = folder / cache.shard_name(0)
    cache.write_manifest(
        folder, spec, [{"file": shard.name, "n_tokens": spec.n_tokens, "bytes": shard.stat().st_size, "sha256": cache.sha256_file(shard)}], 640, {}
    )
    assert "contain NaN or inf" in _refused(params, outputs, capsys)


def test_training_without_its_cache_is_refused(study, capsys, tmp_path):
    params, _, _ = study
    empty = tmp_path / "empty_outputs"
    assert main(["train", str(params / "arm.yaml"), "--outputs", str(empty), "--quiet"]) == 2
    assert "no complete activation cache here" in capsys.readouterr().err
    assert not empty.exists() or not any(empty.rglob("*.json"))


def test_trainer_state_of_another_configuration_is_refused(tmp_path):
    from taulib.config import RunConfig
    from taulib.train.trainer import AnnealedTrainer, RunMismatchError

    data = torch.randn(500, 8)
    config = RunConfig.model_validate({"run_name": "r", "sae": {"width": 16}, "training": {"n_tokens": 5000, "batch_size": 100}})
    AnnealedTrainer(config, data, tmp_path, show_progress=False).train(until_step=10)
    # someone replaces config.json by hand; the saved trainer state still belongs to the old run
    other = config.model_copy(update={"seed": 3})
    (tmp_path / "config.json").write_text(f'{{"fingerprint": "{other.fingerprint()}", "config": {{}}}}')
    before = _snapshot(tmp_path)
    with pytest.raises(RunMismatchError, match="trainer state from a different configuration"):
        AnnealedTrainer(other, data, tmp_path, show_progress=False).train()
    assert _snapshot(tmp_path) == before
