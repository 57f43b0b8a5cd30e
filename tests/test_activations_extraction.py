"""Extraction on the real embedded Gemma 3 270M (loaded once for the module: ~1 minute)."""

import pytest
import torch

from taulib.activations.cache import activation_spec, load_cache
from taulib.activations.extraction import ResidualReader, extract_split, keep_positions
from taulib.activations.models import EMBEDDED_SHAPE, ModelLoadError, load_language_model, resolve_layer
from taulib.config import ModelConfig, RunConfig

pytestmark = pytest.mark.model

SENTENCES = [
    "The cat sat on the mat and looked out of the window at the rain.",
    "Sparse autoencoders decompose activations into interpretable features.",
    "She sold the old bicycle to a neighbour for twenty pounds.",
]


@pytest.fixture(scope="module")
def gemma():
    torch.set_num_threads(2)
    return load_language_model(ModelConfig(layer=9))


def _hook_activations(gemma, input_ids, attention_mask):
    captured = {}

    def hook(module, inputs, output):
        captured["x"] = output[0] if isinstance(output, tuple) else output

    handle = gemma.model.model.layers[gemma.layer].register_forward_hook(hook)
    with torch.inference_mode():
        gemma.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
    handle.remove()
    return captured["x"]


def test_embedded_model_shape_is_known(gemma):
    assert (gemma.n_layers, gemma.d_model) == EMBEDDED_SHAPE
    assert gemma.tokenizer("hello").input_ids[0] == gemma.bos_token_id


def test_nnsight_reader_matches_a_plain_forward_hook_and_stops_early(gemma):
    batch = [gemma.tokenizer(text, return_tensors="pt").input_ids[0] for text in SENTENCES]
    for ids in batch:  # one sentence at a time: no padding, the exact case of packed extraction
        ids = ids[None]
        mask = torch.ones_like(ids)
        calls = []
        after = gemma.model.model.layers[gemma.layer + 1].register_forward_hook(lambda *a, calls=calls: calls.append(1))
        nnsight_acts = ResidualReader(gemma)(ids, mask)
        after.remove()
        assert calls == [], "blocks after the hooked layer must not run"
        reference = _hook_activations(gemma, ids, mask)
        assert nnsight_acts.shape == reference.shape == (1, ids.shape[1], 640)
        assert torch.allclose(nnsight_acts, reference, atol=1e-4, rtol=1e-5)


def test_bos_and_padding_positions_are_excluded():
    ids = torch.tensor([[0, 0, 2, 5, 6], [2, 7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert keep_positions(mask, ids, bos_token_id=2).tolist() == [[False, False, False, True, True], [False, True, True, True, True]]


def test_extracted_cache_equals_hook_activations(gemma, tmp_path):
    config = RunConfig.model_validate(
        {
            "run_name": "x",
            "model": {"layer": 9},
            "activations": {"n_tokens": 600, "heldout_tokens": 127, "context_length": 64, "batch_size": 4, "shard_tokens": 256, "storage_dtype": "float32"},
        }
    )
    folder = extract_split(config, gemma, tmp_path, "train", show_progress=False)
    data = load_cache(folder, activation_spec(config, "train", 9))
    assert data.n_tokens == 600 and len(data.manifest["shards"]) == 3  # 4 sequences of 63 tokens per shard
    # rebuild the first sequences from the cached token ids: BOS + 63 tokens each
    first = data.token_ids[: 2 * 63].long().reshape(2, 63)
    ids = torch.cat([torch.full((2, 1), gemma.bos_token_id), first], dim=1)
    reference = _hook_activations(gemma, ids, torch.ones_like(ids))[:, 1:].reshape(-1, 640)
    assert torch.allclose(data.activations[: 2 * 63], reference, atol=1e-3, rtol=1e-4)
    assert (data.token_ids != gemma.bos_token_id).all()
    assert torch.isfinite(data.activations).all()


def test_layer_beyond_depth_is_refused():
    with pytest.raises(ModelLoadError, match="beyond the model's depth.*0..17"):
        resolve_layer(ModelConfig(layer=18), EMBEDDED_SHAPE[0])


def test_unknown_model_is_refused():
    from taulib.activations.models import model_shape

    with pytest.raises(ModelLoadError, match="no such local directory"):
        model_shape(ModelConfig(name="./no/such/model"))
    with pytest.raises(ModelLoadError, match="unknown embedded model"):
        model_shape(ModelConfig(name="embedded:llama"))


def test_corpus_holds_at_least_ten_million_tokens_plus_a_heldout_split(gemma):
    from taulib.corpus.build import count_tokens

    train, heldout = count_tokens(gemma.tokenizer, "train"), count_tokens(gemma.tokenizer, "heldout")
    assert train >= 10_000_000, train
    assert heldout >= 500_000, heldout
