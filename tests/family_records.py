"""A run evaluated as the code before the metric families had records of their own left it: one record per
checkpoint holding every family's columns and details (records-<key>/), for the tests of carrying such an
evaluation over (tests/test_metrics_evaluate.py, tests/test_benchmarks_smoke.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SYNTHETIC_RUN = {
    "run_name": "families",
    "model": {"name": "synthetic", "layer": 0, "synthetic": {"d_model": 16, "n_features": 24, "max_coherence": 0.6, "mean_active_features": 2.0, "seed": 3}},
    "activations": {"n_tokens": 3000, "heldout_tokens": 1000, "shard_tokens": 1024, "storage_dtype": "float32"},
    "sae": {"width": 96},
    # a strong penalty: latents die during the run, so the alive latents differ between checkpoints
    "training": {"n_tokens": 8192, "batch_size": 256, "n_checkpoints": 3, "threads": 1, "compute_dtype": "float32", "l1_coefficient": 1.0, "lr": 1.0e-2},
    "evaluation": {"families": ["core", "orthogonality"], "core": {"tokens": 16}},  # few tokens: some latents fire on none
}


def trained_synthetic_run(tmp_path: Path) -> tuple[Path, Path, Any]:
    """A trained run of the synthetic model (seconds): every family but the language model's can evaluate it.
    Returns (run folder, outputs folder, its configuration)."""
    from taulib.activations.cache import load_cache
    from taulib.activations.synthetic import ensure_synthetic_activations
    from taulib.config import config_from_mapping
    from taulib.train.trainer import AnnealedTrainer

    config = config_from_mapping(SYNTHETIC_RUN)
    folders = ensure_synthetic_activations(config, tmp_path, show_progress=False)
    AnnealedTrainer(config, load_cache(folders["train"]).activations, tmp_path / config.run_name, show_progress=False, layer=0).train()
    return tmp_path / config.run_name, tmp_path, config


def write_records_as_before(run_dir: Path, config: Any, table: Any) -> Path:
    """The layout an evaluation wrote before the families had their own records: one record per checkpoint holding
    every family's columns (with the step, tokens, τ and λ/τ) and details, under the evaluation's key."""
    import json
    import shutil

    from taulib.metrics.evaluate import evaluation_key, read_checkpoint_details

    old = run_dir / "evaluation" / f"records-{evaluation_key(config)}"
    old.mkdir()
    for _, row in table.iterrows():
        record = read_checkpoint_details(run_dir, int(row["step"]))
        record["scalars"] |= {"step": int(row["step"]), "tokens": int(row["tokens"]), "tau": float(row["tau"]), "l1_coefficient_effective": float(row["l1_coefficient_effective"])}
        (old / f"step_{int(row['step']):07d}.json").write_text(json.dumps(record))
    shutil.rmtree(run_dir / "evaluation" / "families")
    (run_dir / "evaluation" / "evaluation.json").write_text(json.dumps({"key": evaluation_key(config)}))
    return old
