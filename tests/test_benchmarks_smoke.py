"""The benchmark scripts run (quick mode: tiny synthetic data and a tiny random model) and produce
their tables. Nothing here is timed against a goal; the reference trainers' rows are skipped where
dictionary-learning and sae-lens are not installed (they live in .venv-bench)."""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield {
            name: importlib.import_module(name)
            for name in (
                "common",
                "training_speed",
                "extraction_speed",
                "scaling",
                "study_stages",
                "sparse_latents",
                "matmul_kernels",
                "gpu_path",
                "latent_formation_cost",
                "latent_contexts_cost",
                "quality_curve",
                "regime_curve",
                "ceilings",
                "ground_truth_track",
                "playground",
                "evaluation_carry_over",
                "batched_step",
                "probing_resolution",
                "reference_formation_truth",
                "ground_truth_estimate",
            )
        }
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_training_speed_quick(scripts, tmp_path):
    """bfloat16 is timed where this CPU runs it fast (AVX512-BF16, AMX), and said to be skipped elsewhere."""
    from taulib.precision import fast_bfloat16

    results = tmp_path / "RESULTS.md"
    out = scripts["training_speed"].main(["--quick", "--results", str(results)])
    dtypes = {"float32", "bfloat16"} if fast_bfloat16("cpu") else {"float32"}
    taulib = {row["dtype"]: row for row in out["rows"] if row["trainer"] == "taulib"}
    assert set(taulib) == dtypes and {row["dtype"] for row in out["variants"]} == dtypes
    assert fast_bfloat16("cpu") or any("bfloat16 not timed" in note for note in out["notes"])
    assert all(row["tokens_per_second"] > 0 for row in out["rows"])
    assert all(value > 0 for value in out["ceilings"].values())
    references = {row["trainer"] for row in out["rows"]} - {"taulib"}
    for module, name in (("dictionary_learning", "dictionary_learning StandardTrainer"), ("sae_lens", "SAELens SAETrainer (standard)")):
        installed = importlib.util.find_spec(module) is not None
        assert (name in references) == installed
        assert installed or any(module in note for note in out["notes"])  # skipped, and said so
    assert {row["variant"] for row in out["variants"]} >= {"autograd, foreach Adam (taulib before)", "hand-written gradients, fused Adam (taulib now)"}
    # the whole run: every trainer trained from the same start, timed over all its steps, then evaluated
    assert {(row["trainer"], row["dtype"]) for row in out["whole_run"]} == {(row["trainer"], row["dtype"]) for row in out["rows"]}
    assert all(row["seconds"] > 0 and row["steps"] == 20 and math.isfinite(row["heldout_explained_variance"]) for row in out["whole_run"])
    assert {row["dtype"] for row in out["end_to_end"]} == dtypes
    trained = {row["dtype"]: row for row in out["trained"] if row["trainer"] == "taulib"}
    assert set(trained) == dtypes and all(0 <= row["l0"] <= 256 and row["tokens_per_second"] > 0 for row in trained.values())
    assert all(math.isfinite(row["heldout_explained_variance"]) for row in out["end_to_end"])
    text = results.read_text()
    assert text.count("<!-- BEGIN training_speed -->") == 1 and "| taulib | float32 |" in text and "**A whole run.**" in text
    assert "Activations: synthetic sparse directions" in text
    assert ("| taulib | bfloat16 |" in text) == ("bfloat16" in dtypes)


def test_training_speed_dtypes_and_section(scripts, tmp_path):
    """--dtypes is checked before anything runs; --section writes a second section beside the first."""
    with pytest.raises(SystemExit):
        scripts["training_speed"].parse(["--dtypes", "float64"])
    with pytest.raises(SystemExit):
        scripts["training_speed"].parse(["--run-steps", "-1"])
    assert scripts["training_speed"].parse(["--dtypes", "bfloat16, float32"]).dtypes == ["bfloat16", "float32"]
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- BEGIN training_speed -->\nthe first machine's\n<!-- END training_speed -->\n")
    scripts["training_speed"].main(
        ["--quick", "--dtypes", "float32", "--section", "training_speed_second", "--no-explore", "--trained-l0", "0", "--results", str(results)]
    )
    text = results.read_text()
    assert "the first machine's" in text and text.count("<!-- BEGIN training_speed_second -->") == 1
    assert "--dtypes float32 --section training_speed_second" in text and "float32 (`benchmarks/training_speed.py`)" in text


