"""One checkpoint's evaluation details as tidy tables: what a checkpoint slider redraws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from taulib.metrics.absorption.metric import AbsorptionSettings


def first_letter_latents(details: dict[str, Any], min_probe_f1: float = AbsorptionSettings.min_probe_f1) -> pd.DataFrame:
    """Per first letter: the latent that best carries it alone (k=1 sparse probe), its F1, the latents
    it is split across, and its absorption; `evaluated` marks letters whose ground-truth probe is good
    enough to count (SAE Bench drops the others)."""
    letters = pd.DataFrame(details.get("absorption_letters", []))
    if letters.empty:
        return letters
    letters["evaluated"] = (letters["probe_f1"] > min_probe_f1) & (letters["n_probe_true_positives"] > 0)
    letters["split_latents"] = letters["split_latents"].map(lambda latents: ", ".join(map(str, latents)))
    return letters


def density_bins(details: dict[str, Any]) -> pd.DataFrame:
    """The log10 firing-density histogram: one row per bin (left edge, right edge, centre, latents), plus the dead count in attrs."""
    histogram = details.get("density_histogram")
    if not histogram:
        return pd.DataFrame(columns=["left", "right", "centre", "latents"])
    edges = np.asarray(histogram["log10_density_edges"], dtype=float)
    table = pd.DataFrame({"left": edges[:-1], "right": edges[1:], "centre": (edges[:-1] + edges[1:]) / 2, "latents": histogram["counts"]})
    table.attrs["dead"] = int(histogram["dead"])
    return table


def probing_latents(details: dict[str, Any]) -> pd.DataFrame:
    """Per binary probing task (task: class vs rest): top-1 accuracy, the single best latent and the top ten."""
    tasks = pd.DataFrame(details.get("probing_tasks", []))
    if tasks.empty:
        return tasks
    tasks["label"] = tasks["task"] + ": " + tasks["positive_class"].astype(str)
    tasks["top_latent"] = tasks["top_latents"].map(lambda latents: int(latents[0]) if len(latents) else -1)
    return tasks


def cosine_histograms(details: dict[str, Any]) -> pd.DataFrame:
    """Max decoder cosine to any other latent: the SAE's histogram and random unit vectors' of the same shape."""
    if "max_cosine_histogram" not in details:
        return pd.DataFrame(columns=["left", "right", "centre", "sae", "random", "encoder_decoder"])
    edges = np.asarray(details["cosine_histogram_edges"], dtype=float)
    return pd.DataFrame(
        {
            "left": edges[:-1],
            "right": edges[1:],
            "centre": (edges[:-1] + edges[1:]) / 2,
            "sae": details["max_cosine_histogram"],
            "random": details["random_max_cosine_histogram"],
            "encoder_decoder": details["encoder_decoder_cosine_histogram"],
        }
    )
