import os

import pytest
from pydantic import BaseModel

from taulib.cli import _parse_overrides, main
from taulib.config import ConfigError


def test_set_overrides_parse_nested_keys_and_yaml_values():
    assert _parse_overrides(["training.n_tokens=1_000", "training.lr=3e-4", "model.autocast=null", "sae.width=64"]) == {
        "training": {"n_tokens": 1000, "lr": 3e-4},
        "model": {"autocast": None},
        "sae": {"width": 64},
    }
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        _parse_overrides(["training.n_tokens"])


def _arm(folder, text="inherit: _base.yaml\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_base.yaml").write_text("sae:\n  width: 8\n")
    (folder / "arm.yaml").write_text(text)


def test_unknown_key_is_refused_with_status_2_and_nothing_written(tmp_path, capsys):
    _arm(tmp_path / "params", "inherit: _base.yaml\ntraning:\n  lr: 1.0\n")
    assert main(["study", "--parameters", str(tmp_path / "params"), "--outputs", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "arm.yaml" in error and "field 'traning': unknown key" in error
    assert not (tmp_path / "out").exists()


def test_layer_beyond_depth_is_refused_before_work(tmp_path, capsys):
    _arm(tmp_path / "params", "inherit: _base.yaml\nmodel:\n  layer: 40\n")
    assert main(["study", "--parameters", str(tmp_path / "params"), "--outputs", str(tmp_path / "out")]) == 2
    assert "model.layer 40 is beyond the model's depth" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unwritable_outputs_folder_is_refused(tmp_path, capsys, monkeypatch):
    _arm(tmp_path / "params")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes through permissions; ask as an ordinary user would be answered
        import taulib.study.run

        monkeypatch.setattr(taulib.study.run.os, "access", lambda path, mode: False)
    assert main(["study", "--parameters", str(tmp_path / "params"), "--outputs", str(locked / "out")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_outputs_path_that_is_a_file_is_refused(tmp_path, capsys):
    _arm(tmp_path / "params")
    (tmp_path / "out").write_text("not a folder")
    assert main(["study", "--parameters", str(tmp_path / "params"), "--outputs", str(tmp_path / "out")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "not a folder"


def test_params_lists_every_parameter_with_its_type_default_and_meaning(capsys):
    from taulib.config import RunConfig
    from taulib.parameter_docs import parameter_reference

    assert main(["params"]) == 0
    out = capsys.readouterr().out
    rows = parameter_reference()
    sections = [name for name, field in RunConfig.model_fields.items() if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)]
    # every leaf of every section, once, from the typed configuration
    def leaves(model, prefix):
        for name, field in model.model_fields.items():
            nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            yield from leaves(field.annotation, f"{prefix}{name}.") if nested else [f"{prefix}{name}"]

    expected = {leaf for section in sections for leaf in leaves(RunConfig.model_fields[section].annotation, f"{section}.")}
    assert expected <= {name for name, *_ in rows} and len(rows) == len({name for name, *_ in rows})
    assert "evaluation.downstream.final_sequences  (int | None, default None)" in out
    assert "schedule.kind  (str, default 'none')" in out and "(none, constant, linear, cosine, exponential, l1_warmup)" in out  # the declared kinds
    assert "held-out sequences for the spliced CE/KL of the final checkpoint" in out


def test_params_markdown_prints_the_parameters_page(capsys):
    from taulib.parameter_docs import parameter_markdown

    assert main(["params", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == parameter_markdown() and out.startswith("# Parameters\n") and "| `training.l1_coefficient` | `float` | `0.04` |" in out
