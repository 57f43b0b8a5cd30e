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


def test_checkpoints_evaluated_together_get_the_numbers_each_gets_alone():
    """A chunk of checkpoints shares one pass over the held-out activations and the probing residuals;
    every checkpoint's record (scalars and details) is the one it gets evaluated alone."""
    import json
    from pathlib import Path

    from taulib.config import RunConfig
    from taulib.metrics.evaluate import evaluate_chunk
    from taulib.metrics.families import RunInputs
    from taulib.metrics.orthogonality import covariance_factor
    from taulib.metrics.probing import ProbingData, ProbingSettings, TaskData, _binary_tasks, stratified_test_mask

    d, width, generator = 16, 64, torch.Generator().manual_seed(0)
    saes = []
    for bias in (-0.2, -0.5, -1.0):  # three sparsities: different dead and alive latents
        sae = SparseAutoencoder(d, width)
        sae.initialise(generator)
        with torch.no_grad():
            sae.b_enc.fill_(bias)
        saes.append(sae.requires_grad_(False))
    heldout = torch.randn(3000, d, generator=generator) * 2 + 0.5
    tasks = []
    for name, classes in (("a", 2), ("b", 3)):
        labels = [f"c{c}" for c in range(classes) for _ in range(20)]
        is_test = stratified_test_mask(labels, 0.3, 0)
        lengths = torch.randint(1, 9, (len(labels),), generator=generator)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        shift = torch.tensor([float(label[1]) for label in labels]).repeat_interleave(lengths)[:, None]  # classes a probe can tell apart
        tasks.append(TaskData(name, labels, (torch.randn(int(offsets[-1]), d, generator=generator) + shift).half(), offsets, is_test, _binary_tasks(name, labels, is_test, 0)))
    probing = ProbingData(tasks, ProbingSettings(tasks=("a", "b"), examples_per_class=20, ks=(1, 5)))
    # absorption's chunk against its lone evaluations is tested in tests/test_metrics_absorption.py; no model here for the CE/KL
    config = RunConfig(run_name="chunk", training={"compute_dtype": "bfloat16"}, evaluation={"core_tokens": 3000, "families": ["core", "orthogonality", "probing"]})
    run = RunInputs(config, Path("."), 0, Path("."), Path("."), heldout)
    states = {"core": None, "orthogonality": covariance_factor(heldout), "probing": probing}

    together = evaluate_chunk(saes, [1, 2, 3], 3, run, states)
    alone = [evaluate_chunk([sae], [step], 3, run, states)[0] for step, sae in zip([1, 2, 3], saes, strict=True)]
    assert json.dumps(together) == json.dumps(alone)  # as the records are written (NaN included)
    l0s = [scalars["l0"] for scalars, _ in together]
    assert l0s[0] > l0s[1] > l0s[2] > 0  # three different SAEs, not one repeated
    assert {"l0", "alive_mean_max_cosine", "sae_top_5_accuracy.b", "sae_top_1_accuracy"} <= set(together[0][0])
    assert {"density_histogram", "max_cosine_histogram", "probing_tasks"} <= set(together[0][1])
