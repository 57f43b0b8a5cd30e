"""The τ playground's logic (taulib.playground) and its widgets without a browser: a playground run is the
track's run, λ lands on a target L0, the arms at the nearest L0, keep validates as the study does, the
dictionary view's ordering, and the short language-model run."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_track import ONE_REPLICATE

from taulib import atomic
from taulib.cli import main
from taulib.config import ConfigError, RunConfig, load_run_config
from taulib.groundtruth import track
from taulib.groundtruth.world import make_world
from taulib.playground import comparison, keep, language_model, world_runs
from taulib.playground.controls import schedule_mapping, validated_schedule
from taulib.plots import playground as plots
from taulib.schedules import TauSchedule, schedule_kinds

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"
TIGHTENED = track.TIGHTENED
SMALL = {"budget": 8192}
TESTED = world_runs.tested_schedule(PARAMETERS)


def settings_with(values: dict) -> world_runs.PlaygroundSettings:
    """The playground's settings as its controls start them: the tested arm's schedule unless `values` names one."""
    return world_runs.playground_settings({"schedule": TESTED} | values)


@pytest.fixture(scope="module")
def tiny_track(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ground_truth")
    track.run_track(PARAMETERS, root, ONE_REPLICATE | {"workers": 1}, show_progress=False)
    return root


@pytest.fixture(scope="module")
def design() -> track.TrackConfig:
    return world_runs.load_design(PARAMETERS, ONE_REPLICATE)


def _rows_without_time(record: dict) -> list[dict]:
    return record["checkpoints"]


# ----------------------------------------------------------------------------- a playground run is a track run
def test_a_playground_run_at_an_arms_lambda_reproduces_the_tracks_run_of_that_arm(tiny_track, design):
    path = sorted((tiny_track / "runs" / "w0_s0" / TIGHTENED).glob("b8192_g*.json"))[0]
    recorded = atomic.read_json(path)
    settings = world_runs.playground_settings(
        {"schedule": TESTED, "l1_coefficient": recorded["l1_coefficient"], "target_l0": None} | SMALL
    )
    seen = []
    run = world_runs.train_on_world(settings, design, on_checkpoint=seen.append)
    # the same samples, initialisation, loop and scoring: the same numbers, to float32 rounding of λ/τ_final·τ_final
    assert len(run.checkpoints) == len(recorded["checkpoints"]) == len(seen)
    for ours, theirs in zip(run.record["checkpoints"], recorded["checkpoints"], strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key
    assert [view.step for view in seen] == [row["step"] for row in recorded["checkpoints"]]


def test_the_controls_start_from_the_tested_arm_files_schedule(tiny_track, parameter_copy, tmp_path):
    from taulib.playground.ui import LanguageModelPlayground, Playground

    arm = parameter_copy / f"{TIGHTENED}.yaml"
    arm.write_text(arm.read_text().replace("anneal_fraction: 0.8", "anneal_fraction: 0.6", 1))
    wanted = load_run_config(arm).schedule
    assert wanted.anneal_fraction == 0.6 and world_runs.tested_schedule(parameter_copy) == wanted.model_dump()
    assert Playground(parameter_copy, tiny_track, design_overrides=ONE_REPLICATE, settings=SMALL).controls.schedule() == wanted
    assert LanguageModelPlayground(parameter_copy, tmp_path / "outputs").controls.schedule() == wanted


def test_a_target_l0_is_reached_by_probes_and_the_run_shown_is_the_nearest_probe(design):
    settings = settings_with({"target_l0": 4.0} | SMALL)
    probes_started: list[tuple[int, float]] = []
    run = world_runs.train_on_world(settings, design, on_probe=lambda number, l1: probes_started.append((number, l1)))
    assert 1 <= len(run.probes) <= design.calibration_probes
    assert [number for number, _ in probes_started] == list(range(1, len(run.probes) + 1))
    assert [l1 for l1, _ in run.probes] == [l1 for _, l1 in probes_started]
    nearest = min(run.probes, key=lambda probe: abs(math.log(probe[1] / 4.0)))
    assert (run.l1_coefficient, run.final_l0) == nearest
    # the last probe stopped the search: it landed within the track's tolerance, or the probes ran out
    landed = abs(run.probes[-1][1] / 4.0 - 1) < track.CALIBRATION_TOLERANCE
    assert landed or len(run.probes) == design.calibration_probes
    assert not any(abs(l0 / 4.0 - 1) < track.CALIBRATION_TOLERANCE for _, l0 in run.probes[:-1])


def test_the_search_starts_from_the_tracks_calibration_of_the_same_schedule_only_for_the_same_design(tiny_track, design):
    record = world_runs.read_track_record(tiny_track)
    settings = settings_with({"target_l0": 4.5} | SMALL)
    assert world_runs.start_from_track(record, design, settings) == record["calibration"][TIGHTENED]["8192"]["4.5"]
    # a schedule no arm has: plain L1's coefficient
    other = settings_with({"schedule": {"kind": "exponential", "tau_initial": 0.2, "tau_final": 0.05}, "target_l0": 3.0} | SMALL)
    assert world_runs.start_from_track(record, design, other) == record["calibration"][track.PLAIN]["8192"]["3"]
    wider_world = world_runs.load_design(PARAMETERS, ONE_REPLICATE | {"world": ONE_REPLICATE["world"] | {"n_features": 30}})
    assert world_runs.start_from_track(record, wider_world, settings) is None
    assert world_runs.design_differences(record["config"], wider_world) == ["world"]


def test_settings_are_refused_with_the_field_named(design):
    with pytest.raises(ConfigError, match="either l1_coefficient"):
        settings_with({"l1_coefficient": 0.1, "target_l0": 8.0})
    with pytest.raises(ConfigError, match="anneals τ downwards"):
        settings_with({"schedule": {"kind": "cosine", "tau_initial": 0.1, "tau_final": 0.3}})
    with pytest.raises(ConfigError, match="budgets"):  # fewer samples than the design's checkpoints need
        world_runs.run_design(design, settings_with({"budget": 128}))


# ----------------------------------------------------------------------------- the arms beside it
def test_each_arm_is_shown_at_its_run_nearest_the_playground_runs_final_l0(tiny_track, design):
    run = world_runs.train_on_world(settings_with({"target_l0": 4.0} | SMALL), design)
    found = comparison.nearest_arm_runs(tiny_track, run)
    study_arms = [arm["name"] for arm in world_runs.read_track_record(tiny_track)["arms"] if arm["role"] == "study"]
    assert [run.arm for run in found.runs] == study_arms
    for arm in found.runs:  # brute force over every record of that arm, replicate and budget
        records = [atomic.read_json(p) for p in (tiny_track / "runs" / "w0_s0" / arm.arm).glob("*b8192_*.json")]
        best = min(records, key=lambda r: abs(math.log(r["summary"]["final_l0"] / run.final_l0)))
        assert arm.final_l0 == best["summary"]["final_l0"] and arm.checkpoints == best["checkpoints"]
    other = world_runs.load_design(PARAMETERS, ONE_REPLICATE | {"lr": 0.02})
    refused = comparison.nearest_arm_runs(tiny_track, world_runs.PlaygroundRun(run.settings, other, run.l1_coefficient, run.record, run.checkpoints))
    assert refused.runs == [] and "differs in: lr" in refused.note
    longer = world_runs.run_design(design, run.settings.model_copy(update={"budget": 16_384}))  # drawn for 16,384 samples: other data
    moved = world_runs.PlaygroundRun(run.settings, longer, run.l1_coefficient, run.record, run.checkpoints)
    assert comparison.nearest_arm_runs(tiny_track, moved).runs == [] and "not the same data" in comparison.nearest_arm_runs(tiny_track, moved).note
    unseen = world_runs.PlaygroundRun(run.settings.model_copy(update={"training_seed": 5}), run.design, run.l1_coefficient, run.record, run.checkpoints)
    assert comparison.nearest_arm_runs(tiny_track, unseen).runs == []
    assert "no ground-truth track" in comparison.nearest_arm_runs(tiny_track / "nowhere", run).note


# ----------------------------------------------------------------------------- keep
@pytest.fixture
def parameter_copy(tmp_path) -> Path:
    folder = tmp_path / "parameters"
    shutil.copytree(PARAMETERS, folder)
    return folder


def test_a_kept_schedule_is_an_arm_file_that_the_sweep_and_the_track_accept(parameter_copy, tmp_path, monkeypatch, capsys):
    schedule = schedule_mapping("exponential", 0.3, 0.02, 0.8)
    path = keep.keep_schedule(schedule, "exponential_0.3_to_0.02", parameter_copy)
    assert path == parameter_copy / "exponential_0.3_to_0.02.yaml"
    config = load_run_config(path)
    assert config.schedule.model_dump() == {"kind": "exponential", "tau_initial": 0.3, "tau_final": 0.02, "anneal_fraction": 0.8}
    assert config.model_dump(exclude={"run_name", "description", "schedule"}) == load_run_config(parameter_copy / f"{track.PLAIN}.yaml").model_dump(
        exclude={"run_name", "description", "schedule"}
    )  # the shared base, inherited as every arm file inherits it

    # `python -m taulib sweep` lists it (its machine-timing estimate is not what is tested here, nor this machine's free
    # disk: the plan check sees a roomy machine, so that a CI disk with little space cannot fail a test of the arm file)
    import taulib.study.cost as cost
    import taulib.study.plan_check as plan_check

    monkeypatch.setattr(cost, "estimate_study", lambda *a, **k: type("Estimate", (), {"describe": lambda self: "estimate skipped"})())
    roomy = plan_check.Machine(memory_available=16 * plan_check.GB, disk_free=100 * plan_check.GB, cpu_count=2, cuda_devices=0, mps=False)
    monkeypatch.setattr(plan_check, "probe_machine", lambda outputs_root: roomy)
    assert main(["sweep", "--parameters", str(parameter_copy), "--outputs", str(tmp_path / "outputs")]) == 0
    assert "exponential_0.3_to_0.02" in capsys.readouterr().out
    arms, _ = track.track_arms(parameter_copy, track.load_track_config(parameter_copy / track.TRACK_FILE))
    assert "exponential_0.3_to_0.02" in [arm.name for arm in arms]


def test_a_kept_arm_is_described_as_the_folders_arms_are_and_a_twin_schedule_is_named(parameter_copy):
    assert keep.describe_schedule(schedule_mapping("cosine", 0.3, 0.02, 1.0)) == "Cosine τ 0.3 → 0.02 over all of training (kept from the τ playground)."
    assert (
        keep.describe_schedule(schedule_mapping("l1_warmup", 1, 1, 0.1))
        == "L1 warm-up: λ ramps linearly from 0 over the first 10% of training, then held (kept from the τ playground)."
    )
    assert keep.describe_schedule(schedule_mapping("constant", 0.2, 0.05, 1.0)) == "Constant τ = 0.2 (kept from the τ playground)."
    assert keep.same_schedule(schedule_mapping("cosine", 0.3, 0.05, 0.8), parameter_copy) == [TIGHTENED]
    assert keep.same_schedule(schedule_mapping("cosine", 0.3, 0.05, 1.0), parameter_copy) == []  # the same range over another span
    assert keep.same_schedule(schedule_mapping("cosine", 0.3, 0.04, 1.0), parameter_copy) == []


@pytest.mark.parametrize(
    ("schedule", "name", "message"),
    [
        (
            {"kind": "cosine", "tau_initial": 0.3, "tau_final": 0.5},
            "rising",
            "kind 'cosine' anneals τ downwards: tau_final \\(0.5\\) must be <= tau_initial \\(0.3\\)",
        ),
        ({"kind": "none", "tau_initial": 0.3}, "plain_with_tau", "kind 'none' is plain L1"),
        (schedule_mapping("cosine", 0.3, 0.05, 1.0), "ground_truth", "reserved"),
        (schedule_mapping("cosine", 0.3, 0.05, 1.0), "_base", "not starting with '_'"),
        (schedule_mapping("cosine", 0.3, 0.05, 1.0), "cosine_0.3_to_0.05_tightened", "exists already"),
    ],
)
def test_keep_refuses_what_the_study_would_refuse_and_writes_nothing(parameter_copy, schedule, name, message):
    before = {p.name: p.read_bytes() for p in parameter_copy.iterdir()}
    with pytest.raises(ConfigError, match=message) as refused:
        keep.keep_schedule(schedule, name, parameter_copy)
    assert {p.name: p.read_bytes() for p in parameter_copy.iterdir()} == before
    assert "taulib-keep-" not in str(refused.value)  # the message names the folder, not the scratch copy


def test_the_refusal_is_the_parameter_files_own_message(parameter_copy, tmp_path):
    rising = {"kind": "linear", "tau_initial": 0.1, "tau_final": 0.2}
    with pytest.raises(ConfigError) as kept:
        keep.keep_schedule(rising, "rising", parameter_copy)
    (tmp_path / "rising.yaml").write_text(keep.arm_file_text(rising, "rising", base=None))
    with pytest.raises(ConfigError) as loaded:
        load_run_config(tmp_path / "rising.yaml")
    assert str(kept.value).splitlines()[1:] == str(loaded.value).splitlines()[1:]


# ----------------------------------------------------------------------------- controls and curves
@pytest.mark.parametrize("kind", schedule_kinds())
def test_every_kind_maps_to_a_schedule_the_study_accepts(kind):
    schedule = validated_schedule(schedule_mapping(kind, 0.3, 0.05, 0.5))
    assert schedule.kind == kind
    RunConfig.model_validate({"run_name": "x", "schedule": schedule_mapping(kind, 0.3, 0.05, 0.5)})


def test_the_schedule_curves_are_tau_as_the_trainer_sees_it():
    schedule = TauSchedule("cosine", 0.3, 0.05, 0.5)
    progress, tau = plots.schedule_curves(schedule, 1024)
    steps = np.rint(progress * 1023).astype(int)
    assert tau == pytest.approx([schedule.at_step(int(s), 1024) for s in steps])
    assert tau[0] == pytest.approx(0.3) and tau[-1] == pytest.approx(0.05) and progress[-1] == 1
    warmup_progress, warmup_tau = plots.schedule_curves(TauSchedule("l1_warmup", anneal_fraction=0.25), 100)
    assert np.isfinite(warmup_tau).all() and warmup_tau[0] == pytest.approx(25.0) and warmup_tau[-1] == 1.0


# ----------------------------------------------------------------------------- the dictionary view
def test_matched_latents_line_up_on_the_diagonal_with_the_hierarchy_grouped():
    from taulib.groundtruth.world import WorldConfig

    world = make_world(WorldConfig.model_validate(ONE_REPLICATE["world"]), 0)
    features = plots.feature_order(world.parent.numpy(), world.feature_type)
    assert sorted(features.tolist()) == list(range(world.n_features))
    first_parent = features[0]
    assert world.feature_type[first_parent] == "parent" and set(features[1:4].tolist()) == set(world.children_of(int(first_parent)))
    # a decoder that is the true dictionary, permuted, with two extra latents: matched latents land on the diagonal
    permutation = torch.randperm(world.n_features, generator=torch.Generator().manual_seed(0))
    decoder = torch.cat([world.directions[permutation], torch.randn(2, world.directions.shape[1])])
    from taulib.groundtruth.endpoints import match_features

    matching = match_features(world.directions, decoder)
    view = world_runs.CheckpointView({}, matching.latent, matching.cosines.astype(np.float32), {})
    latents = plots.latent_order(view, features)
    assert sorted(latents.tolist()) == list(range(decoder.shape[0]))
    ordered = view.cosines[np.ix_(features, latents)]
    assert np.diag(ordered[:, : world.n_features]) == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- the language model's cache
@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory) -> tuple[Path, dict]:
    """The synthetic model's caches (seconds): what the language-model section reads, without a language model."""
    from taulib.sweep.spec import load_sweep

    outputs = tmp_path_factory.mktemp("outputs")
    assert main(["extract", "--parameters", str(PARAMETERS), "--outputs", str(outputs), "--profile", "synthetic"]) == 0
    return outputs, load_sweep(PARAMETERS, "synthetic").overrides


