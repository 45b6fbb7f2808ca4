"""GLM-SAGA elastic-net path against scikit-learn's elastic-net logistic regression."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from bottlenecks.concepts.glm import elastic_net_path, glm_saga, lambda_max, select_lambda


def _data(n=150, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(k, d)) * 1.5
    W[:, 3:] = 0
    y = (X @ W.T + rng.gumbel(size=(n, k))).argmax(1)
    return X, y


def _sklearn(X, y, lam, alpha):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(penalty="elasticnet", solver="saga", l1_ratio=alpha, C=1.0 / (len(y) * lam),
                                  tol=1e-10, max_iter=100000).fit(X, y)


@pytest.mark.parametrize("lam,alpha", [(0.02, 0.5), (0.05, 0.99)])
def test_full_batch_matches_sklearn_elasticnet(lam, alpha):
    X, y = _data()
    W, b, _ = glm_saga(torch.tensor(X), torch.tensor(y), lam, alpha=alpha, tol=1e-10, max_epochs=20000)
    sk = _sklearn(X, y, lam, alpha)
    assert np.abs(W.numpy() - sk.coef_).max() < 1e-5
    # scikit-learn's multinomial intercepts are defined up to a common shift
    assert np.abs((b - b.mean()).numpy() - (sk.intercept_ - sk.intercept_.mean())).max() < 1e-5
    assert ((W == 0) == torch.tensor(sk.coef_ == 0)).float().mean() > 0.9  # same sparsity pattern


def test_minibatch_saga_converges_to_the_same_solution():
    X, y = _data(seed=1)
    sk = _sklearn(X, y, 0.02, 0.5)
    W, _, epochs = glm_saga(torch.tensor(X), torch.tensor(y), 0.02, alpha=0.5, batch_size=16, tol=1e-9,
                            max_epochs=800, generator=torch.Generator().manual_seed(0))
    assert np.abs(W.numpy() - sk.coef_).max() < 1e-4
    # the same seed gives the same numbers
    W2, _, _ = glm_saga(torch.tensor(X), torch.tensor(y), 0.02, alpha=0.5, batch_size=16, tol=1e-9,
                        max_epochs=epochs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(W, W2)


def test_lambda_max_gives_zero_weights_and_path_gets_denser():
    X, y = _data(seed=2)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    lam = lambda_max(Xt, yt, 3, 0.9)
    W, _, _ = glm_saga(Xt, yt, lam * 1.001, alpha=0.9, tol=1e-9)
    assert bool((W == 0).all())
    W, _, _ = glm_saga(Xt, yt, lam * 0.7, alpha=0.9, tol=1e-9)
    assert bool((W != 0).any())
    path = elastic_net_path(X, y, alpha=0.9, n_lambdas=8, X_val=X, y_val=y)
    nnz = [e["nnz_per_class"] for e in path]
    assert nnz[0] == 0 and nnz[-1] >= 2 and nnz == sorted(nnz)
    assert path[-1]["val_accuracy"] > 0.6


def test_select_lambda_by_target_and_by_validation():
    path = [{"nnz_per_class": z, "val_accuracy": a} for z, a in [(0, 0.3), (1, 0.7), (2, 0.9), (3, 0.9), (4, 0.85)]]
    assert select_lambda(path, target_per_class=2.5) == 2
    assert select_lambda(path, target_per_class=0.5) == 0
    assert select_lambda(path) == 2  # the sparsest of the best
    assert select_lambda(path, tolerance=0.21) == 1
    with pytest.raises(ValueError, match="empty"):
        select_lambda([])
