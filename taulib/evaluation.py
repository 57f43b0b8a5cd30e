"""Reconstruction metrics of a saved SAE on held-out activations (the starting point of the metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from taulib import atomic
from taulib.activations import ActivationSet, load_cache
from taulib.config import RunConfig
from taulib.extraction import activation_spec, cache_folder
from taulib.sae import SAEMetadata, SparseAutoencoder, load_sae


@dataclass(frozen=True)
class ReconstructionMetrics:
    l0: float  # mean number of active latents per token
    explained_variance: float  # 1 − residual variance / total variance, over all held-out tokens
    dead_fraction: float  # latents that never fire on the held-out tokens

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, metadata: SAEMetadata, activations: torch.Tensor, batch_size: int = 8192) -> ReconstructionMetrics:
    """Evaluate on raw model activations (scaled by the SAE's saved input_scale), in batches."""
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    active, residual, total_sq, total_sum = 0.0, 0.0, 0.0, torch.zeros(sae.d_in, dtype=torch.float64)
    n = activations.shape[0]
    for start in range(0, n, batch_size):
        x = activations[start : start + batch_size].float() / metadata.input_scale
        x_hat, f = sae(x)
        fired |= (f > 0).any(dim=0)
        active += float((f > 0).sum())
        residual += float((x - x_hat).double().pow(2).sum())
        total_sq += float(x.double().pow(2).sum())
        total_sum += x.double().sum(dim=0)
    # total variance Σ‖x − mean‖² = Σ‖x‖² − n‖mean‖², accumulated without a second pass
    total_variance = total_sq - float(total_sum.pow(2).sum()) / n
    return ReconstructionMetrics(active / n, 1.0 - residual / total_variance, float((~fired).float().mean()))


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
        metrics = reconstruction_metrics(sae, metadata, heldout_cache[heldout_folder].activations)
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
            }
        )
    return pd.DataFrame(rows)
