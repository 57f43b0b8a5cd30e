"""taulib.groundtruth.endpoints: every endpoint on SAEs whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from taulib.groundtruth import endpoints as gt
from taulib.groundtruth.world import WorldConfig, make_world, sample

# a world small enough to invert exactly: fewer features than dimensions, no dense part, so the true
# dictionary's pseudo-inverse recovers every sample's true activations
EXACT = WorldConfig(
    d_model=48, n_features=24, n_parents=3, children_per_parent=3, n_rare=2, mean_active_features=3.0, correlation=0.0,
    dense_variance_share=0.0, background_rank=0, background_share=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def exact():
    world = make_world(EXACT, seed=3)
    x, activations = sample(world, 4000, torch.Generator().manual_seed(0))
    truth = gt.Truth(world.directions, world.parent.numpy(), world.feature_type, x, activations)
    return world, truth


def test_the_true_dictionary_scores_perfectly_and_absorbs_nothing(exact):
    world, truth = exact
    codes = truth.activations  # the true dictionary with its exact codes
    scored, matching = gt.score_checkpoint(truth, codes, codes @ world.directions, world.directions)
    assert np.array_equal(matching.latent, np.arange(EXACT.n_features))
    assert scored.mcc == pytest.approx(1.0, abs=1e-9)
    assert scored.recall == scored.precision == 1.0
    assert scored.f1 == 1.0
    assert scored.absorption == 0.0
    assert scored.splits == 0
    assert scored.explained_variance == pytest.approx(1.0, abs=1e-5)


def absorbing(world, activations: torch.Tensor, parents: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """An SAE in which the listed parents are absorbed: each of their children's latents points at
    child + parent and fires with the child, the parent's latent is silent whenever a child fires."""
    decoder = world.directions.clone()
    codes = activations.clone()
    for parent in parents:
        children = world.children_of(parent)
        for child in children:
            decoder[child] = torch.nn.functional.normalize(world.directions[child] + world.directions[parent], dim=0)
        any_child = (activations[:, children] > 0).any(dim=1)
        codes[any_child, parent] = 0
    return codes, decoder


def test_an_sae_whose_children_carry_their_parents_absorbs_every_co_firing_sample(exact):
    world, truth = exact
    parents = [i for i in range(EXACT.n_features) if world.feature_type[i] == "parent"]
    codes, decoder = absorbing(world, truth.activations, parents)
    scored, _ = gt.score_checkpoint(truth, codes, codes @ decoder, decoder)
    assert scored.absorption == 1.0


def test_absorption_of_one_parent_is_its_share_of_the_co_firing_samples(exact):
    world, truth = exact
    parents = [i for i in range(EXACT.n_features) if world.feature_type[i] == "parent"]
    codes, decoder = absorbing(world, truth.activations, parents[:1])
    fires = truth.activations.numpy() > 0

    def cofiring(parent: int) -> int:
        return int(sum((fires[:, parent] & fires[:, child]).sum() for child in world.children_of(parent)))

    expected = cofiring(parents[0]) / sum(cofiring(p) for p in parents)  # computed from the samples alone
    scored, matching = gt.score_checkpoint(truth, codes, codes @ decoder, decoder)
    assert scored.absorption == pytest.approx(expected, abs=1e-12)
    pooled, per_parent = gt.absorption_rate(truth, matching, codes.numpy(), torch.nn.functional.normalize(decoder.double(), dim=1).numpy())
    assert per_parent[parents[0]] == 1.0 and all(per_parent[p] == 0.0 for p in parents[1:])


def test_a_silent_parent_latent_is_not_absorption_when_the_child_latent_does_not_carry_the_parent(exact):
    """Absorption needs the child's latent to take the parent's direction: a parent latent that merely
    misses (the child latent still pure) is a recall failure, not absorption."""
    world, truth = exact
    parents = [i for i in range(EXACT.n_features) if world.feature_type[i] == "parent"]
    codes = truth.activations.clone()
    for parent in parents:
        codes[(truth.activations[:, world.children_of(parent)] > 0).any(dim=1), parent] = 0
    scored, _ = gt.score_checkpoint(truth, codes, codes @ world.directions, world.directions)
    assert scored.absorption == 0.0