def test_a_short_language_model_run_scores_its_checkpoints_and_shows_a_latents_top_contexts(synthetic_cache):
    outputs, overrides = synthetic_cache
    settings = language_model.language_model_settings({"schedule": TESTED, "n_tokens": 16_384, "heldout_tokens": 2048, "n_checkpoints": 4, "l1_coefficient": 0.05})
    data = language_model.load_language_model_data(PARAMETERS, outputs, settings, overrides)
    rows = []
    run = language_model.train_on_cache(settings, data, on_checkpoint=rows.append)
    assert [row["step"] for row in rows] == [row["step"] for row in run.rows] and rows[0]["step"] == 0 and rows[-1]["step"] == 16_384 // 256
    assert rows[-1]["l0"] < rows[0]["l0"] and 0 < rows[-1]["explained_variance"] <= 1
    latent = run.most_active(1)[0]
    view = run.latent(latent, token_strings=lambda ids: [f"t{i}" for i in ids])
    with torch.no_grad():
        acts = run.sae.encode(data.heldout)[:, latent]
    assert view.contexts[0].value == pytest.approx(float(acts.max()), rel=1e-5)
    assert view.density == pytest.approx(float((acts > 0).float().mean()))
    with pytest.raises(ConfigError, match="no complete train activation cache"):
        language_model.load_language_model_data(PARAMETERS, outputs / "elsewhere", settings, overrides)
    with pytest.raises(ConfigError, match="holds 131,072 train tokens"):
        language_model.load_language_model_data(PARAMETERS, outputs, settings.model_copy(update={"n_tokens": 262_144}), overrides)


