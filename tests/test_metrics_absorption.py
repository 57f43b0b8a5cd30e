"""Absorption on a constructed SAE whose decoder holds each letter's probe direction in known latents.

The residual of every word is built from decoder directions, and the encoder is the decoder's
pseudo-inverse, so the SAE's latents are exactly the designed ones. Letter 'a': of 10 test words,
7 fire only the main latent, 2 fire only a token-specific latent that carries 0.6 of the probe
direction (fully absorbed), 1 fires both with the absorber supplying half the projection.
Letter 'b' is split across two latents (half its words each). Every other letter has one latent.

The case sits off the metric's thresholds: a latent that should be silent reads x·pinv(W_dec), exactly 0 in
exact arithmetic but ±1e-7 in float32 (64-term dot products of values ~3), and the metric counts a latent as
firing above EPS = 1e-8 (SAE Bench's), so rounding alone would decide whether a fully absorbed word's main latent
fires, and CPUs whose kernels sum in another order would disagree. Every latent's bias is -MARGIN instead of 0:
silent latents sit 1e-3 below zero, ten thousand times the rounding, and the designed activations (1 to 3) move by
1e-3, which moves the expected fractions by at most FRACTION_TOLERANCE. The threshold's own behaviour is tested
apart (test_a_main_latent_just_above_the_silence_threshold_is_not_fully_absorbed).
"""

import math

import pytest
import torch

from taulib.metrics.absorption.metric import (
    LETTERS,
    AbsorptionData,
    AbsorptionSettings,
    alphabetic_tokens,
    evaluate_absorption,
    evaluate_absorption_many,
    stratified_vocabulary,
    train_linear_probes,
)
from taulib.sae import SparseAutoencoder

D_IN, N_TRAIN, N_TEST, MAGNITUDE = 64, 40, 10, 3.0
MARGIN = 1e-3  # every latent's bias: silent latents well below zero (module docstring)
FRACTION_TOLERANCE = 2 * MARGIN / N_TEST  # a word's fraction moves by at most ~MARGIN / (a designed activation ≥ 1)


def _constructed(main_bias: float = -MARGIN):
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(D_IN, D_IN))[0].T  # orthonormal rows
    probe = basis[:26]  # letter directions
    main = [probe[i] for i in range(26)]
    b_second = basis[26]  # 'b' is split: its second latent is orthogonal to the first but also probe-aligned
    probe_b = (main[1] + b_second) / math.sqrt(2)
    absorbers = [0.6 * probe[0] + 0.8 * basis[27 + j] for j in range(3)]
    rows = torch.stack([*main, b_second, *absorbers])  # latents 0..25 main, 26 b's second, 27..29 absorbers
    sae = SparseAutoencoder(D_IN, rows.shape[0])
    with torch.no_grad():
        sae.W_dec.copy_(rows)
        sae.W_enc.copy_(torch.linalg.pinv(rows))  # latents = x @ pinv(W_dec): exact for x in the row span
        sae.b_enc.fill_(-MARGIN)
        sae.b_enc[0] = main_bias  # letter 'a''s main latent
        sae.b_dec.zero_()

    def word(letter: int, index: int, split: str) -> torch.Tensor:
        if letter == 1:  # 'b': half the words on each of its two latents
            return MAGNITUDE * (rows[1] if index % 2 == 0 else rows[26])
        if letter == 0 and split == "test":
            if index in (0, 1):  # fully absorbed by token-specific latents
                return MAGNITUDE * rows[27 + index]
            if index == 2:  # partly absorbed: the absorber supplies 0.6·(5/3) = 1 of a projection of 2
                return 1.0 * rows[0] + (5 / 3) * rows[29]
        return MAGNITUDE * rows[letter]

    def split_data(split: str, n: int):
        acts = torch.stack([word(letter, i, split) for letter in range(26) for i in range(n)])
        labels = torch.tensor([letter for letter in range(26) for _ in range(n)])
        return acts, labels

    train_acts, train_labels = split_data("train", N_TRAIN)
    test_acts, test_labels = split_data("test", N_TEST)
    probe_weight = probe.clone()
    probe_weight[1] = probe_b  # the 'b' probe reads both of its latents
    data = AbsorptionData(
        train_words=[f"w{i}" for i in range(len(train_labels))],
        test_words=[f"t{i}" for i in range(len(test_labels))],
        train_labels=train_labels,
        test_labels=test_labels,
        train_acts=train_acts,
        test_acts=test_acts,
        absorption_acts=test_acts.clone(),
        train_prompts=[],
        test_prompts=[],
        absorption_prompts=[],
        probe_weight=probe_weight,
        probe_bias=torch.full((26,), -0.5),
        settings=AbsorptionSettings(),
    )
    return sae, data


