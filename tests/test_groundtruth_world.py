"""The ground-truth world (taulib.groundtruth.world): its samples against its configuration.

Statistical checks allow 5 standard errors, each computed from the binomial (or the sample's own) variance;
the draws are seeded, so a test passes or fails the same way every run."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from scipy.stats import multivariate_normal

from taulib.groundtruth.world import World, WorldConfig, make_world, sample, sample_chunks

Z = 5.0  # standard errors allowed
N = 98_304  # samples per statistical draw (12 blocks of 8,192)
DEPTH_2 = WorldConfig(n_parents=16, hierarchy_depth=2)  # 16 × (4 + 16) + 16 = 336 hierarchy features, + 128 rare


# a larger world than the default, with round numbers the layout and refusal tests spell out
LARGE_SETTINGS = {"d_model": 64, "n_features": 1024, "n_parents": 64, "n_rare": 128, "frequency_exponent": 1.0}
LARGE = WorldConfig(**LARGE_SETTINGS)


def draw(config: WorldConfig, n: int = N, world_seed: int = 0, seed: int = 1) -> tuple[World, torch.Tensor, torch.Tensor]:
    world = make_world(config, world_seed)
    x, activations = sample(world, n, torch.Generator().manual_seed(seed))
    return world, x, activations


@pytest.fixture(scope="module")
def default_draw() -> tuple[World, torch.Tensor, torch.Tensor]:
    return draw(WorldConfig())


@pytest.fixture(scope="module")
def depth_2_draw() -> tuple[World, torch.Tensor, torch.Tensor]:
    return draw(DEPTH_2, n=65_536)


def binomial_bound(n: int, p: torch.Tensor) -> torch.Tensor:
    return Z * torch.sqrt(n * p * (1 - p))


# ----------------------------------------------------------------------------- layout and configuration
def test_feature_layout_is_breadth_first() -> None:
    world = make_world(LARGE, 0)
    types = world.feature_type
    assert types[:64] == ("parent",) * 64 and types[64:320] == ("child",) * 256
    assert types[320:896] == ("independent",) * 576 and types[896:] == ("rare",) * 128
    assert world.children_of(0) == [64, 65, 66, 67] and world.children_of(63) == [316, 317, 318, 319]
    assert world.children_of(64) == [] and world.children_of(400) == []
    assert world.parent[64:320].tolist() == [j // 4 for j in range(256)]
    assert (world.parent[:64] == -1).all() and (world.parent[320:] == -1).all()
    deep = make_world(DEPTH_2, 0)
    # roots 0–15, children 16–79, grandchildren 80–335; a child is a "parent" of its own children
    assert deep.feature_type[16:80] == ("parent",) * 64 and deep.feature_type[80:336] == ("child",) * 256
    assert deep.children_of(16) == [80, 81, 82, 83] and deep.parent[83] == 16 and deep.parent[16] == 0


def test_probabilities_follow_the_configuration() -> None:
    config = LARGE
    top, marginal = config.firing_probabilities(), config.marginal_probabilities()
    top_level = torch.cat([torch.arange(64), torch.arange(320, 896)])
    zipf = 1 / torch.arange(1, 641, dtype=torch.float64)
    assert torch.allclose(top[top_level] / top[0], zipf)  # Zipf over roots then independents
    assert torch.allclose(top[896:], torch.full((128,), 0.1 * float(top[top_level].min()), dtype=torch.float64))
    assert (top[64:320] == 0).all()
    assert torch.allclose(marginal[64:320], marginal[torch.arange(256) // 4] * 0.9 / 4)
    assert float(marginal.sum()) == pytest.approx(8.0, rel=1e-12)  # the expected L0
    assert float(DEPTH_2.marginal_probabilities().sum()) == pytest.approx(8.0, rel=1e-12)
    assert float(marginal.max()) <= 1


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"children_per_parent": 20}, "children_per_parent", r"needs 1,344 features .* n_features is 1,024"),  # more children than features
        ({"hierarchy_depth": 3}, "hierarchy_depth", r"needs 5,440 features"),  # 64 × (4 + 16 + 64) + 64
        ({"mean_active_features": 200.0}, "mean_active_features", r"probability \d+\.\d+ > 1"),
        ({"frequency_exponent": 3.0}, "frequency_exponent", r"> 1"),
        ({"children_per_parent": 1}, "children_per_parent", r"at least two"),
        ({"child_cosine_low": 0.8, "child_cosine_high": 0.6}, "child_cosine_low", r"0.8 > child_cosine_high 0.6"),
        ({"n_rare": 900}, "n_rare", r"n_features"),
        ({"n_parents": 0, "n_rare": 1024}, "n_rare", r"no top-level"),
        ({"background_rank": 0}, "background_share", r"no background"),
        ({"n_features": "1024"}, "n_features", r"integer"),
        ({"typo": 1}, "typo", r"[Ee]xtra"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings: dict, field: str, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field) as error:
        WorldConfig(**(LARGE_SETTINGS | settings))
    assert error.match(message)


@pytest.mark.parametrize(
    "settings",
    [
        {"n_parents": 0, "children_per_parent": 0, "mean_active_features": 6.0},
        {"n_rare": 0, "correlation_group_size": 1, "magnitude_log_std": 0.0},
        {"background_rank": 0, "background_share": 0.0, "dense_variance_share": 0.0},
        {"child_given_parent": 1.0, "correlation": 0.0, "frequency_exponent": 0.0},
        {"n_features": 7, "n_parents": 1, "children_per_parent": 2, "hierarchy_depth": 2, "n_rare": 0, "mean_active_features": 2.0},
    ],
)
def test_edge_settings_sample(settings: dict) -> None:
    world, x, activations = draw(WorldConfig(**settings), n=9_000)
    assert x.shape == (9_000, world.config.d_model) and activations.shape == (9_000, world.n_features)
    assert x.dtype == activations.dtype == torch.float32 and torch.isfinite(x).all() and (activations >= 0).all()


# ----------------------------------------------------------------------------- the samples
@pytest.mark.parametrize("which", ["default_draw", "depth_2_draw"])
def test_hierarchy_holds_in_every_sample(which: str, request: pytest.FixtureRequest) -> None:
    world, _, activations = request.getfixturevalue(which)
    fires = activations > 0
    b, q = world.config.children_per_parent, world.config.child_given_parent
    descendants = torch.nonzero(world.parent >= 0).flatten()
    assert not (fires[:, descendants] & ~fires[:, world.parent[descendants]]).any(), "a child fired without its parent"
    # a node's children are consecutive: one row of b per node
    nodes = torch.tensor([i for i, kind in enumerate(world.feature_type) if kind == "parent"])
    first_child = torch.tensor([world.children_of(int(i))[0] for i in nodes])
    children = fires[:, first_child[:, None] + torch.arange(b)].sum(dim=2)  # (n, nodes)
    assert int(children.max()) == 1, "two children of one node fired together"
    # given its node fires, a child fires with probability q
    node_fires = int(fires[:, nodes].sum())
    with_child = int(children.sum())
    assert abs(with_child - q * node_fires) <= Z * math.sqrt(node_fires * q * (1 - q))
    if world.config.hierarchy_depth == 2:
        grandchildren = torch.tensor([i for i, kind in enumerate(world.feature_type) if kind == "child"])
        assert int(fires[:, grandchildren].sum()) > 0 and (world.parent[world.parent[grandchildren]] >= 0).all()


@pytest.mark.parametrize("which", ["default_draw", "depth_2_draw"])
def test_firing_frequencies_match_the_marginals(which: str, request: pytest.FixtureRequest) -> None:
    world, _, activations = request.getfixturevalue(which)
    n = len(activations)
    fires = activations > 0
    expected = world.config.marginal_probabilities()
    counts = fires.sum(dim=0).double()
    excess = (counts - n * expected).abs() / binomial_bound(n, expected)
    assert float(excess.max()) <= 1, (
        f"feature {int(excess.argmax())}: {int(counts[excess.argmax()])} fires, expected {n * float(expected[excess.argmax()]):.1f}"
    )
    l0 = fires.sum(dim=1).double()
    assert abs(float(l0.mean()) - world.config.mean_active_features) <= Z * float(l0.std()) / math.sqrt(n)


def _joint_probabilities(p_i: torch.Tensor, p_j: torch.Tensor, rho: float) -> torch.Tensor:
    """P(z_i > Φ⁻¹(1 − p_i), z_j > Φ⁻¹(1 − p_j)) for standard normals of correlation rho (scipy's bivariate normal)."""
    if rho == 0:
        return p_i * p_j
    points = torch.stack([torch.special.ndtri(p_i), torch.special.ndtri(p_j)], dim=1)  # −Φ⁻¹(1 − p) = Φ⁻¹(p)
    cdf = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf(points.numpy())
    return torch.as_tensor(cdf, dtype=torch.float64).reshape(len(p_i))


def _check_copula(world: World, fires: torch.Tensor, groups: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair's co-firing count against the copula's joint probability; the pairs' phi coefficients within and between groups."""
    n = len(fires)
    features = torch.tensor([f for group in groups for f in group])
    group_of = torch.tensor([g for g, group in enumerate(groups) for _ in group])
    i, j = torch.triu_indices(len(features), len(features), offset=1)
    same = group_of[i] == group_of[j]
    p = world.top_probabilities.double()[features]
    joint = torch.empty(len(i), dtype=torch.float64)
    joint[same] = _joint_probabilities(p[i[same]], p[j[same]], world.config.correlation)
    joint[~same] = p[i[~same]] * p[j[~same]]
    indicators = fires[:, features].double()
    both = (indicators.T @ indicators)[i, j]
    excess = (both - n * joint).abs() / binomial_bound(n, joint)
    worst = int(excess.argmax())
    assert float(excess.max()) <= 1, (
        f"features {int(features[i[worst]])}, {int(features[j[worst]])}: {int(both[worst])} co-fires, expected {n * float(joint[worst]):.0f}"
    )
    phi = torch.corrcoef(indicators.T)[i, j]
    return phi[same], phi[~same]


def test_top_level_firing_is_correlated_within_groups_only(default_draw: tuple[World, torch.Tensor, torch.Tensor]) -> None:
    world, _, activations = default_draw
    fires = activations > 0
    # groups of 8 consecutive top-level features: roots 0–7, 8–15, and the first independents 320–327 (top-level ranks 64–71)
    within, between = _check_copula(world, fires, [list(range(8)), list(range(8, 16)), list(range(320, 328))])
    phi_standard_error = 1 / math.sqrt(len(fires))  # of a phi coefficient between independent indicators
    assert float(within.min()) > Z * phi_standard_error and float(between.abs().max()) <= Z * phi_standard_error
    assert float(within.mean()) > float(between.mean()) + 10 * phi_standard_error


def test_no_correlation_without_the_copula() -> None:
    world, _, activations = draw(WorldConfig(correlation=0.0), n=65_536)
    fires = activations > 0
    within, between = _check_copula(world, fires, [list(range(8)), list(range(8, 16))])
    assert float(torch.cat([within, between]).abs().max()) <= Z / math.sqrt(len(fires))


# ----------------------------------------------------------------------------- the directions and the dense part
@pytest.mark.parametrize("config", [WorldConfig(), DEPTH_2, WorldConfig(child_cosine_low=0.2, child_cosine_high=0.9, d_model=16)])
def test_child_directions_lie_near_their_parents(config: WorldConfig) -> None:
    world = make_world(config, 3)
    norms = world.directions.norm(dim=1)
    assert world.directions.dtype == torch.float32 and torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    descendants = torch.nonzero(world.parent >= 0).flatten()
    cosines = (world.directions[descendants] * world.directions[world.parent[descendants]]).sum(dim=1).double()
    low, high = config.child_cosine_low, config.child_cosine_high
    assert float(cosines.min()) >= low - 1e-6 and float(cosines.max()) <= high + 1e-6
    # uniform on [low, high]: its mean within 5 standard errors of the midpoint
    assert abs(float(cosines.mean()) - (low + high) / 2) <= Z * (high - low) / math.sqrt(12 * len(cosines))


def test_dense_share_of_the_variance(default_draw: tuple[World, torch.Tensor, torch.Tensor]) -> None:
    world, x, activations = default_draw
    config = world.config
    n = len(x)
    x = x.double()
    signal = activations.double() @ world.directions.double()
    dense = x - signal
    d = (dense - dense.mean(dim=0)).pow(2).sum(dim=1)  # per-sample contributions to the trace of each covariance
    t = (x - x.mean(dim=0)).pow(2).sum(dim=1)
    s = (signal - signal.mean(dim=0)).pow(2).sum(dim=1)
    share = float(d.mean() / t.mean())
    # sampling error of the ratio (delta method), and of make_world's estimate of the signal variance from 8,192 draws,
    # which moves the share by share·(1 − share) × its relative error
    ratio_error = float((d - share * t).std()) / (math.sqrt(n) * float(t.mean()))
    target = config.dense_variance_share
    calibration_error = target * (1 - target) * float(s.std() / s.mean()) / math.sqrt(8192)
    assert abs(share - target) <= Z * math.hypot(ratio_error, calibration_error)
    # the split: equal std per background direction, background_share of the dense variance in the background
    background_variance = world.background.double().pow(2).sum(dim=1)
    assert torch.allclose(background_variance, background_variance[0].expand(config.background_rank), rtol=1e-5)
    total_dense = float(background_variance.sum()) + config.d_model * world.noise_std**2
    assert float(background_variance.sum()) / total_dense == pytest.approx(config.background_share, rel=1e-5)


# ----------------------------------------------------------------------------- determinism
def test_same_inputs_give_identical_outputs() -> None:
    config = WorldConfig(n_features=512, n_rare=64, n_parents=32)
    first, second, other = make_world(config, 7), make_world(config, 7), make_world(config, 8)
    assert torch.equal(first.directions, second.directions) and torch.equal(first.background, second.background)
    assert first.noise_std == second.noise_std
    assert not torch.equal(first.directions, other.directions)
    x1, a1 = sample(first, 20_000, torch.Generator().manual_seed(5))
    x2, a2 = sample(second, 20_000, torch.Generator().manual_seed(5))
    assert torch.equal(x1, x2) and torch.equal(a1, a2)
    x3, _ = sample(first, 20_000, torch.Generator().manual_seed(6))
    assert not torch.equal(x1, x3)
    # the streamed blocks are the same draws
    chunks = list(sample_chunks(first, 20_000, torch.Generator().manual_seed(5)))
    assert torch.equal(torch.cat([c[0] for c in chunks]), x1) and torch.equal(torch.cat([c[1] for c in chunks]), a1)
