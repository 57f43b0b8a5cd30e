"""The metric families: the catalogue is the one list (the config's names and sections, what each needs, the
evaluation order), each family's folder declares its columns, and the registry finds each family's class."""

import pytest
from pydantic import ValidationError

from taulib.config import EvaluationConfig, RunConfig
from taulib.metrics.catalogue import FAMILY_NAMES
from taulib.metrics.families import FAMILIES, evaluated
from taulib.metrics.family import Family


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
    assert set(synthetic.not_applicable_families()) == {f.name for f in FAMILIES if f.needs == "language_model"} == {"downstream", "absorption", "probing", "probing_baseline"}
    assert [f.name for f in evaluated(synthetic)] == [f.name for f in FAMILIES if f.needs != "language_model"]
    assert {"core", "orthogonality", "ground_truth"} <= {f.name for f in evaluated(synthetic)}


def test_core_runs_before_the_families_that_read_its_alive_latents():
    names = [family.name for family in evaluated(RunConfig(run_name="lm", evaluation={"families": ["orthogonality", "core"]}))]
    assert names == ["core", "orthogonality"]  # the registry's order, whatever the order asked for


def test_absorption_at_the_final_checkpoint_only_evaluates_that_one_and_prices_one(monkeypatch):
    """evaluation.absorption.checkpoints: final (the default study, where absorption is out of range):
    the final checkpoint alone gets absorption, in whichever chunk it falls; the others get no column."""
    import taulib.metrics.absorption.family as absorption
    from taulib.metrics.family import Chunk, RunInputs

    family = next(f for f in FAMILIES if f.name == "absorption")
    seen = []

    class _Metrics:
        def as_dict(self):
            return {"absorption_fraction": 0.5}

    class _Letters:
        def to_dict(self, orient):
            return [{"letter": "a"}]

    def fake_many(saes, state):
        seen.append(list(saes))
        return [(_Metrics(), _Letters()) for _ in saes]

    monkeypatch.setattr(absorption, "evaluate_absorption_many", fake_many)
    for mode, expected in (("all", [[0, 1, 2]]), ("final", [[2]])):
        config = RunConfig.model_validate({"run_name": "r", "evaluation": {"absorption": {"checkpoints": mode}}})
        run = RunInputs(config, None, 0, None, None, None)
        seen.clear()
        chunk = Chunk([0, 24, 489], 489, [{} for _ in range(3)], [{} for _ in range(3)], [None] * 3)
        family.evaluate([0, 1, 2], None, run, chunk)  # stand-ins for the SAEs: the family only passes them on
        assert seen == expected
        assert [("absorption_fraction" in scalars) for scalars in chunk.scalars] == [mode == "all"] * 2 + [True]
        other = Chunk([0, 24], 489, [{}, {}], [{}, {}], [None] * 2)  # a chunk without the final checkpoint
        seen.clear()
        family.evaluate([0, 1], None, run, other)
        assert (seen == []) == (mode == "final")

    class _Costs:
        pass

    per_checkpoint = 2.0
    monkeypatch.setattr(type(family), "checkpoint_seconds", lambda self, costs, config, d_model: per_checkpoint)
    final = RunConfig.model_validate({"run_name": "r", "evaluation": {"absorption": {"checkpoints": "final"}}})
    every = RunConfig.model_validate({"run_name": "r"})
    assert family.run_seconds(_Costs(), final, 640, 17) == 2.0 and family.run_seconds(_Costs(), every, 640, 17) == 34.0
