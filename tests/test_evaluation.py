import pytest
import torch
from saes import perfect_sae

from taulib.metrics.core import reconstruction_metrics
from taulib.sae import SAEMetadata, SparseAutoencoder, in_raw_units
from taulib.train.trainer import explained_variance


def test_perfect_reconstruction_and_known_l0():
    x = torch.tensor([[1.0, -2.0, 0.0], [0.0, 3.0, 4.0]]) * 5  # raw activations
    sae = perfect_sae(3)
    metrics, _ = reconstruction_metrics(in_raw_units(sae, SAEMetadata(d_in=3, d_sae=6, input_scale=5.0)), x, batch_size=1)
    assert metrics.explained_variance == pytest.approx(1.0)
    assert metrics.l0 == pytest.approx((2 + 2) / 2)
    # fired: +e0 (token 1), −e1 (token 1), +e1 and +e2 (token 2); never: −e0, −e2
    assert metrics.dead_fraction == pytest.approx(2 / 6)


def test_batched_explained_variance_equals_the_one_pass_definition():
    torch.manual_seed(0)
    sae = SparseAutoencoder(8, 32)
    sae.initialise(torch.Generator().manual_seed(0))
    x = torch.randn(1000, 8) * 3 + 1
    metrics, _ = reconstruction_metrics(in_raw_units(sae, SAEMetadata(d_in=8, d_sae=32, input_scale=2.0)), x, batch_size=77)
    with torch.no_grad():
        x_hat, f = sae(x / 2.0)
    assert metrics.explained_variance == pytest.approx(explained_variance(x / 2.0, x_hat), rel=1e-5)
    assert metrics.l0 == pytest.approx(float((f > 0).sum(dim=1).float().mean()), rel=1e-6)


@pytest.mark.model
def test_preparing_the_probing_inputs_shows_a_bar_that_knows_its_total():
    """The evaluation inputs take minutes on a CPU: their bar is sized before the forward passes (an ETA) and ends full."""
    from taulib.activations.extraction import ResidualReader
    from taulib.activations.models import load_language_model
    from taulib.config import ModelConfig
    from taulib.metrics.probing import ProbingSettings, prepare_probing_data

    class Bar:  # records what a tqdm bar would be told
        total: int | None = None
        n = 0
        total_before_first_batch: int | None = None

        def refresh(self) -> None:
            if self.n == 0:
                self.total_before_first_batch = self.total

        def update(self, tokens: int) -> None:
            self.n += tokens

    loaded = load_language_model(ModelConfig(layer=1))
    bar = Bar()
    settings = ProbingSettings(tasks=("sentiment",), examples_per_class=10, context_length=16, ks=(1, 2), seed=0)
    prepare_probing_data(ResidualReader(loaded, None), loaded.tokenizer, settings, progress=bar)
    assert bar.total_before_first_batch == bar.n > 20 * 2  # 20 texts of at least two tokens, counted up front, every one processed
