"""Compress-then-estimate (Butakov et al., "Information Bottleneck Analysis of Deep Neural Networks via
Lossy Compression", ICLR 2024): reduce each high-dimensional side to a few dimensions, then run a
low-dimensional MI estimator, where k-NN estimators are reliable.

The compressor decides what survives. PCA and autoencoders keep each side's *variance*, fitted on that
side alone, so they are blind to which directions the two sides share: with unit-variance columns and a
few interacting pairs (sparse dependence) PCA keeps arbitrary directions and loses most of the
information. CCA (the default) keeps the directions of largest canonical correlation between the
sides, which is where linear and monotone dependence lives.

By the data-processing inequality ``I(f(X); g(Y)) <= I(X; Y)`` for any compressors ``f, g``, so in
the population the result is a lower bound, tight when the compression keeps the shared
information (the paper's assumption: the data lie near a low-dimensional manifold). The final
estimator's own bias (e.g. KSG's, low for strong dependence) comes on top.
"""

from __future__ import annotations

import torch
from torch import nn

from ..validation import as_tensor, check_choice, check_finite, check_ndim, check_positive_int
from .estimators import mutual_information

__all__ = ["AutoEncoder", "cca_compress", "compress", "compressed_mutual_information"]


class AutoEncoder(nn.Module):
    """Small MLP autoencoder ``(batch, dim_in) -> (batch, dim_code) -> (batch, dim_in)``."""

    def __init__(self, dim_in: int, dim_code: int, hidden: int = 64):
        super().__init__()
        self.dim_in = check_positive_int(dim_in, "dim_in")
        self.dim_code = check_positive_int(dim_code, "dim_code")
        self.hidden = check_positive_int(hidden, "hidden")
        self.encoder = nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_code))
        self.decoder = nn.Sequential(nn.Linear(dim_code, hidden), nn.GELU(), nn.Linear(hidden, dim_in))

    def reset_parameters(self) -> None:
        for m in [*self.encoder, *self.decoder]:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def extra_repr(self) -> str:
        return f"dim_in={self.dim_in}, dim_code={self.dim_code}, hidden={self.hidden}"


def _pca(x: torch.Tensor, dim: int) -> torch.Tensor:
    xc = x - x.mean(0)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    return xc @ vh[:dim].T


