"""When does each feature form? Latents matched between dictionaries by their decoder directions.

A latent is a decoder direction. Between two dictionaries of one shape (a run's final SAE and an
earlier checkpoint; two seeds of an arm at the same step), `match_latents` pairs each latent of the
first with one of the second: a one-to-one Hungarian assignment maximising the summed cosine
(scipy's linear_sum_assignment; the pairing Song et al. 2025 use for PW-MCC), or, faster, each
latent's nearest direction (`method="max"`, not one-to-one). Signs matter: a decoder direction and
its negation are different features.

`formation_steps`: a final latent has formed at the first checkpoint from which its matched cosine
to the final SAE stays at or above `threshold` up to the end. The final checkpoint always matches
itself (cosine 1), so every latent forms at the latest there; a latent that only "forms" at the
final checkpoint has not formed before the end. `random_matched_cosines` is the null: the same
matching between independent random dictionaries of the same shape.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

MatchMethod = Literal["hungarian", "max"]


def unit_rows(directions: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(directions.detach().float(), dim=1)


@torch.no_grad()
def match_latents(reference: torch.Tensor, other: torch.Tensor, method: MatchMethod = "hungarian") -> tuple[np.ndarray, np.ndarray]:
    """For each row of `reference` (n × d), the index of its partner row in `other` (m × d) and their cosine."""
    if reference.shape[1] != other.shape[1]:
        raise ValueError(f"directions of different dimension: {tuple(reference.shape)} vs {tuple(other.shape)}")
    cosines = (unit_rows(reference) @ unit_rows(other).T).numpy()
    if method == "max":
        partner = cosines.argmax(axis=1)
    elif method == "hungarian":
        if cosines.shape[0] > cosines.shape[1]:
            raise ValueError(f"a one-to-one matching needs at least as many latents in `other` ({cosines.shape[1]}) as in `reference` ({cosines.shape[0]})")
        rows, columns = linear_sum_assignment(cosines, maximize=True)
        partner = np.empty(cosines.shape[0], dtype=int)
        partner[rows] = columns
    else:
        raise ValueError(f"method must be 'hungarian' or 'max', got {method!r}")
    return partner, cosines[np.arange(len(partner)), partner]


def matched_cosines_over_checkpoints(decoders: list[torch.Tensor], method: MatchMethod = "hungarian") -> np.ndarray:
    """(latents of the last decoder × checkpoints): each final latent's matched cosine at every checkpoint."""
    final = decoders[-1]
    return np.stack([match_latents(final, decoder, method)[1] for decoder in decoders], axis=1)


def formation_steps(matched: np.ndarray, steps: list[int], threshold: float = 0.9) -> np.ndarray:
    """Per final latent, the first step from which its matched cosine stays ≥ `threshold` to the end."""
    if matched.shape[1] != len(steps):
        raise ValueError(f"{matched.shape[1]} checkpoints of cosines for {len(steps)} steps")
    below = matched < threshold
    # the last checkpoint below the threshold; the latent formed at the next one
    last_below = np.where(below.any(axis=1), matched.shape[1] - 1 - np.argmax(below[:, ::-1], axis=1), -1)
    return np.asarray(steps)[np.minimum(last_below + 1, len(steps) - 1)]


def random_matched_cosines(n: int, d: int, method: MatchMethod = "hungarian", seed: int = 0) -> np.ndarray:
    """Matched cosines between two independent random dictionaries of n unit directions in d dimensions."""
    generator = torch.Generator().manual_seed(seed)
    first, second = torch.randn(n, d, generator=generator), torch.randn(n, d, generator=generator)
    return match_latents(first, second, method)[1]
