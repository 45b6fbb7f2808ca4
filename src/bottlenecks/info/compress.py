"""Compress-then-estimate (Butakov et al., "Information Bottleneck Analysis of Deep Neural Networks via
Lossy Compression", ICLR 2024): reduce each high-dimensional side to a few dimensions, then run a
low-dimensional MI estimator, where k-NN estimators are reliable.

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

__all__ = ["AutoEncoder", "compress", "compressed_mutual_information"]


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


def compressed_mutual_information(x, y, dim: int = 4, compressor: str = "pca", method: str = "ksg1", *,
                                  dim_y: int | None = None, epochs: int = 50, seed: int = 0, **kwargs):
    """``I(f(x); g(y))`` with ``f, g`` compressors to ``dim`` (``dim_y`` for ``y``; default ``dim``)
    dimensions fitted on each side separately (see :func:`compress`), then
    :func:`bottlenecks.info.mutual_information` with ``method`` and ``kwargs`` (``k``, ``units``,
    ``ci``, ...). Shapes: ``x: (n, ...)``, ``y: (n, ...)``; extra dims are flattened.

    Bias: a population lower bound (data processing), tight only when ``dim`` captures the shared
    information; plus the chosen estimator's bias (documented there). Too small ``dim`` loses
    information; too large brings back the high-dimensional k-NN bias.
    """
    cx = compress(x, dim, compressor, epochs=epochs, seed=seed)
    cy = compress(y, dim if dim_y is None else dim_y, compressor, epochs=epochs, seed=seed + 1)
    return mutual_information(cx, cy, method=method, **kwargs)
