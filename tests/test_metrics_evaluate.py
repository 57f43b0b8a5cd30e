import pytest
import torch
from saes import perfect_sae

from taulib.metrics.core.metric import reconstruction_metrics
from taulib.sae import SAEMetadata, SparseAutoencoder, in_raw_units
from taulib.train.trainer import explained_variance


def test_perfect_reconstruction_and_known_l0():
    x = torch.tensor([[1.0, -2.0, 0.0], [0.0, 3.0, 4.0]]) * 5  # raw activations
    sae = perfect_sae(3)
    metrics, _ = reconstruction_metrics(in_raw_units(sae, SAEMetadata(d_in=3, d_sae=6, input_scale=5.0)), x, batch_size=1)
    assert metrics.explained_variance == pytest.approx(1.0)
    assert metrics.l0 == pytest.approx((2 + 2) / 2)
    # fired: +e0 (token 1), −e1 (token 1), +e1 and +e2 (token 2); never: −e0, −e2
    assert metrics.dead_fraction == pytest.approx(2 / 6)


def test_batched_explained_variance_equals_the_one_pass_definition():
    torch.manual_seed(0)
    sae = SparseAutoencoder(8, 32)
    sae.initialise(torch.Generator().manual_seed(0))
    x = torch.randn(1000, 8) * 3 + 1
    metrics, _ = reconstruction_metrics(in_raw_units(sae, SAEMetadata(d_in=8, d_sae=32, input_scale=2.0)), x, batch_size=77)
    with torch.no_grad():
        x_hat, f = sae(x / 2.0)
    assert metrics.explained_variance == pytest.approx(explained_variance(x / 2.0, x_hat), rel=1e-5)
    assert metrics.l0 == pytest.approx(float((f > 0).sum(dim=1).float().mean()), rel=1e-6)


@pytest.mark.model
def test_preparing_the_probing_inputs_shows_a_bar_that_knows_its_total():
    """The evaluation inputs take minutes on a CPU: their bar is sized before the forward passes (an ETA) and ends full."""
    from taulib.activations.extraction import ResidualReader
    from taulib.activations.models import load_language_model
    from taulib.config import ModelConfig
    from taulib.metrics.probing.metric import ProbingSettings, prepare_probing_data

    class Bar:  # records what a tqdm bar would be told
        total: int | None = None
        n = 0
        total_before_first_batch: int | None = None

        def refresh(self) -> None:
            if self.n == 0:
                self.total_before_first_batch = self.total

        def update(self, tokens: int) -> None:
            self.n += tokens

    loaded = load_language_model(ModelConfig(layer=1))
    bar = Bar()
    settings = ProbingSettings(tasks=("sentiment",), examples_per_class=10, context_length=16, ks=(1, 2), seed=0)
    prepare_probing_data(ResidualReader(loaded, None), loaded.tokenizer, settings, progress=bar)
    assert bar.total_before_first_batch == bar.n > 20 * 2  # 20 texts of at least two tokens, counted up front, every one processed


