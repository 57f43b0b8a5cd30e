"""Spliced CE/KL against a plain forward hook and against whole forwards spliced through nnsight, the
later blocks run alone against the full forward, and the perfect-reconstruction case."""

import math

import pytest
import torch
from references import document_losses_full_forward, downstream_metrics_full_forward
from saes import perfect_sae

from taulib.activations.models import decoder_layers, load_language_model
from taulib.config import ModelConfig
from taulib.metrics.downstream.metric import (
    SplicedModel,
    SpliceReference,
    _linear_kl,
    downstream_metrics,
    log_partition,
    splice_reference,
)
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


def _float32_sum_tolerance(terms: int) -> float:
    """Relative tolerance of a float32 sum of `terms` values computed in two orders: √terms · ε (random-walk
    rounding), times 4 for the few operations around each term."""
    return 4 * math.sqrt(terms) * torch.finfo(torch.float32).eps


def _logit_tolerance(logits: torch.Tensor, d_model: int) -> float:
    """Absolute tolerance of a loss or KL computed from float32 logits in two ways (whole forwards against the split
    one with the expected-row identity): each logit is a d_model-term dot product, so carries ~√d_model · ε · its size;
    the losses and KL are differences of such logits and log-partitions."""
    return 4 * math.sqrt(d_model) * torch.finfo(torch.float32).eps * float(logits.abs().max())


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
    # a resample of the one sequence twice: its score, from float32 sums over its ~40 token losses taken in another
    # batch shape, so to float32 rounding of such sums (√40 · ε · the score's terms, a few 1e-6 relative), not exactly
    assert low == pytest.approx(min(first.ce_loss_score, second.ce_loss_score), rel=_float32_sum_tolerance(sequences.shape[1]))


def test_losses_by_document_are_the_documents_own(loaded, sequences):
    # documents that start mid-sequence and span the two sequences: 0 | 1 … 1 | 2
    documents = torch.zeros_like(sequences)
    documents[0, 25:], documents[1, :12], documents[1, 12:] = 1, 1, 2
    spliced, sae = SplicedModel(loaded), _lossy(loaded.d_model)
    reference = splice_reference(spliced, sequences, batch_size=1, documents=documents)
    assert reference.units_per_sequence == 2
    (by_unit,) = downstream_metrics(spliced, sequences, [sae], batch_size=2, reference=reference)
    (unsplit,) = downstream_metrics(spliced, sequences, [sae], batch_size=2)
    assert by_unit.as_dict() == pytest.approx(unsplit.as_dict(), rel=_float32_sum_tolerance(sequences.numel()))  # the same totals
    mine, expected = by_unit.per_sequence.by_document(), document_losses_full_forward(spliced, sequences, sae, documents)
    assert mine.document.tolist() == expected.document.tolist() == [0, 1, 2]
    for name in ("n_ce", "n_kl"):
        assert getattr(mine, name).tolist() == getattr(expected, name).tolist(), name
    for name in ("clean", "zero", "sae", "kl_zero", "kl_sae"):
        # whole forwards against the split one: each position's loss to _logit_tolerance, summed over ≤ 40 positions
        logits = spliced.logits(sequences)
        assert getattr(mine, name) == pytest.approx(getattr(expected, name), abs=40 * _logit_tolerance(logits, loaded.d_model)), name
    # a reference kept on disk keeps its documents; one split in rows keeps each row's units
    half = reference.rows(1, 2)
    assert half.units_per_sequence == 2 and half.unit_documents().tolist() == [1, 2]


def test_documents_that_do_not_fit_the_sequences_are_an_error(loaded, sequences):
    spliced = SplicedModel(loaded)
    with pytest.raises(ValueError, match="each position"):
        splice_reference(spliced, sequences, documents=torch.zeros(1, 3, dtype=torch.long))
    backwards = torch.zeros_like(sequences)
    backwards[0, :5] = 1
    with pytest.raises(ValueError, match="must not decrease"):
        splice_reference(spliced, sequences, documents=backwards)


