"""A synthetic ground-truth world whose true features have the structure that causes feature absorption.

An SAE trained on a language model's activations absorbs features: a latent for a general concept (a parent,
"starts with S") stops firing on the inputs where a more specific concept (a child, "short") fires, because
the child's latent can carry the parent's direction at no extra L0. That needs (i) parents whose children
co-fire with them and exclude one another, (ii) children whose directions lie close to the parent's. This world
builds exactly that, plus the other features of real activations that shape what an SAE learns (the design
follows SAELens' `sae_lens.synthetic`; written from scratch):

    x = Σ_{i fires} m_i·u_i + Σ_j f_j·s_j·b_j + ε,     m_i = exp(σ·z),  f_j, z ~ N(0, 1),  ε ~ N(0, noise_std²·I)

Features, in index order (deterministic):
  roots        0 … n_parents−1: top-level features that have children ("parent").
  descendants  breadth-first: the children of root 0, then of root 1, …, then their children (hierarchy_depth
               levels, children_per_parent = b per node). When a node fires, with probability child_given_parent
               = q exactly one of its b children fires, chosen uniformly: children are mutually exclusive and never
               fire without their parent. A node with children is a "parent", a leaf is a "child".
  independent  the remaining top-level features: no parent, no children.
  rare         the last n_rare: an independent tail, each with probability rare_factor × the least frequent
               top-level probability: features an SAE sees too seldom to learn.

Knobs:
  firing       the top-level (root + independent) probabilities fall as a Zipf law, p_k ∝ (k+1)^−frequency_exponent,
               roots first (parent concepts are the common ones), scaled so that the expected true L0, children
               and rare features included, is mean_active_features.
  correlation  top-level features are grouped consecutively (correlation_group_size) and fire through a Gaussian
               copula: z_k = √ρ·g + √(1−ρ)·e_k with one shared g per group, k fires iff z_k > Φ⁻¹(1 − p_k); the
               marginals stay p_k while features of a group co-occur, as related concepts do in text.
  directions   roots, independent and rare features: random unit vectors (not pushed apart, like a language model's
               directions in superposition); a child: cosine U(child_cosine_low, child_cosine_high) with its parent
               along a random orthogonal direction, so related features are clustered.
  magnitudes   log-normal, exp(σ·z), σ = magnitude_log_std: heavy-tailed as real activations are.
  dense part   a low-rank background (background_rank Gaussian factors along random unit directions, in every
               sample) and isotropic noise, together dense_variance_share of the data's total variance
               (background_share of it in the background): variance no sparse dictionary explains, so that an SAE
               as wide as the truth does not reach an explained variance of 1.

`make_world(config, seed)` draws the directions and calibrates the dense part (deterministic given both);
`sample(world, n, generator)` draws samples with their true activations, `sample_chunks` the same in blocks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator

from taulib.config import StrictModel

CHUNK_ROWS = 8192  # samples drawn at once: the (rows × n_features) activation block stays at ~32 MB
CALIBRATION_ROWS = 8192  # signal samples that estimate the signal's total variance in make_world


class WorldConfig(StrictModel):
    """The ground-truth world: true features with a parent → mutually exclusive children hierarchy, Zipfian and
    copula-correlated firing, clustered directions, log-normal magnitudes and a dense low-rank background."""

    d_model: int = Field(128, ge=2, description="dimension of the synthetic residual stream")
    n_features: int = Field(512, ge=2, description="all true features: roots, their descendants, independent and rare features")
    n_parents: int = Field(32, ge=0, description="root features that have children (the hierarchies' tops)")
    children_per_parent: int = Field(4, ge=0, description="branching factor b at every level of the hierarchy (at least 2 when n_parents > 0)")
    hierarchy_depth: int = Field(1, ge=1, validate_default=True, description="levels below a root: 1 parent → children; 2 parent → children → grandchildren; …")
    child_given_parent: float = Field(
        0.9, ge=0, le=1, description="P(one of its children fires | the node fires); children are mutually exclusive: at most one fires"
    )
    n_rare: int = Field(64, ge=0, validate_default=True, description="a rare tail of independent features, the last indices")
    rare_factor: float = Field(0.1, gt=0, le=1, description="a rare feature's probability = rare_factor × the smallest non-rare top-level probability")
    mean_active_features: float = Field(8.0, gt=0, description="expected true L0 of a sample (all features, children included)")
    frequency_exponent: float = Field(
        0.5, ge=0, validate_default=True, description="Zipf exponent over the top-level (root + independent) features, roots first"
    )
    correlation: float = Field(0.3, ge=0, lt=1, description="Gaussian-copula correlation ρ of the top-level firing within a correlated group")
    correlation_group_size: int = Field(
        8, ge=1, description="top-level features (roots and independents) are grouped consecutively in groups of this size (1: independent)"
    )
    child_cosine_low: float = Field(0.5, ge=0, lt=1, description="least cosine of a child's direction with its parent's")
    child_cosine_high: float = Field(
        0.7, ge=0, lt=1, validate_default=True, description="largest cosine of a child's direction with its parent's; drawn U(low, high)"
    )
    magnitude_log_std: float = Field(0.5, ge=0, description="a firing feature's magnitude is exp(σ·z), z ~ N(0, 1) (0: every magnitude 1)")
    background_rank: int = Field(4, ge=0, description="Gaussian factors along random unit directions, present in every sample (the dense background)")
    dense_variance_share: float = Field(0.08, ge=0, lt=1, description="share of the data's total variance that is background + isotropic noise")
    background_share: float = Field(
        0.5, ge=0, le=1, validate_default=True, description="of the dense variance, the share in the low-rank background (the rest: isotropic noise)"
    )

    # field validators, not a model validator, so that an error names a field to change; each reads the fields declared before it.
    # The fields they sit on have validate_default=True: pydantic skips a field validator on a default value, and a changed
    # n_features or mean_active_features must still be checked against the default hierarchy_depth or frequency_exponent.
    @field_validator("children_per_parent")
    @classmethod
    def _exclusive_children(cls, value: int, info: ValidationInfo) -> int:
        parents = info.data.get("n_parents")
        if parents and value < 2:
            raise ValueError(f"children_per_parent {value}: mutually exclusive children need at least two per parent (or set n_parents: 0)")
        return value

    @field_validator("hierarchy_depth")
    @classmethod
    def _hierarchy_fits(cls, value: int, info: ValidationInfo) -> int:
        n, parents, b = (info.data.get(key) for key in ("n_features", "n_parents", "children_per_parent"))
        if n is None or parents is None or b is None:
            return value
        needed = parents * (1 + _descendants_per_root(b, value))
        if needed > n:
            raise ValueError(
                f"children_per_parent × hierarchy_depth: the hierarchy needs {needed:,} features ({parents} roots with {b} children per node, "
                f"{value} level(s) deep) but n_features is {n:,}; lower children_per_parent, hierarchy_depth or n_parents"
            )
        return value

    @field_validator("n_rare")
    @classmethod
    def _rare_tail_fits(cls, value: int, info: ValidationInfo) -> int:
        n, parents, b, depth = (info.data.get(key) for key in ("n_features", "n_parents", "children_per_parent", "hierarchy_depth"))
        if n is None or parents is None or b is None or depth is None:
            return value
        hierarchy = parents * (1 + _descendants_per_root(b, depth))
        if hierarchy + value > n:
            raise ValueError(f"n_rare {value:,}: the hierarchy takes {hierarchy:,} features, with the rare tail {hierarchy + value:,} > n_features {n:,}")
        if parents + (n - hierarchy - value) < 1:
            raise ValueError(f"n_rare {value:,}: no top-level (root or independent) feature is left; lower n_rare")
        return value

    @field_validator("frequency_exponent")
    @classmethod
    def _probabilities_at_most_one(cls, value: float, info: ValidationInfo) -> float:
        keys = ("n_features", "n_parents", "children_per_parent", "hierarchy_depth", "child_given_parent", "n_rare", "rare_factor", "mean_active_features")
        values = {key: info.data.get(key) for key in keys}
        if any(v is None for v in values.values()):
            return value
        top, _ = _top_level_probabilities(**values, frequency_exponent=value)
        if top[0] > 1:
            raise ValueError(
                f"with mean_active_features {values['mean_active_features']:g} and frequency_exponent {value:g} the most frequent feature would "
                f"fire with probability {top[0]:.3f} > 1; lower mean_active_features or frequency_exponent, or add features"
            )
        return value

    @field_validator("child_cosine_high")
    @classmethod
    def _cosine_interval(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("child_cosine_low")
        if low is not None and low > value:
            raise ValueError(f"child_cosine_low {low:g} > child_cosine_high {value:g}: the interval U(low, high) is empty")
        return value

    @field_validator("background_share")
    @classmethod
    def _background_needs_rank(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("background_rank") == 0 and value > 0:
            raise ValueError(f"background_share {value:g} with background_rank 0: there is no background to carry it; set background_share: 0")
        return value

    def firing_probabilities(self) -> torch.Tensor:
        """(n_features,) float64: each top-level feature's firing probability (roots, independent and rare features);
        0 for descendants, which fire only through their parent."""
        top, rare = self._top_and_rare()
        layout = _Layout.of(self)
        probabilities = torch.zeros(self.n_features, dtype=torch.float64)
        probabilities[layout.top_level_indices()] = top
        probabilities[layout.rare_start :] = rare
        return probabilities

    def marginal_probabilities(self) -> torch.Tensor:
        """(n_features,) float64: every feature's marginal firing probability; a child's is its parent's × q / b."""
        probabilities = self.firing_probabilities()
        layout = _Layout.of(self)
        parent = layout.parents()
        for level in range(1, self.hierarchy_depth + 1):  # level by level: a parent's marginal is complete before its children's
            start, end = layout.level_starts[level], layout.level_starts[level + 1]
            probabilities[start:end] = probabilities[parent[start:end]] * self.child_given_parent / self.children_per_parent
        return probabilities

    def _top_and_rare(self) -> tuple[torch.Tensor, float]:
        keys = ("n_features", "n_parents", "children_per_parent", "hierarchy_depth", "child_given_parent", "n_rare", "rare_factor", "mean_active_features")
        return _top_level_probabilities(**{key: getattr(self, key) for key in keys}, frequency_exponent=self.frequency_exponent)