def test_extraction_speed_quick(scripts, tmp_path):
    out = scripts["extraction_speed"].main(["--quick", "--results", str(tmp_path / "RESULTS.md")])
    readers = {(row["reader"], row["dtype"]) for row in out["rows"]}
    assert len(readers) == 6 and all(row["tokens_per_second"] > 0 for row in out["rows"])


def test_ceilings_quick(scripts, tmp_path):
    out = scripts["ceilings"].main(["--quick", "--results", str(tmp_path / "RESULTS.md")])
    assert [(row["width"], row["side"]) for row in out["training"]] == [(w, side) for w in (64, 128) for side in ("dense", "dense", "sparse")]
    for row in out["training"]:
        assert row["share"] == pytest.approx(row["gflops"] / out["ceiling"]) and row["tokens_per_second"] > 0
    # the trainer takes one side at the sparse density: the sparse one exactly when the density is within its switch
    for width in (64, 128):
        chosen = [row["side"] for row in out["training"][1:] if row["width"] == width and row["chosen"] and row["state"].startswith("L0")]
        switch = next(row["switch"] for row in out["training"] if row["width"] == width)
        assert chosen == ["sparse" if 4 / width <= switch else "dense"]
    assert out["extraction_share"] > 0 and "of the ceiling" in (tmp_path / "RESULTS.md").read_text()


def test_extraction_flops_count_the_blocks_weights_and_attention(scripts):
    """The tiny Gemma 3 (hidden 64, MLP 128, 2 query heads and 1 key-value head of 32), hooked after block 1:
    per block q 64·64, k and v 64·32, o 64·64, gate, up and down 64·128 weights; attention over 16 positions."""
    loaded = scripts["extraction_speed"].tiny_model()
    weights_per_block = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128
    attention_per_block = 4 * 2 * 32 * (16 + 1) / 2
    assert scripts["ceilings"].extraction_flops_per_token(loaded, 16) == 2 * (2 * weights_per_block + attention_per_block)


@pytest.mark.model
def test_gpu_path_quick_on_the_cpu(scripts, tmp_path):
    """The GPU path's script, run on the CPU: extraction, training at two shapes and evaluation through the study's code."""
    results = tmp_path / "RESULTS.md"
    out = scripts["gpu_path"].main(["--device", "cpu", "--quick", "--outputs", str(tmp_path / "outputs"), "--results", str(results)])
    assert out["extraction"]["tokens_this_session"] == 4096 and out["extraction"]["tokens_per_second"] > 0
    assert [row["shape"] for row in out["trained"]] == ["640 → 256", "64 → 256"]
    assert all(row["complete"] and row["tokens_per_second_this_session"] > 0 for row in out["trained"])
    assert out["evaluation"]["checkpoints"] == 4 and 0 < out["evaluation"]["final"]["explained_variance"] <= 1
    text = results.read_text()
    assert text.count("<!-- BEGIN gpu_path -->") == 1 and "| 640 → 256 | extracted |" in text


def test_scaling_quick(scripts, tmp_path):
    out = scripts["scaling"].main(["--quick", "--results", str(tmp_path / "RESULTS.md")])
    assert [row["width"] for row in out["widths"]] == [128, 256] and all(row["tokens_per_second"] > 0 for row in out["widths"])
    assert [row["tokens"] for row in out["budgets"]] == [2048, 4096] and all(row["wall_seconds"] > 0 for row in out["budgets"])


def test_sparse_latents_quick(scripts, tmp_path):
    out = scripts["sparse_latents"].main(["--quick", "--results", str(tmp_path / "RESULTS.md")])
    rows = out["rows"]
    assert [row["dtype"] for row in rows] == ["float32"] * 4 + ["bfloat16"] * 4
    # the shifted encoder biases give the densities asked for (2%, 10%, 30% of a 128-token batch), then the fresh SAE's
    assert [round(row["density"], 2) for row in rows[:3]] == [0.02, 0.1, 0.3]
    assert rows[3]["fresh"] and rows[3]["density"] == pytest.approx(out["initial_density"])
    assert all(row["dense_ms"] > 0 and row["sparse_ms"] > 0 for row in rows)
    assert 0 < out["initial_density"] < 1 and "fresh SAE" in (tmp_path / "RESULTS.md").read_text()