# ----------------------------------------------------------------------------- the widgets, without a browser
def test_the_widgets_redraw_refuse_train_scrub_and_keep(tiny_track, parameter_copy):
    from taulib.playground.ui import Playground

    playground = Playground(parameter_copy, tiny_track, design_overrides=ONE_REPLICATE, settings={"target_l0": 4.0} | SMALL)
    before = list(playground.schedule_plot.data[0].y)
    playground.controls.tau_final.value = 0.02
    assert list(playground.schedule_plot.data[0].y) != before and playground.schedule_plot.data[0].y[-1] == pytest.approx(0.02)
    playground.controls.tau_final.value = 1.0  # rising: refused with the study's message, training disabled
    assert "anneals τ downwards" in playground.schedule_message.value and playground.train_button.disabled
    playground.keep_name.value = "rising"
    assert playground.keep() is None and "anneals τ downwards" in playground.keep_message.value
    assert not (parameter_copy / "rising.yaml").exists()
    playground.controls.tau_final.value = 0.05
    run = playground.train()
    assert run is not None and not playground.train_button.disabled
    assert list(playground.training_plot.data[2].y) == pytest.approx([row["mcc"] for row in run.record["checkpoints"]])
    assert len(playground.training_plot.data) > len(plots.PLAYGROUND_TRACES)  # the arms drawn beside it
    plots.reset_training(playground.training_plot, "training: again")  # a new run starts: the last run's arms go
    assert len(playground.training_plot.data) == len(plots.PLAYGROUND_TRACES) and not playground.training_plot.data[0].x
    final_title = playground.similarity_plot.layout.title.text
    playground.checkpoint.value = run.steps[1]
    assert playground.similarity_plot.layout.title.text != final_title and playground.similarity_plot.layout.title.text.startswith(f"step {run.steps[1]:,}")
    playground.keep_name.value = "tightened_again"
    assert playground.keep() == parameter_copy / "tightened_again.yaml"
    assert f"also {TIGHTENED}&#x27;s, so the study trains it twice" in playground.keep_message.value  # HTML-escaped