def _descendants_per_root(b: int, depth: int) -> int:
    return sum(b**level for level in range(1, depth + 1))


def _top_level_probabilities(
    n_features: int,
    n_parents: int,
    children_per_parent: int,
    hierarchy_depth: int,
    child_given_parent: float,
    n_rare: int,
    rare_factor: float,
    mean_active_features: float,
    frequency_exponent: float,
) -> tuple[torch.Tensor, float]:
    """The top-level probabilities (roots then independents, float64) and the rare one, scaled to the expected L0."""
    n_top = n_features - n_parents * _descendants_per_root(children_per_parent, hierarchy_depth) - n_rare
    weights = torch.arange(1, n_top + 1, dtype=torch.float64) ** -frequency_exponent
    # a firing root brings one child with probability q, that child one grandchild with probability q, …
    features_per_firing = torch.ones(n_top, dtype=torch.float64)
    features_per_firing[:n_parents] = sum(child_given_parent**level for level in range(hierarchy_depth + 1))
    scale = mean_active_features / (float(weights @ features_per_firing) + n_rare * rare_factor * float(weights.min()))
    top = scale * weights
    return top, rare_factor * float(top.min())


@dataclass(frozen=True)
class _Layout:
    """Where each kind of feature sits in the index order."""

    n_features: int
    n_parents: int
    branching: int
    depth: int
    level_starts: tuple[int, ...]  # level ℓ (0: roots) is level_starts[ℓ] … level_starts[ℓ+1]−1; level_starts[depth+1]: the first independent
    rare_start: int

    @classmethod
    def of(cls, config: WorldConfig) -> _Layout:
        starts = [0]
        for level in range(config.hierarchy_depth + 1):
            starts.append(starts[-1] + config.n_parents * config.children_per_parent**level)
        return cls(config.n_features, config.n_parents, config.children_per_parent, config.hierarchy_depth, tuple(starts), config.n_features - config.n_rare)

    @property
    def independent_start(self) -> int:
        return self.level_starts[-1]

    def top_level_indices(self) -> torch.Tensor:
        return torch.cat([torch.arange(self.n_parents), torch.arange(self.independent_start, self.rare_start)])

    def parents(self) -> torch.Tensor:
        parent = torch.full((self.n_features,), -1, dtype=torch.int64)
        for level in range(1, self.depth + 1 if self.n_parents else 1):  # no roots: no hierarchy (and b may be 0)
            start, end = self.level_starts[level], self.level_starts[level + 1]
            parent[start:end] = self.level_starts[level - 1] + torch.arange(end - start) // self.branching
        return parent


