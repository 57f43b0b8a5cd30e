"""Report the measured figures of a finished study, read from its outputs/.

    .venv/bin/python benchmarks/default_study.py [outputs]

Prints a table of each arm's held-out L0 / explained variance / dead fraction (final SAE
on the held-out cache), its training throughput and wall time, the extraction throughput, and the
study's total wall time. The throughputs are those the pipeline recorded while it ran
(`summary.json`, the cache manifests).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from taulib import atomic
from taulib.activations.cache import ActivationSet, activation_spec, cache_folder, load_cache
from taulib.config import RunConfig
from taulib.metrics.core.metric import reconstruction_metrics
from taulib.sae import in_raw_units, load_sae

FINAL_EVALUATION_COLUMNS = ("ce_loss_score", "kl_div_score", "mean_max_cosine", "absorption_fraction", "full_absorption_rate", "sae_top_1_accuracy")


def _final_evaluation(run_dir: Path) -> dict[str, float]:
    """Headline metrics of the evaluated final checkpoint, when the run has been evaluated."""
    path = run_dir / "evaluation" / "metrics.csv"
    if not path.is_file():
        return {}
    last = pd.read_csv(path).sort_values("step").iloc[-1]
    return {column: float(last[column]) for column in FINAL_EVALUATION_COLUMNS if column in last}


def study_results(outputs_root: str | Path) -> pd.DataFrame:
    """One row per run of a finished study: throughputs, wall time and held-out metrics of the final SAE.

    Everything is read from outputs/ (manifests, summaries, final SAEs), so the figures a report
    quotes can be regenerated from the artefacts alone.
    """
    outputs_root = Path(outputs_root)
    summary_path = outputs_root / "study_summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: no finished study here; run `make study` first")
    rows = []
    heldout_cache: dict[Path, ActivationSet] = {}
    for run in atomic.read_json(summary_path)["runs"]:
        if run["status"] != "ok":
            rows.append({"run": run["run_name"], "status": run["status"]})
            continue
        run_dir = outputs_root / run["run_name"]
        config = RunConfig.model_validate(atomic.read_json(run_dir / "config.json")["config"])
        sae, metadata = load_sae(run_dir / "final")
        train_spec = activation_spec(config, "train", metadata.layer)
        heldout_spec = activation_spec(config, "heldout", metadata.layer)
        heldout_folder = cache_folder(outputs_root, heldout_spec)
        if heldout_folder not in heldout_cache:  # arms share one held-out cache: read it once
            heldout_cache[heldout_folder] = load_cache(heldout_folder, heldout_spec)
        train_manifest = atomic.read_json(cache_folder(outputs_root, train_spec) / "manifest.json")
        summary = atomic.read_json(run_dir / "summary.json")
        metrics, _ = reconstruction_metrics(in_raw_units(sae, metadata), heldout_cache[heldout_folder].activations.float())
        evaluated = _final_evaluation(run_dir)
        rows.append(
            {
                "run": run["run_name"],
                "status": "ok",
                "final_l1_coefficient": summary["final"]["l1_coefficient_effective"],
                "heldout_l0": metrics.l0,
                "heldout_explained_variance": metrics.explained_variance,
                "heldout_dead_fraction": metrics.dead_fraction,
                "train_minutes": run["seconds"] / 60,
                "train_tokens_per_second": summary["tokens_per_second_this_session"],
                "extraction_tokens_per_second": train_manifest["stats"].get("tokens_per_second"),
                **evaluated,
            }
        )
    return pd.DataFrame(rows)


def main(outputs: Path) -> None:
    torch.set_num_threads(2)
    table = study_results(outputs)
    total = atomic.read_json(outputs / "study_summary.json")["seconds"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nstudy wall time recorded by the runner (extraction notebook + training): {total / 60:.1f} min")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs"))