def test_matmul_kernels_quick(scripts, tmp_path):
    out = scripts["matmul_kernels"].main(["--quick", "--results", str(tmp_path / "RESULTS.md")])
    rows = out["rows"]
    assert len(rows) == 5 and all(row["blas_ms"] > 0 and row["onednn_ms"] > 0 for row in rows)
    assert all(row["taulib"] == "torch.mm" for row in rows), "a 256-latent SAE is below ONEDNN_MIN_LATENTS"
    assert "taulib's rule picks" in (tmp_path / "RESULTS.md").read_text()


def _write(path: Path, data: dict, when: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    os.utime(path, (when, when))


def test_study_stages_splits_a_study(scripts, tmp_path):
    start = 1_000_000.0
    _write(
        tmp_path / "activations" / "c_train" / "manifest.json",
        {"spec": {"split": "train"}, "n_tokens": 1000, "stats": {"seconds_this_session": 40.0}},
        start + 45,
    )
    run = tmp_path / "arm"
    _write(run / "summary.json", {"train_seconds_this_session": 100.0, "resumed_from_step": 0}, start + 160)
    _write(run / "evaluation" / "evaluation.json", {"key": "k"}, start + 190)
    for step in (0, 5):
        _write(run / "evaluation" / "records-k" / f"step_{step:07d}.json", {}, start + 180)
    (run / "evaluation" / "metrics.csv").write_text("step\n0\n5\n")
    os.utime(run / "evaluation" / "metrics.csv", (start + 190, start + 190))
    _write(tmp_path / "study_summary.json", {"seconds": 200.0, "runs": [{"run_name": "arm", "status": "ok", "seconds": 150.0}]}, start + 200)

    result = scripts["study_stages"].main([str(tmp_path), "--results", str(tmp_path / "RESULTS.md")])
    stages = {name: seconds for name, seconds, _ in result["stages"]}
    assert stages["activation extraction"] == 40.0
    assert stages["training"] == 100.0
    assert stages["evaluation of the checkpoints"] == pytest.approx(30.0)
    assert sum(stages.values()) == pytest.approx(200.0)
    assert result["runs"][0]["checkpoints_evaluated"] == 2
    # the ground-truth track run first inside the study (--ground-truth): its own stage, the rest unchanged
    summary = {"seconds": 230.0, "ground_truth": "gt", "ground_truth_seconds": 30.0, "runs": [{"run_name": "arm", "status": "ok", "seconds": 150.0}]}
    _write(tmp_path / "study_summary.json", summary, start + 200)
    with_track = {name: seconds for name, seconds, _ in scripts["study_stages"].main([str(tmp_path), "--no-write"])["stages"]}
    assert with_track["ground-truth track (calibration, runs, report)"] == 30.0
    without = {name: seconds for name, seconds in stages.items() if not name.startswith("ground-truth")}
    assert {name: seconds for name, seconds in with_track.items() if not name.startswith("ground-truth")} == pytest.approx(without)


def test_study_stages_counts_a_sweep_probe_in_the_calibration(scripts, tmp_path):
    """A seed-0 run trained as a calibration probe, before its notebook: its training is the
    calibration's, its evaluation runs from the notebook's start to metrics.csv."""
    start = 1_000_000.0
    run = tmp_path / "arm__lam0.5__seed0"
    _write(run / "summary.json", {"train_seconds_this_session": 15.0, "resumed_from_step": 0}, start + 60)  # during calibration
    _write(run / "evaluation" / "evaluation.json", {"key": "k"}, start + 150)
    (run / "evaluation" / "metrics.csv").write_text("step\n0\n")
    os.utime(run / "evaluation" / "metrics.csv", (start + 150, start + 150))
    (run / "02_train.ipynb").write_text("{}")
    os.utime(run / "02_train.ipynb", (start + 160, start + 160))  # the notebook ran 60 s, from start + 100
    summary = {
        "seconds": 200.0,
        "extraction_seconds": 20.0,
        "calibration_seconds": 70.0,
        "runs": [{"run_name": run.name, "status": "ok", "seconds": 60.0}],
        "analyses": [{"notebook": "03.ipynb", "seconds": 30.0}],
    }
    _write(tmp_path / "study_summary.json", summary, start + 200)

    result = scripts["study_stages"].main([str(tmp_path), "--no-write"])
    stages = {name.split(" (")[0]: seconds for name, seconds, _ in result["stages"]}
    assert stages["λ calibration"] == 70.0 and stages["training"] == 0.0 and stages["analysis notebooks"] == 30.0
    assert stages["evaluation of the checkpoints"] == pytest.approx(50.0)  # from the notebook's start (start + 100) to metrics.csv
    assert result["runs"][0]["trained_in"] == "calibration"
    assert sum(stages.values()) == pytest.approx(200.0)


def test_sections_are_rewritten_in_place(scripts, tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nkept\n")
    common = scripts["common"]
    common.write_section("demo", "Demo", "first", path)
    common.write_section("other", "Other", "second", path)
    common.write_section("demo", "Demo", "third", path)
    text = path.read_text()
    assert "kept" in text and "third" in text and "first" not in text and text.count("<!-- BEGIN demo -->") == 1
    assert text.index("third") < text.index("second")  # stays where it was


def test_latent_formation_cost_quick(scripts, tmp_path):
    results = tmp_path / "RESULTS.md"
    measured = scripts["latent_formation_cost"].main(["--quick", "--results", str(results)])
    assert set(measured) == {64, 256} and all(seconds["hungarian"] > 0 and seconds["max"] > 0 for seconds in measured.values())
    text = results.read_text()
    assert "<!-- BEGIN latent_formation_cost -->" in text and "| 256 |" in text


def test_latent_contexts_cost_quick(scripts, tmp_path):
    results = tmp_path / "RESULTS.md"
    measured = scripts["latent_contexts_cost"].main(["--quick", "--results", str(results)])
    quick = measured["quick"]
    assert quick["per_run"] == pytest.approx(3 * quick["per_checkpoint"]) and quick["contexts"] > 0 and quick["bytes"] > 0
    assert 0.3 < quick["l0"] / (64 / 100) < 3  # each random latent fires on about 1% of tokens
    text = results.read_text()
    assert "<!-- BEGIN latent_contexts_cost -->" in text and "| quick | 64 | 2,048 | 3 |" in text


def test_quality_curve_chooses_lambdas_that_bracket_the_target_at_every_token_count(scripts):
    """On a known frontier (L0 = c_t · λ^-1.75, c_t falling with training tokens as a real run's does) the
    λ search brackets the target at every token count within three runs, then stops."""
    choose = scripts["quality_curve"]._next_lambda
    scale = {1: 51.2 * 0.6459**1.75, 2: 32.8 * 0.6459**1.75, 3: 23.7 * 0.6459**1.75}  # the 1,024-latent run's L0 at 0.5M, 1M, 8M tokens

    def l0s(coefficient: float) -> dict[int, float]:
        return {step: c * coefficient**-1.75 for step, c in scale.items()}

    points = {0.6459: l0s(0.6459)}  # L0 51.2 > 50 at the first count only: λ must rise for it, fall for the others
    while (coefficient := choose(points, list(scale), 50.0)) is not None:
        assert coefficient not in points and len(points) < 3
        points[coefficient] = l0s(coefficient)
    for step in scale:
        assert min(p[step] for p in points.values()) < 50 < max(p[step] for p in points.values())
    assert choose({0.5: {1: 60.0}, 0.9: {1: 40.0}}, [1], 50.0) is None  # bracketed already


def test_regime_curve_refuses_a_bad_grid_point_and_aims_its_first_run_at_the_target(scripts):
    point_of = scripts["regime_curve"].Point.parse
    with pytest.raises(SystemExit, match="--grid '3e-3:0.2:1024'"):
        point_of("3e-3:0.2:1024")
    point = point_of("3e-4:0:1024:500000")
    assert (point.lr, point.decay, point.batch, point.tokens) == (3e-4, 0.0, 1024, 500_000)
    # at the old default's learning rate the first λ is the one its frontier puts at the target (L0 51.2 at λ 0.6459)
    assert point.first_lambda(51.2) == pytest.approx(0.6459)
    assert point_of("3e-3:0.2:512:500000").first_lambda(50.0) < point.first_lambda(50.0)  # a higher lr lands sparser
    config = point_of("3e-3:0.2:512:500000").config(0.4)
    assert (config.training.lr, config.training.lr_decay_fraction, config.training.batch_size, config.training.l1_coefficient) == (3e-3, 0.2, 512, 0.4)


def test_ground_truth_track_quick_keeps_its_report_and_writes_readme_from_it(scripts, tmp_path):
    """The benchmark on a tiny design: RESULTS gets its section; --keep writes the kept report with its stamp and
    README's ground-truth block is generated from it."""
    from taulib.groundtruth.report import README_BEGIN, README_END, readme_block

    tiny = ['world={"d_model": 16, "n_features": 24, "n_parents": 2, "children_per_parent": 3, "n_rare": 2, "mean_active_features": 3.0}']
    tiny += ["world_seeds=[0, 1]", "training_seeds=[0, 1, 2]", "budgets=[4096]", "batch_size=128", "n_checkpoints=5", "heldout_samples=1024"]
    tiny += ["l0_targets=[3.0, 4.5]", "workers=1", "tau_initial_family=[0.3]", "tau_final_family=[0.05]"]
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_BEGIN}\n{README_END}\n\nafter\n")
    results = tmp_path / "RESULTS.md"
    kept = tmp_path / "findings"
    arguments = ["--results", str(results), "--readme", str(readme), "--keep", str(kept), "--outputs", str(tmp_path / "gt")]
    out = scripts["ground_truth_track"].main(arguments + [part for pair in tiny for part in ("--set", pair)])
    assert "ground_truth_track" in results.read_text() and out["summary"]["runs"] > 0
    assert "| formation_time | recovery_time |" in results.read_text()  # the proxy table's columns in their order
    stamp = json.loads((kept / "provenance.json").read_text())
    assert set(stamp) >= {"commit", "cpu", "command", "date"}
    assert (kept / "REPORT.md").read_text().startswith("> Kept report: made at commit")
    text = readme.read_text()
    assert readme_block(kept, "findings/REPORT.md") in text and text.endswith("after\n")


@pytest.mark.notebook
def test_playground_quick_times_a_run_and_the_redraws_in_the_kernel_and_in_jupyterlab(scripts, tmp_path):
    results = tmp_path / "RESULTS.md"
    measured = scripts["playground"].main(["--quick", "--browser", "--results", str(results)])
    assert all(measured[f"browser_{key}_max_s"] >= measured[f"browser_{key}_median_s"] > 0 for key in ("schedule", "train", "checkpoint"))
    assert measured["first_run_s"] > 0 and measured["lambda_run_s"] > 0 and measured["checkpoint_redraw_s"] > 0 and measured["probes"] >= 1
    text = results.read_text()
    assert "<!-- BEGIN playground -->" in text and "a default run under 20 s" in text and "In JupyterLab" in text


def test_evaluation_carry_over_reads_an_older_study(scripts, tmp_path):
    """A study evaluated before the families had records of their own: its records carried over, nothing evaluated,
    metrics.csv as it was; a record that cannot be attributed: that checkpoint evaluated again, by both families."""
    import json

    from family_records import trained_synthetic_run, write_records_as_before

    from taulib.metrics.evaluate import evaluate_run

    run_dir, outputs, config = trained_synthetic_run(tmp_path / "study")
    table = evaluate_run(run_dir, outputs, show_progress=False)
    old = write_records_as_before(run_dir, config, table)
    (outputs / "study_summary.json").write_text(json.dumps({"runs": [{"run_name": run_dir.name, "status": "ok"}]}))
    results = tmp_path / "RESULTS.md"
    result = scripts["evaluation_carry_over"].main([str(outputs), "--results", str(results)])
    assert (result["runs"], result["evaluated"], result["identical"]) == (1, 0, 1)
    assert "6 of 6 family records carried over" in results.read_text()  # core and orthogonality at 3 checkpoints

    step = json.loads(next(old.glob("step_*.json")).read_text())["scalars"]["step"]
    record = json.loads((old / f"step_{step:07d}.json").read_text())
    (old / f"step_{step:07d}.json").write_text(json.dumps(record | {"scalars": record["scalars"] | {"a_column_of_no_family": 1.0}}))
    result = scripts["evaluation_carry_over"].main([str(outputs), "--no-write"])
    assert (result["evaluated"], result["identical"]) == (2, 1)


def test_batched_step_quick_reaches_the_separate_steps_weights(scripts, tmp_path):
    """The batched step is the separate steps' arithmetic: after 5 steps from one start the decoder weights agree to the
    compute dtype's rounding, far closer than they moved."""
    from taulib.precision import fast_bfloat16

    out = scripts["batched_step"].main(["--quick", "--results", str(tmp_path / "RESULTS.md")])
    checks = out["checks"]
    # against how far the weights moved: a wrong gradient or update would differ by about that much
    assert checks["float32"]["moved"] > 1e-3 and checks["float32"]["difference"] < 1e-3 * checks["float32"]["moved"]
    assert ("bfloat16" in checks) == fast_bfloat16("cpu")
    if "bfloat16" in checks:  # bf16 products round at 2^-8, and Adam's first steps follow the gradient's sign
        assert checks["bfloat16"]["difference"] < 0.25 * checks["bfloat16"]["moved"]
    assert all(row["separate_ms"] > 0 and row["batched_ms"] > 0 for row in out["rows"])
    assert "batched_step" in (tmp_path / "RESULTS.md").read_text()


def test_equilibrium_ends_the_anneal_early_for_annealed_arms_only():
    """benchmarks/equilibrium.py varies `schedule.anneal_fraction` of the annealed arms; plain L1 has no anneal to end."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        equilibrium = importlib.import_module("equilibrium")
    finally:
        sys.path.remove(str(BENCHMARKS))
    tightened = equilibrium.arm_config("cosine_0.3_to_0.05_tightened", 0.8, 0.05)
    assert tightened.schedule.anneal_fraction == 0.8 and tightened.training.l1_coefficient == 0.05
    schedule = tightened.schedule.to_schedule()
    assert schedule.at_step(800, 1000) == pytest.approx(0.05) and schedule.at_step(999, 1000) == pytest.approx(0.05)  # held from 80% on
    plain = equilibrium.arm_config("baseline_plain_l1", 0.8, 0.4)
    assert plain.schedule.kind == "none" and plain.schedule.anneal_fraction == 1.0


def test_document_spread_counts_the_documents_each_cap_leaves(scripts, monkeypatch, tmp_path):
    """benchmarks/document_spread.py on a stand-in corpus and tokenizer: one id per word, so the counts are known."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spread = importlib.import_module("document_spread")
    finally:
        sys.path.remove(str(BENCHMARKS))

    class Words:
        def __call__(self, texts, add_special_tokens=False):
            if isinstance(texts, str):
                return {"input_ids": [] if not texts.strip() else [5] * len(texts.split())}
            return {"input_ids": [[5] * len(text.split()) for text in texts]}

    # one long document (1,000 words) then 600 of 10 words: uncapped, the first 1,000 tokens are one document
    documents = ["w " * 1000] + ["w " * 10] * 600
    monkeypatch.setattr(spread, "load_tokenizer", lambda config: Words())
    monkeypatch.setattr(spread, "iter_documents", lambda split, seed=0: iter(documents))
    config = spread.load_run_config(spread.ARM)
    config = config.model_copy(update={"activations": config.activations.model_copy(update={"n_tokens": 3000, "heldout_tokens": 2000})})
    config = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"core": config.evaluation.core.model_copy(update={"tokens": 1000})})})
    monkeypatch.setattr(spread, "load_run_config", lambda path: config)
    out = spread.main(["--caps", "0", "10"])
    uncapped, capped = out["rows"]
    assert uncapped[1] == 1 and uncapped[2] == "100%"  # the EV sample: the long document alone
    # capped at 10 (this tokenizer gives the separator no ids): every document 10 tokens, so 1,000 tokens are 100 documents
    assert capped[1] == 100 and capped[2] == "1%" and capped[4] == 200 and capped[5] == 300