@pytest.mark.parametrize("autocast", [None, "bfloat16"])
def test_later_blocks_from_the_residual_give_the_full_forward(loaded, sequences, autocast):
    """Blocks 0…layer standing in with the cached residual: the model's own masks, rotary embeddings,
    final norm and unembedding after it, so the logits are the full forward's, clean or spliced."""
    spliced, sae = SplicedModel(loaded, autocast), _lossy(loaded.d_model)
    is_bos = sequences == loaded.bos_token_id
    residual = spliced.residuals(sequences)
    tolerance = 1e-4 if autocast is None else 2e-2  # bf16 matmuls: the same ops, rounding may differ with batch shapes
    torch.testing.assert_close(spliced.logits_from_residual(sequences, residual), spliced.logits(sequences), rtol=0, atol=tolerance)
    replace = lambda h: torch.where(is_bos[..., None], h, sae(h.float())[0].to(h.dtype))  # noqa: E731
    with spliced._autocast():  # the full forward's replacement runs inside the model's autocast
        replaced = replace(residual)
    split = spliced.logits_from_residual(sequences, replaced)
    torch.testing.assert_close(split, spliced.logits(sequences, replace), rtol=0, atol=tolerance)
    unembedding = loaded.model.get_output_embeddings().weight
    with spliced.weights_cast_once():  # bf16 weights cast once instead of by autocast at every forward: the same logits
        assert torch.equal(spliced.logits_from_residual(sequences, replaced), split)
    assert loaded.model.get_output_embeddings().weight is unembedding is loaded.model.get_input_embeddings().weight  # tied again
    assert isinstance(decoder_layers(loaded.model)[0], type(decoder_layers(loaded.model)[-1]))  # the real blocks are back


def test_sliding_window_layers_keep_their_window(loaded, sequences):
    """Gemma 3's sliding-window blocks after the hooked one: with a window shorter than the text, the
    split forward still matches the full one (the window is the model's own mask)."""
    spliced = SplicedModel(loaded)
    config = loaded.model.config
    assert "sliding_attention" in config.layer_types[loaded.layer + 1 :]
    unwindowed = spliced.logits(sequences)
    saved = config.sliding_window
    config.sliding_window = 8
    try:
        full = spliced.logits(sequences)
        split = spliced.logits_from_residual(sequences, spliced.residuals(sequences))
    finally:
        config.sliding_window = saved
    assert (full - unwindowed).abs().max() > 1e-2  # the shorter window did change the forward
    torch.testing.assert_close(split, full, rtol=0, atol=1e-4)


def test_split_forward_gives_the_full_forward_metrics(loaded, sequences, tmp_path):
    """The evaluation's path (cached residual and clean/zero losses, later blocks only, SAEs stacked in
    one forward) against whole forwards spliced through nnsight, per sequence and per SAE."""
    spliced = SplicedModel(loaded)
    saes = [_lossy(loaded.d_model), perfect_sae(loaded.d_model), _lossy(loaded.d_model).requires_grad_(False)]
    with torch.no_grad():
        saes[2].b_enc.fill_(-2.0)
    expected = downstream_metrics_full_forward(spliced, sequences, saes, batch_size=2)
    splice_reference(spliced, sequences, batch_size=1).save(tmp_path / "reference.safetensors")
    reference = SpliceReference.load(tmp_path / "reference.safetensors")
    # Gemma 3's logits are its unembedding's output: KL from the clean distribution's expected row (no clean logits per SAE)
    assert reference.head_mean is not None and reference.head_mean.shape == (*sequences.shape, loaded.d_model)
    # two SAEs share a forward, the third goes alone: both groupings are checked
    got = downstream_metrics(spliced, sequences, saes, batch_size=2, reference=reference, saes_per_forward=2)
    # KL by the expected-row identity (float64 dot products) against float32 sums over 262k words: 1e-4 relative; a value
    # near zero (the perfect SAE's KL) to the float32 rounding of the logits it is computed from (_logit_tolerance)
    near_zero = _logit_tolerance(spliced.logits(sequences), loaded.d_model)
    for new, old in zip(got, expected, strict=True):
        assert new.as_dict() == pytest.approx(old.as_dict(), rel=1e-4, abs=near_zero)
        for name, values in new.per_sequence.to_lists().items():
            assert values == pytest.approx(old.per_sequence.to_lists()[name], rel=1e-4, abs=near_zero), name
    assert got[0].ce_loss_score < 1 and got[1].ce_loss_score == pytest.approx(1.0, abs=1e-5)
    (second,) = downstream_metrics(spliced, sequences[1:], saes[:1], batch_size=1, reference=reference.rows(1, 2))
    assert second.per_sequence.sae == pytest.approx(expected[0].per_sequence.sae[1:], rel=1e-5)
    with pytest.raises(ValueError, match="other sequences"):
        downstream_metrics(spliced, sequences[:1], saes[:1], reference=reference.rows(1, 2))


def test_soft_capped_logits_fall_back_to_the_clean_distribution(loaded, sequences):
    """With soft-capping after the unembedding (as Gemma 2 has) the logits are no longer linear in its input:
    the reference keeps no expected row, every batch recomputes the clean logits, and the metrics still
    match whole forwards."""
    config = loaded.model.config
    saved = config.final_logit_softcapping
    config.final_logit_softcapping = 5.0  # small enough to change every logit
    try:
        spliced = SplicedModel(loaded)
        reference = splice_reference(spliced, sequences, batch_size=2)
        assert reference.head_mean is None and reference.clean_offset is None
        saes = [_lossy(loaded.d_model), perfect_sae(loaded.d_model)]
        got = downstream_metrics(spliced, sequences, saes, batch_size=2, reference=reference)
        expected = downstream_metrics_full_forward(spliced, sequences, saes, batch_size=2)
    finally:
        config.final_logit_softcapping = saved
    # float32 sums over 262k words in another order (the split forward's unembedding runs on oneDNN, the whole one on torch's BLAS)
    for new, old in zip(got, expected, strict=True):
        assert new.as_dict() == pytest.approx(old.as_dict(), rel=1e-4, abs=1e-6)
    assert got[1].kl_div_with_sae == pytest.approx(0.0, abs=1e-6)


