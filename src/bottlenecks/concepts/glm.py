"""Sparse multinomial logistic regression with an elastic-net penalty, fitted along a
regularisation path by proximal SAGA (the GLM-SAGA algorithm of Wong et al., 2021, in torch).

Objective at one ``lam``, for X: (n, d), y: (n,) in 0..K-1, W: (K, d), b: (K,):

    mean_i CE(softmax(x_i W^T + b), y_i) + lam * (alpha * |W|_1 + (1 - alpha) / 2 * |W|_2^2)

(the bias is not penalised). This is scikit-learn's ``LogisticRegression(penalty='elasticnet',
l1_ratio=alpha, C=1 / (n * lam))`` objective divided by ``C * n``.

SAGA keeps, per sample, the gradient of its loss with respect to its K logits (an (n, K) table:
the gradient with respect to W is that row times x_i), so each step needs only the batch. With
``batch_size >= n`` it is full-batch proximal gradient descent, accelerated (FISTA). The path
starts at ``lam_max``, the smallest ``lam`` whose solution is W = 0, and walks down geometrically
with warm starts.
"""

from __future__ import annotations

import math

import torch

from ..progress import track
from ..threads import fixed_threads  # noqa: F401  (imported from here by older code)
from ..threads import small_op_threads as _small_op_threads
from ..validation import check_positive_int

__all__ = ["SELECTION_RULES", "elastic_net_path", "fixed_threads", "glm_saga", "lambda_max", "select_lambda",
           "small_op_threads"]

#: rules of :func:`select_lambda` when no sparsity target is given
SELECTION_RULES = ("1se", "best")


def small_op_threads(numel: int, limit: int = 1 << 20):
    """One intra-op thread while the tensors are small (``numel`` below ``limit``): these solvers
    take thousands of steps on (n, C) matrices of concept scores, each op microseconds of work
    (see :func:`bottlenecks.threads.small_op_threads`)."""
    return _small_op_threads(numel, limit=limit)


def _prox(W: torch.Tensor, step: float, lam: float, alpha: float) -> torch.Tensor:
    """Proximal map of step * lam * (alpha |W|_1 + (1-alpha)/2 |W|^2): soft threshold, then shrink."""
    return torch.sign(W) * (W.abs() - step * lam * alpha).clamp_min(0) / (1.0 + step * lam * (1.0 - alpha))


