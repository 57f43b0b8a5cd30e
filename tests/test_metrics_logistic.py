"""The batched logistic regression reaches sklearn's optimum (same objective), balanced or not."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from taulib.metrics.logistic import fit_logistic_regressions


def _objective(x, y, w, b, balanced):
    n = len(y)
    z = x.astype(np.float64) @ w + b
    weights = np.where(y > 0, n / (2 * y.sum()), n / (2 * (n - y.sum()))) if balanced else np.ones(n)
    return float((weights * (np.logaddexp(0, z) - y * z)).sum() + 0.5 * (w**2).sum())


@pytest.mark.parametrize("balanced", [True, False])
def test_same_optimum_as_sklearn(balanced):
    torch.manual_seed(0)
    m, n, k = 6, 400, 4
    x = torch.relu(torch.randn(m, n, k) * 20 - 10)  # sparse and large, like SAE latents
    y = (torch.rand(m, n) < (0.1 if balanced else 0.5)).long()
    x[:, :, 0] += y * 15 * torch.rand(m, n)
    w, b = fit_logistic_regressions(x, y, balanced=balanced)
    for i in range(m):
        xi, yi = x[i].numpy(), y[i].numpy()
        reference = LogisticRegression(max_iter=10_000, tol=1e-10, class_weight="balanced" if balanced else None).fit(xi, yi)
        ours = _objective(xi, yi, w[i].double().numpy(), float(b[i]), balanced)
        theirs = _objective(xi, yi, reference.coef_[0], reference.intercept_[0], balanced)
        assert ours <= theirs * (1 + 1e-6)
        assert np.allclose(w[i].numpy(), reference.coef_[0], rtol=2e-2, atol=1e-3)
        assert ((xi @ w[i].numpy() + b[i].item()) > 0).tolist() == (reference.decision_function(xi) > 0).tolist()
