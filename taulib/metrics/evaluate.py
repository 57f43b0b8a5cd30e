"""Evaluating a trained run: every metric family on every saved checkpoint, cached, as one table.

    prepare_evaluation_data(config, loaded, outputs_root)   once per model/layer (needs the model)
    evaluate_run(run_dir, outputs_root)                      per run; returns the table

The model-side inputs of the metrics (absorption prompts and probe, probing-task residuals, the
held-out token sequences for the spliced CE) do not depend on the SAE, so they are computed once,
by the extraction step, into outputs/activations/evaluation-<key>/; so are the held-out CE
sequences' residuals at the hooked layer and their clean and zero-ablated losses
(`taulib.metrics.downstream.splice_reference`). Evaluating a checkpoint then needs the model only
for the spliced CE/KL, and there only the blocks after the hooked one: all pending checkpoints of a
run go through the batches together (the clean logits recomputed once per batch).

Per run, outputs/<run>/evaluation/ holds one JSON record per checkpoint (scalars and the details
the notebooks draw: density histogram, max-cosine histograms, per-letter absorption, per-task
probing) under a key of the evaluation settings, and metrics.csv, the checkpoint × metric table.
A finished evaluation returns from cache; an interrupted one resumes from the last written record.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.extraction import ResidualReader
from taulib.activations.models import LoadedModel, load_language_model
from taulib.activations.synthetic import load_true_dictionary
from taulib.config import EvaluationConfig, RunConfig
from taulib.corpus import iter_documents, token_sequences
from taulib.metrics.absorption import AbsorptionData, AbsorptionSettings, evaluate_absorption_many, prepare_absorption_data
from taulib.metrics.core import density_histogram, reconstruction_metrics_many
from taulib.metrics.downstream import DownstreamMetrics, SplicedModel, SpliceReference, downstream_metrics, splice_reference
from taulib.metrics.ground_truth import ground_truth_metrics, recovery_steps
from taulib.metrics.orthogonality import covariance_factor, orthogonality_metrics
from taulib.metrics.probing import ProbingData, ProbingSettings, evaluate_sparse_probing_many, prepare_probing_data
from taulib.precision import resolve_compute_dtype
from taulib.progress import progress_bar
from taulib.sae import SparseAutoencoder, in_raw_units, load_sae
from taulib.train.trainer import read_checkpoint_index

EVALUATION_VERSION = 3  # bump when a metric's definition changes: cached records are then recomputed
COSINE_HISTOGRAM_EDGES = np.linspace(-0.2, 1.0, 61)
PREPARATION_TIME_FILE = "preparation_time.json"
# checkpoints evaluated together: one pass over the held-out, probing and CE data for all (one clean
# recompute per CE batch); also the resume granularity
DOWNSTREAM_CHUNK = 8
CE_SEQUENCES_FILE, CE_REFERENCE_FILE = "ce_sequences.safetensors", "ce_reference.safetensors"


def absorption_settings(config: RunConfig) -> AbsorptionSettings:
    return AbsorptionSettings(vocab_size=config.evaluation.absorption_vocab_size, seed=config.evaluation.absorption_seed)


def probing_settings(config: RunConfig) -> ProbingSettings:
    e = config.evaluation
    return ProbingSettings(
        tasks=e.probing_tasks,
        examples_per_class=e.probing_examples_per_class,
        test_fraction=e.probing_test_fraction,
        context_length=e.probing_context_length,
        ks=e.probing_ks,
        seed=e.probing_seed,
    )


def _data_key(config: RunConfig, layer: int) -> dict[str, Any]:
    return {
        "model": config.model.name,
        "model_dtype": config.model.dtype,
        "autocast": config.model.autocast,
        "layer": layer,
        "corpus": config.activations.corpus,
        "context_length": config.activations.context_length,
        "ce_sequences": config.evaluation.ce_sequences_needed(),
        "absorption": absorption_settings(config).data_key(),
        "probing": probing_settings(config).data_key(),
    }


def evaluation_data_folder(outputs_root: Path, config: RunConfig, layer: int) -> Path:
    digest = hashlib.sha256(json.dumps(_data_key(config, layer), sort_keys=True).encode()).hexdigest()[:12]
    return Path(outputs_root) / "activations" / f"evaluation-L{layer}-{digest}"


def evaluation_data_complete(folder: Path, config: RunConfig) -> bool:
    needed = {"downstream": (CE_SEQUENCES_FILE, CE_REFERENCE_FILE), "absorption": ("absorption_manifest.json",), "probing": ("probing_manifest.json",)}
    return all((folder / name).is_file() for family in config.evaluated_families() for name in needed.get(family, ()))


def prepare_evaluation_data(config: RunConfig, loaded: LoadedModel, outputs_root: Path, show_progress: bool = True) -> Path:
    """Compute (or reuse) the SAE-independent inputs of every metric family for this model and layer."""
    folder = evaluation_data_folder(outputs_root, config, loaded.layer)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _prepare(config, loaded, folder, show_progress)
    # the study compares this with its estimate (taulib.study.cost); the inputs themselves never read it
    atomic.write_json(folder / PREPARATION_TIME_FILE, {"seconds": time.perf_counter() - started})
    return folder


def _prepare(config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool) -> None:
    families = config.evaluated_families()
    reader = ResidualReader(loaded, config.model.autocast)
    extra = {"key": _data_key(config, loaded.layer)}
    if "downstream" in families and not (folder / CE_SEQUENCES_FILE).is_file():
        stream = token_sequences(iter_documents("heldout", seed=0), loaded.tokenizer, config.activations.context_length, config.evaluation.ce_sequences_needed())
        with atomic.atomic_path(folder / CE_SEQUENCES_FILE) as tmp:
            save_file({"input_ids": torch.stack(list(stream))}, str(tmp))
    if "downstream" in families:
        _splice_reference(config, SplicedModel(loaded, config.model.autocast), folder, show_progress)
    if "absorption" in families and not (folder / "absorption_manifest.json").is_file():
        # minutes of forward passes on a CPU: a bar with an ETA, once per model and layer
        bar = progress_bar(desc="absorption prompts", unit="tok", unit_scale=True, disable=not show_progress)
        prepare_absorption_data(reader, loaded.tokenizer, absorption_settings(config), progress=bar).save(folder, extra)
        bar.close()
    if "probing" in families and not (folder / "probing_manifest.json").is_file():
        settings = probing_settings(config)
        bar = progress_bar(desc="probing-task residuals", unit="tok", unit_scale=True, disable=not show_progress)
        prepare_probing_data(reader, loaded.tokenizer, settings, progress=bar).save(folder, extra)
        bar.close()


def _splice_reference(config: RunConfig, spliced: SplicedModel, folder: Path, show_progress: bool) -> SpliceReference:
    """The CE sequences' residuals at the hooked layer and clean/zero-ablated losses: computed once, then read."""
    path = folder / CE_REFERENCE_FILE
    if path.is_file():
        return SpliceReference.load(path)
    sequences = load_file(str(folder / CE_SEQUENCES_FILE))["input_ids"]
    bar = progress_bar(total=len(sequences), desc="CE/KL reference (clean, zero-ablated)", unit="seq", disable=not show_progress)
    reference = splice_reference(spliced, sequences, config.evaluation.ce_batch_size, progress=bar.update)
    bar.close()
    reference.save(path)
    return reference


