"""Neural variational lower bounds on mutual information: InfoNCE, NWJ and MINE.

A small critic ``f(x, y)`` is trained on a training split to maximise a lower bound; the number
reported is the same bound **evaluated once on held-out data** with the critic that scored best
on a validation split carved out of the training data (``early_stopping``, the default; without
it, the final critic, which over-fits). The held-out data never choose anything, so the estimate
is not a maximum over test evaluations (which would be biased upwards).

Bounds, for a batch of ``B`` pairs with scores ``S_ij = f(x_i, y_j)`` (diagonal: joint samples,
off-diagonal: product-of-marginals samples):

- InfoNCE (van den Oord et al. 2018): ``mean_i [S_ii - logsumexp_j S_ij] + log B``. Low variance,
  but it can never exceed ``log B``: strongly biased low once ``I`` approaches ``log B``.
- NWJ (Nguyen, Wainwright & Jordan 2010): ``mean_i S_ii - mean_{i != j} exp(S_ij - 1)``. Unbiased
  estimate of a valid bound for a fixed critic, but its variance grows like ``exp(I)``.
- MINE (Belghazi et al. 2018): the Donsker–Varadhan bound ``mean_i S_ii - log mean_{i != j} exp(S_ij)``.
  Tighter than NWJ for the same critic, but the log of a mini-batch mean makes its gradient
  biased; MINE corrects it by dividing the gradient of ``mean exp(S)`` by an exponential moving
  average of that mean (``ema`` rate) instead of the batch value. The held-out estimate is itself
  slightly biased (log of a mean, upwards by Jensen) with variance like NWJ's.

All three are lower bounds only up to estimation error: with finite held-out data a reported
value can exceed the truth by sampling noise, and a weak critic under-reports.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..progress import phase, wants_progress
from ..validation import as_tensor, check_choice, check_finite, check_ndim, check_positive_int

__all__ = ["Critic", "DivergenceError", "NeuralMIResult", "neural_mutual_information"]

UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}
METHODS = ("infonce", "nwj", "mine")


def _mlp(dim_in: int, hidden: int, depth: int, dim_out: int) -> nn.Sequential:
    layers, width = [], dim_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, dim_out))
    return nn.Sequential(*layers)


class Critic(nn.Module):
    """Score network ``f(x, y)``.

    ``kind='separable'`` (default): ``f(x, y) = g(x) . h(y)`` with two MLPs into ``embed`` dims, so
    all ``b^2`` pair scores cost two ``b``-row forward passes and one matrix product.
    ``kind='concat'``: one MLP on ``[x, y]`` (more expressive, ``b^2`` forward rows per batch).

    ``forward(x: (b, dx), y: (b, dy)) -> (b,)`` scores matched rows; :meth:`scores` gives all pairs
    ``x: (b, dx), y: (b, dy) -> (b, b)`` with ``S_ij = f(x_i, y_j)``.
    """

    def __init__(self, dim_x: int, dim_y: int, hidden: int = 64, depth: int = 2, *, kind: str = "separable",
                 embed: int = 32):
        super().__init__()
        self.dim_x = check_positive_int(dim_x, "dim_x")
        self.dim_y = check_positive_int(dim_y, "dim_y")
        self.hidden = check_positive_int(hidden, "hidden")
        self.depth = check_positive_int(depth, "depth")
        self.kind = check_choice(kind, "kind", ("separable", "concat"))
        self.embed = check_positive_int(embed, "embed")
        if kind == "concat":
            self.net = _mlp(self.dim_x + self.dim_y, self.hidden, self.depth, 1)
        else:
            self.g = _mlp(self.dim_x, self.hidden, self.depth, self.embed)
            self.h = _mlp(self.dim_y, self.hidden, self.depth, self.embed)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "concat":
            return self.net(torch.cat([x, y], dim=-1)).squeeze(-1)
        return (self.g(x) * self.h(y)).sum(-1)

    def scores(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "separable":
            return self.g(x) @ self.h(y).T
        b = x.shape[0]
        return self(x.unsqueeze(1).expand(b, b, x.shape[1]), y.unsqueeze(0).expand(b, b, y.shape[1]))

    def extra_repr(self) -> str:
        extra = f", embed={self.embed}" if self.kind == "separable" else ""
        return f"dim_x={self.dim_x}, dim_y={self.dim_y}, hidden={self.hidden}, depth={self.depth}, kind={self.kind!r}" \
            + extra


def _off_diagonal(s: torch.Tensor) -> torch.Tensor:
    b = s.shape[0]
    return s.masked_select(~torch.eye(b, dtype=torch.bool, device=s.device))


def _log_mean_exp(v: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(v, 0) - math.log(v.numel())


def bound(scores: torch.Tensor, method: str) -> torch.Tensor:
    """The lower bound (nats) from a ``(b, b)`` score matrix (diagonal = joint pairs), in log space:
    every mean of exponentials is a ``logsumexp``; NWJ's one exponential is of that log-mean (so it
    overflows only when the bound itself is below about -1e38)."""
    diag = scores.diagonal()
    if method == "infonce":
        return (diag - torch.logsumexp(scores, dim=1)).mean() + math.log(scores.shape[0])
    lme = _log_mean_exp(_off_diagonal(scores))
    if method == "nwj":
        return diag.mean() - torch.exp(lme - 1.0)
    return diag.mean() - lme


class DivergenceError(FloatingPointError):
    """Critic training produced a non-finite bound even after the learning rate was lowered."""


@dataclass
class NeuralMIResult:
    """What :func:`neural_mutual_information` returns. ``estimate``: the bound on held-out data.
    ``lr``: the learning rate training ended with (lower than asked when training diverged and
    was restarted, ``restarts`` times, from the last finite state)."""

    estimate: float
    train_estimate: float
    method: str
    units: str
    n_train: int
    n_test: int
    epochs_run: int
    best_epoch: int | None
    history: list = field(default_factory=list)  # per epoch: train bound (and validation bound)
    lr: float | None = None
    restarts: int = 0

    def __float__(self) -> float:
        return self.estimate


def _evaluate(critic: Critic, x: torch.Tensor, y: torch.Tensor, method: str, batch_size: int) -> float:
    """Mean of the bound over consecutive blocks of ``batch_size`` rows (a smaller last block is
    dropped unless it is the only one), no gradient, scores in float64."""
    n = x.shape[0]
    b = min(batch_size, n)
    with torch.no_grad():
        vals = [float(bound(critic.scores(x[s:s + b], y[s:s + b]).double(), method)) for s in range(0, n - b + 1, b)]
    return float(np.mean(vals))


def _as_2d(v, name: str) -> torch.Tensor:
    t = as_tensor(v.detach().cpu() if isinstance(v, torch.Tensor) else v, name)
    t = t.reshape(-1, 1) if t.dim() == 1 else t
    check_ndim(t, 2, name, "(n, d)")
    t = t.to(torch.float32)
    check_finite(t, name)
    return t


def _robust_scale(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Centre on the training rows' median, scale by their interquartile range / 1.349 (the standard
    deviation for Gaussian columns; the standard deviation where the range is 0)."""
    part = t[rows].double()
    q = torch.quantile(part, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0)
    scale = (q[2] - q[0]) / 1.349
    scale = torch.where(scale > 0, scale, part.std(0)).clamp_min(1e-12)
    return ((t.double() - q[1]) / scale).float()