def _logit_grad(X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d CE_i / d logits_i for each row: softmax(x W^T + b) - onehot(y), (n, K)."""
    p = torch.softmax(X @ W.T + b, dim=1)
    p[torch.arange(len(y)), y] -= 1.0
    return p


def _intercept_only(y: torch.Tensor, k: int, dtype) -> torch.Tensor:
    """Bias of the W = 0 solution: log class frequencies (centred), (K,)."""
    freq = torch.bincount(y, minlength=k).to(dtype).clamp_min(0.5) / len(y)
    logb = freq.log()
    return logb - logb.mean()


def lambda_max(X: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float) -> float:
    """Smallest lam whose elastic-net solution has W = 0 (for alpha > 0)."""
    b = _intercept_only(y, n_classes, X.dtype)
    g = _logit_grad(X, y, torch.zeros(n_classes, X.shape[1], dtype=X.dtype), b).T @ X / len(y)
    return float(g.abs().max()) / max(alpha, 1e-3)


def glm_saga(
    X: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    *,
    alpha: float = 0.99,
    n_classes: int | None = None,
    W0: torch.Tensor | None = None,
    b0: torch.Tensor | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    max_epochs: int = 2000,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Elastic-net multinomial logistic regression at one ``lam``: X (n, d), y (n,) -> W (K, d), b (K,), epochs.

    ``lr`` defaults to 1/L with L the gradient's Lipschitz bound (0.5 * the largest eigenvalue of
    [X, 1]^T [X, 1] / n for full batches; 0.5 * max_i |x_i|^2 / 3 per SAGA's rule for mini-batches).
    Stops when an epoch changes no weight by more than ``tol`` (relative to the largest weight).
    """
    with small_op_threads(X.numel()):
        return _glm_saga(X, y, lam, alpha, n_classes, W0, b0, batch_size, lr, max_epochs, tol, generator)


def _glm_saga(X, y, lam, alpha, n_classes, W0, b0, batch_size, lr, max_epochs, tol, generator):
    n, d = X.shape
    k = int(n_classes if n_classes is not None else int(y.max()) + 1)
    bs = n if batch_size is None else min(check_positive_int(batch_size, "batch_size"), n)
    X1 = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], dim=1)
    if lr is None:
        if bs == n:
            lip = 0.5 * float(torch.linalg.matrix_norm(X1, ord=2)) ** 2 / n
            lr = 1.0 / max(lip, 1e-12)
        else:
            lr = 1.0 / (3.0 * 0.5 * float((X1 ** 2).sum(1).max()))
    W = torch.zeros(k, d, dtype=X.dtype) if W0 is None else W0.clone().to(X.dtype)
    b = _intercept_only(y, k, X.dtype) if b0 is None else b0.clone().to(X.dtype)
    if bs == n:
        return _fista(X, y, lam, alpha, W, b, lr, max_epochs, tol)
    table = _logit_grad(X, y, W, b)  # (n, K): the stored per-sample gradients
    avg_W = table.T @ X / n
    avg_b = table.mean(0)
    epoch = 0
    for epoch in range(1, max_epochs + 1):  # noqa: B007 - reported to the caller
        W_start = W.clone()
        order = torch.randperm(n, generator=generator) if bs < n else torch.arange(n)
        for s in range(0, n, bs):
            idx = order[s:s + bs]
            xb = X[idx]
            g_new = _logit_grad(xb, y[idx], W, b)
            diff = g_new - table[idx]
            gW = diff.T @ xb / len(idx) + avg_W
            gb = diff.mean(0) + avg_b
            avg_W += diff.T @ xb / n
            avg_b += diff.sum(0) / n
            table[idx] = g_new
            W = _prox(W - lr * gW, lr, lam, alpha)
            b = b - lr * gb
        change = float((W - W_start).abs().max())
        if change <= tol * max(float(W.abs().max()), 1e-3):
            break
    return W, b, epoch


def _fista(X, y, lam, alpha, W, b, lr, max_epochs, tol):
    """Full-batch case: accelerated proximal gradient (FISTA) with gradient-based restarts
    (O'Donoghue and Candes, 2015); same fixed point as SAGA, far fewer passes."""
    n = X.shape[0]
    Wy, by, t = W.clone(), b.clone(), 1.0
    epoch = 0
    for epoch in range(1, max_epochs + 1):  # noqa: B007 - reported to the caller
        g = _logit_grad(X, y, Wy, by)
        W_new = _prox(Wy - lr * (g.T @ X) / n, lr, lam, alpha)
        b_new = by - lr * g.mean(0)
        if float(((Wy - W_new) * (W_new - W)).sum() + ((by - b_new) * (b_new - b)).sum()) > 0:
            t = 1.0  # momentum points uphill: restart
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        mom = (t - 1.0) / t_new
        change = float((W_new - W).abs().max())
        Wy, by = W_new + mom * (W_new - W), b_new + mom * (b_new - b)
        W, b, t = W_new, b_new, t_new
        if change <= tol * max(float(W.abs().max()), 1e-3):
            break
    return W, b, epoch


