"""Evaluating a trained run: every metric family on every saved checkpoint, cached, as one table.

    prepare_evaluation_data(config, loaded, outputs_root)   once per model/layer (needs the model)
    evaluate_run(run_dir, outputs_root)                      per run; returns the table

The families and what each needs are in taulib.metrics.families; this module runs them. The
model-side inputs of the metrics (absorption prompts and probe, probing-task residuals, the held-out
token sequences for the spliced CE with their residuals at the hooked layer and their clean and
zero-ablated losses) do not depend on the SAE, so they are computed once, by the extraction step,
into outputs/activations/evaluation-<key>/. A run's pending checkpoints are then evaluated in chunks
(`DOWNSTREAM_CHUNK`): each family takes a chunk's SAEs together, reading its inputs once for all.

Per run, outputs/<run>/evaluation/ holds one JSON record per checkpoint (scalars and the details
the notebooks draw: density histogram, max-cosine histograms, per-letter absorption, per-task
probing) under a key of the evaluation settings, and metrics.csv, the checkpoint × metric table.
A finished evaluation returns from cache; an interrupted one resumes from the last written record.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from taulib import atomic
from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.models import LoadedModel
from taulib.config import EvaluationConfig, RunConfig
from taulib.metrics.families import DOWNSTREAM_CHUNK, Chunk, GroundTruth, RunInputs, evaluated, inputs_key
from taulib.progress import progress_bar
from taulib.sae import SparseAutoencoder, in_raw_units, load_sae
from taulib.train.trainer import read_checkpoint_index
from taulib.versions import EVALUATION_VERSION, TRAINING_VERSION

PREPARATION_TIME_FILE = "preparation_time.json"


def evaluation_data_folder(outputs_root: Path, config: RunConfig, layer: int) -> Path:
    digest = hashlib.sha256(json.dumps(inputs_key(config, layer), sort_keys=True).encode()).hexdigest()[:12]
    return Path(outputs_root) / "activations" / f"evaluation-L{layer}-{digest}"


def evaluation_data_complete(folder: Path, config: RunConfig) -> bool:
    return all((folder / name).is_file() for family in evaluated(config) for name in family.prepared_files(config))


def prepare_evaluation_data(config: RunConfig, loaded: LoadedModel, outputs_root: Path, show_progress: bool = True) -> Path:
    """Compute (or reuse) the SAE-independent inputs of every metric family for this model and layer."""
    folder = evaluation_data_folder(outputs_root, config, loaded.layer)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for family in evaluated(config):
        if not all((folder / name).is_file() for name in family.prepared_files(config)):
            family.prepare(config, loaded, folder, show_progress)
    # the study compares this with its estimate (taulib.study.cost); the inputs themselves never read it
    atomic.write_json(folder / PREPARATION_TIME_FILE, {"seconds": time.perf_counter() - started})
    return folder


def evaluate_chunk(saes: Sequence[SparseAutoencoder], steps: list[int], final_step: int, run: RunInputs, states: dict[str, Any]) -> list[tuple[dict, dict]]:
    """Every evaluated family on a chunk of a run's checkpoints (`states`: each family's `load`), per SAE:
    (scalars, details). Each SAE's numbers are those it gets alone."""
    chunk = Chunk(list(steps), final_step, [{} for _ in saes], [{} for _ in saes], [None] * len(saes))
    for family in evaluated(run.config):
        family.evaluate(list(saes), states[family.name], run, chunk)
    if skipped := run.config.not_applicable_families():
        for details in chunk.details:
            details["not_applicable"] = skipped
    return list(zip(chunk.scalars, chunk.details, strict=True))


def evaluation_key(config: RunConfig) -> str:
    evaluation = config.evaluation.model_dump(mode="json")
    # keyed by what is computed: a language model's evaluations keep the keys they had before ground_truth existed
    evaluation["families"] = list(config.evaluated_families())
    if "ground_truth" not in evaluation["families"]:
        evaluation.pop("recovery_threshold")
    payload = {"version": EVALUATION_VERSION, "evaluation": evaluation, "training": config.fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def evaluation_fingerprint(config: RunConfig) -> str:
    """What an evaluation computes, whichever run it is of: the evaluation code's version and the settings of the
    families it evaluates. Every run of one study should share it; the report refuses a study where they do not."""
    evaluation = config.evaluation.model_dump(mode="json")
    evaluation["families"] = list(config.evaluated_families())
    payload = {"version": EVALUATION_VERSION, "evaluation": evaluation}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def recorded_evaluation_fingerprint(run_dir: str | Path, config: RunConfig) -> str | None:
    """The fingerprint a run's latest evaluation recorded (evaluation.json); for an evaluation made before
    fingerprints were recorded, this code's fingerprint if its key is this code's key, else None (another version)."""
    path = Path(run_dir) / "evaluation" / "evaluation.json"
    if not path.is_file():
        return None
    summary = atomic.read_json(path)
    if "fingerprint" in summary:
        return summary["fingerprint"]
    return evaluation_fingerprint(config) if summary.get("key") == evaluation_key(config) else None


def _records_folder(run_dir: Path, config: RunConfig) -> Path:
    return run_dir / "evaluation" / f"records-{evaluation_key(config)}"


def read_checkpoint_details(run_dir: str | Path, step: int) -> dict[str, Any]:
    """The full record (scalars and details) of one checkpoint, from the run's latest evaluation (the one in metrics.csv)."""
    summary_path = Path(run_dir) / "evaluation" / "evaluation.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: the run has not been evaluated; run taulib.metrics.evaluate.evaluate_run first")
    path = Path(run_dir) / "evaluation" / f"records-{atomic.read_json(summary_path)['key']}" / f"step_{step:07d}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint {step} has not been evaluated; run taulib.metrics.evaluate.evaluate_run first")
    return atomic.read_json(path)