@pytest.fixture(scope="module")
def evaluated():
    sae, data = _constructed()
    return evaluate_absorption(sae, data)


def test_probe_is_perfect_on_the_constructed_words(evaluated):
    metrics, table = evaluated
    assert (table["probe_f1"] == 1.0).all()
    assert metrics.letters_evaluated == 26
    assert (table["n_probe_true_positives"] == N_TEST).all()


def test_known_absorption_of_letter_a(evaluated):
    _, table = evaluated
    a = table.set_index("letter").loc["a"]
    assert a["split_latents"] == [0]
    assert a["absorption_fraction"] == pytest.approx((2 * 1.0 + 0.5) / N_TEST, abs=FRACTION_TOLERANCE)
    assert a["absorption_fraction_unthresholded"] == pytest.approx((2 * 1.0 + 0.5) / N_TEST, abs=FRACTION_TOLERANCE)
    assert a["full_absorption_rate"] == 2 / N_TEST  # a count: the partial word still fires its main latent


def test_a_main_latent_just_above_the_silence_threshold_is_not_fully_absorbed():
    """The threshold on its own: letter 'a''s main latent biased to 1e-5 (a thousand times EPS, a hundred times float32's
    rounding of its pre-activation) fires on the absorbed words, so no word is fully absorbed; at -MARGIN it is silent."""
    for bias, expected in ((1e-5, 0.0), (-MARGIN, 2 / N_TEST)):
        _, table = evaluate_absorption(*_constructed(main_bias=bias))
        assert table.set_index("letter").loc["a", "full_absorption_rate"] == expected


def test_split_letter_keeps_both_latents_and_has_no_absorption(evaluated):
    _, table = evaluated
    b = table.set_index("letter").loc["b"]
    assert sorted(b["split_latents"]) == [1, 26]
    assert b["n_split_latents"] == 2
    assert b["absorption_fraction"] == 0.0 and b["full_absorption_rate"] == 0.0


def test_means_over_letters(evaluated):
    metrics, table = evaluated
    others = table[~table["letter"].isin(["a", "b"])]
    assert (others["absorption_fraction"] == 0).all() and (others["n_split_latents"] == 1).all()
    assert (others["k1_f1"] == 1.0).all()
    assert metrics.absorption_fraction == pytest.approx(0.25 / 26, abs=FRACTION_TOLERANCE / 26)
    assert metrics.full_absorption_rate == pytest.approx(0.2 / 26)  # counts: exact but for the mean's rounding
    assert metrics.mean_split_latents == pytest.approx(27 / 26)


def test_vocabulary_is_alphabetic_and_stratified():
    class Tokenizer:
        vocab = {"▁cat": 0, "dog": 1, "▁x1": 2, "▁Zebra": 3, "é": 4, "▁": 5, "apple": 6, "▁ant": 7}

        def get_vocab(self):
            return self.vocab

        def convert_tokens_to_string(self, tokens):
            return tokens[0].replace("▁", " ")

    words = alphabetic_tokens(Tokenizer())
    assert words == sorted([" cat", "dog", " Zebra", "apple", " ant"])
    chosen = stratified_vocabulary(words, 3, seed=0)
    assert len(chosen) == 3 and len({w.strip()[0].lower() for w in chosen}) == 3  # one per letter before any second
    assert stratified_vocabulary(words, 3, seed=0) == chosen
    assert set(LETTERS) >= {w.strip()[0].lower() for w in words}


def _lone_probe(x, labels, *, epochs, batch_size, lr, weight_decay, seed, l1_decay, end_lr=1e-5):
    """SAE Bench's train_multi_probe loop as it is written there: one nn.Linear, a shuffling DataLoader over (x, targets)."""
    targets = torch.nn.functional.one_hot(labels, 26).float()
    positives = targets.sum(dim=0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=(len(targets) - positives) / positives)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, targets), batch_size=batch_size, shuffle=True)
        probe = torch.nn.Linear(x.shape[1], 26)
        optimiser = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=math.exp(math.log(end_lr / lr) / epochs))
        for _ in range(epochs):
            for batch_x, batch_y in loader:
                optimiser.zero_grad()
                loss = loss_fn(probe(batch_x), batch_y) + l1_decay * probe.weight.abs().sum(dim=-1).mean()
                loss.backward()
                optimiser.step()
            scheduler.step()
    return probe.weight.detach(), probe.bias.detach()


