import hashlib
import json
from pathlib import Path

import pytest

from taulib.config import ConfigError, discover_parameter_files, load_run_config, load_study_configs

ARMS = {
    "baseline_plain_l1": ("none", 1.0, 1.0),
    "cosine_0.3_to_0.05_tightened": ("cosine", 0.3, 0.05),
    "cosine_0.5_to_0.05_wider": ("cosine", 0.5, 0.05),
    "cosine_0.3_to_0.1_higher_floor": ("cosine", 0.3, 0.1),
    "linear_0.3_to_0.05": ("linear", 0.3, 0.05),
    "constant_0.3": ("constant", 0.3, 0.3),
    "l1_warmup": ("l1_warmup", 1.0, 1.0),
}


def test_the_seven_study_arms(repo_root):
    loaded = load_study_configs(discover_parameter_files(repo_root / "parameters"))
    arms = {config.run_name: (config.schedule.kind, config.schedule.tau_initial, config.schedule.tau_final) for _, config in loaded}
    assert arms == ARMS
    for _, config in loaded:
        assert config.training.l1_coefficient == 0.04 and config.training.lr == 3e-3 and config.training.lr_decay_fraction == 0.2
        # the annealed arms end their anneal where the learning rate starts to decay, so the decay settles each at its
        # final penalty; the L1 warm-up ramps over the first 5%; plain L1 and constant τ have no anneal
        if config.schedule.spec.annealed:
            assert config.schedule.anneal_fraction == 1 - config.training.lr_decay_fraction
        else:
            assert config.schedule.anneal_fraction == (0.05 if config.schedule.kind == "l1_warmup" else 1.0)
    # every arm shares one activation spec, so extraction happens once
    assert len({config.activations.model_dump_json() + config.model.model_dump_json() for _, config in loaded}) == 1


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_inherit_merges_deeply_and_run_name_defaults_to_stem(tmp_path):
    _write(tmp_path, "_base.yaml", "training:\n  lr: 1.0e-3\n  batch_size: 256\nsae:\n  width: 64\n")
    path = _write(tmp_path, "arm.yaml", "inherit: _base.yaml\ntraining:\n  lr: 3e-4\n")
    config = load_run_config(path)
    assert config.run_name == "arm"
    assert config.training.lr == 3e-4 and config.training.batch_size == 256 and config.sae.width == 64


def test_overrides_apply_last(tmp_path):
    path = _write(tmp_path, "arm.yaml", "sae:\n  width: 64\n")
    assert load_run_config(path, {"sae": {"width": 8}}).sae.width == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sae: {width: 64\n", r"malformed YAML at line \d+"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("", "the file is empty"),
        ("sae:\n  widht: 64\n", r"field 'sae.widht': unknown key; allowed keys: width"),
        ("colour: blue\n", "field 'colour': unknown key"),
        ("sae:\n  width: '64'\n", r"field 'sae.width': Input should be a valid integer"),
        ("sae:\n  width: 0\n", r"field 'sae.width': Input should be greater than 0"),
        ("training:\n  lr: .nan\n", r"field 'training.lr': Input should be a finite number"),
        ("schedule:\n  kind: cosine\n  tau_initial: 0\n  tau_final: 0.05\n", r"tau_initial must be a finite number > 0"),
        ("schedule:\n  kind: cosine\n  tau_initial: 0.05\n  tau_final: 0.3\n", r"tau_final \(0.3\) must be <= tau_initial"),
        ("schedule:\n  kind: sigmoid\n", r"field 'schedule.kind': Input should be 'none', 'constant'"),
        ("schedule:\n  kind: none\n  tau_initial: 0.3\n", "kind 'none' is plain L1"),
        ("model:\n  dtype: float8\n", r"field 'model.dtype'"),
        ("model:\n  device: gpu\n", r"field 'model.device'"),
        ("training:\n  device: cuda0\n", r"field 'training.device': must be 'cpu', 'cuda', 'cuda:N' or 'mps' \(got 'cuda0'\)"),
        ("training:\n  activation_storage: disk\n", r"field 'training.activation_storage': Input should be 'host', 'device' or 'mmap'"),
        ("run_name: ../escape\n", r"field 'run_name'"),
        ("run_name: activations\n", "reserved"),
        ("inherit: missing.yaml\n", "parameter file not found"),
    ],
)
def test_bad_parameter_files_name_the_file_and_field(tmp_path, text, expected):
    path = _write(tmp_path, "arm.yaml", text)
    with pytest.raises(ConfigError, match=expected) as error:
        load_run_config(path)
    assert str(path.parent) in str(error.value)


