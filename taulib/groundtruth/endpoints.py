"""An SAE checkpoint scored against the ground-truth world's true features (taulib.groundtruth.world).

Matching. The true features and the SAE's latents are paired one-to-one by the Hungarian assignment
maximising the summed signed cosine between true directions and decoder rows (scipy's
linear_sum_assignment; SAELens' synthetic evals and Song et al. 2025 match the same way). Signed,
because a ReLU latent's decoder row −u cannot reconstruct a positive firing of u. With fewer latents
than features some features stay unmatched and count as cosine 0.

Per checkpoint, on held-out samples whose true activations are known:

- `mcc`: the mean over all true features of the matched cosine (unmatched: 0);
- `recall`: share of true features whose matched latent has cosine > RECOVERY_COSINE; `precision`: the
  same count over the *alive* latents, so duplicate and junk latents count against an SAE;
- `f1`: per recovered feature, the F1 of "its latent fires" against "the feature fires" on the held-out
  samples (absorption shows in the encoder while the decoder can stay aligned); the mean over recovered
  features;
- `splits`: latents beyond the first whose nearest true feature (cosine > SPLIT_COSINE) is the same one;
- `absorption`: the ground-truth absorption rate. For a parent P and a sample where P and one of its
  children C fire, the sample is *absorbed* when P's matched latent is silent while C's matched latent
  fires and carries P's direction: its decoder row, written in the basis (u_C, u_P) by least squares as
  α·u_C + β·u_P, has β ≥ ABSORBED_PARENT_SHARE·α (a true child latent has β = 0; one that absorbed its
  parent with equal mean magnitudes has β ≈ α). The rate is the share of such samples, over all
  parents' co-firing samples (pooled), and per parent;
- by feature type (parent, child, independent, rare): recall and F1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

RECOVERY_COSINE = 0.9  # a feature is recovered when its matched latent's decoder row is this close
SPLIT_COSINE = 0.7  # a latent counts towards a split of the feature it points at from this cosine on
ABSORBED_PARENT_SHARE = 0.3  # β/α from which a child's latent carries its parent's direction
FEATURE_TYPES = ("parent", "child", "independent", "rare")


@dataclass(frozen=True)
class Matching:
    latent: np.ndarray  # per true feature, its matched latent (−1: unmatched, fewer latents than features)
    cosine: np.ndarray  # per true feature, the matched cosine (0 where unmatched)
    cosines: np.ndarray  # (features × latents) signed cosines


def cosine_matrix(true_directions: torch.Tensor, decoder: torch.Tensor) -> np.ndarray:
    """(features × latents) cosines between true directions and decoder rows, in float64."""
    if true_directions.ndim != 2 or decoder.ndim != 2 or true_directions.shape[1] != decoder.shape[1]:
        raise ValueError(f"true directions {tuple(true_directions.shape)} and decoder {tuple(decoder.shape)} must be (n, d) and (m, d)")
    true = torch.nn.functional.normalize(true_directions.detach().double(), dim=1)
    learned = torch.nn.functional.normalize(decoder.detach().double(), dim=1)
    return (true @ learned.T).numpy()


def match_features(true_directions: torch.Tensor, decoder: torch.Tensor) -> Matching:
    """The one-to-one Hungarian matching of true features to latents by signed cosine."""
    cosines = cosine_matrix(true_directions, decoder)
    rows, columns = linear_sum_assignment(cosines, maximize=True)
    latent = np.full(cosines.shape[0], -1, dtype=np.int64)
    latent[rows] = columns
    cosine = np.zeros(cosines.shape[0])
    cosine[rows] = cosines[rows, columns]
    return Matching(latent, cosine, cosines)


def firing_f1(latent_fires: np.ndarray, feature_fires: np.ndarray) -> np.ndarray:
    """Per column pair, the F1 of the boolean (samples × k) `latent_fires` against `feature_fires`
    (0 where neither ever fires)."""
    true_positive = (latent_fires & feature_fires).sum(axis=0)
    denominator = latent_fires.sum(axis=0) + feature_fires.sum(axis=0)
    return np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)


def parent_share(decoder_row: np.ndarray, child: np.ndarray, parent: np.ndarray) -> float:
    """β/α of the least-squares fit decoder_row ≈ α·child + β·parent (−inf where α ≤ 0: not the child's direction)."""
    basis = np.stack([child, parent], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(basis, decoder_row, rcond=None)
    return float(beta / alpha) if alpha > 0 else -math.inf


@dataclass(frozen=True)
class CheckpointEndpoints:
    l0: float
    explained_variance: float
    alive_latents: int
    mcc: float
    recall: float
    precision: float
    f1: float  # mean over recovered features (NaN when none is)
    splits: int
    absorption: float  # pooled over parents' co-firing samples (NaN when no parent co-fires with a child)
    recall_parent: float
    recall_child: float
    recall_independent: float
    recall_rare: float
    f1_parent: float
    f1_child: float
    f1_independent: float
    f1_rare: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Truth:
    """What the endpoints need of the world: its directions, hierarchy and held-out samples."""

    directions: torch.Tensor  # (features, d)
    parent: np.ndarray  # (features,) parent index, −1 for none
    feature_type: tuple[str, ...]
    x: torch.Tensor  # held-out samples (n, d)
    activations: torch.Tensor  # their true feature activations (n, features)

    def __post_init__(self) -> None:
        if self.activations.shape != (self.x.shape[0], self.directions.shape[0]):
            raise ValueError(f"activations {tuple(self.activations.shape)} must be (samples {self.x.shape[0]}, features {self.directions.shape[0]})")


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


@torch.no_grad()
def absorption_rate(truth: Truth, matching: Matching, latent_acts: np.ndarray, decoder: np.ndarray) -> tuple[float, dict[int, float]]:
    """(pooled rate, per-parent rate) of ground-truth absorption (module docstring)."""
    feature_fires = truth.activations.numpy() > 0
    fires = latent_acts > 0
    directions = torch.nn.functional.normalize(truth.directions.double(), dim=1).numpy()
    absorbed_total, cofiring_total, per_parent = 0, 0, {}
    for parent in np.unique(truth.parent[truth.parent >= 0]):
        parent_latent = matching.latent[parent]
        absorbed, cofiring = 0, 0
        for child in np.flatnonzero(truth.parent == parent):
            both = feature_fires[:, parent] & feature_fires[:, child]
            n_both = int(both.sum())
            if n_both == 0:
                continue
            cofiring += n_both
            child_latent = matching.latent[child]
            if child_latent < 0:
                continue  # the child has no latent: nothing carries the parent in its place
            if parent_share(decoder[child_latent], directions[child], directions[parent]) < ABSORBED_PARENT_SHARE:
                continue
            parent_silent = ~fires[:, parent_latent] if parent_latent >= 0 else np.ones(len(fires), dtype=bool)
            absorbed += int((both & parent_silent & fires[:, child_latent]).sum())
        if cofiring:
            per_parent[int(parent)] = absorbed / cofiring
            absorbed_total, cofiring_total = absorbed_total + absorbed, cofiring_total + cofiring
    return (absorbed_total / cofiring_total if cofiring_total else math.nan), per_parent


@torch.no_grad()
def score_checkpoint(truth: Truth, latent_acts: torch.Tensor, reconstruction: torch.Tensor, decoder: torch.Tensor) -> tuple[CheckpointEndpoints, Matching]:
    """Every endpoint of one checkpoint from its held-out latent activations (n, m), reconstruction (n, d)
    and decoder rows (m, d)."""
    if latent_acts.shape[0] != truth.x.shape[0] or reconstruction.shape != truth.x.shape or latent_acts.shape[1] != decoder.shape[0]:
        raise ValueError(
            f"latents {tuple(latent_acts.shape)}, reconstruction {tuple(reconstruction.shape)} and decoder {tuple(decoder.shape)} do not fit samples {tuple(truth.x.shape)}"
        )
    acts = latent_acts.detach().float().numpy()
    fires = acts > 0
    alive = fires.any(axis=0)
    x = truth.x.double()
    residual = (x - reconstruction.detach().double()).pow(2).sum()
    total = (x - x.mean(dim=0)).pow(2).sum()
    matching = match_features(truth.directions, decoder)
    recovered = matching.cosine > RECOVERY_COSINE
    n_recovered = int(recovered.sum())
    feature_fires = truth.activations.numpy() > 0
    matched = matching.latent >= 0
    f1 = np.zeros(len(matching.latent))
    f1[matched] = firing_f1(fires[:, matching.latent[matched]], feature_fires[:, matched])
    # splits: latents (cosine > SPLIT_COSINE) sharing their nearest true feature, beyond the first
    nearest = matching.cosines.argmax(axis=0)
    pointing = matching.cosines.max(axis=0) > SPLIT_COSINE
    per_feature = np.bincount(nearest[pointing & alive], minlength=len(matching.latent))
    decoder_rows = torch.nn.functional.normalize(decoder.detach().double(), dim=1).numpy()
    absorption, _ = absorption_rate(truth, matching, acts, decoder_rows)
    types = np.asarray(truth.feature_type)
    by_type: dict[str, float] = {}
    for kind in FEATURE_TYPES:
        of_kind = types == kind
        by_type[f"recall_{kind}"] = float(recovered[of_kind].mean()) if of_kind.any() else math.nan
        by_type[f"f1_{kind}"] = _mean_or_nan(f1[of_kind & recovered])
    endpoints = CheckpointEndpoints(
        l0=float(fires.sum(axis=1).mean()),
        explained_variance=float(1 - residual / total),
        alive_latents=int(alive.sum()),
        mcc=float(matching.cosine.mean()),
        recall=n_recovered / len(recovered),
        precision=n_recovered / max(int(alive.sum()), 1),
        f1=_mean_or_nan(f1[recovered]),
        splits=int(np.maximum(per_feature - 1, 0).sum()),
        absorption=absorption,
        **by_type,
    )
    return endpoints, matching
