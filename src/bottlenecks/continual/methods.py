"""Learners for the continual-learning workbench, all on the same frozen features.

Each learner sees batches ``(x, y)`` one at a time — no task boundaries — through
``fit_batch``, and answers ``predict``. ``prepare(x_unlabelled)`` runs once before the stream
(the key-value bottleneck fits its keys there; the others do nothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kv import DiscreteKeyValueBottleneck, KeyValueClassifier

METHODS = ("dkvb", "linear", "mlp", "replay")
#: the options :func:`make_learner` knows; each method reads its own
OPTIONS = ("num_codebooks", "keys_per_codebook", "dim_key", "topk", "key_init", "key_epochs", "keys_from", "dkvb_lr",
           "head_lr", "linear_lr", "mlp_lr", "replay_lr", "hidden", "buffer_size", "replay_hidden")


class Learner:
    """The interface every method implements."""

    name = "learner"

    def prepare(self, x_unlabelled: torch.Tensor, shared: dict | None = None) -> None:  # noqa: B027
        """Called once with the unlabelled training inputs before the stream starts. ``shared``
        carries work between runs of the same seed (the bottleneck's fitted keys)."""

    def fit_batch(self, x: torch.Tensor, y: torch.Tensor) -> float:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        self.model.eval()
        out = torch.cat([self.model(x[s:s + batch_size]).argmax(1) for s in range(0, len(x), batch_size)])
        self.model.train()
        return out


class HeadLearner(Learner):
    """A linear probe or an MLP (one hidden layer) trained by naive fine-tuning with Adam."""

    def __init__(self, dim: int, n_classes: int, hidden: int | None = None, lr: float = 1e-3, seed: int = 0):
        # nn.Linear initialises from torch's global generator: seed a forked copy of it, so the
        # weights depend on ``seed`` alone and the caller's global random state is left untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if hidden:
                self.model = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
                self.name = "mlp"
            else:
                self.model = nn.Linear(dim, n_classes)
                self.name = "linear"
        self.lr = lr
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)

    def fit_batch(self, x, y) -> float:
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


class ReplayLearner(HeadLearner):
    """Naive fine-tuning plus experience replay from a reservoir buffer (Chaudhry et al., 2019):
    every batch is joined by an equal number of stored samples, and the buffer keeps a uniform
    sample of the stream seen so far (reservoir sampling)."""

    def __init__(self, dim: int, n_classes: int, buffer_size: int = 500, hidden: int | None = None,
                 lr: float = 1e-3, seed: int = 0):
        super().__init__(dim, n_classes, hidden=hidden, lr=lr, seed=seed)
        self.name = "replay"
        self.buffer_x = torch.empty(buffer_size, dim)
        self.buffer_y = torch.empty(buffer_size, dtype=torch.long)
        self.seen = 0
        self.g = torch.Generator().manual_seed(seed + 17)

    def fit_batch(self, x, y) -> float:
        stored = min(self.seen, len(self.buffer_x))
        if stored:
            pick = torch.randint(0, stored, (min(len(x), stored),), generator=self.g)
            xb, yb = torch.cat([x, self.buffer_x[pick]]), torch.cat([y, self.buffer_y[pick]])
        else:
            xb, yb = x, y
        loss = super().fit_batch(xb, yb)
        for xi, yi in zip(x, y, strict=True):  # reservoir update
            if self.seen < len(self.buffer_x):
                slot = self.seen
            else:
                slot = int(torch.randint(0, self.seen + 1, (1,), generator=self.g))
            if slot < len(self.buffer_x):
                self.buffer_x[slot], self.buffer_y[slot] = xi, yi
            self.seen += 1
        return loss


class DKVBLearner(Learner):
    """The discrete key-value bottleneck with the non-parametric decoder, trained with the
    paper's defaults (SGD lr 0.3 without momentum, gradient-norm clip 1.0, label smoothing 0.1)."""

    name = "dkvb"

    def __init__(self, dim: int, n_classes: int, num_codebooks: int = 64, keys_per_codebook: int = 512,
                 dim_key: int = 14, topk: int = 1, lr: float = 0.3, key_init: str = "kmeans",
                 key_epochs: int = 5, seed: int = 0, keys_from: torch.Tensor | None = None):
        self.bottleneck = DiscreteKeyValueBottleneck(dim, num_codebooks, keys_per_codebook, dim_key,
                                                     dim_value=n_classes, topk=topk, key_init=key_init, seed=seed)
        self.model = KeyValueClassifier(None, self.bottleneck, decoder="mean")
        self.opt = torch.optim.SGD([self.bottleneck.values], lr=lr, momentum=0.0)
        self.key_epochs, self.keys_from = key_epochs, keys_from

    def prepare(self, x_unlabelled, shared: dict | None = None):
        key = ("dkvb-keys", tuple(self.bottleneck.keys.shape), self.bottleneck.seed, self.bottleneck.key_init)
        if shared is not None and key in shared:  # the same keys as the stream run of this seed
            self.bottleneck.set_keys(shared[key]).freeze_keys()
            return
        data = self.keys_from if self.keys_from is not None else x_unlabelled
        self.bottleneck.fit_keys(data, epochs=self.key_epochs).freeze_keys()
        if shared is not None:
            shared[key] = self.bottleneck.keys.clone()

    def fit_batch(self, x, y) -> float:
        loss = F.cross_entropy(self.model(x), y, label_smoothing=0.1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([self.bottleneck.values], 1.0)
        self.opt.step()
        return float(loss.detach())


def make_learner(name: str, dim: int, n_classes: int, seed: int = 0, **options) -> Learner:
    """``'dkvb'``, ``'linear'``, ``'mlp'`` or ``'replay'`` with their options
    (``head_lr`` or per method ``linear_lr`` / ``mlp_lr`` / ``replay_lr``, ``dkvb_lr``, ``hidden``,
    ``buffer_size``, ``num_codebooks``, ``keys_per_codebook``, ...). An unknown option is an error
    (a typo must not silently build the default bottleneck)."""
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        import difflib

        hints = [f"{k!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, OPTIONS, 1))
                             else "") for k in unknown]
        raise ValueError(f"make_learner: unknown option(s) {', '.join(hints)}; expected some of {sorted(OPTIONS)}")
    if name == "dkvb":
        keys = {k: v for k, v in options.items() if k in ("num_codebooks", "keys_per_codebook", "dim_key", "topk",
                                                          "key_init", "key_epochs", "keys_from")}
        if "dkvb_lr" in options:
            keys["lr"] = options["dkvb_lr"]
        return DKVBLearner(dim, n_classes, seed=seed, **keys)
    lr = options.get(f"{name}_lr", options.get("head_lr", 1e-3))  # per-method (tuned) beats shared
    if name in ("linear", "mlp"):
        return HeadLearner(dim, n_classes, hidden=options.get("hidden", 128) if name == "mlp" else None,
                           lr=lr, seed=seed)
    if name == "replay":
        return ReplayLearner(dim, n_classes, buffer_size=options.get("buffer_size", 500),
                             hidden=options.get("replay_hidden"), lr=lr, seed=seed)
    raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