def test_inherit_cycle_is_refused(tmp_path):
    _write(tmp_path, "a.yaml", "inherit: b.yaml\n")
    _write(tmp_path, "b.yaml", "inherit: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_run_config(tmp_path / "a.yaml")


def test_two_files_naming_the_same_run_are_refused(tmp_path):
    _write(tmp_path, "one.yaml", "run_name: same\n")
    _write(tmp_path, "two.yaml", "run_name: same\n")
    with pytest.raises(ConfigError, match="run_name 'same' is already used by"):
        load_study_configs(discover_parameter_files(tmp_path))


def test_discovery_skips_shared_bases(tmp_path):
    _write(tmp_path, "_base.yaml", "seed: 1\n")
    _write(tmp_path, "arm.yaml", "inherit: _base.yaml\n")
    assert [p.name for p in discover_parameter_files(tmp_path)] == ["arm.yaml"]


def test_resolved_configs_round_trip(repo_root):
    """config.json holds the resolved config; it must validate back to the same run."""
    from taulib.config import RunConfig

    for _, config in load_study_configs(discover_parameter_files(repo_root / "parameters")):
        again = RunConfig.model_validate(config.to_dict())
        assert again == config and again.fingerprint() == config.fingerprint()


def test_where_a_run_executes_is_not_part_of_its_fingerprint(tmp_path):
    """A GPU run and a CPU run of one configuration are the same run (a run resumes on either), and a
    run folder written before the placement keys existed still matches its configuration."""
    from taulib.config import RunConfig

    path = _write(tmp_path, "arm.yaml", "training:\n  n_tokens: 1000\n")
    on_cpu = load_run_config(path)
    on_gpu = load_run_config(path, {"training": {"device": "cuda", "activation_storage": "device"}, "model": {"device": "cuda"}})
    assert on_gpu.training.device == "cuda" and on_cpu.fingerprint() == on_gpu.model_copy(update={"model": on_cpu.model}).fingerprint()
    # the model's device is not a placement key: it decides the cached activations' numerics
    assert on_gpu.fingerprint() != on_cpu.fingerprint()
    older = on_cpu.to_dict()
    del older["training"]["device"], older["training"]["activation_storage"], older["training"]["sparse_step_max_density"]
    assert RunConfig.model_validate(older).fingerprint() == on_cpu.fingerprint()
    # the fingerprint as it was computed before placement keys existed: the folders of earlier runs still match
    legacy = {key: value for key, value in older.items() if key not in ("description", "sweep", "evaluation")}
    assert on_cpu.fingerprint() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]


def test_old_flat_evaluation_keys_are_read_with_a_message_naming_the_new_one(tmp_path):
    """A parameter file written before the families had sections still loads, for one release, each old key named
    with its new one; a finished run's stored config.json reads silently; a parameter given under both names is refused."""
    import warnings

    from taulib.config import RunConfig
    from taulib.metrics.evaluate import evaluation_key

    (tmp_path / "old.yaml").write_text("evaluation:\n  core_tokens: 500\n  probing_ks: [1, 2]\n  ce_final_sequences: 30\n  absorption_checkpoints: final\n")
    (tmp_path / "new.yaml").write_text("evaluation:\n  core: {tokens: 500}\n  probing: {ks: [1, 2]}\n  downstream: {final_sequences: 30}\n  absorption: {checkpoints: final}\n")
    with pytest.warns(FutureWarning) as caught:
        old = load_run_config(tmp_path / "old.yaml")
    messages = [str(warning.message) for warning in caught]
    assert any("'evaluation.core_tokens' is now 'evaluation.core.tokens'" in message and "old.yaml" in message for message in messages)
    assert any("'evaluation.absorption_checkpoints' is now 'evaluation.absorption.checkpoints'" in message for message in messages)
    new = load_run_config(tmp_path / "new.yaml")
    assert old.evaluation == new.evaluation and evaluation_key(old.model_copy(update={"run_name": "new"})) == evaluation_key(new)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the config.json of a run finished before: no message per run read
        stored = RunConfig.model_validate({"run_name": "x", "evaluation": {"core_tokens": 500, "probing_ks": [1, 2]}})
    assert stored.evaluation.core.tokens == 500 and stored.evaluation.probing.ks == (1, 2)

    (tmp_path / "both.yaml").write_text("evaluation:\n  core_tokens: 500\n  core: {tokens: 400}\n")
    with pytest.raises(ConfigError, match=r"both.yaml: evaluation.core_tokens and evaluation.core.tokens are the same parameter"):
        load_run_config(tmp_path / "both.yaml")
    with pytest.warns(FutureWarning, match="'evaluation.core_tokens' is now 'evaluation.core.tokens'"):
        assert load_run_config(tmp_path / "new.yaml", overrides={"evaluation": {"core_tokens": 300}}).evaluation.core.tokens == 300


def test_a_sweep_profile_with_old_evaluation_keys_is_read_and_named(tmp_path, repo_root):
    import shutil

    from taulib.sweep.spec import load_sweep

    parameters = tmp_path / "parameters"
    shutil.copytree(repo_root / "parameters", parameters)
    sweep_file = parameters / "_sweep.yaml"
    sweep_file.write_text(sweep_file.read_text().replace("evaluation: {core: {tokens: 8192}}", "evaluation: {core_tokens: 8192}"))
    with pytest.warns(FutureWarning, match=r"profile synthetic.*'evaluation.core_tokens' is now 'evaluation.core.tokens'"):
        sweep = load_sweep(parameters, "synthetic")
    assert all(arm.config.evaluation.core.tokens == 8192 for arm in sweep.arms)
