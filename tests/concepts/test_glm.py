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


def _path(counts, n, key="val"):
    return [{"nnz_per_class": float(i), f"{key}_accuracy": c / n, f"{key}_size": n} for i, c in enumerate(counts)]


def test_select_lambda_by_target_and_by_validation():
    path = _path([30, 70, 90, 90, 85], 100)
    assert select_lambda(path, target_per_class=2.5) == 2
    assert select_lambda(path, target_per_class=0.5) == 0
    assert select_lambda(path, rule="best") == 2  # the sparsest of the best
    assert select_lambda(path, rule="best", tolerance=0.21) == 1
    assert select_lambda(_path([30, 70, 90, 90, 85], 100, key="train"), rule="best") == 2  # no validation data
    with pytest.raises(ValueError, match="empty"):
        select_lambda([])
    with pytest.raises(ValueError, match="rule"):
        select_lambda(path, rule="max")
    with pytest.raises(ValueError, match="val_size"):
        select_lambda([{"nnz_per_class": 0.0, "val_accuracy": 0.5}])


def test_one_standard_error_rule_on_a_handcrafted_curve():
    # best 90/100: one binomial standard error is sqrt(0.9 * 0.1 / 100) = 3 points, so 87 is in, 86 out
    assert select_lambda(_path([50, 86, 87, 90, 89], 100)) == 2
    assert select_lambda(_path([50, 86, 86, 90, 89], 100)) == 3
    assert select_lambda(_path([50, 86, 86, 90, 89], 100), tolerance=0.01) == 1  # widens the band by 1 point
    # a perfect best has no standard error: the rule reduces to 'best'
    assert select_lambda(_path([50, 99, 100, 100], 100)) == 2
    # the band scales with 1/sqrt(n): 87% of 10000 rows is far outside one SE (0.3 points) of 90%
    assert select_lambda(_path([5000, 8700, 8990, 9000], 10000)) == 2


def test_one_standard_error_rule_ignores_one_row_flips_on_a_flat_curve():
    # a flat stretch of the path, as in the concept demo: the entries differ by one or two held-out rows
    n, counts = 200, [60, 140, 180, 185, 186, 185, 186, 186]
    chosen = {"1se": set(), "best": set()}
    for j in range(len(counts)):
        for delta in (-1, 0, 1):  # any one entry moved by one row (a float-noise-sized change)
            c = list(counts)
            c[j] += delta
            for rule in chosen:
                chosen[rule].add(select_lambda(_path(c, n), rule=rule))
    assert chosen["1se"] == {3}
    assert len(chosen["best"]) > 1  # the argmax jumps along the plateau


def test_path_records_sizes_and_chosen_lambda_survives_tiny_perturbations():
    X, y = _data(n=300, d=6, seed=3)
    Xv, yv = _data(n=200, d=6, seed=4)
    path = elastic_net_path(X, y, alpha=0.99, n_lambdas=10, X_val=Xv, y_val=yv)
    assert all(e["val_size"] == 200 and e["train_size"] == 300 for e in path)
    chosen = select_lambda(path)
    assert path[chosen]["val_accuracy"] >= max(e["val_accuracy"] for e in path) - 0.04
    assert path[chosen]["nnz_per_class"] <= path[select_lambda(path, rule="best")]["nnz_per_class"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        Xp = X * (1 + 1e-9 * rng.normal(size=X.shape))
        assert select_lambda(elastic_net_path(Xp, y, alpha=0.99, n_lambdas=10, X_val=Xv, y_val=yv)) == chosen
