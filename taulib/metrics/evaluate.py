"""Evaluating a trained run: every metric family on every saved checkpoint, cached, as one table.

    prepare_evaluation_data(config, loaded, outputs_root)   once per model/layer (needs the model)
    evaluate_run(run_dir, outputs_root)                      per run; returns the table

The families and what each needs are in taulib.metrics.families; this module runs them. The
model-side inputs of the metrics (absorption prompts and probe, probing-task residuals, the held-out
token sequences for the spliced CE with their residuals at the hooked layer and their clean and
zero-ablated losses) do not depend on the SAE, so they are computed once, by the extraction step,
into outputs/activations/evaluation-<key>/. A run's pending checkpoints are then evaluated in chunks
(`DOWNSTREAM_CHUNK`): each family takes a chunk's SAEs together, reading its inputs once for all.

Per run, outputs/<run>/evaluation/ holds, for each family, one JSON record per checkpoint (its columns
and the details the notebooks draw: density histogram, max-cosine histograms, per-letter absorption,
per-task probing) in families/<family>-<key>/, keyed by that family's parameters (and those of the
families it reads), its version and the run; and metrics.csv, the checkpoint × metric table. Adding or
changing one family evaluates that family alone; a finished evaluation returns from its records; an
interrupted one resumes from the last written record. Records written before the families had their own
(records-<key>/, one per checkpoint for every family) are split into the families' on first read when
their settings are today's, so a study made before keeps its evaluations.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taulib import atomic
from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.models import LoadedModel
from taulib.config import EvaluationConfig, RunConfig
from taulib.metrics.catalogue import DECLARATIONS, HEAD_COLUMNS
from taulib.metrics.families import evaluated, inputs_key
from taulib.metrics.family import DOWNSTREAM_CHUNK, Chunk, Family, RunInputs
from taulib.metrics.ground_truth.family import RECOVERY_FILE
from taulib.progress import progress_bar
from taulib.sae import SparseAutoencoder, in_raw_units, load_sae
from taulib.train.trainer import read_checkpoint_index
from taulib.versions import EVALUATION_VERSION, TRAINING_VERSION, versioned

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
    key = inputs_key(config, loaded.layer)
    for family in evaluated(config):
        if not all((folder / name).is_file() for name in family.prepared_files(config)):
            family.prepare(config, loaded, folder, show_progress, key)
    # the study compares this with its estimate (taulib.study.cost); the inputs themselves never read it
    atomic.write_json(folder / PREPARATION_TIME_FILE, {"seconds": time.perf_counter() - started})
    return folder


def evaluate_chunk(
    saes: Sequence[SparseAutoencoder],
    steps: list[int],
    final_step: int,
    run: RunInputs,
    states: dict[str, Any],
    pending: dict[str, set[int]] | None = None,
    density_of: Callable[[int], np.ndarray] | None = None,
) -> dict[str, dict[int, dict[str, Any]]]:
    """Every evaluated family on the checkpoints of a chunk it has pending (`pending`: per family; all of them by
    default), the SAEs together (`states`: each family's `load`): per family, per step, its record (scalars and
    details). Each SAE's numbers are those it gets alone. A family that reads core gets the latents' firing
    frequencies core finds here, or, for a checkpoint whose core record was written before, `density_of(step)`."""
    density: dict[int, np.ndarray] = {}
    records: dict[str, dict[int, dict[str, Any]]] = {}
    for family in evaluated(run.config):
        mine = [index for index, step in enumerate(steps) if pending is None or step in pending[family.name]]
        if not mine:
            continue
        chosen = [steps[index] for index in mine]
        if "core" in family.declaration.reads and density_of is not None:
            density |= {step: density_of(step) for step in chosen if step not in density}
        chunk = Chunk(chosen, final_step, [{} for _ in mine], [{} for _ in mine], [density.get(step) for step in chosen])
        family.evaluate([saes[index] for index in mine], states[family.name], run, chunk)
        records[family.name] = {step: {"scalars": scalars, "details": details} for step, scalars, details in zip(chosen, chunk.scalars, chunk.details, strict=True)}
        density |= {step: frequencies for step, frequencies in zip(chosen, chunk.density, strict=True) if frequencies is not None}
    return records


# ----------------------------------------------------------------------------- keys
def family_key(config: RunConfig, family: Family) -> str:
    """What one family's records of a run depend on: the run, the evaluation code's version, the family's version and
    the parameters of the family and of the families it reads."""
    declaration = family.declaration
    parameters = {name: config.evaluation.section(name).model_dump(mode="json") for name in (*declaration.reads, declaration.name)}
    payload = versioned({"family": declaration.name, "version": EVALUATION_VERSION, "parameters": parameters, "training": config.fingerprint()}, "family_version", declaration.version)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# the families an evaluation covered before each family had its own records (records-<key>/ held them all)
FAMILIES_BEFORE_RECORDS = ("core", "downstream", "orthogonality", "absorption", "probing", "ground_truth")


def _flat_evaluation(config: RunConfig, families: Sequence[str]) -> dict[str, Any]:
    """The evaluation settings of `families` as one flat mapping, as they were before the families had sections (their
    old keys; a family declared since has its section under its name). What the fingerprint and the old key hash."""
    flat: dict[str, Any] = {"families": [name for name in config.evaluated_families() if name in families], "checkpoints": config.evaluation.checkpoints}
    for declaration in DECLARATIONS:
        if declaration.name not in families:
            continue
        section = config.evaluation.section(declaration.name).model_dump(mode="json")
        if declaration.old_keys:
            flat |= {old: section[new] for old, new in declaration.old_keys.items()}
        else:
            flat[declaration.name] = section
    return flat


def _family_versions() -> dict[str, int]:
    return {declaration.name: declaration.version for declaration in DECLARATIONS if declaration.version != 1}


def evaluation_key(config: RunConfig) -> str:
    """The key of the records an evaluation made before the families had their own (records-<key>/): read only to
    carry such records over (version 1 of those families is the code that made them)."""
    evaluation = _flat_evaluation(config, FAMILIES_BEFORE_RECORDS)
    if "ground_truth" not in evaluation["families"]:
        evaluation.pop("recovery_threshold")  # a language model's evaluations kept the keys they had before ground_truth existed
    payload = {"version": EVALUATION_VERSION, "evaluation": evaluation, "training": config.fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def evaluation_fingerprint(config: RunConfig) -> str:
    """What an evaluation computes, whichever run it is of: the evaluation code's version, each family's, and the
    settings of every family (a family added changes it: the study re-evaluates every run for it). Every run of one
    study should share it; the report refuses a study where they do not. (For the families and versions there were
    before each family had its records, its value for a given setting is the one recorded then.)"""
    payload: dict[str, Any] = {"version": EVALUATION_VERSION, "evaluation": _flat_evaluation(config, [d.name for d in DECLARATIONS])}
    if versions := _family_versions():
        payload["family_versions"] = versions
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


# ----------------------------------------------------------------------------- records
def _step_file(step: int) -> str:
    return f"step_{step:07d}.json"


def _family_folders(run_dir: Path, config: RunConfig, families: Iterable[Family]) -> dict[str, Path]:
    return {family.name: run_dir / "evaluation" / "families" / f"{family.name}-{family_key(config, family)}" for family in families}


def split_record(record: dict[str, Any], families: Sequence[Family]) -> dict[str, dict[str, Any]] | None:
    """An old all-families record of one checkpoint as the families' records, by their declared columns and details;
    None when a column or detail is no family's (it cannot be attributed, so the checkpoint is evaluated again)."""
    head = {column.name for column in HEAD_COLUMNS}
    split: dict[str, dict[str, Any]] = {family.name: {"scalars": {}, "details": {}} for family in families}
    for column, value in record.get("scalars", {}).items():
        if column in head:
            continue
        owner = next((family.name for family in families if family.declaration.owns(column)), None)
        if owner is None:
            return None
        split[owner]["scalars"][column] = value
    for name, value in record.get("details", {}).items():
        if name == "not_applicable":
            continue
        owner = next((family.name for family in families if name in family.declaration.details), None)
        if owner is None:
            return None
        split[owner]["details"][name] = value
    return split