def test_checkpoints_evaluated_together_get_the_numbers_each_gets_alone():
    """A chunk of checkpoints shares one pass over the held-out activations and the probing residuals;
    every checkpoint's record (scalars and details) is the one it gets evaluated alone."""
    import json
    from pathlib import Path

    from taulib.config import RunConfig
    from taulib.metrics.evaluate import evaluate_chunk
    from taulib.metrics.family import RunInputs
    from taulib.metrics.orthogonality.metric import covariance_factor
    from taulib.metrics.probing.metric import ProbingData, ProbingSettings, TaskData, _binary_tasks, stratified_test_mask

    d, width, generator = 16, 64, torch.Generator().manual_seed(0)
    saes = []
    for bias in (-0.2, -0.5, -1.0):  # three sparsities: different dead and alive latents
        sae = SparseAutoencoder(d, width)
        sae.initialise(generator)
        with torch.no_grad():
            sae.b_enc.fill_(bias)
        saes.append(sae.requires_grad_(False))
    heldout = torch.randn(3000, d, generator=generator) * 2 + 0.5
    tasks = []
    for name, classes in (("a", 2), ("b", 3)):
        labels = [f"c{c}" for c in range(classes) for _ in range(20)]
        is_test = stratified_test_mask(labels, 0.3, 0)
        lengths = torch.randint(1, 9, (len(labels),), generator=generator)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        shift = torch.tensor([float(label[1]) for label in labels]).repeat_interleave(lengths)[:, None]  # classes a probe can tell apart
        tasks.append(TaskData(name, labels, (torch.randn(int(offsets[-1]), d, generator=generator) + shift).half(), offsets, is_test, _binary_tasks(name, labels, is_test, 0)))
    probing = ProbingData(tasks, ProbingSettings(tasks=("a", "b"), examples_per_class=20, ks=(1, 5)))
    # absorption's chunk against its lone evaluations is tested in tests/test_metrics_absorption.py; no model here for the CE/KL
    config = RunConfig(run_name="chunk", training={"compute_dtype": "bfloat16"}, evaluation={"core": {"tokens": 3000}, "families": ["core", "orthogonality", "probing"]})
    run = RunInputs(config, Path("."), 0, Path("."), Path("."), heldout)
    states = {"core": None, "orthogonality": covariance_factor(heldout), "probing": probing}

    def per_checkpoint(records, steps):  # each checkpoint's (scalars, details), every family's joined, as the table reads them
        return [({k: v for r in records.values() for k, v in r[step]["scalars"].items()}, {k: v for r in records.values() for k, v in r[step]["details"].items()}) for step in steps]

    together = per_checkpoint(evaluate_chunk(saes, [1, 2, 3], 3, run, states), [1, 2, 3])
    alone = [per_checkpoint(evaluate_chunk([sae], [step], 3, run, states), [step])[0] for step, sae in zip([1, 2, 3], saes, strict=True)]
    assert json.dumps(together) == json.dumps(alone)  # as the records are written (NaN included)
    l0s = [scalars["l0"] for scalars, _ in together]
    assert l0s[0] > l0s[1] > l0s[2] > 0  # three different SAEs, not one repeated
    assert {"l0", "alive_mean_max_cosine", "sae_top_5_accuracy.b", "sae_top_1_accuracy"} <= set(together[0][0])
    assert {"density_histogram", "max_cosine_histogram", "probing_tasks"} <= set(together[0][1])


# ----------------------------------------------------------------------------- records per family
@pytest.fixture
def synthetic_run(tmp_path):
    from family_records import trained_synthetic_run

    return trained_synthetic_run(tmp_path)


def _records(run_dir):
    """Every family's record file, with the time it was written."""
    return {path: path.stat().st_mtime_ns for path in (run_dir / "evaluation" / "families").glob("*/step_*.json")}


def _evaluation(**sections):
    from taulib.config import EvaluationConfig

    return EvaluationConfig.model_validate({"core": {"tokens": 16}} | sections)


def test_adding_or_changing_one_family_evaluates_that_family_alone(synthetic_run):
    import pandas as pd

    from taulib.metrics.evaluate import checkpoints_to_evaluate, evaluate_run, read_checkpoint_index

    run_dir, outputs, config = synthetic_run
    checkpoints = len(read_checkpoint_index(run_dir))
    assert checkpoints_to_evaluate(run_dir, config) == {"core": checkpoints, "orthogonality": checkpoints}  # what the estimate prices
    first = evaluate_run(run_dir, outputs, show_progress=False)
    written = _records(run_dir)
    assert checkpoints_to_evaluate(run_dir, config) == {"core": 0, "orthogonality": 0}
    with_ground_truth = config.model_copy(update={"evaluation": _evaluation(families=["core", "orthogonality", "ground_truth"])})
    assert checkpoints_to_evaluate(run_dir, with_ground_truth) == {"core": 0, "orthogonality": 0, "ground_truth": checkpoints}
    assert {path.parent.name.split("-")[0] for path in written} == {"core", "orthogonality"}

    # a family added: the others' records are read, not written again; the new one's are written
    added = evaluate_run(run_dir, outputs, show_progress=False, evaluation=_evaluation(families=["core", "orthogonality", "ground_truth"]))
    after = _records(run_dir)
    assert {path: after[path] for path in written} == written
    assert {path.parent.name.split("-")[0] for path in set(after) - set(written)} == {"ground_truth"}
    pd.testing.assert_frame_equal(added[first.columns], first)
    assert "gt_recovered_fraction" in added

    # one family's parameter changed: that family alone is evaluated again
    everything = ["core", "orthogonality", "ground_truth"]
    evaluate_run(run_dir, outputs, show_progress=False, evaluation=_evaluation(families=everything, orthogonality={"near_duplicate_threshold": 0.5}))
    changed = _records(run_dir)
    assert {path: changed[path] for path in after} == after
    assert {path.parent.name.split("-")[0] for path in set(changed) - set(after)} == {"orthogonality"}

    # a parameter another family reads (core's held-out sample, orthogonality's baseline): both evaluated again, not ground truth
    evaluate_run(run_dir, outputs, show_progress=False, evaluation=_evaluation(families=everything, core={"tokens": 12}))
    assert {path.parent.name.split("-")[0] for path in set(_records(run_dir)) - set(changed)} == {"core", "orthogonality"}