def test_parent_share_reads_the_least_squares_coefficients():
    generator = torch.Generator().manual_seed(0)
    child, parent = torch.nn.functional.normalize(torch.randn(2, 16, generator=generator, dtype=torch.float64), dim=1).numpy()
    assert gt.parent_share(0.8 * child + 0.4 * parent, child, parent) == pytest.approx(0.5)
    assert gt.parent_share(child, child, parent) == pytest.approx(0.0, abs=1e-12)
    assert gt.parent_share(-child + parent, child, parent) == -np.inf  # not the child's direction at all


def test_mcc_and_recovery_on_a_permuted_noisy_copy_of_the_truth():
    generator = torch.Generator().manual_seed(1)
    n, d = 200, 64
    truth = torch.nn.functional.normalize(torch.randn(n, d, generator=generator), dim=1)
    permutation = torch.randperm(n, generator=generator)
    noisy = truth[permutation] + 0.02 * torch.randn(n, d, generator=generator)
    matching = gt.match_features(truth, noisy)
    inverse = torch.argsort(permutation).numpy()
    assert np.array_equal(matching.latent, inverse)  # the matching undoes the permutation
    expected = torch.nn.functional.cosine_similarity(truth, noisy[inverse], dim=1).double().numpy()
    np.testing.assert_allclose(matching.cosine, expected, atol=1e-6)  # float32 inputs, float64 cosines
    # a negated row does not recover its feature for a ReLU latent (signed cosines)
    flipped = noisy.clone()
    flipped[inverse[0]] *= -1
    flipped_matching = gt.match_features(truth, flipped)
    assert flipped_matching.cosine[0] < 0.5
    assert not (flipped_matching.cosines[:, inverse[0]] > gt.RECOVERY_COSINE).any()


def test_fewer_latents_than_features_leave_features_unmatched_at_cosine_zero():
    generator = torch.Generator().manual_seed(2)
    truth = torch.nn.functional.normalize(torch.randn(10, 32, generator=generator), dim=1)
    matching = gt.match_features(truth, truth[:6])
    assert (matching.latent[:6] == np.arange(6)).all() and (matching.latent[6:] == -1).all()
    assert matching.cosine.mean() == pytest.approx(0.6)


def test_firing_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    latent = rng.random((500, 7)) < 0.3
    feature = rng.random((500, 7)) < 0.2
    expected = [f1_score(feature[:, k], latent[:, k]) for k in range(7)]
    np.testing.assert_allclose(gt.firing_f1(latent, feature), expected)


def test_a_feature_split_over_two_latents_counts_one_split_and_lowers_precision(exact):
    world, truth = exact
    codes = truth.activations.clone()
    decoder = world.directions.clone()
    # one extra latent near feature 0, firing on half of its samples (alive)
    extra = torch.nn.functional.normalize(world.directions[0] + 0.1 * world.directions[5], dim=0)
    decoder = torch.cat([decoder, extra[None]])
    half = torch.zeros(len(codes), 1)
    fires = (codes[:, 0] > 0).nonzero().squeeze(1)
    half[fires[::2]] = 1.0
    codes = torch.cat([codes, half], dim=1)
    scored, _ = gt.score_checkpoint(truth, codes, codes @ decoder, decoder)
    assert scored.splits == 1
    assert scored.precision == pytest.approx(EXACT.n_features / (EXACT.n_features + 1))
    assert scored.recall == 1.0


def test_inputs_of_the_wrong_shape_are_refused(exact):
    world, truth = exact
    with pytest.raises(ValueError, match="do not fit"):
        gt.score_checkpoint(truth, truth.activations[:10], truth.x, world.directions)