# ----------------------------------------------------------------------------- per checkpoint
def _histogram(values: np.ndarray) -> list[int]:
    return np.histogram(np.clip(values, COSINE_HISTOGRAM_EDGES[0], COSINE_HISTOGRAM_EDGES[-1]), bins=COSINE_HISTOGRAM_EDGES)[0].astype(int).tolist()


def _model_free_metrics(
    saes: Sequence[SparseAutoencoder],
    config: RunConfig,
    heldout: torch.Tensor,
    absorption: AbsorptionData | None,
    probing: ProbingData | None,
    heldout_covariance_factor: torch.Tensor | None = None,
    true_directions: torch.Tensor | None = None,
) -> list[tuple[dict, dict]]:
    """Every family but downstream, per SAE: (scalar metrics, details). The SAEs (a chunk of a run's
    checkpoints) go through the held-out activations and the probing residuals together, each batch
    read once; every SAE's numbers are those it gets alone."""
    evaluation = config.evaluation
    families = config.evaluated_families()
    results: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {}) for _ in saes]
    alive: list[np.ndarray | None] = [None] * len(saes)  # latents that fire on the held-out tokens, known once the core metrics ran
    if "core" in families:
        # the one metric that scales with the held-out tokens runs where the SAE trained; the rest are small
        device = torch.device(config.training.device)
        on_device = list(saes) if device.type == "cpu" else [copy.deepcopy(sae).to(device) for sae in saes]
        for index, (core, density) in enumerate(reconstruction_metrics_many(on_device, heldout, dense_threshold=evaluation.dense_threshold)):
            scalars, details = results[index]
            scalars |= core.as_dict()
            details["density_histogram"] = density_histogram(density)
            details["latent_density"] = density.tolist()  # per latent: which are alive, for per-latent analyses
            alive[index] = density > 0
    # the chunk's k-sparse probes are trained together (taulib.metrics.absorption.train_linear_probes)
    absorbed = evaluate_absorption_many(saes, absorption) if absorption is not None else [None] * len(saes)
    for index, sae in enumerate(saes):
        scalars, details = results[index]
        if "orthogonality" in families:
            ortho, arrays = orthogonality_metrics(sae, evaluation.near_duplicate_threshold, alive=alive[index], activation_covariance_factor=heldout_covariance_factor)
            scalars |= ortho.as_dict()
            details["cosine_histogram_edges"] = COSINE_HISTOGRAM_EDGES.tolist()
            details["max_cosine_histogram"] = _histogram(arrays["max_cosine"])
            details["random_max_cosine_histogram"] = _histogram(arrays["random_max_cosine"])
            details["encoder_decoder_cosine_histogram"] = _histogram(arrays["encoder_decoder_cosine"])
        if (own := absorbed[index]) is not None:
            metrics, letters = own
            scalars |= metrics.as_dict()
            details["absorption_letters"] = letters.to_dict(orient="records")
        if true_directions is not None:
            truth, best = ground_truth_metrics(true_directions, sae.W_dec, evaluation.recovery_threshold)
            scalars |= truth.as_dict()
            details["gt_max_cosine"] = best.tolist()  # per true feature: its recovery step over the checkpoints
        if skipped := config.not_applicable_families():
            details["not_applicable"] = skipped
    if probing is not None:
        # the latents are encoded as the SAE was trained (bfloat16 matmuls or float32)
        for (scalars, details), (summary, tasks) in zip(results, evaluate_sparse_probing_many(saes, probing, autocast=resolve_compute_dtype(config.training.compute_dtype, "cpu") == "bfloat16"), strict=True):
            scalars |= {key.replace("/", "."): value for key, value in summary.items()}  # per-task keys become "metric.task" columns
            details["probing_tasks"] = tasks.to_dict(orient="records")
    return results


