"""taulib's absorption and core metrics against SAE Bench 0.6.0's own code on the same SAE, model and data.

Needs the `saebench` extra, installed in its own environment (`make saebench-check`; CI runs it):
sae-bench pins numpy < 2 and datasets < 4, which the project environment does not share.
The SAE is built from the ground-truth probe, so every letter has a latent along its probe
direction (plus distractors along a random mix), and absorption has real structure to measure.
"""

import math

import pytest
import torch

from taulib.activations.extraction import ResidualReader, residuals_per_sequence
from taulib.activations.models import load_language_model
from taulib.config import ModelConfig
from taulib.corpus import iter_documents, token_sequences
from taulib.interop.export import export_saelens, sae_bench_sae, to_sae_bench
from taulib.interop.sae_bench import hooked_transformer, run_sae_bench_absorption, run_sae_bench_core
from taulib.metrics.absorption.metric import AbsorptionSettings, evaluate_absorption, prepare_absorption_data
from taulib.metrics.core.metric import reconstruction_metrics
from taulib.metrics.downstream.metric import SplicedModel, downstream_metrics
from taulib.sae import SAEMetadata, SparseAutoencoder, save_sae

pytestmark = pytest.mark.model
LAYER = 9


@pytest.fixture(scope="module")
def loaded():
    return load_language_model(ModelConfig(layer=LAYER))


@pytest.fixture(scope="module")
def absorption_data(loaded):
    # float32 reads, as TransformerLens runs the model in float32 here
    return prepare_absorption_data(ResidualReader(loaded, None), loaded.tokenizer, AbsorptionSettings(vocab_size=700))


@pytest.fixture(scope="module")
def structured_sae(absorption_data):
    """Latents along each letter's probe direction, along a noisy mix of it, and 460 random
    distractors; tied encoder, b_dec at the mean residual, threshold one standard deviation of the
    probe projections. Its absorption is far from 0 and 1 (fraction ≈ 0.25 at a 700-word vocabulary)."""
    probe = torch.nn.functional.normalize(absorption_data.probe_weight, dim=1)
    generator = torch.Generator().manual_seed(0)
    noise = torch.nn.functional.normalize(torch.randn(26, probe.shape[1], generator=generator), dim=1)
    mixes = torch.nn.functional.normalize(probe + 0.5 * noise, dim=1)
    distractors = torch.nn.functional.normalize(torch.randn(460, probe.shape[1], generator=generator), dim=1)
    rows = torch.cat([probe, mixes, distractors])
    mean = absorption_data.train_acts.mean(dim=0)
    spread = float(((absorption_data.train_acts - mean) @ probe.T).std())
    sae = SparseAutoencoder(probe.shape[1], rows.shape[0])
    with torch.no_grad():
        sae.W_dec.copy_(rows)
        sae.W_enc.copy_(rows.T)
        sae.b_enc.fill_(-spread)
        sae.b_dec.copy_(mean)
    return sae.requires_grad_(False)


@pytest.fixture(scope="module")
def model_tl(loaded):
    return hooked_transformer(loaded)


def test_absorption_agrees_with_sae_bench(absorption_data, structured_sae, model_tl, tmp_path_factory):
    ours, _ = evaluate_absorption(structured_sae, absorption_data)
    theirs, _ = run_sae_bench_absorption(model_tl, sae_bench_sae(structured_sae, LAYER), absorption_data, LAYER, tmp_path_factory.mktemp("saebench"))
    print("taulib", ours, "\nsae-bench", theirs)
    assert ours.letters_evaluated == theirs["letters_evaluated"] >= 5  # letters whose probe F1 > 0.6 on this small vocabulary
    assert 0.05 < ours.absorption_fraction < 0.95  # a case with something to measure
    assert abs(ours.absorption_fraction - theirs["absorption_fraction"]) <= 0.02, (ours, theirs)
    assert abs(ours.full_absorption_rate - theirs["full_absorption_rate"]) <= 0.02, (ours, theirs)
    assert abs(ours.mean_split_latents - theirs["mean_split_latents"]) <= 0.25, (ours, theirs)
    assert abs(ours.k1_f1 - theirs["k1_f1"]) <= 0.05, (ours, theirs)


def test_core_metrics_agree_with_sae_bench(loaded, structured_sae, model_tl):
    sequences = torch.stack(list(token_sequences(iter_documents("heldout", seed=0), loaded.tokenizer, 128, 4)))
    theirs = run_sae_bench_core(model_tl, sae_bench_sae(structured_sae, LAYER), sequences, loaded.bos_token_id)
    (downstream,) = downstream_metrics(SplicedModel(loaded), sequences, [structured_sae], batch_size=2)
    residuals = residuals_per_sequence(ResidualReader(loaded, None), list(sequences), batch_size=4)
    acts = torch.cat([r[ids != loaded.bos_token_id] for r, ids in zip(residuals, sequences, strict=True)])
    core, _ = reconstruction_metrics(structured_sae, acts)
    for ours, key in (
        (downstream.ce_loss_clean, "ce_loss_without_sae"),
        (downstream.ce_loss_with_sae, "ce_loss_with_sae"),
        (downstream.ce_loss_with_ablation, "ce_loss_with_ablation"),
        (downstream.ce_loss_score, "ce_loss_score"),
        (core.l0, "l0"),
        (core.cosine_similarity, "cossim"),
    ):
        assert ours == pytest.approx(theirs[key], rel=0.01), key
    if math.isfinite(theirs["kl_div_with_sae"]):  # SAE Bench takes log(softmax), which underflows to -inf
        assert downstream.kl_div_with_sae == pytest.approx(theirs["kl_div_with_sae"], rel=0.01)
    # SAE Bench's explained variance divides by E‖x‖² − (E‖x‖²/d)²; the residual it implies must be ours
    mean_sq = float(acts.double().pow(2).sum(1).mean())
    implied_residual = (1 - theirs["explained_variance"]) * (mean_sq - (mean_sq / acts.shape[1]) ** 2)
    assert core.mse * acts.shape[1] == pytest.approx(implied_residual, rel=0.01)


def test_an_exported_sae_loads_in_saelens_and_sae_bench(structured_sae, tmp_path):
    from sae_lens import SAE

    folder = tmp_path / "taulib_sae"
    save_sae(
        structured_sae,
        folder,
        SAEMetadata(
            d_in=structured_sae.d_in,
            d_sae=structured_sae.d_sae,
            input_scale=1.0,
            model_name="gemma-3-270m",
            layer=LAYER,
            hook_name=f"blocks.{LAYER}.hook_resid_post",
        ),
    )
    x = torch.randn(32, structured_sae.d_in) * 50
    lens = SAE.load_from_disk(export_saelens(folder, tmp_path / "saelens"))
    bench = to_sae_bench(folder)
    for other in (lens, bench):
        assert torch.allclose(other.encode(x), structured_sae.encode(x), atol=1e-4)
        assert torch.allclose(other.decode(other.encode(x)), structured_sae(x)[0], atol=1e-3)
    assert lens.cfg.metadata.hook_name == f"blocks.{LAYER}.hook_resid_post"
