"""Learners for the continual-learning workbench, all on the same frozen features.

Each learner sees batches ``(x, y)`` one at a time — no task boundaries — through
``fit_batch``, and answers ``predict``. ``prepare(x_unlabelled)`` runs once before the stream
(the key-value bottleneck fits its keys there; the others do nothing). ``represent(x)`` is the
representation its decoder reads (for information measures) and ``codes(x)`` the discrete codes
of the discrete bottlenecks (``None`` for the others).

:func:`fit_until_converged` trains any learner epoch by epoch until its accuracy on held-out
data stops improving (early stopping), and keeps its best epoch.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cluster import nearest
from ..codebook.head import CodebookClassifier
from ..info.heads import VIBClassifier
from ..kv import DiscreteKeyValueBottleneck, KeyValueClassifier
from ..validation import check_positive_int
from .metrics import class_balanced_accuracy

METHODS = ("dkvb", "linear", "mlp", "replay", "vq", "vib")
#: the options :func:`make_learner` knows; each method reads its own
OPTIONS = ("num_codebooks", "keys_per_codebook", "dim_key", "topk", "key_init", "key_epochs", "keys_from", "dkvb_lr",
           "head_lr", "linear_lr", "mlp_lr", "replay_lr", "vq_lr", "vib_lr", "hidden", "buffer_size", "replay_hidden",
           "vq", "vib")


class Learner:
    """The interface every method implements."""

    name = "learner"

    def prepare(self, x_unlabelled: torch.Tensor, shared: dict | None = None) -> None:  # noqa: B027
        """Called once with the unlabelled training inputs before the stream starts. ``shared``
        carries work between runs of the same seed (the bottleneck's fitted keys)."""

    def frozen_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What training reads of ``x`` through the learner's frozen front end, computed once after
        :meth:`prepare` so that many passes over the same rows do not recompute it; ``x`` itself
        for learners without a frozen front end. ``fit_batch`` accepts its rows in place of ``x``'s."""
        return x

    def eval_inputs(self, x: torch.Tensor):
        """What evaluation reads of ``x`` through the frozen front end, computed once for rows that
        are evaluated many times (the test set); ``x`` itself by default. :meth:`predict` accepts
        it, and rows of it (``[idx]``), in place of ``x``."""
        return x

    def fit_batch(self, x: torch.Tensor, y: torch.Tensor) -> float:
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, dim) -> (batch, n_classes)`` (the model's output)."""
        return self.model(x)

    def _batched(self, fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = torch.cat([fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])
        self.model.train(was)
        return out

    def predict(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Class indices ``(n,)`` in eval mode."""
        return self._batched(lambda b: self.logits(b).argmax(1), x, batch_size)

    def represent(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """The representation the decoder reads, ``(n, d_z)`` in eval mode (the logits by default)."""
        return self._batched(self._represent, x, batch_size)

    def _represent(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    def codes(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor | None:
        """Discrete codes ``(n, m)`` int64 of a discrete bottleneck; ``None`` for continuous heads."""
        return None

    def parameters(self) -> list[torch.Tensor]:
        """The trained tensors (what a training step may change)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def state(self) -> dict:
        """A copy of everything :meth:`load_state` restores (the model's state dict)."""
        return copy.deepcopy(self.model.state_dict())

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state)


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

    def _represent(self, x):
        # the MLP's hidden layer; a linear probe has no other representation than its logits
        return self.model[1](self.model[0](x)) if isinstance(self.model, nn.Sequential) else self.model(x)

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


class KeyCandidates:
    """Rows prepared for the DKVB's evaluation (:meth:`DKVBLearner.eval_inputs`): ``candidates``
    ``(n, C, m)`` the nearest keys per head, nearest first, and ``z`` ``(n, C, dim_key)`` the
    projections; indexable by rows like a tensor."""

    def __init__(self, candidates: torch.Tensor, z: torch.Tensor):
        self.candidates, self.z = candidates, z

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, rows) -> KeyCandidates:
        return KeyCandidates(self.candidates[rows], self.z[rows])


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

    def _represent(self, x):
        return self.bottleneck(x)[0].flatten(1)  # the fetched values (batch, C * n_classes)

    def codes(self, x, batch_size: int = 2048):
        return self._batched(lambda b: self.bottleneck.lookup(self.bottleneck.project(b)).flatten(1), x, batch_size)

    def prepare(self, x_unlabelled, shared: dict | None = None):
        key = ("dkvb-keys", tuple(self.bottleneck.keys.shape), self.bottleneck.seed, self.bottleneck.key_init)
        if shared is not None and key in shared:  # the same keys as the stream run of this seed
            self.bottleneck.set_keys(shared[key]).freeze_keys()
            return
        data = self.keys_from if self.keys_from is not None else x_unlabelled
        self.bottleneck.fit_keys(data, epochs=self.key_epochs).freeze_keys()
        if shared is not None:
            shared[key] = self.bottleneck.keys.clone()

    def frozen_inputs(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Key indices ``(n, C, topk)`` (int16 / int32) of ``x: (n, dim)``. The projection and the keys
        are frozen, so a training row selects the same keys on every pass: look them up once (the
        values are all that trains). Training only: at evaluation the untrained keys are masked,
        which changes as training goes on."""
        b = self.bottleneck
        idx = self._batched(lambda rows: b.lookup(b.project(rows)), x, batch_size)
        return idx.to(torch.int16 if b.keys_per_codebook <= 2**15 else torch.int32)

    def eval_inputs(self, x: torch.Tensor, candidates: int = 16, batch_size: int = 2048) -> KeyCandidates:
        """The ``candidates`` nearest keys per head of every row (unmasked, nearest first) and its
        projection. At evaluation the untrained keys are masked, and the nearest trained key is
        the first trained one in that list whenever the list holds one: exact, without a search
        over all keys; the rows whose list holds too few trained keys are searched in full."""
        b = self.bottleneck
        m = min(max(candidates, b.topk), b.keys_per_codebook)
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            z = torch.cat([b.project(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]) if len(x) else \
                x.new_zeros(0, b.num_codebooks, b.dim_key)
            cand = torch.cat([nearest(z[s:s + batch_size], b.keys, k=m)[1] for s in range(0, len(z), batch_size)]) \
                if len(z) else torch.zeros(0, b.num_codebooks, m, dtype=torch.long)
        self.model.train(was)
        return KeyCandidates(cand.to(torch.int16 if b.keys_per_codebook <= 2**15 else torch.int32), z)

    def logits(self, x):
        if not isinstance(x, KeyCandidates):
            return self.model(x)
        b = self.bottleneck
        if self.model.training or not b.mask_untrained:
            idx = x.candidates[..., :b.topk].long()
        else:  # the keys the masked lookup may select
            cand = x.candidates.long()
            allowed = b.eval_mask()[torch.arange(b.num_codebooks).view(1, -1, 1), cand]  # (n, C, m)
            m = cand.shape[-1]
            order = torch.where(allowed, 0, m) + torch.arange(m)  # allowed ones first, nearest first
            first = order.topk(b.topk, dim=-1, largest=False, sorted=True).values
            idx = cand.gather(-1, first % m)
            short = (first >= m).any(-1).any(-1)  # rows with a head whose list holds too few trained keys
            if bool(short.any()):
                idx[short] = b.lookup(x.z[short], masked=True)
        return b.fetch(idx).mean(dim=1)

    def fit_batch(self, x, y) -> float:
        """``x``: features ``(batch, dim)`` or their key indices ``(batch, C, topk)`` from
        :meth:`frozen_inputs` (the same step, without the lookup)."""
        if x.is_floating_point():
            logits = self.model(x)
        else:  # what the bottleneck's forward does after its lookup, in training mode
            b, idx = self.bottleneck, x.long()
            b.record_usage(idx)
            logits = b.fetch(idx).mean(dim=1)  # the non-parametric mean decoder
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([self.bottleneck.values], 1.0)
        self.opt.step()
        return float(loss.detach())


class VQLearner(Learner):
    """The vector-quantised top-k codebook head (:class:`~bottlenecks.codebook.head.CodebookClassifier`)
    trained with Adam on cross-entropy plus the codebook loss."""

    name = "vq"

    def __init__(self, dim: int, n_classes: int, lr: float = 1e-3, seed: int = 0, head_options: dict | None = None):
        self.model = CodebookClassifier(dim, n_classes, seed=seed, **(head_options or {}))
        self.lr = lr
        self.opt = torch.optim.Adam(self.parameters(), lr=lr)

    @torch.no_grad()
    def prepare(self, x_unlabelled, shared: dict | None = None):
        # codes from k-means over (up to 4,096 of) the projected unlabelled inputs, as the DKVB fits its
        # keys, rather than over the first batch, which in a stream holds the first task's classes only
        g = torch.Generator().manual_seed(self.model.seed)
        pick = torch.randperm(len(x_unlabelled), generator=g)[:4096]
        self.model.codebook.init_codes(self.model.project(x_unlabelled[pick]))

    def logits(self, x):
        return self.model(x)[0]

    def _represent(self, x):
        return self.model.quantise(x)[0]

    def codes(self, x, batch_size: int = 2048):
        return self._batched(lambda b: self.model.quantise(b)[1].sort(dim=1).values, x, batch_size)

    def fit_batch(self, x, y) -> float:
        logits, _, codebook_loss = self.model(x)
        loss = self.model.loss(logits, y, codebook_loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


class VIBLearner(Learner):
    """The variational-information-bottleneck head (:class:`~bottlenecks.info.heads.VIBClassifier`)
    trained with Adam on ``CE + beta * KL``."""

    name = "vib"

    def __init__(self, dim: int, n_classes: int, lr: float = 1e-3, seed: int = 0, head_options: dict | None = None):
        self.model = VIBClassifier(dim, n_classes, seed=seed, **(head_options or {}))
        self.lr = lr
        self.opt = torch.optim.Adam(self.parameters(), lr=lr)

    def logits(self, x):
        return self.model(x)[0]

    def _represent(self, x):
        return self.model.encode(x)[0]  # mu in eval mode

    def fit_batch(self, x, y) -> float:
        logits, kl = self.model(x)
        loss = self.model.loss(logits, y, kl)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def state(self) -> dict:
        return {"model": super().state(), "generator": self.model.generator.get_state()}

    def load_state(self, state: dict) -> None:
        super().load_state(state["model"])
        self.model.generator.set_state(state["generator"])


def fit_until_converged(learner: Learner, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor,
                        y_val: torch.Tensor, *, batch_size: int = 256, max_epochs: int = 100, patience: int = 3,
                        min_epochs: int = 1, seed: int = 0, extra: dict | None = None, on_step=None) -> dict:
    """Train ``learner`` on ``(x, y)`` in shuffled mini-batches, one epoch at a time, until the
    class-balanced accuracy on ``(x_val, y_val)`` has not improved for ``patience`` epochs (or
    ``max_epochs``); then restore the state of the best epoch (early stopping). It trains at least
    ``min_epochs``: a head learning new classes next to old ones can sit at zero accuracy on them
    for a few epochs before its new logits overtake the old (a plateau, not convergence).

    ``extra``: more per-sample tensors passed to ``fit_batch`` by keyword, indexed like ``x`` (a
    concept head's concept labels). ``on_step(idx, loss)`` runs after every step. Shuffling is
    drawn from ``seed``. Returns ``{"epochs", "best_epoch", "val_accuracy", "history", "steps"}``.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    max_epochs = check_positive_int(max_epochs, "max_epochs")
    patience = check_positive_int(patience, "patience")
    min_epochs = check_positive_int(min_epochs, "min_epochs")
    if len(x) != len(y) or len(x_val) != len(y_val):
        raise ValueError(f"expected one label per row, got {len(x)} rows / {len(y)} labels for training and "
                         f"{len(x_val)} / {len(y_val)} for validation")
    if len(x_val) == 0:
        raise ValueError("x_val: expected held-out samples to stop on, got none")
    g = torch.Generator().manual_seed(int(seed))
    y_val_np = np.asarray(y_val)
    best, best_epoch, best_state, since, history, steps = -1.0, 0, None, 0, [], 0
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch_size):
            idx = order[s:s + batch_size]
            loss = learner.fit_batch(x[idx], y[idx], **{k: v[idx] for k, v in (extra or {}).items()})
            steps += 1
            if on_step is not None:
                on_step(idx, loss)
        acc = class_balanced_accuracy(y_val_np, learner.predict(x_val).numpy())
        history.append(acc)
        if acc > best:
            best, best_epoch, best_state, since = acc, epoch, learner.state(), 0
        else:
            since += 1
            if since >= patience and epoch >= min_epochs:
                break
    learner.load_state(best_state)
    return {"epochs": len(history), "best_epoch": best_epoch, "val_accuracy": best, "history": history,
            "steps": steps}


def make_learner(name: str, dim: int, n_classes: int, seed: int = 0, **options) -> Learner:
    """``'dkvb'``, ``'linear'``, ``'mlp'``, ``'replay'``, ``'vq'`` or ``'vib'`` with their options
    (``head_lr`` or per method ``linear_lr`` / ``mlp_lr`` / ``replay_lr`` / ``vq_lr`` / ``vib_lr``,
    ``dkvb_lr``, ``hidden``, ``buffer_size``, ``num_codebooks``, ``keys_per_codebook``, ``vq`` and
    ``vib``: dicts of head options, e.g. ``{"num_codes": 256, "k": 8}``, ``{"beta": 1e-3}``). An unknown
    option is an error (a typo must not silently build the default bottleneck)."""
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
    if name == "vq":
        return VQLearner(dim, n_classes, lr=lr, seed=seed, head_options=options.get("vq"))
    if name == "vib":
        return VIBLearner(dim, n_classes, lr=lr, seed=seed, head_options=options.get("vib"))
    raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