def evaluation_key(config: RunConfig) -> str:
    evaluation = config.evaluation.model_dump(mode="json")
    # keyed by what is computed: a language model's evaluations keep the keys they had before ground_truth existed
    evaluation["families"] = list(config.evaluated_families())
    if "ground_truth" not in evaluation["families"]:
        evaluation.pop("recovery_threshold")
    payload = {"version": EVALUATION_VERSION, "evaluation": evaluation, "training": config.fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


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
        families = config.evaluated_families()
        data_folder = evaluation_data_folder(outputs_root, config, layer)
        heldout_spec = activation_spec(config, "heldout", layer)
        heldout = load_cache(cache_folder(outputs_root, heldout_spec), heldout_spec).activations[: config.evaluation.core_tokens].float()
        true_directions = load_true_dictionary(cache_folder(outputs_root, heldout_spec))[0] if "ground_truth" in families else None
        heldout_factor = covariance_factor(heldout) if "orthogonality" in families else None
        absorption = AbsorptionData.load(data_folder, absorption_settings(config)) if "absorption" in families else None
        probing = ProbingData.load(data_folder, probing_settings(config)) if "probing" in families else None
        spliced = reference = None
        if "downstream" in families:
            sequences_path = data_folder / CE_SEQUENCES_FILE
            if not sequences_path.is_file():
                raise FileNotFoundError(f"{sequences_path}: no CE sequences (run the extraction step, `python -m taulib extract`)")
            if model is None or model.layer != layer:
                model = load_language_model(config.model.model_copy(update={"layer": layer}))
            spliced = SplicedModel(model, config.model.autocast)
            reference = _splice_reference(config, spliced, data_folder, show_progress)  # inputs prepared before it existed get it here
        bar = progress_bar(total=len(pending), desc=f"evaluate {config.run_name}", unit="ckpt", disable=not show_progress)
        for chunk_start in range(0, len(pending), DOWNSTREAM_CHUNK):
            chunk = pending[chunk_start : chunk_start + DOWNSTREAM_CHUNK]
            saes = [in_raw_units(*load_sae(run_dir / "checkpoints" / f"step_{step:07d}")) for step in chunk]
            records = []
            for step, (scalars, details) in zip(chunk, _model_free_metrics(saes, config, heldout, absorption, probing, heldout_factor, true_directions), strict=True):
                entry = by_step[step]
                head = {"step": step, "tokens": entry["tokens"], "tau": entry["tau"], "l1_coefficient_effective": config.training.l1_coefficient / entry["tau"]}
                records.append({"scalars": head | scalars, "details": details})
            if spliced is not None:
                downstream_by_step = _downstream(spliced, reference, saes, chunk, index[-1]["step"], config.evaluation)
                for step, record in zip(chunk, records, strict=True):
                    if (downstream := downstream_by_step.get(step)) is None:
                        continue  # ce_sequences 0: only the final checkpoint is spliced
                    record["scalars"] |= {key: value for key, value in downstream.as_dict().items() if key != "n_tokens"}
                    record["scalars"] |= downstream.per_sequence.bootstrap_intervals(seed=step) | {"ce_tokens": downstream.n_tokens}
                    record["details"]["ce_per_sequence"] = downstream.per_sequence.to_lists()
            for step, record in zip(chunk, records, strict=True):
                atomic.write_json(records_folder / f"step_{step:07d}.json", record)
                bar.update(1)
        bar.close()

    rows = [atomic.read_json(records_folder / f"step_{step:07d}.json")["scalars"] for step in checkpoints]
    table = pd.DataFrame(rows).sort_values("step").reset_index(drop=True)
    _write_if_changed(run_dir / "evaluation" / "metrics.csv", table.to_csv(index=False).encode())
    summary = {"key": evaluation_key(config), "evaluation": config.evaluation.model_dump(mode="json")}
    if skipped := config.not_applicable_families():
        summary["not_applicable"] = skipped  # requested, and recorded as impossible for this model: no column, not a NaN
    if "ground_truth" in config.evaluated_families():
        recovery = _recovery_table(records_folder, checkpoints, by_step, config.evaluation.recovery_threshold)
        _write_if_changed(run_dir / "evaluation" / RECOVERY_FILE, recovery.to_csv(index=False).encode())
    _write_if_changed(run_dir / "evaluation" / "evaluation.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return table


RECOVERY_FILE = "ground_truth_recovery.csv"


def _recovery_table(records_folder: Path, checkpoints: Sequence[int], by_step: dict[int, dict[str, Any]], threshold: float) -> pd.DataFrame:
    """Per true feature: its recovery step and tokens (first checkpoint from which it stays recovered; -1: not
    recovered at the last one) and its best decoder cosine at the last checkpoint."""
    steps = sorted(checkpoints)
    cosines = np.array([atomic.read_json(records_folder / f"step_{step:07d}.json")["details"]["gt_max_cosine"] for step in steps])
    recovered_at = recovery_steps(steps, cosines, threshold)
    tokens = {step: by_step[step]["tokens"] for step in steps}
    return pd.DataFrame(
        {
            "feature": np.arange(cosines.shape[1]),
            "recovery_step": recovered_at,
            "recovery_tokens": [tokens[int(step)] if step >= 0 else -1 for step in recovered_at],
            "final_max_cosine": cosines[-1],
        }
    )


def read_ground_truth_recovery(run_dir: str | Path) -> pd.DataFrame:
    """The per-true-feature recovery table of a synthetic run's latest evaluation."""
    path = Path(run_dir) / "evaluation" / RECOVERY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground-truth recovery (not a synthetic run, or not evaluated with the ground_truth family)")
    return pd.read_csv(path)


def _downstream(
    spliced: SplicedModel, reference: SpliceReference, saes: list[SparseAutoencoder], steps: list[int], final: int, evaluation: EvaluationConfig
) -> dict[int, DownstreamMetrics]:
    """CE/KL by step: every checkpoint's on the first `ce_sequences` (one pass over their batches for all;
    none when 0); the final checkpoint's on `ce_final_sequences`, the rest evaluated for it alone and combined."""
    results: dict[int, DownstreamMetrics] = {}
    if evaluation.ce_sequences:
        first = reference.rows(0, evaluation.ce_sequences)
        results = dict(zip(steps, downstream_metrics(spliced, first.input_ids, saes, evaluation.ce_batch_size, reference=first), strict=True))
    extra = evaluation.ce_sequences_needed() - evaluation.ce_sequences
    if extra and final in steps:
        rest = reference.rows(evaluation.ce_sequences, evaluation.ce_sequences + extra)
        (more,) = downstream_metrics(spliced, rest.input_ids, [saes[steps.index(final)]], evaluation.ce_batch_size, reference=rest)
        results[final] = results[final].per_sequence.concat(more.per_sequence).metrics() if final in results else more
    return results


def _write_if_changed(path: Path, data: bytes) -> None:
    """A cached evaluation leaves its files untouched (a re-run study changes nothing it need not)."""
    if not (path.is_file() and path.read_bytes() == data):
        atomic.write_bytes(path, data)
