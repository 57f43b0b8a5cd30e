"""Spliced CE/KL through nnsight against a plain forward hook, and the perfect-reconstruction case."""

import pytest
import torch
from saes import perfect_sae

from taulib.activations.models import decoder_layers, load_language_model
from taulib.config import ModelConfig
from taulib.metrics.downstream import SplicedModel, downstream_metrics
from taulib.sae import SparseAutoencoder

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def loaded():
    return load_language_model(ModelConfig(layer=4))


@pytest.fixture(scope="module")
def sequences(loaded):
    text = "The committee met on Tuesday to discuss the budget. Members argued about the cost of new roads and schools. " * 4
    ids = loaded.tokenizer(text, return_tensors="pt").input_ids[:, :40]
    assert ids[0, 0] == loaded.bos_token_id
    return torch.cat([ids, ids.roll(-3, dims=1)]).clone().index_fill_(1, torch.tensor([0]), loaded.bos_token_id)


def _lossy(d: int) -> SparseAutoencoder:
    sae = SparseAutoencoder(d, 256)
    sae.initialise(torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.W_enc.mul_(2.0)
        sae.b_enc.fill_(-1.0)
    return sae.requires_grad_(False)


def test_perfect_reconstruction_scores_one(loaded, sequences):
    (metrics,) = downstream_metrics(SplicedModel(loaded), sequences, [perfect_sae(loaded.d_model)], batch_size=1)
    assert metrics.ce_loss_score == pytest.approx(1.0, abs=1e-5)
    assert metrics.kl_div_score == pytest.approx(1.0, abs=1e-5)
    assert metrics.ce_loss_with_sae == pytest.approx(metrics.ce_loss_clean, abs=1e-5)
    assert metrics.ce_loss_with_ablation > metrics.ce_loss_clean + 1


def test_matches_an_independent_forward_hook(loaded, sequences):
    sae = _lossy(loaded.d_model)
    (metrics,) = downstream_metrics(SplicedModel(loaded), sequences, [sae], batch_size=2)
    is_bos = sequences == loaded.bos_token_id
    block = decoder_layers(loaded.model)[loaded.layer]

    def logits_with(replace):
        handle = block.register_forward_hook(lambda module, args, output: replace(output[0] if isinstance(output, tuple) else output))
        try:
            with torch.no_grad():
                return loaded.model(input_ids=sequences).logits.float()
        finally:
            handle.remove()

    with torch.no_grad():
        clean = loaded.model(input_ids=sequences).logits.float()
    spliced = logits_with(lambda h: torch.where(is_bos[..., None], h, sae(h)[0]))
    zero = logits_with(torch.zeros_like)

    def ce(logits):
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), sequences[:, 1:], reduction="none")
        return float(losses[~is_bos[:, :-1]].mean())

    def kl(logits):
        per_token = torch.nn.functional.kl_div(logits.log_softmax(-1), clean.log_softmax(-1), log_target=True, reduction="none").sum(-1)
        return float(per_token[~is_bos].mean())

    assert metrics.ce_loss_clean == pytest.approx(ce(clean), rel=1e-4)
    assert metrics.ce_loss_with_sae == pytest.approx(ce(spliced), rel=1e-4)
    assert metrics.ce_loss_with_ablation == pytest.approx(ce(zero), rel=1e-4)
    assert metrics.kl_div_with_sae == pytest.approx(kl(spliced), rel=1e-3)
    assert metrics.ce_loss_score == pytest.approx((ce(zero) - ce(spliced)) / (ce(zero) - ce(clean)), rel=1e-3)
    assert metrics.ce_loss_with_sae > metrics.ce_loss_clean and metrics.ce_loss_score < 1  # a random SAE loses information


def test_per_sequence_losses_combine_exactly_and_bootstrap_around_the_score(loaded, sequences):
    spliced, sae = SplicedModel(loaded), _lossy(loaded.d_model)
    (whole,) = downstream_metrics(spliced, sequences, [sae], batch_size=2)
    (first,), (second,) = (downstream_metrics(spliced, sequences[i : i + 1], [sae], batch_size=1) for i in (0, 1))
    combined = first.per_sequence.concat(second.per_sequence).metrics()
    assert combined.as_dict() == pytest.approx(whole.as_dict(), rel=1e-6)
    assert combined.n_tokens == whole.n_tokens == first.n_tokens + second.n_tokens < sequences.numel()  # BOS positions are not scored
    # one sequence alone has its own score; resampling the two gives an interval around the whole's
    intervals = whole.per_sequence.bootstrap_intervals(n_resamples=200)
    low, high = intervals["ce_loss_score_low"], intervals["ce_loss_score_high"]
    assert low <= whole.ce_loss_score <= high
    assert low == pytest.approx(min(first.ce_loss_score, second.ce_loss_score), abs=1e-9)  # a resample of the one sequence twice