def _snapshot(model: nn.Module) -> dict:
    return {k: t.detach().clone() for k, t in model.state_dict().items()}


def neural_mutual_information(x, y, method: str = "infonce", *, critic: str = "separable", hidden: int = 64,
                              depth: int = 2, epochs: int = 100, batch_size: int = 128, lr: float = 1e-3,
                              test_fraction: float = 0.3, early_stopping: bool = True, val_fraction: float = 0.2,
                              patience: int = 10, ema: float = 0.01, standardize: bool = True, squash: bool = True,
                              seed: int = 0, units: str = "nats", max_restarts: int = 4,
                              progress: bool | None = None) -> NeuralMIResult:
    """Lower-bound ``I(x; y)`` with a trained critic; ``x: (n, dx)``, ``y: (n, dy)`` (NumPy or torch).

    ``method``: 'infonce', 'nwj' or 'mine' (see the module docstring for each bound's bias and
    variance). The protocol, fixed in advance: the rows are shuffled with ``seed`` and split into
    training and held-out parts (``test_fraction``); with ``early_stopping`` (the default) a further
    ``val_fraction`` of the training part picks the epoch (best validation bound, stopping after
    ``patience`` epochs without improvement) — without it the critic of the last epoch is used,
    which over-fits (on 25-50 dimensional data its held-out bound can fall far below zero). The
    critic (:class:`Critic` of kind ``critic``, ``hidden`` units, ``depth`` layers) is trained with
    Adam (``lr``) for at most ``epochs`` passes over mini-batches of ``batch_size`` pairs; the
    off-diagonal pairs of each batch are the negative samples. ``standardize`` centres each column
    on its training median and scales it by its training interquartile range; ``squash`` then
    applies ``asinh`` (linear near 0, logarithmic in the tails). Both are invertible maps of each
    column, which leave the mutual information unchanged, and keep heavy-tailed samples from
    dominating the critic.

    With ``early_stopping``, the constant critic (bound exactly 0 for all three) competes too:
    when no epoch's critic beats it on the validation split, the estimate is 0 (no information
    found; ``best_epoch`` is None) rather than a held-out value of a critic that validation
    already showed to be worse than nothing.

    Divergence: bounds are computed in log space, but a critic can still blow up (heavy-tailed
    data, large ``lr``). When a training or validation bound is not finite, the epoch is redone
    from the last finite state with half the learning rate (at most ``max_restarts`` times); after
    that a :class:`DivergenceError` names what to change. A NaN estimate is never returned.

    Returns a :class:`NeuralMIResult` whose ``estimate`` is the bound evaluated once on the
    held-out part.
    """
    check_choice(method, "method", METHODS)
    check_choice(units, "units", UNITS)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size", 2)
    patience = check_positive_int(patience, "patience")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts: expected an integer >= 0, got {max_restarts!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
    for name, v in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 < v < 1:
            raise ValueError(f"{name}: expected a fraction in (0, 1), got {v!r}")
    if not 0 < ema <= 1:
        raise ValueError(f"ema: expected a rate in (0, 1], got {ema!r}")
    tx, ty = _as_2d(x, "x"), _as_2d(y, "y")
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {tx.shape[0]} (x) and "
                         f"{ty.shape[0]} (y)")
    n = tx.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    n_test = int(round(test_fraction * n))
    test, train = perm[:n_test], perm[n_test:]
    val = None
    if early_stopping:
        n_val = int(round(val_fraction * len(train)))
        val, train = train[:n_val], train[n_val:]
    for name, part in (("training", train), ("held-out", test), ("validation", val)):
        if part is not None and len(part) < 2:
            raise ValueError(f"n={n} samples leave {len(part)} for the {name} split; need at least 2 — "
                             "use more samples or other fractions")
    if standardize:
        tx, ty = _robust_scale(tx, train), _robust_scale(ty, train)
    if squash:
        tx, ty = torch.asinh(tx), torch.asinh(ty)

    with torch.random.fork_rng(devices=[]):  # seed the critic's initialisation without touching global state
        torch.manual_seed(int(seed))
        model = Critic(tx.shape[1], ty.shape[1], hidden, depth, kind=critic)
    cur_lr, restarts = float(lr), 0
    opt = torch.optim.Adam(model.parameters(), lr=cur_lr)
    log_running = None  # MINE: log of the moving average of mean exp(scores) over negatives
    history, best, best_state, best_epoch, stale = [], -math.inf, None, None, 0
    b = min(batch_size, len(train))
    from tqdm.auto import tqdm

    # a bar on a terminal; in a log, one phase line when training ends (bottlenecks.progress)
    bar = tqdm(total=epochs, disable=not (wants_progress(progress) and sys.stderr.isatty()), desc=f"{method} critic")
    epoch = 0
    while epoch < epochs:
        start_state, start_running = _snapshot(model), log_running
        order = train[torch.randperm(len(train), generator=g)]
        model.train()
        vals, finite = [], True
        for s in range(0, len(order) - b + 1, b):
            idx = order[s:s + b]
            scores = model.scores(tx[idx], ty[idx])
            if method == "mine":
                lme = _log_mean_exp(_off_diagonal(scores))
                d = lme.detach()
                log_running = d if log_running is None else torch.logaddexp(
                    log_running + math.log1p(-ema), d + math.log(ema)) if ema < 1 else d
                # gradient of log E[e^f] estimated as grad E[e^f] / (moving average), in log space
                loss = -(scores.diagonal().mean() - torch.exp(lme - log_running))
                value = scores.diagonal().mean() - lme
            else:
                value = bound(scores, method)
                loss = -value
            if not bool(torch.isfinite(loss)):
                finite = False
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            vals.append(float(value.detach()))
        entry = {"epoch": epoch, "train_bound": float(np.mean(vals)) if vals else math.nan}
        if finite and val is not None:
            model.eval()
            entry["val_bound"] = _evaluate(model, tx[val], ty[val], method, batch_size)
            finite = math.isfinite(entry["val_bound"])
        if finite and not all(bool(torch.isfinite(t).all()) for t in model.parameters()):
            finite = False
        if not finite:  # redo this epoch from its starting state with a smaller step
            if restarts >= max_restarts:
                bar.close()
                raise DivergenceError(
                    f"{method}: critic training diverged (non-finite bound) at epoch {epoch} even at lr={cur_lr:g} "
                    f"after {restarts} restarts at half the step; lower lr, use method='infonce' (its scores are "
                    "normalised per row), or map heavy-tailed columns through a monotone transform such as "
                    "numpy.arcsinh first (mutual information is unchanged by it)")
            restarts += 1
            cur_lr /= 2
            model.load_state_dict(start_state)
            log_running = start_running
            opt = torch.optim.Adam(model.parameters(), lr=cur_lr)
            continue
        if val is not None:
            if entry["val_bound"] > best:
                best, best_epoch, stale = entry["val_bound"], epoch, 0
                best_state = _snapshot(model)
            else:
                stale += 1
        history.append(entry)
        epoch += 1
        bar.update()
        if val is not None and stale >= patience:
            break
    bar.close()
    if not sys.stderr.isatty():
        phase(f"{method} critic: {len(history)} epochs, {restarts} restarts", progress)
    c = UNITS[units]
    if val is not None and best <= 0:  # the constant critic wins on validation: bound 0 everywhere
        return NeuralMIResult(0.0, 0.0, method, units, len(train), len(test), len(history), None, history, cur_lr,
                              restarts)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    estimate = _evaluate(model, tx[test], ty[test], method, batch_size)
    train_est = _evaluate(model, tx[train], ty[train], method, batch_size)
    if not math.isfinite(estimate):
        raise DivergenceError(f"{method}: the held-out bound is not finite ({estimate}) although training stayed "
                              "finite (held-out pairs far outside the training range?); use method='infonce' or map "
                              "heavy-tailed columns through a monotone transform such as numpy.arcsinh first")
    return NeuralMIResult(c * estimate, c * train_est, method, units, len(train), len(test), len(history),
                          best_epoch, history, cur_lr, restarts)
