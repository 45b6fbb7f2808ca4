"""Trainable information bottlenecks: the variational IB layer and the Cauchy–Schwarz IB loss.

- :class:`VariationalIB` — Alemi et al., "Deep Variational Information Bottleneck" (ICLR 2017).
- :func:`cauchy_schwarz_ib_loss` — Yu et al., "Cauchy-Schwarz Divergence Information Bottleneck
  for Regression" (ICLR 2024).
- :func:`silverman_bandwidth` — the kernel-width rule both kernel terms use by default.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checkpoint import Checkpointable
from ..validation import check_finite, check_float, check_ndim, check_nonempty, check_positive_int, check_squarable

__all__ = ["VariationalIB", "cauchy_schwarz_ib_loss", "silverman_bandwidth"]


def _check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta: expected a finite number >= 0, got {beta!r}")
    return float(beta)


# ---------------------------------------------------------------------------------------------
# Variational information bottleneck
# ---------------------------------------------------------------------------------------------

class VariationalIB(nn.Module, Checkpointable):
    """Stochastic Gaussian encoder head ``h: (batch, dim_in) -> z: (batch, dim_z)``.

    ``mu = W_mu h + b_mu``, ``logvar = W_lv h + b_lv``; in training mode
    ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` (reparameterisation), in eval mode
    ``z = mu``. ``forward`` also returns the per-sample KL to the prior ``r(z) = N(0, I)``::

        KL_i = 0.5 * sum_k (mu_ik^2 + exp(logvar_ik) - logvar_ik - 1)       # shape (batch,)

    and :meth:`loss` is the VIB objective ``task_loss + beta * mean_i KL_i``.
    """

    def __init__(self, dim_in: int, dim_z: int, beta: float = 1e-3):
        super().__init__()
        self.dim_in = check_positive_int(dim_in, "dim_in")
        self.dim_z = check_positive_int(dim_z, "dim_z")
        self.beta = _check_beta(beta)
        self.mean = nn.Linear(self.dim_in, self.dim_z)
        self.logvar = nn.Linear(self.dim_in, self.dim_z)
        self.reset_parameters()

    def config(self) -> dict:
        """The constructor's arguments; ``save_pretrained`` / ``from_pretrained`` (from
        :class:`~bottlenecks.checkpoint.Checkpointable`) save and rebuild the layer with them."""
        return {"dim_in": self.dim_in, "dim_z": self.dim_z, "beta": self.beta}

    def reset_parameters(self) -> None:
        self.mean.reset_parameters()
        self.logvar.reset_parameters()
        # logvar starts at 0 (unit variance, the prior's), so the initial KL is 0.5 * ||mu||^2
        nn.init.zeros_(self.logvar.weight)
        nn.init.zeros_(self.logvar.bias)

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h: (batch, dim_in) -> (mu, logvar)``, each ``(batch, dim_z)``."""
        check_ndim(h, 2, "h", "(batch, dim_in)")
        check_float(h, "h")
        if h.shape[1] != self.dim_in:
            raise ValueError(f"h: expected shape (batch, {self.dim_in}), got {tuple(h.shape)}")
        if h.dtype != self.mean.weight.dtype:
            raise TypeError(f"h: dtype {h.dtype} differs from the layer's {self.mean.weight.dtype}; convert one of "
                            f"them, e.g. layer.to({h.dtype})")
        check_finite(h, "h")  # a NaN here would only surface later as a NaN loss
        return self.mean(h), self.logvar(h)

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last dim: ``(batch, k) -> (batch,)``."""
        return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=-1)

    def forward(self, h: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``h: (batch, dim_in) -> (z: (batch, dim_z), kl: (batch,))``."""
        mu, logvar = self.encode(h)
        kl = self.kl_divergence(mu, logvar)
        if not self.training:
            return mu, kl
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps, kl

    def loss(self, task_loss: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        """``task_loss + beta * kl.mean()``."""
        return task_loss + self.beta * kl.mean()

    def extra_repr(self) -> str:
        return f"dim_in={self.dim_in}, dim_z={self.dim_z}, beta={self.beta:g}"


# ---------------------------------------------------------------------------------------------
# Cauchy–Schwarz divergence IB for regression
# ---------------------------------------------------------------------------------------------

def silverman_bandwidth(x: torch.Tensor) -> torch.Tensor:
    """Silverman's rule of thumb for a Gaussian kernel on ``x: (n, d)`` (a 1-D ``x`` is ``(n, 1)``)::

        sigma = s * (4 / ((d + 2) * n)) ** (1 / (d + 4)),   s = mean over columns of the sample std
                                                             (unbiased, n - 1)

    For ``d = 1`` this is ``(4/3)^(1/5) s n^(-1/5) ~= 1.06 s n^(-1/5)``. The result is detached (a
    0-D tensor): the width is treated as a constant of the loss. A zero spread gives ``sigma = 1``
    times the factor, so the kernel stays defined.
    """
    x = x.reshape(-1, 1) if x.dim() == 1 else x
    check_ndim(x, 2, "x", "(n, d)")
    check_nonempty(x, "x", 2)
    n, d = x.shape
    s = x.detach().std(dim=0).mean()
    s = torch.where(s > 0, s, torch.ones_like(s))
    return s * (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact squared Euclidean distances ``(n, d), (m, d) -> (n, m)`` (differentiable, no sqrt)."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)


def _width(value, data: torch.Tensor, name: str) -> torch.Tensor:
    if value is None:
        return silverman_bandwidth(data).to(data.dtype)
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"sigma for {name}: expected a finite number > 0, got {value!r}")
    return torch.tensor(v, dtype=data.dtype, device=data.device)


def _as_2d(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    t = t.reshape(-1, 1) if t.dim() == 1 else t
    check_ndim(t, 2, name, "(n, d)")
    check_float(t, name)
    check_finite(t, name)
    return t


def cauchy_schwarz_ib_loss(z: torch.Tensor, y_pred: torch.Tensor, y_true: torch.Tensor, beta: float = 1e-2,
                           sigma=None, *, x: torch.Tensor | None = None, condition: str = "z",
                           return_terms: bool = False):
    """CS-IB objective for regression (Yu et al., 2024): ``D_CS(p(y|x) || q(y_hat|x)) + beta * I(X; Z)``.

    Shapes: ``z: (n, dz)``, ``y_pred, y_true: (n,)`` or ``(n, dy)`` (same shape), optional
    ``x: (n, dx)``. Gaussian kernels ``kappa_s(u) = exp(-||u||^2 / (2 s^2))``; the normalising
    constants cancel in every log-ratio below and are dropped.

    **Prediction term** — the empirical conditional CS divergence (Yu et al. 2023; Eq. (10) of
    the CS-IB paper with the same conditioning sample for both distributions). The conditioning
    variable is the representation ``z`` (a deterministic function of x; the authors' released
    script conditions on the raw input x and uses a fixed width of 1 instead). With
    ``K_ji = kappa_sz(z_j - z_i)``, ``s_j = sum_i K_ji`` and ``L^{ab}_ji = kappa_sy(a_j - b_i)``::

        D_CS = log sum_j (sum_i K_ji L^{yy}_ji) / s_j^2  +  log sum_j (sum_i K_ji L^{pp}_ji) / s_j^2
             - log sum_j (sum_i K_ji L^{yp}_ji) / s_j^2  -  log sum_j (sum_i K_ji L^{py}_ji) / s_j^2

    with ``y = y_true`` and ``p = y_pred``. It is 0 when ``y_pred == y_true`` and grows as
    predictions move away. Computed with log-sum-exp, so it does not underflow.
    ``condition='x'`` uses the inputs ``x`` (width from ``sigma``'s x entry / Silverman) for ``K``
    instead, as in the paper's ``D_CS(p(y|x) || q(y_hat|x))``: the conditioning kernel is then fixed
    data, which the model cannot reshape to make the divergence small (with ``condition='z'``
    a code that spreads samples apart turns ``K`` towards the identity and the term into a
    saturating, outlier-tolerant per-sample loss).

    **Compression term** ``I(X; Z)``:

    - without ``x``: for a deterministic encoder ``I(X; Z) = H(Z)``, estimated by Rényi's quadratic
      entropy with a Parzen window, ``H_2(Z) = -log (1/n^2) sum_ij kappa_sz(z_i - z_j)``.
    - with ``x``: the Cauchy–Schwarz quadratic mutual information with ``A_ij = kappa_sx(x_i - x_j)``,
      ``B_ij = kappa_sz(z_i - z_j)``::

          I_CS = log (1/n^2) sum_ij A_ij B_ij + log (1/n^4) sum_ij A_ij sum_ij B_ij
               - 2 log (1/n^3) sum_i (sum_j A_ij)(sum_j B_ij)

      It is 0 in the population for independent x and z; at finite n with narrow kernels (e.g.
      Silverman's in several dimensions) the diagonal ``A_ii B_ii = 1`` gives it a positive bias.

    ``sigma``: ``None`` (Silverman's rule, :func:`silverman_bandwidth`, per variable: one width for
    z, one for y computed from ``y_true`` and used for every y-kernel, one for x), a positive
    number for all of them, or a pair ``(sigma_z, sigma_y)``. Widths are constants (no gradient).
    Differentiable in ``z`` and ``y_pred``. Returns a 0-D tensor, or with ``return_terms=True``
    ``(loss, prediction_term, compression_term)``.
    """
    beta = _check_beta(beta)
    if condition not in ("z", "x"):
        raise ValueError(f"condition: expected 'z' or 'x', got {condition!r}")
    if condition == "x" and x is None:
        raise ValueError("condition='x' needs the inputs: pass x=...")
    z = _as_2d(z, "z")
    y_pred = _as_2d(y_pred, "y_pred")
    y_true = _as_2d(y_true, "y_true")
    check_nonempty(z, "z", 2)
    for t, name in ((z, "z"), (y_pred, "y_pred"), (y_true, "y_true")):
        check_squarable(t, name)  # Gaussian kernels exponentiate squared distances
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_pred and y_true must have the same shape, got {tuple(y_pred.shape)} (y_pred) "
                         f"and {tuple(y_true.shape)} (y_true)")
    if z.shape[0] != y_true.shape[0]:
        raise ValueError(f"z and y must have the same number of samples, got {z.shape[0]} (z) "
                         f"and {y_true.shape[0]} (y_true)")
    if x is not None:
        x = _as_2d(x, "x")
        if x.shape[0] != z.shape[0]:
            raise ValueError(f"x and z must have the same number of samples, got {x.shape[0]} (x) "
                             f"and {z.shape[0]} (z)")
        x = x.to(z.dtype)
    y_true = y_true.to(y_pred.dtype)
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(f"sigma: expected None, a number or a pair (sigma_z, sigma_y), got {sigma!r}")
        s_z, s_y = sigma
        s_x = s_z
    else:
        s_z = s_y = s_x = sigma
    sz = _width(s_z, z, "z")
    sy = _width(s_y, y_true, "y").to(device=y_pred.device)

    n = z.shape[0]
    log_k = -_sq_dists(z, z) / (2 * sz**2)                 # log K_ji on z (also the compression term's)
    log_c = log_k
    if condition == "x":  # the paper's p(y|x): condition on the fixed input, not the learned code
        log_c = (-_sq_dists(x, x) / (2 * _width(s_x, x, "x") ** 2)).detach()
    log_s = torch.logsumexp(log_c, dim=1)                   # log s_j

    def term(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        log_l = -_sq_dists(a, b) / (2 * sy**2)              # log L^{ab}_ji, rows j index a
        return torch.logsumexp(torch.logsumexp(log_c + log_l, dim=1) - 2 * log_s, dim=0)

    pred = term(y_true, y_true) + term(y_pred, y_pred) - term(y_true, y_pred) - term(y_pred, y_true)

    log_n = math.log(n)
    if x is None:
        comp = -(torch.logsumexp(log_k.reshape(-1), dim=0) - 2 * log_n)
    else:
        sx = _width(s_x, x, "x")
        log_a = -_sq_dists(x, x) / (2 * sx**2)
        comp = ((torch.logsumexp((log_a + log_k).reshape(-1), 0) - 2 * log_n)
                + (torch.logsumexp(log_a.reshape(-1), 0) + torch.logsumexp(log_k.reshape(-1), 0) - 4 * log_n)
                - 2 * (torch.logsumexp(torch.logsumexp(log_a, 1) + torch.logsumexp(log_k, 1), 0) - 3 * log_n))
    loss = pred + beta * comp
    return (loss, pred, comp) if return_terms else loss