def test_probes_trained_together_are_the_probes_trained_alone():
    """A chunk's k-sparse L1 probes are trained stacked: same initialisation, batch order and per-probe Adam,
    so each equals its lone training up to rounding, and the random state outside is untouched."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(130) % 26
    xs = torch.rand(3, 130, 40, generator=generator) * (torch.rand(3, 1, 40, generator=generator) > 0.5)
    settings = dict(epochs=5, batch_size=32, lr=1e-2, weight_decay=1e-6, seed=7, l1_decay=0.01)
    before = torch.random.get_rng_state()
    weights, biases = train_linear_probes(xs, labels, **settings)
    assert torch.equal(torch.random.get_rng_state(), before)
    for index in range(3):
        weight, bias = _lone_probe(xs[index], labels, **settings)
        torch.testing.assert_close(weights[index], weight, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(biases[index], bias, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(weights[0], weights[1])  # different inputs, different probes


def test_absorption_of_a_chunk_is_each_checkpoints_own():
    sae, data = _constructed()
    other = SparseAutoencoder(D_IN, sae.W_dec.shape[0])
    other.initialise(torch.Generator().manual_seed(3))
    together = evaluate_absorption_many([sae, other], data)
    for (metrics, table), alone in zip(together, (evaluate_absorption(sae, data), evaluate_absorption(other, data)), strict=True):
        assert metrics.as_dict() == pytest.approx(alone[0].as_dict(), nan_ok=True, rel=1e-6)
        assert table["split_latents"].tolist() == alone[1]["split_latents"].tolist()


def test_absorption_at_every_checkpoint_gives_the_final_checkpoint_the_one_checkpoint_evaluation():
    """The absorption family with `checkpoints: all` (the default study) and with `checkpoints: final`, on one chunk of
    three checkpoints: the final checkpoint's record is the same either way (its k-sparse probes are trained beside the
    others' in the first, alone in the second), and the earlier ones get their own."""
    from taulib.config import RunConfig
    from taulib.metrics.families import FAMILIES
    from taulib.metrics.family import Chunk, RunInputs

    family = next(f for f in FAMILIES if f.name == "absorption")
    final_sae, data = _constructed()
    earlier = []
    for seed in (5, 6):
        sae = SparseAutoencoder(D_IN, final_sae.W_dec.shape[0])
        sae.initialise(torch.Generator().manual_seed(seed))
        earlier.append(sae)
    saes = [*earlier, final_sae]
    chunks = {}
    for mode in ("all", "final"):
        config = RunConfig.model_validate({"run_name": "r", "evaluation": {"absorption": {"checkpoints": mode}}})
        chunk = Chunk([0, 10, 20], 20, [{} for _ in saes], [{} for _ in saes], [None] * len(saes))
        family.evaluate(saes, data, RunInputs(config, None, 0, None, None, None), chunk)
        chunks[mode] = chunk
    every, only = chunks["all"], chunks["final"]
    assert only.scalars[:2] == [{}, {}] and all("absorption_fraction" in scalars for scalars in every.scalars)
    assert every.scalars[2] == pytest.approx(only.scalars[2], nan_ok=True, rel=1e-6)
    assert every.scalars[2]["letters_evaluated"] > 0 and every.scalars[2]["absorption_fraction"] > 0  # the constructed absorption is seen
    for mine, alone in zip(every.details[2]["absorption_letters"], only.details[2]["absorption_letters"], strict=True):
        assert mine["split_latents"] == alone["split_latents"] and mine["k1_latent"] == alone["k1_latent"]
        assert mine["k1_f1"] == pytest.approx(alone["k1_f1"], rel=1e-6)
    # the earlier checkpoints are evaluated as themselves, not copies of the final one
    assert every.scalars[0] == pytest.approx(evaluate_absorption(earlier[0], data)[0].as_dict(), nan_ok=True, rel=1e-6)