def _autoencode(x: torch.Tensor, dim: int, epochs: int, seed: int, hidden: int, lr: float,
                batch_size: int) -> torch.Tensor:
    x = ((x - x.mean(0)) / x.std(0).clamp_min(1e-12)).float()
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global state untouched
        torch.manual_seed(int(seed))
        ae = AutoEncoder(x.shape[1], dim, hidden)
    g = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=g).split(batch_size):
            loss = (ae(x[idx]) - x[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return ae.encoder(x).double()


def compress(x, dim: int, method: str = "pca", *, epochs: int = 50, seed: int = 0, hidden: int = 64,
             lr: float = 1e-3, batch_size: int = 256) -> torch.Tensor:
    """Reduce ``x: (n, d)`` to ``(n, min(d, dim))`` float64. ``'pca'``: projections on the top ``dim``
    principal axes; ``'autoencoder'``: codes of an :class:`AutoEncoder` trained (Adam, MSE, ``epochs``,
    seeded) on the standardised data. A side with ``d <= dim`` is returned as is."""
    check_choice(method, "method", ("pca", "autoencoder"))
    dim = check_positive_int(dim, "dim")
    t = as_tensor(x.detach().cpu() if isinstance(x, torch.Tensor) else x, "x")
    t = t.reshape(-1, 1) if t.dim() == 1 else t.reshape(t.shape[0], -1) if t.dim() > 2 else t
    check_ndim(t, 2, "x", "(n, d)")
    t = t.to(torch.float64)
    check_finite(t, "x")
    if t.shape[1] <= dim:
        return t
    if method == "pca":
        return _pca(t, dim)
    return _autoencode(t, dim, check_positive_int(epochs, "epochs"), seed, hidden, lr,
                       check_positive_int(batch_size, "batch_size"))


def _flat64(v, name: str) -> torch.Tensor:
    t = as_tensor(v.detach().cpu() if isinstance(v, torch.Tensor) else v, name)
    t = t.reshape(-1, 1) if t.dim() == 1 else t.reshape(t.shape[0], -1) if t.dim() > 2 else t
    check_ndim(t, 2, name, "(n, d)")
    t = t.to(torch.float64)
    check_finite(t, name)
    return t


def _inv_sqrt(c: torch.Tensor, ridge: float) -> torch.Tensor:
    c = c + ridge * (c.diagonal().mean().clamp_min(1e-300)) * torch.eye(c.shape[0], dtype=c.dtype)
    w, v = torch.linalg.eigh(c)
    return (v / w.clamp_min(1e-300).sqrt()) @ v.T


def cca_compress(x, y, dim: int = 4, dim_y: int | None = None, *, ridge: float = 1e-6):
    """Project ``x: (n, dx)`` and ``y: (n, dy)`` on their leading canonical directions (CCA): ``x`` to
    ``min(dx, dim)`` and ``y`` to ``min(dy, dim_y or dim)`` columns, float64. A side that is already
    small enough is returned as is; the other keeps at most as many directions as there are
    canonical pairs. ``ridge`` (relative to the mean variance) keeps the whitening finite for
    collinear columns.

    The projections keep all the information of a jointly Gaussian pair when ``dim`` is at least the
    number of non-zero canonical correlations. Fitted on the same rows it then measures, so with
    ``p``, ``q`` columns and ``n`` rows noise adds canonical correlations of about
    ``sqrt(p/n) + sqrt(q/n)`` (an upward bias of about ``-0.5 log(1 - rho^2)`` per kept pair).
    """
    tx, ty = _flat64(x, "x"), _flat64(y, "y")
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {tx.shape[0]} (x) and "
                         f"{ty.shape[0]} (y)")
    if tx.shape[0] < 3:
        raise ValueError(f"cca_compress: needs at least 3 samples, got n={tx.shape[0]}")
    kx = min(check_positive_int(dim, "dim"), tx.shape[1])
    ky = min(check_positive_int(dim if dim_y is None else dim_y, "dim_y"), ty.shape[1])
    if kx == tx.shape[1] and ky == ty.shape[1]:
        return tx, ty
    xc, yc = tx - tx.mean(0), ty - ty.mean(0)
    n = tx.shape[0]
    wx = _inv_sqrt(xc.T @ xc / (n - 1), ridge)
    wy = _inv_sqrt(yc.T @ yc / (n - 1), ridge)
    u, _, vh = torch.linalg.svd(wx @ (xc.T @ yc / (n - 1)) @ wy, full_matrices=False)
    cx = tx if kx == tx.shape[1] else xc @ wx @ u[:, :kx]
    cy = ty if ky == ty.shape[1] else yc @ wy @ vh[:ky].T
    return cx, cy


def compressed_mutual_information(x, y, dim: int = 4, compressor: str = "cca", method: str = "ksg1", *,
                                  dim_y: int | None = None, epochs: int = 50, seed: int = 0, **kwargs):
    """``I(f(x); g(y))`` with ``f, g`` compressors to ``dim`` (``dim_y`` for ``y``; default ``dim``)
    dimensions, then :func:`bottlenecks.info.mutual_information` with ``method`` and ``kwargs`` (``k``,
    ``units``, ``ci``, ...). Shapes: ``x: (n, ...)``, ``y: (n, ...)``; extra dims are flattened.

    ``compressor``: ``'cca'`` (default; both sides' leading canonical directions, see
    :func:`cca_compress`), or ``'pca'`` / ``'autoencoder'``, fitted on each side separately (see
    :func:`compress`; these keep variance, not shared information).

    Bias: a population lower bound (data processing), tight only when ``dim`` captures the shared
    information; plus the chosen estimator's bias (documented there), plus for CCA a small upward
    bias from fitting the directions on the same rows. Too small ``dim`` loses information (e.g. 50
    weakly correlated pairs: 4 canonical pairs keep 4/50 of it; use ``method='gaussian'`` on the
    raw data there); too large brings back the high-dimensional k-NN bias.
    """
    check_choice(compressor, "compressor", ("cca", "pca", "autoencoder"))
    if compressor == "cca":
        cx, cy = cca_compress(x, y, dim, dim_y)
    else:
        cx = compress(x, dim, compressor, epochs=epochs, seed=seed)
        cy = compress(y, dim if dim_y is None else dim_y, compressor, epochs=epochs, seed=seed + 1)
    return mutual_information(cx, cy, method=method, **kwargs)