def test_a_family_evaluated_without_core_reads_the_alive_latents_from_cores_records(synthetic_run):
    """Orthogonality over alive latents needs core's density: evaluated alone, it reads it from core's records and gets
    the numbers it got beside core."""
    import shutil

    import pandas as pd

    from taulib.metrics.evaluate import evaluate_run

    run_dir, outputs, _ = synthetic_run
    table = evaluate_run(run_dir, outputs, show_progress=False)
    (folder,) = (run_dir / "evaluation" / "families").glob("orthogonality-*")
    shutil.rmtree(folder)
    core = {path: stamp for path, stamp in _records(run_dir).items() if path.parent.name.startswith("core-")}
    again = evaluate_run(run_dir, outputs, show_progress=False)
    assert {path: stamp for path, stamp in _records(run_dir).items() if path.parent.name.startswith("core-")} == core
    assert folder.is_dir() and table["alive_latents"].nunique() > 1  # alive latents differ between checkpoints: the case can fail
    pd.testing.assert_frame_equal(again, table)


def test_an_evaluation_made_before_the_families_records_is_carried_over_not_repeated(synthetic_run, monkeypatch):
    import json
    import shutil

    import pandas as pd
    from family_records import write_records_as_before

    from taulib.metrics.evaluate import evaluate_run
    from taulib.metrics.families import FAMILIES

    run_dir, outputs, config = synthetic_run
    table = evaluate_run(run_dir, outputs, show_progress=False)
    old = write_records_as_before(run_dir, config, table)
    evaluated = []
    for family in FAMILIES:
        monkeypatch.setattr(type(family), "evaluate", lambda self, saes, state, run, chunk: evaluated.append((self.name, list(chunk.steps))))
    pd.testing.assert_frame_equal(evaluate_run(run_dir, outputs, show_progress=False), table)
    assert evaluated == []

    # a record with a column no family declares cannot be attributed: that checkpoint alone is evaluated again
    shutil.rmtree(run_dir / "evaluation" / "families")
    step = int(table["step"].iloc[1])
    record = json.loads((old / f"step_{step:07d}.json").read_text())
    record["scalars"]["a_column_of_no_family"] = 1.0
    (old / f"step_{step:07d}.json").write_text(json.dumps(record))
    monkeypatch.undo()
    original = {family.name: type(family).evaluate for family in FAMILIES}

    def recording(name):
        return lambda self, saes, state, run, chunk: evaluated.append((name, list(chunk.steps))) or original[name](self, saes, state, run, chunk)

    for family in FAMILIES:
        monkeypatch.setattr(type(family), "evaluate", recording(family.name))
    pd.testing.assert_frame_equal(evaluate_run(run_dir, outputs, show_progress=False), table)
    assert evaluated == [("core", [step]), ("orthogonality", [step])]


def test_every_column_and_detail_is_declared_by_the_family_that_adds_it(synthetic_run):
    """The declarations (taulib/metrics/<family>/settings.py) are what the families compute: every column of the table
    is a head column or one family's, and every declared column of an evaluated family is in the table (the language
    model's families: tests/test_study_run.py)."""
    from taulib.metrics.evaluate import evaluate_run, read_checkpoint_details

    run_dir, outputs, _ = synthetic_run
    families = ["core", "orthogonality", "ground_truth"]
    table = evaluate_run(run_dir, outputs, show_progress=False, evaluation=_evaluation(families=families))
    from references import assert_declared

    assert_declared(table, read_checkpoint_details(run_dir, int(table["step"].iloc[-1]))["details"], families)