@dataclass(frozen=True)
class World:
    """A drawn world: the true dictionary, the hierarchy and the dense part's scale."""

    config: WorldConfig
    seed: int
    directions: torch.Tensor  # (n_features, d_model) float32, unit rows: the true dictionary
    parent: torch.Tensor  # (n_features,) int64, each feature's parent, −1 for top-level and rare features
    feature_type: tuple[str, ...]  # per feature: "parent" (has children), "child" (a leaf with a parent), "independent", "rare"
    top_probabilities: torch.Tensor  # (n_features,) float32: the top-level firing probability (0 for descendants)
    background: torch.Tensor  # (background_rank, d_model) float32: the background directions × their std
    noise_std: float

    def children_of(self, i: int) -> list[int]:
        return torch.nonzero(self.parent == i).flatten().tolist()

    @property
    def n_features(self) -> int:
        return self.config.n_features


def _generator(seed: int, stream: str) -> torch.Generator:
    # independent streams of one seed: the directions and the calibration draw do not shift one another
    digest = hashlib.sha256(f"taulib.groundtruth.world|{seed}|{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=-1, keepdim=True)


def make_world(config: WorldConfig, seed: int) -> World:
    """Draw the world's directions (float64, then float32) and calibrate its dense part; deterministic given (config, seed)."""
    generator = _generator(seed, "directions")
    layout = _Layout.of(config)
    parent = layout.parents()
    gaussian = torch.randn(config.n_features, config.d_model, generator=generator, dtype=torch.float64)
    directions = _unit(gaussian)
    n_descendants = layout.independent_start - config.n_parents
    cosines = config.child_cosine_low + (config.child_cosine_high - config.child_cosine_low) * torch.rand(
        n_descendants, generator=generator, dtype=torch.float64
    )
    for level in range(1, config.hierarchy_depth + 1):  # a level's parents are complete before their children are built
        start, end = layout.level_starts[level], layout.level_starts[level + 1]
        above = directions[parent[start:end]]
        orthogonal = _unit(gaussian[start:end] - (gaussian[start:end] * above).sum(dim=1, keepdim=True) * above)
        cosine = cosines[start - config.n_parents : end - config.n_parents, None]
        directions[start:end] = cosine * above + torch.sqrt(1 - cosine**2) * orthogonal
    background_directions = _unit(torch.randn(config.background_rank, config.d_model, generator=generator, dtype=torch.float64))

    feature_type = []
    has_children = torch.zeros(config.n_features, dtype=torch.bool)
    has_children[parent[parent >= 0]] = True
    for i in range(config.n_features):
        if has_children[i]:
            feature_type.append("parent")
        elif parent[i] >= 0:
            feature_type.append("child")
        else:
            feature_type.append("rare" if i >= layout.rare_start else "independent")

    signal_world = World(
        config=config,
        seed=seed,
        directions=directions.float(),
        parent=parent,
        feature_type=tuple(feature_type),
        top_probabilities=config.firing_probabilities().float(),
        background=torch.zeros(config.background_rank, config.d_model),
        noise_std=0.0,
    )
    # the dense part is a share of the total variance: dense = share / (1 − share) × the signal's trace of covariance
    signal, _ = sample(signal_world, CALIBRATION_ROWS, _generator(seed, "calibration"))
    signal_variance = float(signal.double().var(dim=0).sum())
    dense = config.dense_variance_share / (1 - config.dense_variance_share) * signal_variance
    background_std = math.sqrt(config.background_share * dense / config.background_rank) if config.background_rank else 0.0
    noise_std = math.sqrt((1 - config.background_share) * dense / config.d_model)
    return World(
        config=config,
        seed=seed,
        directions=signal_world.directions,
        parent=parent,
        feature_type=signal_world.feature_type,
        top_probabilities=signal_world.top_probabilities,
        background=(background_std * background_directions).float(),
        noise_std=noise_std,
    )


@dataclass(frozen=True)
class _Plan:
    """What sampling needs, derived from a world once per call."""

    top_features: torch.Tensor  # (n_groups × group_size,) feature of each copula slot, padding slots −1
    thresholds: torch.Tensor  # (n_groups, group_size) float32: slot k fires iff z_k > Φ⁻¹(1 − p_k); +inf on padding
    rare_start: int
    rare_probability: float
    level_starts: tuple[int, ...]

    @classmethod
    def of(cls, world: World) -> _Plan:
        config = world.config
        layout = _Layout.of(config)
        top = layout.top_level_indices()
        size = config.correlation_group_size
        groups = -(-len(top) // size)
        slots = torch.full((groups * size,), -1, dtype=torch.int64)
        slots[: len(top)] = top
        probabilities = torch.zeros(groups * size, dtype=torch.float64)
        probabilities[: len(top)] = world.top_probabilities[top].double()
        # Φ⁻¹(1 − p) = −Φ⁻¹(p), in float64: 1 − p loses a rare feature's p in float32
        thresholds = (-torch.special.ndtri(probabilities)).float().view(groups, size)
        rare = float(world.top_probabilities[layout.rare_start]) if config.n_rare else 0.0
        return cls(slots, thresholds, layout.rare_start, rare, layout.level_starts)


def _fire_indices(mask: torch.Tensor) -> torch.Tensor:
    # numpy's flatnonzero is several times faster than torch.nonzero on a CPU for a sparse mask
    return torch.from_numpy(np.flatnonzero(mask.numpy()))


def _draw(world: World, plan: _Plan, rows: int, generator: torch.Generator, activations: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of samples; `activations`, when given, is a zeroed (rows, n_features) view to fill."""
    config = world.config
    groups, size = plan.thresholds.shape
    # 1. top-level firing through the Gaussian copula
    own = torch.randn(rows, groups, size, generator=generator)
    if config.correlation > 0 and size > 1:
        # √ρ·g + √(1−ρ)·e > t  ⇔  e > (t − √ρ·g)/√(1−ρ): one pass fewer over the (rows × top-level) block
        shared = torch.randn(rows, groups, 1, generator=generator)
        scale = math.sqrt(1 - config.correlation)
        thresholds = torch.sub(plan.thresholds / scale, shared, alpha=math.sqrt(config.correlation) / scale)
    else:
        thresholds = plan.thresholds
    fired = _fire_indices(own > thresholds)
    event_rows, event_features = [fired // (groups * size)], [plan.top_features[fired % (groups * size)]]
    if config.n_rare:
        fired = _fire_indices(torch.rand(rows, config.n_rare, generator=generator) < plan.rare_probability)
        event_rows.append(fired // config.n_rare)
        event_features.append(plan.rare_start + fired % config.n_rare)
    # 2. down the hierarchy: a firing node fires exactly one of its b children with probability q, uniformly chosen
    is_root = event_features[0] < config.n_parents
    node_rows, nodes = event_rows[0][is_root], event_features[0][is_root]
    q, b = config.child_given_parent, config.children_per_parent
    for level in range(1, config.hierarchy_depth + 1):
        if q == 0 or len(nodes) == 0:
            break
        u = torch.rand(len(nodes), generator=generator)
        fires = u < q
        choice = (u[fires] * (b / q)).long().clamp_(max=b - 1)  # given u < q, u/q is uniform on [0, 1)
        node_rows = node_rows[fires]
        nodes = plan.level_starts[level] + (nodes[fires] - plan.level_starts[level - 1]) * b + choice
        event_rows.append(node_rows)
        event_features.append(nodes)
    # 3. log-normal magnitudes on the firing features
    event_row, event_feature = torch.cat(event_rows), torch.cat(event_features)
    magnitudes = torch.exp(config.magnitude_log_std * torch.randn(len(event_row), generator=generator))
    magnitudes.clamp_(min=torch.finfo(torch.float32).tiny)  # a large σ may underflow to 0, and a firing feature must be nonzero
    if activations is None:
        activations = torch.zeros(rows, config.n_features)
    activations[event_row, event_feature] = magnitudes
    # 4. x = A·U + background + noise; A is sparse (~mean_active_features per row): a sparse product is cheaper than a dense one
    sparse = torch.sparse_coo_tensor(torch.stack([event_row, event_feature]), magnitudes, (rows, config.n_features), check_invariants=False)
    x = torch.sparse.mm(sparse, world.directions)
    if config.background_rank:
        x.addmm_(torch.randn(rows, config.background_rank, generator=generator), world.background)
    if world.noise_std > 0:
        x.add_(torch.randn(rows, config.d_model, generator=generator), alpha=world.noise_std)
    return x, activations


def sample_chunks(world: World, n: int, generator: torch.Generator, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`sample`'s draws in blocks of chunk_rows samples (the last one shorter): a stream that never holds more than a block."""
    plan = _Plan.of(world)
    for start in range(0, n, chunk_rows):
        yield _draw(world, plan, min(chunk_rows, n - start), generator)


def sample(world: World, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n, d_model) float32, feature activations (n, n_features) float32, ≥ 0, nonzero exactly where a feature fires).

    All randomness comes from `generator`: equal worlds and generator states give bit-identical samples, drawn in
    blocks of CHUNK_ROWS as `sample_chunks` draws them. The activations take n × n_features × 4 bytes; stream a
    large draw with `sample_chunks`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    plan = _Plan.of(world)
    x, activations = torch.empty(n, world.config.d_model), torch.zeros(n, world.n_features)
    for start in range(0, n, CHUNK_ROWS):
        end = min(start + CHUNK_ROWS, n)
        x[start:end] = _draw(world, plan, end - start, generator, activations[start:end])[0]
    return x, activations
