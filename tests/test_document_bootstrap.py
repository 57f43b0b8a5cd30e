"""The held-out text's sampling error, bootstrapped by document: on constructed cases whose interval is known.

A document spans many units (parts of sequences, tokens); resampling the units as if independent
takes one document's many parts for many draws of text, and the interval comes out too narrow.
"""

import numpy as np
import pytest
import torch

from taulib.metrics.core.metric import VarianceParts, reconstruction_metrics, variance_by_document
from taulib.metrics.downstream.metric import SequenceLosses
from taulib.sae import SparseAutoencoder


def _two_documents(units_each: int, documents: bool = True) -> SequenceLosses:
    """Units of two documents, every unit alike within its document: document 0 scores 0.9, document 1 scores 0.5
    (clean 2, zero 10 per position; the SAE's CE 2.8 and 6.0)."""
    n = 2 * units_each
    ones = np.ones(n)
    sae = np.where(np.arange(n) < units_each, 2.8, 6.0)
    document = np.repeat([0, 1], units_each) if documents else None
    return SequenceLosses(2 * ones, 10 * ones, sae, ones, ones, ones, ones, document=document)


def test_the_document_bootstrap_spans_the_documents_scores():
    # two documents: a redraw of the text is both of one or one of each, so the 95% interval runs from the one's score
    # to the other's (each draw of two of one document has probability 1/4)
    losses = _two_documents(units_each=50)
    assert losses.metrics().ce_loss_score == pytest.approx(0.7)
    interval = losses.bootstrap_intervals(n_resamples=400, seed=0)
    assert interval["ce_loss_score_low"] == pytest.approx(0.5) and interval["ce_loss_score_high"] == pytest.approx(0.9)
    # the same units resampled one by one: 100 "independent" units, an interval a fraction as wide
    units = _two_documents(units_each=50, documents=False).bootstrap_intervals(n_resamples=400, seed=0)
    assert units["ce_loss_score_high"] - units["ce_loss_score_low"] < 0.4 * (0.9 - 0.5)


def test_losses_by_document_sum_each_documents_units():
    losses = SequenceLosses(*(np.arange(5.0) + k for k in range(5)), np.ones(5), np.ones(5), document=np.array([7, 3, 7, 9, 3]))
    grouped = losses.by_document()
    assert grouped.document.tolist() == [3, 7, 9]
    assert grouped.clean.tolist() == [1 + 4, 0 + 2, 3] and grouped.n_ce.tolist() == [2, 2, 1]
    assert grouped.metrics().as_dict() == pytest.approx(losses.metrics().as_dict())
    round_trip = SequenceLosses.from_lists(losses.to_lists())
    assert round_trip.document.tolist() == [7, 3, 7, 9, 3] and not SequenceLosses.from_lists(_two_documents(2, False).to_lists()).documents_known
    with pytest.raises(ValueError, match="cannot be resampled together"):
        losses.concat(_two_documents(2, documents=False))


def test_explained_variance_by_document_adds_up_to_the_samples():
    generator = torch.Generator().manual_seed(0)
    sae = SparseAutoencoder(16, 32)
    sae.initialise(generator)
    x = torch.randn(300, 16, generator=generator) + 2.0
    documents = torch.repeat_interleave(torch.tensor([4, 8, 15]), torch.tensor([100, 50, 150]))
    parts = variance_by_document(sae.requires_grad_(False), x, documents, batch_size=64)
    assert parts.document.tolist() == [4, 8, 15] and parts.tokens.tolist() == [100, 50, 150]
    whole, _ = reconstruction_metrics(sae, x)
    # float64 sums of the same float32 residuals; the total in two passes against one: a few 1e-16 relative of Σ‖x‖²
    assert parts.explained_variance() == pytest.approx(whole.explained_variance, abs=1e-10)
    x_hat, _ = sae(x)
    first = (x[:100] - x_hat[:100]).double().pow(2).sum()
    assert parts.residual[0] == pytest.approx(float(first), rel=1e-12)
    assert parts.total[0] == pytest.approx(float((x[:100].double() - x.double().mean(0)).pow(2).sum()), rel=1e-12)
    with pytest.raises(ValueError, match="each of the 300 activations"):
        variance_by_document(sae, x, documents[:10])


def test_the_explained_variance_interval_spans_the_documents():
    # two documents of equal variance, one reconstructed to EV 0.8, the other to 0.4: the interval is [0.4, 0.8]
    parts = VarianceParts(np.array([0, 1]), np.array([20.0, 60.0]), np.array([100.0, 100.0]), np.array([500.0, 500.0]))
    assert parts.explained_variance() == pytest.approx(0.6)
    interval = parts.bootstrap_interval(n_resamples=400, seed=1)
    assert interval == pytest.approx({"explained_variance_low": 0.4, "explained_variance_high": 0.8})
    assert VarianceParts.from_lists(parts.to_lists()).explained_variance() == parts.explained_variance()