def elastic_net_path(
    X,
    y,
    *,
    alpha: float = 0.99,
    n_lambdas: int = 20,
    lambda_min_ratio: float = 1e-3,
    n_classes: int | None = None,
    X_val=None,
    y_val=None,
    batch_size: int | None = None,
    max_epochs: int = 2000,
    tol: float = 1e-5,
    seed: int = 0,
    progress: bool | None = None,
) -> list[dict]:
    """Fit the whole path: X (n, d), y (n,) -> list of dicts, from the sparsest solution down.

    Each entry: ``lam``, ``weight`` (K, d), ``bias`` (K,), ``nnz_per_class`` (mean non-zeros per
    row of W), ``train_accuracy`` and ``train_size`` and, when validation data are given,
    ``val_accuracy`` and ``val_size`` (the sizes let :func:`select_lambda` compute standard errors).
    """

    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.long)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha: expected the L1 share of the penalty in (0, 1], got {alpha!r}")
    n_lambdas = check_positive_int(n_lambdas, "n_lambdas")
    k = int(n_classes if n_classes is not None else int(y.max()) + 1)
    lam_hi = lambda_max(X, y, k, alpha)
    ratios = [lambda_min_ratio ** (i / max(n_lambdas - 1, 1)) for i in range(n_lambdas)]
    gen = torch.Generator().manual_seed(int(seed))
    W = b = None
    path = []
    Xv = torch.as_tensor(X_val, dtype=torch.float64) if X_val is not None else None
    yv = torch.as_tensor(y_val, dtype=torch.long) if y_val is not None else None
    for r in track(ratios, "glm-saga path", progress=progress, leave=False):
        lam = lam_hi * r
        W, b, epochs = glm_saga(X, y, lam, alpha=alpha, n_classes=k, W0=W, b0=b, batch_size=batch_size,
                                max_epochs=max_epochs, tol=tol, generator=gen)
        entry = {"lam": lam, "weight": W.clone(), "bias": b.clone(), "epochs": epochs,
                 "nnz_per_class": float((W != 0).sum(1).double().mean()),
                 "train_accuracy": float(((X @ W.T + b).argmax(1) == y).double().mean()), "train_size": len(y)}
        if Xv is not None:
            entry["val_accuracy"] = float(((Xv @ W.T + b).argmax(1) == yv).double().mean())
            entry["val_size"] = len(yv)
        path.append(entry)
    return path


def select_lambda(path: list[dict], *, rule: str = "1se", target_per_class: float | None = None,
                  tolerance: float = 0.0) -> int:
    """Index of the chosen path entry (entries ordered from the sparsest, as :func:`elastic_net_path` gives).

    With ``target_per_class``: the densest entry whose mean non-zeros per class is at most the
    target. Otherwise by validation accuracy (training accuracy when the path has none), with

    - ``rule='1se'`` (default): the one-standard-error rule (Breiman et al., 1984; Hastie,
      Tibshirani and Friedman, *Elements of Statistical Learning*, 7.10; glmnet's ``lambda.1se``):
      the sparsest entry whose accuracy is within one standard error of the best, the standard
      error being the binomial one of the best accuracy on the ``val_size`` held-out rows,
      ``sqrt(a (1 - a) / n)``. Accuracies along a path are often flat to within a few held-out
      rows, and which rows land on which side of a boundary then decides the "best" entry; the rule
      only moves when the accuracies move by about a standard error.
    - ``rule='best'``: the sparsest entry with the highest accuracy.

    ``tolerance`` widens either band by that much accuracy more. Accuracies are compared as counts of
    correct rows (``round(accuracy * n)``), so float noise in them cannot break a tie.
    """
    if not path:
        raise ValueError("path: expected at least one entry, got an empty path")
    if target_per_class is not None:
        ok = [i for i, e in enumerate(path) if e["nnz_per_class"] <= target_per_class + 1e-9]
        return ok[-1] if ok else 0
    if rule not in SELECTION_RULES:
        raise ValueError(f"rule: expected one of {list(SELECTION_RULES)}, got {rule!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance: expected an accuracy margin >= 0, got {tolerance!r}")
    key = "val" if "val_accuracy" in path[0] else "train"
    n = path[0].get(f"{key}_size")
    if n is None:
        raise ValueError(f"path entries: expected '{key}_size' (the number of rows behind '{key}_accuracy', "
                         "as elastic_net_path records it) to compare accuracies")
    correct = [round(e[f"{key}_accuracy"] * n) for e in path]
    best = max(correct)
    margin = tolerance * n
    if rule == "1se":
        a = best / n
        margin += math.sqrt(a * (1.0 - a) * n)  # n * sqrt(a (1 - a) / n): one standard error, in rows
    return next(i for i, c in enumerate(correct) if c >= best - margin - 1e-9)
