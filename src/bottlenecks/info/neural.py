"""Neural variational lower bounds on mutual information: InfoNCE, NWJ and MINE.

A small critic ``f(x, y)`` is trained on a training split to maximise a lower bound; the number
reported is the same bound **evaluated once on held-out data** with the final critic (or, with
``early_stopping``, the critic that scored best on a validation split carved out of the training
data). The held-out data never choose anything, so the estimate is not a maximum over test
evaluations (which would be biased upwards).

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
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..validation import as_tensor, check_choice, check_finite, check_ndim, check_positive_int

__all__ = ["Critic", "NeuralMIResult", "neural_mutual_information"]

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


def bound(scores: torch.Tensor, method: str) -> torch.Tensor:
    """The lower bound (nats) from a ``(b, b)`` score matrix (diagonal = joint pairs)."""
    diag = scores.diagonal()
    if method == "infonce":
        return (diag - torch.logsumexp(scores, dim=1)).mean() + math.log(scores.shape[0])
    off = _off_diagonal(scores)
    if method == "nwj":
        return diag.mean() - torch.exp(off - 1.0).mean()
    return diag.mean() - (torch.logsumexp(off, 0) - math.log(off.numel()))


@dataclass
class NeuralMIResult:
    """What :func:`neural_mutual_information` returns. ``estimate``: the bound on held-out data."""

    estimate: float
    train_estimate: float
    method: str
    units: str
    n_train: int
    n_test: int
    epochs_run: int
    best_epoch: int | None
    history: list = field(default_factory=list)  # per epoch: train bound (and validation bound)

    def __float__(self) -> float:
        return self.estimate


def _evaluate(critic: Critic, x: torch.Tensor, y: torch.Tensor, method: str, batch_size: int) -> float:
    """Mean of the bound over consecutive blocks of ``batch_size`` rows (a smaller last block is
    dropped unless it is the only one), no gradient."""
    n = x.shape[0]
    b = min(batch_size, n)
    with torch.no_grad():
        vals = [float(bound(critic.scores(x[s:s + b], y[s:s + b]), method)) for s in range(0, n - b + 1, b)]
    return float(np.mean(vals))


def _as_2d(v, name: str) -> torch.Tensor:
    t = as_tensor(v.detach().cpu() if isinstance(v, torch.Tensor) else v, name)
    t = t.reshape(-1, 1) if t.dim() == 1 else t
    check_ndim(t, 2, name, "(n, d)")
    t = t.to(torch.float32)
    check_finite(t, name)
    return t


def neural_mutual_information(x, y, method: str = "infonce", *, critic: str = "separable", hidden: int = 64,
                              depth: int = 2, epochs: int = 100, batch_size: int = 128, lr: float = 1e-3,
                              test_fraction: float = 0.3, early_stopping: bool = False, val_fraction: float = 0.2,
                              patience: int = 20, ema: float = 0.01, standardize: bool = True, seed: int = 0,
                              units: str = "nats", quiet: bool = True) -> NeuralMIResult:
    """Lower-bound ``I(x; y)`` with a trained critic; ``x: (n, dx)``, ``y: (n, dy)`` (NumPy or torch).

    ``method``: 'infonce', 'nwj' or 'mine' (see the module docstring for each bound's bias and
    variance). The rows are shuffled with ``seed`` and split into training and held-out parts
    (``test_fraction``); with ``early_stopping`` a further ``val_fraction`` of the training part
    picks the epoch (best validation bound, stopping after ``patience`` epochs without
    improvement). The critic (:class:`Critic` of kind ``critic``, ``hidden`` units, ``depth`` layers) is trained
    with Adam (``lr``) for ``epochs`` passes over mini-batches of ``batch_size`` pairs; the
    off-diagonal pairs of each batch are the negative samples. ``standardize`` centres and
    scales each column with training statistics. Returns a :class:`NeuralMIResult` whose
    ``estimate`` is the bound evaluated once on the held-out part.
    """
    check_choice(method, "method", METHODS)
    check_choice(units, "units", UNITS)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size", 2)
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
        mx, my = tx[train].mean(0), ty[train].mean(0)
        sx = tx[train].std(0).clamp_min(1e-12)
        sy = ty[train].std(0).clamp_min(1e-12)
        tx, ty = (tx - mx) / sx, (ty - my) / sy

    with torch.random.fork_rng(devices=[]):  # seed the critic's initialisation without touching global state
        torch.manual_seed(int(seed))
        model = Critic(tx.shape[1], ty.shape[1], hidden, depth, kind=critic)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    running = None  # MINE's moving average of mean exp(scores) over negatives
    history, best, best_state, best_epoch, stale = [], -math.inf, None, None, 0
    b = min(batch_size, len(train))
    from tqdm.auto import tqdm

    for epoch in tqdm(range(epochs), disable=quiet, desc=f"{method} critic"):
        order = train[torch.randperm(len(train), generator=g)]
        model.train()
        vals = []
        for s in range(0, len(order) - b + 1, b):
            idx = order[s:s + b]
            scores = model.scores(tx[idx], ty[idx])
            if method == "mine":
                off = _off_diagonal(scores)
                mean_exp = torch.exp(off).mean()
                running = float(mean_exp.detach()) if running is None else (1 - ema) * running + ema * float(
                    mean_exp.detach())
                # gradient of log E[e^f] estimated as grad E[e^f] / (moving average): less biased
                loss = -(scores.diagonal().mean() - mean_exp / running)
                value = scores.diagonal().mean() - torch.log(mean_exp)
            else:
                value = bound(scores, method)
                loss = -value
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            vals.append(float(value.detach()))
        entry = {"epoch": epoch, "train_bound": float(np.mean(vals))}
        if val is not None:
            model.eval()
            v = _evaluate(model, tx[val], ty[val], method, batch_size)
            entry["val_bound"] = v
            if v > best:
                best, best_epoch, stale = v, epoch, 0
                best_state = {k: t.clone() for k, t in model.state_dict().items()}
            else:
                stale += 1
        history.append(entry)
        if val is not None and stale >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    c = UNITS[units]
    estimate = _evaluate(model, tx[test], ty[test], method, batch_size)
    train_est = _evaluate(model, tx[train], ty[train], method, batch_size)
    return NeuralMIResult(c * estimate, c * train_est, method, units, len(train), len(test), len(history),
                          best_epoch, history)