def test_linear_kl_is_the_kl_of_the_distributions(loaded, sequences):
    """The expected-row identity, per position, against KL(p_clean ‖ p_sae) summed over the vocabulary,
    for a splice whose KL is far from 0 and for the unchanged residual (exactly 0)."""
    spliced = SplicedModel(loaded)
    reference = splice_reference(spliced, sequences, batch_size=2)
    residual = reference.residual
    lossy = _lossy(loaded.d_model)
    with torch.no_grad():
        replaced = lossy(residual.float())[0]
    # the logits on the kernels the reference and the evaluation use (`downstream_metrics`)
    with spliced.unembedding_on_onednn():
        clean = spliced.head_from_residual(sequences, residual)
        heads = [spliced.head_from_residual(sequences, changed) for changed in (replaced, residual)]
    for head, expect_zero in zip(heads, (False, True), strict=True):
        direct = torch.nn.functional.kl_div(torch.log_softmax(head.logits.double(), -1), torch.log_softmax(clean.logits.double(), -1), log_target=True, reduction="none").sum(-1)
        identity = _linear_kl(head.hidden, log_partition(head.logits), reference.head_mean, reference.clean_offset)
        torch.testing.assert_close(identity, direct, rtol=1e-4, atol=1e-5)
        assert (direct.abs().max() < 1e-9) == expect_zero


def test_every_checkpoint_or_the_final_only(loaded, sequences):
    """The evaluation's CE/KL by checkpoint: with downstream.sequences 0 only the final checkpoint is spliced, on
    downstream.final_sequences; otherwise every checkpoint on the first downstream.sequences, and the final one's further
    sequences combined with them give what all of them give at once."""
    from taulib.config import EvaluationConfig, RunConfig
    from taulib.metrics.downstream.family import Downstream
    from taulib.metrics.family import Chunk

    spliced = SplicedModel(loaded)
    reference = splice_reference(spliced, sequences, batch_size=1)
    saes = [_lossy(loaded.d_model), perfect_sae(loaded.d_model)]

    def by_step(saes, steps, **evaluation):
        config = RunConfig(run_name="ce", evaluation=EvaluationConfig(downstream={"batch_size": 1, **evaluation}))
        return Downstream().by_step(spliced, reference, saes, Chunk(steps, 20, [], []), config)

    final_only = by_step(saes, [10, 20], sequences=0, final_sequences=2)
    assert list(final_only) == [20] and final_only[20].n_tokens == reference.per_sequence["n_ce"].sum()
    every = by_step(saes, [10, 20], sequences=1, final_sequences=2)
    assert sorted(every) == [10, 20] and every[10].n_tokens == reference.per_sequence["n_ce"][0]
    assert every[20].as_dict() == pytest.approx(final_only[20].as_dict(), rel=1e-9)
    assert by_step(saes[:1], [10], sequences=0, final_sequences=2) == {}  # a chunk without the final checkpoint
    with pytest.raises(ValueError, match="no checkpoint would get"):
        EvaluationConfig(downstream={"sequences": 0})


def test_the_unembedding_on_onednn_gives_the_models_logits(loaded, sequences):
    """Without autocast the split forward's unembedding runs on oneDNN (its 262k-word output is the shape
    where it beats torch's BLAS); the logits agree to float32 rounding, and the model is left as it was."""
    from taulib.train.kernels import ONEDNN_LINEAR

    if ONEDNN_LINEAR is None:
        pytest.skip("this torch has no oneDNN linear kernel: the unembedding stays on torch's BLAS")
    spliced = SplicedModel(loaded)
    head = loaded.model.get_output_embeddings()
    residual = spliced.residuals(sequences)
    own = spliced.head_from_residual(sequences, residual).logits
    with spliced.unembedding_on_onednn():
        assert "forward" in vars(head)  # replaced for the duration
        onednn = spliced.head_from_residual(sequences, residual).logits
    assert "forward" not in vars(head)
    assert onednn.dtype == torch.float32 and torch.allclose(onednn, own, rtol=1e-5, atol=1e-4)
    with SplicedModel(loaded, "bfloat16").unembedding_on_onednn():  # under autocast: the model's own
        assert "forward" not in vars(head)
