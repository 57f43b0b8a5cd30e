"""The ground-truth track: the synthetic model (taulib.activations.synthetic), its cache, its configuration,
and the exact disentanglement metrics (taulib.metrics.ground_truth.metric) on cases with known answers."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from taulib import atomic
from taulib.activations.cache import CacheError, activation_spec, cache_folder, load_cache, verify_cache
from taulib.activations.synthetic import (
    DICTIONARY_FILE,
    ensure_synthetic_activations,
    load_true_dictionary,
    mutual_coherence,
    synthetic_samples,
    true_dictionary,
)
from taulib.config import ConfigError, RunConfig, SyntheticConfig, config_from_mapping
from taulib.metrics.evaluate import evaluate_run, evaluation_key, read_ground_truth_recovery
from taulib.metrics.ground_truth.metric import ground_truth_metrics, recovery_steps
from taulib.study.plan_check import Machine, PlanError, check_plan
from taulib.sweep.spec import load_sweep, run_config
from taulib.train.trainer import AnnealedTrainer

PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"
SMALL = {"d_model": 16, "n_features": 24, "max_coherence": 0.6, "mean_active_features": 2.0, "seed": 3}


def synthetic_config(synthetic: dict, **sections) -> RunConfig:
    data = {
        "run_name": "synthetic_run",
        "model": {"name": "synthetic", "synthetic": synthetic},
        "activations": {"n_tokens": 3000, "heldout_tokens": 1000, "shard_tokens": 1024, "storage_dtype": "float32"},
        "sae": {"width": 48},
        "training": {"n_tokens": 4096, "batch_size": 256, "n_checkpoints": 3, "threads": 1},
        "evaluation": {"core": {"tokens": 1000}},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return config_from_mapping(data)


# ----------------------------------------------------------------------------- the metric, on known cases
def test_max_cosines_and_recovered_share_on_a_known_dictionary():
    true = torch.eye(4)
    decoder = torch.tensor(
        [
            [2.0, 0.0, 0.0, 0.0],  # e0 exactly (a row's norm does not matter)
            [0.0, 1.0, 1.0, 0.0],  # between e1 and e2: cosine 1/√2 with each
            [0.0, 0.0, 0.0, -1.0],  # −e3: a ReLU latent cannot reconstruct +e3 with it
            [0.3, 0.0, 0.0, 0.95],  # near e3: cosine 0.95/√(0.3² + 0.95²)
        ]
    )
    metrics, best = ground_truth_metrics(true, decoder, threshold=0.9)
    near_e3 = 0.95 / math.hypot(0.3, 0.95)
    assert best == pytest.approx([1.0, 1 / math.sqrt(2), 1 / math.sqrt(2), near_e3])
    assert metrics.gt_mean_max_cosine == pytest.approx((1 + 2 / math.sqrt(2) + near_e3) / 4)
    assert metrics.gt_recovered_fraction == pytest.approx(2 / 4)  # e0 and e3 (0.953 > 0.9), not e1, e2
    assert metrics.gt_n_features == 4


def test_recovery_step_is_the_first_checkpoint_from_which_a_feature_stays_recovered():
    steps = [0, 10, 20, 30]
    cosines = np.array(
        [
            # lost then regained, always, recovered then lost, late
            [0.50, 0.95, 0.20, 0.10],
            [0.95, 0.95, 0.95, 0.20],
            [0.50, 0.95, 0.95, 0.91],
            [0.95, 0.95, 0.30, 0.99],
        ]
    )
    assert recovery_steps(steps, cosines, 0.9).tolist() == [30, 0, -1, 20]
    with pytest.raises(ValueError, match="strictly increasing"):
        recovery_steps([0, 20, 10, 30], cosines)
    with pytest.raises(ValueError, match="checkpoints = 3"):
        recovery_steps([0, 10, 20], cosines)


# ----------------------------------------------------------------------------- the synthetic model
def test_the_dictionary_keeps_its_coherence_bound_and_the_firing_follows_the_power_law():
    config = SyntheticConfig(d_model=16, n_features=48, max_coherence=0.5, mean_active_features=3.0, frequency_exponent=1.0, seed=1)
    directions = true_dictionary(config)
    assert directions.shape == (48, 16)
    assert torch.allclose(directions.norm(dim=1), torch.ones(48), atol=1e-6)
    assert mutual_coherence(directions) <= 0.5 < mutual_coherence(torch.randn(48, 16, generator=torch.Generator().manual_seed(1)))
    probabilities = np.array(config.firing_probabilities())
    assert probabilities.sum() == pytest.approx(3.0)
    assert probabilities[0] / probabilities[9] == pytest.approx(10.0)  # p_i ∝ 1/(i+1)
    # noise-free: a sample with no feature firing is exactly zero, and the features fire independently
    exact = config.model_copy(update={"noise_std": 0.0})
    samples, largest = synthetic_samples(exact, directions, 20_000, torch.Generator().manual_seed(0))
    assert torch.equal(samples[largest < 0], torch.zeros(int((largest < 0).sum()), 16))
    assert float((largest >= 0).float().mean()) == pytest.approx(1 - np.prod(1 - probabilities), abs=0.01)  # P(at least one fires)
    # the commonest feature is the largest one on its own samples at least as often as it fires alone
    assert float((largest == 0).float().mean()) >= probabilities[0] * np.prod(1 - probabilities[1:]) - 0.01
    # with the dense noise: its per-coordinate spread where nothing fires
    noisy, largest = synthetic_samples(config.model_copy(update={"noise_std": 0.2}), directions, 20_000, torch.Generator().manual_seed(0))
    assert float(noisy[largest < 0].std()) == pytest.approx(0.2, rel=0.05)


def test_the_synthetic_cache_is_deterministic_resumable_and_passes_verify_cache(tmp_path, monkeypatch):
    config = synthetic_config(SMALL)
    folders = ensure_synthetic_activations(config, tmp_path / "a", show_progress=False)
    for split, folder in folders.items():
        spec = activation_spec(config, split, 0)
        verify_cache(folder, spec)
        assert load_cache(folder, spec).activations.shape == (spec.n_tokens, 16)
    directions, probabilities = load_true_dictionary(folders["heldout"])
    assert torch.equal(directions, true_dictionary(config.model.synthetic))
    assert probabilities.sum() == pytest.approx(2.0)

    # an extraction stopped after its first shard resumes to the same bytes
    import taulib.activations.cache as cache

    write_shard, calls = cache.write_shard, []

    def stop_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return write_shard(*args, **kwargs)

    monkeypatch.setattr(cache, "write_shard", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_activations(config, tmp_path / "b", show_progress=False)
    train_b = cache_folder(tmp_path / "b", activation_spec(config, "train", 0))
    assert not (train_b / "manifest.json").exists() and (train_b / "progress.json").exists()
    monkeypatch.setattr(cache, "write_shard", write_shard)
    resumed = ensure_synthetic_activations(config, tmp_path / "b", show_progress=False)
    for split in folders:
        names = sorted(p.name for p in folders[split].iterdir() if p.suffix == ".safetensors")
        assert names == sorted(p.name for p in resumed[split].iterdir() if p.suffix == ".safetensors")
        assert all((folders[split] / n).read_bytes() == (resumed[split] / n).read_bytes() for n in names)

    # another generator seed is another cache; an altered dictionary is refused
    assert cache_folder(tmp_path, activation_spec(synthetic_config({**SMALL, "seed": 4}), "train", 0)).name != folders["train"].name
    (folders["heldout"] / DICTIONARY_FILE).write_bytes(b"altered")
    with pytest.raises(Exception, match="checksum mismatch"):
        load_true_dictionary(folders["heldout"])
    (folders["train"] / "shard_00000.safetensors").write_bytes(b"x")
    with pytest.raises(CacheError):
        verify_cache(folders["train"])


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"name": "synthetic", "synthetic": {"d_model": 16, "n_features": 200, "max_coherence": 0.1}}, "field 'model.synthetic.max_coherence': 0.1 is unreachable"),
        ({"name": "synthetic", "synthetic": {"n_features": 8, "mean_active_features": 9.0}}, "field 'model.synthetic.mean_active_features'"),
        ({"name": "synthetic", "synthetic": {"mean_active_features": 50.0, "frequency_exponent": 2.0}}, "field 'model.synthetic.frequency_exponent'"),
        ({"name": "synthetic", "synthetic": {"n_feature": 8}}, "field 'model.synthetic.n_feature': unknown key; allowed keys: d_model, n_features"),
        ({"name": "synthetic", "synthetic": {"noise_std": -1.0}}, "field 'model.synthetic.noise_std': Input should be greater than or equal to 0"),
        ({"synthetic": {"d_model": 8}}, "it is read only with name: synthetic"),
        ({"name": "synthetic", "layer": 9}, "the synthetic model has one layer, 0: set layer: 0"),
    ],
)
def test_a_bad_synthetic_configuration_names_its_field(model, field):
    with pytest.raises(ConfigError, match=None) as error:
        config_from_mapping({"run_name": "x", "model": model})
    assert field in str(error.value)


def test_the_plan_check_knows_the_synthetic_model(tmp_path):
    machine = Machine(memory_available=8 * 10**9, disk_free=50 * 10**9, cpu_count=2, cuda_devices=0, mps=False)
    narrow = synthetic_config(SMALL, sae={"width": 16})
    with pytest.raises(PlanError, match=r"fields 'sae.width' \(16\) and 'model.synthetic.n_features' \(24\)"):
        check_plan([(Path("narrow.yaml"), narrow)], tmp_path, machine=machine)
    sweep = load_sweep(PARAMETERS, "synthetic")
    plan = check_plan([(arm.parameter_file, arm.config) for arm in sweep.arms], tmp_path, sweep=sweep, machine=machine)
    assert "language model weights" not in plan.describe(tmp_path)
    assert all(arm.config.model.is_synthetic and arm.config.evaluated_families() == ("core", "orthogonality", "decoder_drift", "support_refit", "ground_truth") for arm in sweep.arms)


def test_a_language_model_keeps_its_evaluation_key_and_records_ground_truth_as_not_applicable():
    default = config_from_mapping({"run_name": "x"})
    before = default.model_copy(update={"evaluation": default.evaluation.model_copy(update={"families": ("core", "downstream", "orthogonality", "absorption", "probing")})})
    assert evaluation_key(default) == evaluation_key(before)  # cached evaluations of the language model stay valid
    assert default.not_applicable_families() == {"ground_truth": "a language model has no known true dictionary"}
    assert "synthetic" not in default.result_defining_dict()["model"]


# ----------------------------------------------------------------------------- the trainer on easy ground truth
EASY = {
    "model": {"synthetic": {"d_model": 32, "n_features": 16, "max_coherence": 1.0, "mean_active_features": 2.0, "frequency_exponent": 0.0, "seed": 0}},
    "activations": {"n_tokens": 32_768, "heldout_tokens": 4096, "shard_tokens": 32_768},
    "sae": {"width": 32},
    "training": {"n_tokens": 65_536, "batch_size": 256, "n_checkpoints": 4},
    "evaluation": {"core": {"tokens": 4096}},
}


def test_every_arm_recovers_easy_ground_truth_and_the_evaluation_records_it(tmp_path):
    """16 orthogonal-ish features in 32 dimensions: a test of the trainer, not of annealing. Every arm, at the same
    final effective penalty λ/τ_final, recovers at least 90% of the true features."""
    sweep = load_sweep(PARAMETERS, "synthetic", overrides=EASY)
    folders = ensure_synthetic_activations(sweep.arms[0].config, tmp_path, show_progress=False)
    train = load_cache(folders["train"]).activations
    recovered = {}
    for arm in sweep.arms:
        config = run_config(arm, 1.0 * arm.config.schedule.tau_final, 0, 3.0)
        AnnealedTrainer(config, train, tmp_path / config.run_name, show_progress=False, layer=0).train()
        if arm.name == "baseline_plain_l1":
            table = evaluate_run(tmp_path / config.run_name, tmp_path, show_progress=False)
            assert {"gt_mean_max_cosine", "gt_recovered_fraction", "l0", "mean_max_cosine"} <= set(table.columns)
            assert not {"ce_loss_score", "absorption_fraction"} & set(table.columns)  # not applicable: absent, not NaN
            summary = atomic.read_json(tmp_path / config.run_name / "evaluation" / "evaluation.json")
            assert set(summary["not_applicable"]) == {"downstream", "absorption", "probing", "probing_baseline"}
            recovery = read_ground_truth_recovery(tmp_path / config.run_name)
            assert len(recovery) == 16 and ((recovery.recovery_step >= 0) == (recovery.final_max_cosine > 0.9)).all()
            assert table.gt_recovered_fraction.iloc[-1] == pytest.approx((recovery.final_max_cosine > 0.9).mean())
        from taulib.sae import in_raw_units, load_sae

        sae, metadata = load_sae(tmp_path / config.run_name / "final")
        recovered[arm.name] = ground_truth_metrics(load_true_dictionary(folders["heldout"])[0], in_raw_units(sae, metadata).W_dec)[0].gt_recovered_fraction
    assert min(recovered.values()) >= 0.9, recovered


# ----------------------------------------------------------------------------- the report
def _add_ground_truth(outputs: Path, recovered_end: dict[str, float]) -> None:
    """Give every run of a formula sweep (tests/formula_study.py) ground-truth columns and a recovery table."""
    import zlib

    import pandas as pd
    from formula_study import BATCH, STEPS, curve

    for run_dir in sorted(p.parent.parent for p in outputs.glob("*/evaluation/metrics.csv")):
        arm = run_dir.name.split("__")[0]
        rng = np.random.default_rng(zlib.crc32(run_dir.name.encode()))
        end = recovered_end[arm] + rng.normal(0, 0.01)
        table = pd.read_csv(run_dir / "evaluation" / "metrics.csv")
        table["gt_recovered_fraction"] = curve(np.array(STEPS), 0.0, end, 10.0)
        table["gt_mean_max_cosine"] = curve(np.array(STEPS), 0.4, 0.5 + end / 2, 10.0)
        table.to_csv(run_dir / "evaluation" / "metrics.csv", index=False)
        # ten features: recovered at steps 3, 10, 30 or never, in proportion
        steps = np.array([3, 3, 10, 10, 10, 30, 30, -1, -1, -1])
        pd.DataFrame({"feature": range(10), "recovery_step": steps, "recovery_tokens": np.where(steps >= 0, steps * BATCH, -1)}).to_csv(
            run_dir / "evaluation" / "ground_truth_recovery.csv", index=False
        )


def test_the_report_gives_the_ground_truth_verdict_beside_the_language_models(tmp_path):
    from formula_study import SWEEP_SEEDS, SWEEP_TARGETS, write_synthetic_sweep
    from scipy import stats

    from taulib.analysis.matched import lower_bound_partner, run_table
    from taulib.analysis.report import build_report, ground_truth_report, render_markdown, sparsity_table, with_ground_truth
    from taulib.analysis.study_data import load_study

    language = write_synthetic_sweep(tmp_path / "language")
    study = load_study(language)
    table = run_table(study)
    names = {run.name: run.schedule_label for run in study.one_run_per_arm().runs}
    report = build_report(table, "tightened", lower_bound_partner(study, "tightened"), "baseline", names)
    assert not [claim for claim in report.claims if claim.question == "ground_truth"]
    assert ground_truth_report(tmp_path / "none", "tightened") is None
    with pytest.raises(ValueError, match="not a study of the synthetic model"):
        ground_truth_report(language, "tightened")
    alone = render_markdown(report, {}, {}, sparsity_table(report, table, 0.15), "-")
    assert "The flat synthetic world's sweep (no hierarchy) did not run" in alone

    truth = write_synthetic_sweep(tmp_path / "truth")
    _add_ground_truth(truth, {"baseline": 0.6, "tightened": 0.8, "higher_floor": 0.6, "linear": 0.6})
    ground_truth = ground_truth_report(truth, "tightened")
    truth_table = run_table(load_study(truth))
    # shares of training 0.03, 0.03, 0.1, 0.1, 0.1, 0.3, 0.3 and 1 (never) three times: the median is (0.1 + 0.3) / 2
    assert truth_table["gt_recovery_median"].to_numpy() == pytest.approx(np.full(len(truth_table), 0.2))
    assert (truth_table["gt_recovery_median_censored"] == 0).all()  # 3 of 11 never recovered: the median is observed
    compared = [c for c in ground_truth.claims if c.question == "ground_truth" and c.kind == "comparison" and c.column == "final_gt_recovered_fraction"]
    assert len(compared) == 3 * len(SWEEP_TARGETS)  # three other arms × targets
    primary = [c for c in compared if c.primary]
    assert {c.other for c in primary} == {"baseline"} and len(primary) == len(SWEEP_TARGETS)  # the primary contrast: plain L1, its own Holm family
    # every other ground-truth comparison (the other arms, the secondary endpoints) that was tested is the second family
    secondary = [c for c in ground_truth.claims if c.question == "ground_truth" and c.kind == "comparison" and not c.primary and np.isfinite(c.numbers["p"])]
    for claim in compared:
        # independently: each seed's value at the target on the line through its two runs in log L0, paired t-test
        def at_target(arm: str, seed: int, target: float) -> float:
            runs = truth_table[(truth_table.arm == arm) & (truth_table.seed == seed)].sort_values("final_l0")
            (x0, x1), (y0, y1) = np.log(runs.final_l0.to_numpy()), runs.final_gt_recovered_fraction.to_numpy()
            return y0 + (y1 - y0) * (np.log(target) - x0) / (x1 - x0)

        target = claim.numbers["l0_target"]
        ours = np.array([at_target("tightened", seed, target) for seed in SWEEP_SEEDS])
        theirs = np.array([at_target(claim.other, seed, target) for seed in SWEEP_SEEDS])
        assert claim.numbers["difference"] == pytest.approx(ours.mean() - theirs.mean())
        assert claim.numbers["p"] == pytest.approx(stats.ttest_rel(ours, theirs).pvalue)
        assert claim.numbers["family"] == (len(primary) if claim.primary else len(secondary)) and claim.verdict == "better"  # 0.8 against 0.6, noise 0.01

    beside = with_ground_truth(report, ground_truth, "outputs/synthetic")
    markdown = render_markdown(beside, {}, {}, sparsity_table(beside, table, 0.15), "-")
    section = markdown.split("## Ground-truth disentanglement")[1]
    assert "From the synthetic model's study, outputs/synthetic (L0 targets 10, 30; seeds 0, 1, 2)" in section
    assert "final share of true features recovered" in section and "better in 6" in section