def _carry_over_old_records(run_dir: Path, config: RunConfig, steps: Sequence[int], folders: dict[str, Path], families: Sequence[Family]) -> None:
    """Write the families' records that an old all-families record of the same settings holds (version 1 only)."""
    old = run_dir / "evaluation" / f"records-{evaluation_key(config)}"
    if not old.is_dir():
        return
    covered = [family for family in families if family.name in FAMILIES_BEFORE_RECORDS]  # what the old records hold
    carried = [family for family in covered if family.declaration.version == 1]  # a family bumped since is evaluated again
    for step in steps:
        missing = [family for family in carried if not (folders[family.name] / _step_file(step)).is_file()]
        if not missing or not (old / _step_file(step)).is_file():
            continue
        split = split_record(atomic.read_json(old / _step_file(step)), covered)
        if split is None:
            continue
        for family in missing:
            atomic.write_json(folders[family.name] / _step_file(step), split[family.name])


def checkpoints_to_evaluate(run_dir: str | Path, config: RunConfig) -> dict[str, int] | None:
    """Per evaluated family, how many checkpoints of a trained run `evaluate_run` would still evaluate with `config`'s
    settings (its records, or an older evaluation's it carries over, cover the rest); None for a run not trained yet.
    What the wall-time estimate prices for a study that is partly or wholly done."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file() or not (run_dir / "checkpoints" / "index.json").is_file():
        return None
    index = read_checkpoint_index(run_dir)
    steps = [entry["step"] for entry in index] if config.evaluation.checkpoints == "all" else [index[-1]["step"]]
    families = evaluated(config)
    folders = _family_folders(run_dir, config, families)
    old = run_dir / "evaluation" / f"records-{evaluation_key(config)}"

    def done(family: Family, step: int) -> bool:
        carried = family.name in FAMILIES_BEFORE_RECORDS and family.declaration.version == 1 and (old / _step_file(step)).is_file()
        return carried or (folders[family.name] / _step_file(step)).is_file()

    return {family.name: sum(not done(family, step) for step in steps) for family in families}


def _density_from_core(folder: Path, step: int) -> np.ndarray:
    return np.asarray(atomic.read_json(folder / _step_file(step))["details"]["latent_density"])


def read_checkpoint_details(run_dir: str | Path, step: int) -> dict[str, Any]:
    """The full record (scalars and details, every family's) of one checkpoint, from the run's latest evaluation
    (the one in metrics.csv)."""
    evaluation = Path(run_dir) / "evaluation"
    summary_path = evaluation / "evaluation.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: the run has not been evaluated; run taulib.metrics.evaluate.evaluate_run first")
    summary = atomic.read_json(summary_path)
    folders = [evaluation / "families" / name for name in summary["records"].values()] if "records" in summary else [evaluation / f"records-{summary['key']}"]
    record: dict[str, Any] = {"scalars": {}, "details": {}}
    for folder in folders:
        path = folder / _step_file(step)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint {step} has not been evaluated; run taulib.metrics.evaluate.evaluate_run first")
        part = atomic.read_json(path)
        record["scalars"] |= part.get("scalars", {})
        record["details"] |= part.get("details", {})
    if skipped := summary.get("not_applicable"):
        record["details"].setdefault("not_applicable", skipped)
    return record


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
    """Evaluate every checkpoint of a trained run (cached per family and checkpoint) and write evaluation/metrics.csv.

    `evaluation` replaces the settings the run was trained with (e.g. the parameter file's current
    `evaluation:` section); the checkpoints are re-evaluated by the families whose settings changed, never retrained.
    """
    run_dir, outputs_root = Path(run_dir), Path(outputs_root)
    config_path = run_dir / "config.json"
    if not (run_dir / "summary.json").is_file() or not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no summary.json); train it first")
    config = RunConfig.model_validate(atomic.read_json(config_path)["config"])
    if evaluation is not None:
        config = config.model_copy(update={"evaluation": evaluation})
    checkpoint_index = read_checkpoint_index(run_dir)
    if checkpoints is None:
        checkpoints = [entry["step"] for entry in checkpoint_index] if config.evaluation.checkpoints == "all" else [checkpoint_index[-1]["step"]]
    by_step = {entry["step"]: entry for entry in checkpoint_index}
    families = evaluated(config)
    folders = _family_folders(run_dir, config, families)
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        atomic.remove_stale_temporaries(folder)
    _carry_over_old_records(run_dir, config, checkpoints, folders, families)
    pending = {family.name: {step for step in checkpoints if not (folders[family.name] / _step_file(step)).is_file()} for family in families}
    steps_pending = sorted(set().union(*pending.values()))

    if steps_pending:
        _, first_metadata = load_sae(run_dir / "checkpoints" / f"step_{steps_pending[0]:07d}")
        layer = first_metadata.layer
        heldout_spec = activation_spec(config, "heldout", layer)
        heldout_folder = cache_folder(outputs_root, heldout_spec)
        heldout = load_cache(heldout_folder, heldout_spec).activations[: config.evaluation.section("core").tokens].float()
        run = RunInputs(config, outputs_root, layer, evaluation_data_folder(outputs_root, config, layer), heldout_folder, heldout, model, show_progress, run_dir)
        states = {family.name: family.load(run) for family in families if pending[family.name]}
        bar = progress_bar(total=len(steps_pending), desc=f"evaluate {config.run_name}", unit="ckpt", disable=not show_progress)
        for chunk_start in range(0, len(steps_pending), DOWNSTREAM_CHUNK):
            chunk_steps = steps_pending[chunk_start : chunk_start + DOWNSTREAM_CHUNK]
            saes = [in_raw_units(*load_sae(run_dir / "checkpoints" / f"step_{step:07d}")) for step in chunk_steps]
            found = evaluate_chunk(saes, chunk_steps, checkpoint_index[-1]["step"], run, states, pending, lambda step: _density_from_core(folders["core"], step))
            for name, by_checkpoint in found.items():
                for step, record in by_checkpoint.items():
                    atomic.write_json(folders[name] / _step_file(step), record)
            bar.update(len(chunk_steps))
        bar.close()

    records = {family.name: {step: atomic.read_json(folders[family.name] / _step_file(step)) for step in checkpoints} for family in families}
    rows = []
    for step in checkpoints:
        entry = by_step[step]
        row = {"step": step, "tokens": entry["tokens"], "tau": entry["tau"], "l1_coefficient_effective": config.training.l1_coefficient / entry["tau"]}
        for family in families:
            row |= records[family.name][step]["scalars"]
        rows.append(dict(sorted(row.items())))  # the columns in name order, as the records before the families' were written
    table = pd.DataFrame(rows).sort_values("step").reset_index(drop=True)
    atomic.write_bytes_if_changed(run_dir / "evaluation" / "metrics.csv", table.to_csv(index=False).encode())
    summary = {
        "key": evaluation_key(config),
        "records": {name: folder.name for name, folder in folders.items()},
        "fingerprint": evaluation_fingerprint(config),
        "code": {"evaluation_version": EVALUATION_VERSION, "training_version": TRAINING_VERSION} | {"family_versions": {f.name: f.declaration.version for f in families}},
        "evaluation": config.evaluation.model_dump(mode="json"),
    }
    if skipped := config.not_applicable_families():
        summary["not_applicable"] = skipped  # requested, and recorded as impossible for this model: no column, not a NaN
    for family in families:
        family.finish(run_dir, records[family.name], by_step, config)
    atomic.write_bytes_if_changed(run_dir / "evaluation" / "evaluation.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return table


def read_ground_truth_recovery(run_dir: str | Path) -> pd.DataFrame:
    """The per-true-feature recovery table of a synthetic run's latest evaluation."""
    path = Path(run_dir) / "evaluation" / RECOVERY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground-truth recovery (not a synthetic run, or not evaluated with the ground_truth family)")
    return pd.read_csv(path)
