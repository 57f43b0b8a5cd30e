"""The metric-family registry is the one list: the config's names, what each needs, the evaluation order."""

import pytest
from pydantic import ValidationError

from taulib.config import EvaluationConfig, RunConfig
from taulib.metrics.families import FAMILIES, FAMILY_NAMES, Family, evaluated


def test_the_config_takes_its_family_names_from_the_registry():
    assert EvaluationConfig().families == FAMILY_NAMES
    with pytest.raises(ValidationError, match="sparsity_magic|'core'"):
        EvaluationConfig(families=("core", "sparsity_magic"))


def test_every_family_evaluates_and_is_priced():
    for family in FAMILIES:
        assert type(family).evaluate is not Family.evaluate, family.name
        assert type(family).checkpoint_seconds is not Family.checkpoint_seconds, family.name
        # a family with prepared inputs says which files mark them done, and reads them per run
        if type(family).prepare is not Family.prepare:
            assert family.prepared_files(RunConfig(run_name="x")) and type(family).load is not Family.load, family.name


def test_what_a_model_cannot_have_is_recorded_not_computed():
    language = RunConfig(run_name="lm")
    synthetic = RunConfig(run_name="gt", model={"name": "synthetic", "synthetic": {}})
    assert set(language.not_applicable_families()) == {f.name for f in FAMILIES if f.needs == "known_dictionary"} == {"ground_truth"}
    assert set(synthetic.not_applicable_families()) == {f.name for f in FAMILIES if f.needs == "language_model"} == {"downstream", "absorption", "probing"}
    assert [f.name for f in evaluated(synthetic)] == ["core", "orthogonality", "ground_truth"]


def test_core_runs_before_the_families_that_read_its_alive_latents():
    names = [family.name for family in evaluated(RunConfig(run_name="lm", evaluation={"families": ["orthogonality", "core"]}))]
    assert names == ["core", "orthogonality"]  # the registry's order, whatever the order asked for