# ----------------------------------------------------------------------------- the notebook, headless
@pytest.mark.notebook
def test_papermill_runs_the_playground_notebook_headless_training_both_sections(tiny_track, synthetic_cache, tmp_path):
    import nbformat

    from taulib.study.run import NOTEBOOKS_DIR, execute_notebook

    outputs, _ = synthetic_cache
    executed = tmp_path / "07.ipynb"
    parameters = {
        "parameters_dir": str(PARAMETERS),
        "track_dir": str(tiny_track),
        "kept_track_dir": None,
        "outputs_dir": str(outputs),
        "design_overrides": ONE_REPLICATE,
        "playground_settings": {"target_l0": 4.0, "budget": 8192},
        "language_model_settings": {"n_tokens": 16_384, "heldout_tokens": 2048},
        "language_model_profile": "synthetic",
        "train_now": True,
        "figures_dir": str(tmp_path / "figures"),
        "save_png": False,
    }
    execute_notebook(NOTEBOOKS_DIR / "07_tau_playground.ipynb", executed, parameters)
    text = "\n".join(
        output.get("text", "") for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )
    assert "trained in" in text and "compared with the track's runs of replicate w0_s0 at 8,192 samples" in text
    assert "on 16,384 tokens" in text
    for name in ("07_playground_schedule", "07_playground_training", "07_playground_dictionary", "07_playground_language_model"):
        assert (tmp_path / "figures" / f"{name}.html").is_file(), name