def test_probing_resolution_projects_the_texts_a_lift_needs_from_its_test_set_error(scripts):
    """A lift exactly 1.96 standard errors from 0 is resolved at the texts it has; half the lift needs four times the
    texts (the error falls as 1/√texts); a lift of 0 is never resolved."""
    needed = scripts["probing_resolution"].examples_per_class_needed
    assert needed(1.96 * 0.02, 0.02, 100) == pytest.approx(100)
    assert needed(-1.96 * 0.02, 0.02, 100) == pytest.approx(100)  # a negative lift alike
    assert needed(0.98 * 0.02, 0.02, 100) == pytest.approx(400)
    assert needed(0.0, 0.02, 100) == math.inf


def test_reference_formation_on_the_truth_times_each_run_against_the_other_seeds_consensus(scripts):
    """Runs of three seeds whose final dictionaries all hold four shared directions (their other latents their own), each
    run forming them at a known checkpoint: every run's reference is those four directions, taken from the other seeds,
    and its reference formation is the checkpoint at which it formed them; a run of another world votes on nothing."""
    import numpy as np

    from taulib.analysis.reference_formation import ReferenceSettings

    module = scripts["reference_formation_truth"]
    d, positions = 32, [0.0, 0.25, 0.5, 1.0]
    shared = np.eye(d, dtype=np.float32)[:4]
    generator = np.random.default_rng(0)

    def own(rows: int) -> np.ndarray:
        return generator.standard_normal((rows, d)).astype(np.float32)

    runs, formed_at = [], {}
    for world in (0, 1):
        for seed in (0, 1, 2):
            for arm, checkpoint in (("a", 1 + seed % 2), ("b", 3)):
                final = np.concatenate([shared, own(4)]) if world == 0 else own(8)
                decoders = [np.concatenate([own(4), final[4:]]) if c < checkpoint else final for c in range(len(positions))]
                name = f"w{world}_s{seed}_{arm}"
                formed_at[name] = positions[checkpoint]
                runs.append(
                    {"name": name, "world_seed": world, "training_seed": seed, "l0_target": 8.0, "replicate": f"w{world}_s{seed}", "arm": arm}
                    | {"decoders": np.stack(decoders), "alive": np.ones(8, dtype=bool), "positions": positions, "final_l0": 8.0}
                )
    frame = module.with_reference_formation(runs, ReferenceSettings()).set_index("name")
    for name, at in formed_at.items():
        if name.startswith("w0"):
            assert frame.loc[name, "reference_directions"] == 4 and frame.loc[name, "reference_formation"] == at, name
            assert frame.loc[name, "reference_held_at_end"] == 1.0
        else:
            assert frame.loc[name, "reference_directions"] == 0  # nothing the other seeds share