def read_evaluation(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "evaluation" / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run has not been evaluated; run taulib.metrics.evaluate.evaluate_run (or `python -m taulib evaluate`)")
    return pd.read_csv(path)


def evaluate_run(
    run_dir: str | Path,
    outputs_root: str | Path,
    model: LoadedModel | None = None,
    show_progress: bool = True,
    checkpoints: Sequence[int] | None = None,
    evaluation: EvaluationConfig | None = None,
) -> pd.DataFrame:
    """Evaluate every checkpoint of a trained run (cached per checkpoint) and write evaluation/metrics.csv.

    `evaluation` replaces the settings the run was trained with (e.g. the parameter file's current
    `evaluation:` section); the checkpoints are re-evaluated under the new settings, never retrained.
    """
    run_dir, outputs_root = Path(run_dir), Path(outputs_root)
    config_path = run_dir / "config.json"
    if not (run_dir / "summary.json").is_file() or not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no summary.json); train it first")
    config = RunConfig.model_validate(atomic.read_json(config_path)["config"])
    if evaluation is not None:
        config = config.model_copy(update={"evaluation": evaluation})
    index = read_checkpoint_index(run_dir)
    if checkpoints is None:
        checkpoints = [entry["step"] for entry in index] if config.evaluation.checkpoints == "all" else [index[-1]["step"]]
    by_step = {entry["step"]: entry for entry in index}
    records_folder = _records_folder(run_dir, config)
    records_folder.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temporaries(records_folder)
    pending = [step for step in checkpoints if not (records_folder / f"step_{step:07d}.json").is_file()]

    if pending:
        _, first_metadata = load_sae(run_dir / "checkpoints" / f"step_{pending[0]:07d}")
        layer = first_metadata.layer
        heldout_spec = activation_spec(config, "heldout", layer)
        heldout_folder = cache_folder(outputs_root, heldout_spec)
        heldout = load_cache(heldout_folder, heldout_spec).activations[: config.evaluation.core_tokens].float()
        run = RunInputs(config, outputs_root, layer, evaluation_data_folder(outputs_root, config, layer), heldout_folder, heldout, model, show_progress)
        states = {family.name: family.load(run) for family in evaluated(config)}
        bar = progress_bar(total=len(pending), desc=f"evaluate {config.run_name}", unit="ckpt", disable=not show_progress)
        for chunk_start in range(0, len(pending), DOWNSTREAM_CHUNK):
            chunk = pending[chunk_start : chunk_start + DOWNSTREAM_CHUNK]
            saes = [in_raw_units(*load_sae(run_dir / "checkpoints" / f"step_{step:07d}")) for step in chunk]
            for step, (scalars, details) in zip(chunk, evaluate_chunk(saes, chunk, index[-1]["step"], run, states), strict=True):
                entry = by_step[step]
                head = {"step": step, "tokens": entry["tokens"], "tau": entry["tau"], "l1_coefficient_effective": config.training.l1_coefficient / entry["tau"]}
                atomic.write_json(records_folder / f"step_{step:07d}.json", {"scalars": head | scalars, "details": details})
                bar.update(1)
        bar.close()

    rows = [atomic.read_json(records_folder / f"step_{step:07d}.json")["scalars"] for step in checkpoints]
    table = pd.DataFrame(rows).sort_values("step").reset_index(drop=True)
    atomic.write_bytes_if_changed(run_dir / "evaluation" / "metrics.csv", table.to_csv(index=False).encode())
    summary = {
        "key": evaluation_key(config),
        "fingerprint": evaluation_fingerprint(config),
        "code": {"evaluation_version": EVALUATION_VERSION, "training_version": TRAINING_VERSION},
        "evaluation": config.evaluation.model_dump(mode="json"),
    }
    if skipped := config.not_applicable_families():
        summary["not_applicable"] = skipped  # requested, and recorded as impossible for this model: no column, not a NaN
    for family in evaluated(config):
        family.finish(run_dir, records_folder, list(checkpoints), by_step, config)
    atomic.write_bytes_if_changed(run_dir / "evaluation" / "evaluation.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return table


def read_ground_truth_recovery(run_dir: str | Path) -> pd.DataFrame:
    """The per-true-feature recovery table of a synthetic run's latest evaluation."""
    path = Path(run_dir) / "evaluation" / GroundTruth.RECOVERY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground-truth recovery (not a synthetic run, or not evaluated with the ground_truth family)")
    return pd.read_csv(path)