def test_reference_formation_on_the_truth_keeps_each_grid_runs_target(scripts):
    """The grid is the track's (each target's calibrated coefficient × 1.1^±1, every replicate), each run with the target
    it was placed around, even where two targets share a calibrated coefficient."""
    from taulib.groundtruth.track import TRACK_FILE, arm_budgets, coefficient_grid, load_track_config, track_arms
    from tiny_track import TINY

    config = load_track_config(Path(__file__).resolve().parents[1] / "parameters" / TRACK_FILE, TINY | {"budgets": [8192]})
    arms = [arm for arm in track_arms(Path(__file__).resolve().parents[1] / "parameters", config)[0] if arm.role == "study"]
    calibration = {arm.name: {3.0: 2.0, 4.5: 1.0 if arm.name != "l1_warmup" else 2.0} for arm in arms}
    planned = scripts["reference_formation_truth"].grid(config, arms, calibration)
    assert len(planned) == len(config.replicates) * len(arms) * 2 * len(config.l0_targets)
    for arm in arms:
        assert arm_budgets(config, arm)[-1] == 8192
        coefficients = sorted(spec.coefficient for spec, _ in planned if spec.arm.name == arm.name and spec.replicate == "w0_s0")
        assert coefficients == pytest.approx(coefficient_grid(config, calibration[arm.name], arm))
        for spec, target in planned:
            if spec.arm.name == arm.name:
                assert spec.coefficient / calibration[arm.name][target] == pytest.approx(1.1 ** (1 if spec.grid_index % 2 else -1))


def test_ground_truth_estimate_reads_the_tracks_wall_time_from_its_first_probe_to_its_report(scripts, tmp_path):
    """The first probe written at t = 100 s after 4 s of its own work, the report at 700 s: 604 s of track."""
    probe = tmp_path / "runs" / "w0_s0" / "baseline_plain_l1" / "probe_b4096_1.json"
    _write(probe, {"seconds": 4.0}, 100.0)
    _write(tmp_path / "runs" / "w0_s0" / "l1_warmup" / "probe_b4096_2.json", {"seconds": 50.0}, 300.0)  # a later probe
    (tmp_path / "REPORT.md").write_text("# report")
    os.utime(tmp_path / "REPORT.md", (700.0, 700.0))
    assert scripts["ground_truth_estimate"].actual_seconds(tmp_path) == pytest.approx(604.0)
    with pytest.raises(SystemExit, match="not a finished track"):
        scripts["ground_truth_estimate"].actual_seconds(tmp_path / "runs")
