"""Concept-to-class heads. Each maps standardised concept scores s (n, C) to class logits (n, K) as

    logits = features(s) @ weight.T + bias        features: (n, C) -> (n, C), weight: (K, C)

so interventions (which change s) and global edits (which scale entries of ``weight``) work the
same way for every head.

- :class:`LinearHead`: dense softmax regression (L2), trained with L-BFGS.
- :class:`GLMHead`: sparse elastic-net GLM fitted along a path by GLM-SAGA (:mod:`.glm`); lambda
  chosen by validation accuracy or by a target number of concepts per class.
- :class:`LaBoHead`: LaBo's class-concept association: ``weight = scale * softmax(A, dim=1)``,
  initialised from a class-of-concept prior.
- :class:`SparseGumbelHead`: Sparse-CBM: a concept layer (per-concept scale, or a full C x C map),
  then a Gumbel-softmax over concepts (noisy while training, plain softmax at inference), then a
  linear class layer; the temperature is learned too. Its docstring states how it differs from the paper.
- :class:`ResidualHead`: PCBM-h: a linear map Z (n, d) -> (n, K) added to the frozen concept head's
  logits and fitted on what the concepts leave unexplained.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import track
from .glm import SELECTION_RULES, elastic_net_path, select_lambda, small_op_threads

__all__ = ["GLMHead", "LaBoHead", "LinearHead", "ResidualHead", "SparseGumbelHead", "make_head"]


class _Head(nn.Module):
    """Base: ``forward(s) = features(s) @ weight.T + bias``; subclasses define the three parts and fit."""

    def __init__(self, n_concepts: int, n_classes: int):
        super().__init__()
        self.n_concepts, self.n_classes = int(n_concepts), int(n_classes)

    def features(self, s: torch.Tensor) -> torch.Tensor:
        return s

    @property
    def weight(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def bias(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """s: (n, C) -> logits (n, K)."""
        return self.features(s) @ self.weight.T + self.bias

    def config(self) -> dict:
        return {"n_concepts": self.n_concepts, "n_classes": self.n_classes}

    def extra_repr(self) -> str:
        return f"n_concepts={self.n_concepts}, n_classes={self.n_classes}"


def _lbfgs(params, loss_fn, max_iter: int) -> None:
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss_fn()
        value.backward()
        return value

    with small_op_threads(sum(p.numel() for p in opt.param_groups[0]["params"]) * 1000):
        opt.step(closure)


def _adam(params, loss_fn, epochs: int, lr: float, progress: bool | None, desc: str) -> list[float]:

    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    with small_op_threads(sum(p.numel() for p in opt.param_groups[0]["params"]) * 1000):
        for _ in track(range(epochs), desc, progress=progress, leave=False):
            opt.zero_grad()
            value = loss_fn()
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
    return losses


class LinearHead(_Head):
    """Dense softmax regression on concepts, penalty ``l2 / 2 * |W|^2``."""

    def __init__(self, n_concepts: int, n_classes: int, l2: float = 1e-3, max_iter: int = 500):
        super().__init__(n_concepts, n_classes)
        self.l2, self.max_iter = float(l2), int(max_iter)
        self.linear = nn.Linear(n_concepts, n_classes, dtype=torch.float64)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias

    def fit(self, S, y, *, S_val=None, y_val=None, seed: int = 0, progress: bool | None = None) -> LinearHead:
        _lbfgs(self.parameters(), lambda: F.cross_entropy(self(S), y) + 0.5 * self.l2 * (self.weight ** 2).sum(),
               self.max_iter)
        return self

    def config(self) -> dict:
        return {**super().config(), "l2": self.l2, "max_iter": self.max_iter}


class GLMHead(_Head):
    """Sparse elastic-net GLM (GLM-SAGA path). ``target_per_class`` picks lambda by sparsity, else
    ``selection`` by validation accuracy: ``'1se'`` (default) the sparsest lambda within one binomial
    standard error of the best, ``'best'`` the sparsest best (see :func:`.glm.select_lambda`), either
    widened by ``tolerance``. The solver, not autograd, fits it, so ``weight_``/``bias_`` are
    buffers; ``path_`` summarises the path."""

    def __init__(self, n_concepts: int, n_classes: int, alpha: float = 0.99, n_lambdas: int = 20,
                 lambda_min_ratio: float = 1e-3, target_per_class: float | None = None, tolerance: float = 0.0,
                 batch_size: int | None = None, max_epochs: int = 1000, selection: str = "1se"):
        super().__init__(n_concepts, n_classes)
        if selection not in SELECTION_RULES:
            raise ValueError(f"selection: expected one of {list(SELECTION_RULES)}, got {selection!r}")
        self.selection = selection
        self.alpha, self.n_lambdas, self.lambda_min_ratio = float(alpha), int(n_lambdas), float(lambda_min_ratio)
        self.target_per_class, self.tolerance = target_per_class, float(tolerance)
        self.batch_size, self.max_epochs = batch_size, int(max_epochs)
        self.register_buffer("weight_", torch.zeros(n_classes, n_concepts, dtype=torch.float64))
        self.register_buffer("bias_", torch.zeros(n_classes, dtype=torch.float64))

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_

    @property
    def bias(self) -> torch.Tensor:
        return self.bias_

    def fit(self, S, y, *, S_val=None, y_val=None, seed: int = 0, progress: bool | None = None) -> GLMHead:
        path = elastic_net_path(S, y, alpha=self.alpha, n_lambdas=self.n_lambdas,
                                lambda_min_ratio=self.lambda_min_ratio, n_classes=self.n_classes, X_val=S_val,
                                y_val=y_val, batch_size=self.batch_size, max_epochs=self.max_epochs, seed=seed,
                                progress=progress)
        i = select_lambda(path, rule=self.selection, target_per_class=self.target_per_class,
                          tolerance=self.tolerance)
        self.weight_.copy_(path[i]["weight"])
        self.bias_.copy_(path[i]["bias"])
        self.chosen_ = i
        self.path_ = [{k: v for k, v in e.items() if k not in ("weight", "bias")} for e in path]
        return self

    def config(self) -> dict:
        return {**super().config(), "alpha": self.alpha, "n_lambdas": self.n_lambdas,
                "lambda_min_ratio": self.lambda_min_ratio, "target_per_class": self.target_per_class,
                "tolerance": self.tolerance, "batch_size": self.batch_size, "max_epochs": self.max_epochs,
                "selection": self.selection}


class LaBoHead(_Head):
    """LaBo's association head: ``weight = scale * softmax(A, dim=1)`` (K, C), no bias.

    ``class_of_concept`` (C,) ints, when given, initialises A to ``prior_strength`` where concept
    j was generated for class k and 0 elsewhere (LaBo's language prior); else A = 0 (uniform).
    """

    def __init__(self, n_concepts: int, n_classes: int, class_of_concept=None, prior_strength: float = 1.0,
                 epochs: int = 300, lr: float = 0.05, l2: float = 1e-4):
        super().__init__(n_concepts, n_classes)
        self.prior_strength, self.epochs, self.lr, self.l2 = float(prior_strength), int(epochs), float(lr), float(l2)
        prior = torch.zeros(n_classes, n_concepts, dtype=torch.float64)
        if class_of_concept is not None:
            cls = torch.as_tensor(class_of_concept, dtype=torch.long)
            if cls.shape != (n_concepts,) or int(cls.min()) < 0 or int(cls.max()) >= n_classes:
                raise ValueError(f"class_of_concept: expected ({n_concepts},) ints in 0..{n_classes - 1}, "
                                 f"got shape {tuple(cls.shape)}")
            prior[cls, torch.arange(n_concepts)] = self.prior_strength
        self.register_buffer("prior", prior)
        self.association = nn.Parameter(torch.empty(n_classes, n_concepts, dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.empty((), dtype=torch.float64))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.association.copy_(self.prior)
            self.log_scale.fill_(math.log(self.n_concepts))

    @property
    def weight(self) -> torch.Tensor:
        return self.log_scale.exp() * torch.softmax(self.association, dim=1)

    @property
    def bias(self) -> torch.Tensor:
        return torch.zeros(self.n_classes, dtype=self.association.dtype)

    def fit(self, S, y, *, S_val=None, y_val=None, seed: int = 0, progress: bool | None = None) -> LaBoHead:
        self.fit_losses_ = _adam(self.parameters(), lambda: F.cross_entropy(self(S), y)
                                 + self.l2 * (self.association ** 2).sum(), self.epochs, self.lr, progress, "labo head")
        return self

    def config(self) -> dict:
        return {**super().config(), "prior_strength": self.prior_strength, "epochs": self.epochs, "lr": self.lr,
                "l2": self.l2}


class SparseGumbelHead(_Head):
    """Sparse-CBM head: a trained concept layer, a Gumbel-softmax over concepts, a linear class layer:

        h = softmax((u(s) + c + g) / tau)        logits = h @ W^T + b

    with Gumbel(0, 1) noise g while training only (plain softmax at inference) and ``tau`` learned.
    ``concept_layer`` picks u (C) -> (C):

    - ``'diagonal'`` (default): ``u(s) = a * s``, one scale per concept (``concept_scale`` (C,)),
      so feature j stays concept j's own score.
    - ``'full'``: ``u(s) = s @ M^T``, a full linear map (``concept_map`` (C, C), initialised to the
      identity) -- the form of Sparse-CBM's concept bottleneck layer, which the authors' public code
      applies (bias-free, C -> C) to CLIP's image-concept similarities, i.e. to concept scores as here.

    How this differs from Semenov et al. (2024), precisely: (1) the head sees concept scores (n, C),
    not the embedding; a map from the embedding Z (n, d) trained end to end with this head is
    ``ConceptBottleneckModel(training='joint', head='sparse')``, whose label scorer's (C, d) map is
    optimised together with the head (the composition is the paper's linear CBL on Z, plus the
    concept-label loss). (2) The paper uses the Gumbel-softmax in the concept layer's contrastive
    training objective, with the class layer reading the layer's outputs; here the Gumbel-softmax is
    in the forward path during training and the class layer reads the softmax, trained by
    cross-entropy only. (3) No L1 penalty on the concept layer (``l2`` acts on the class weights).

    Parameter groups, all trained: the concept layer (``concept_scale`` or ``concept_map``,
    ``concept_shift`` c (C,)), the class layer (``class_weight`` W (K, C), ``class_bias`` b (K,)) and
    ``log_temperature``. ``fit(seed=...)`` re-initialises them with a generator seeded from ``seed``
    (the class weights' random init) and draws the Gumbel noise from that generator.
    """

    CONCEPT_LAYERS = ("diagonal", "full")

    def __init__(self, n_concepts: int, n_classes: int, temperature: float = 1.0, epochs: int = 300,
                 lr: float = 0.05, l2: float = 1e-4, concept_layer: str = "diagonal"):
        super().__init__(n_concepts, n_classes)
        if concept_layer not in self.CONCEPT_LAYERS:
            raise ValueError(f"concept_layer: expected one of {list(self.CONCEPT_LAYERS)}, got {concept_layer!r}")
        self.temperature, self.epochs, self.lr, self.l2 = float(temperature), int(epochs), float(lr), float(l2)
        self.concept_layer = concept_layer
        if concept_layer == "full":
            self.concept_map = nn.Parameter(torch.empty(n_concepts, n_concepts, dtype=torch.float64))
        else:
            self.concept_scale = nn.Parameter(torch.empty(n_concepts, dtype=torch.float64))
        self.concept_shift = nn.Parameter(torch.empty(n_concepts, dtype=torch.float64))
        self.log_temperature = nn.Parameter(torch.empty((), dtype=torch.float64))
        self.class_weight = nn.Parameter(torch.empty(n_classes, n_concepts, dtype=torch.float64))
        self.class_bias = nn.Parameter(torch.empty(n_classes, dtype=torch.float64))
        self._noise: torch.Generator | None = None  # set during fit: training draws Gumbel noise
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Concept layer at the identity, no shift, ``tau = temperature``, zero class bias; class
        weights ~ N(0, 0.01^2) from ``generator`` (zeros without one: no hidden seed)."""
        with torch.no_grad():
            if self.concept_layer == "full":
                self.concept_map.copy_(torch.eye(self.n_concepts, dtype=torch.float64))
            else:
                self.concept_scale.fill_(1.0)
            self.concept_shift.zero_()
            self.log_temperature.fill_(math.log(self.temperature))
            if generator is None:
                self.class_weight.zero_()
            else:
                self.class_weight.copy_(torch.randn(self.n_classes, self.n_concepts, generator=generator,
                                                    dtype=torch.float64) * 0.01)
            self.class_bias.zero_()

    def features(self, s: torch.Tensor) -> torch.Tensor:
        """s (n, C) -> h (n, C), rows on the simplex."""
        u = s @ self.concept_map.T if self.concept_layer == "full" else self.concept_scale * s
        logits = u + self.concept_shift
        if self._noise is not None:  # Gumbel(0, 1) noise, from our own generator (F.gumbel_softmax has none)
            g = torch.rand(logits.shape, generator=self._noise, dtype=logits.dtype).clamp(1e-12, 1 - 1e-12)
            logits = logits - torch.log(-torch.log(g))
        return torch.softmax(logits / self.log_temperature.exp(), dim=1)

    @property
    def weight(self) -> torch.Tensor:
        return self.class_weight

    @property
    def bias(self) -> torch.Tensor:
        return self.class_bias

    def fit(self, S, y, *, S_val=None, y_val=None, seed: int = 0, progress: bool | None = None) -> SparseGumbelHead:
        g = torch.Generator().manual_seed(int(seed))
        self.reset_parameters(g)  # the caller's seed, not a fixed one, draws the initial class weights
        self._noise = g
        try:
            self.fit_losses_ = _adam(self.parameters(), lambda: F.cross_entropy(self(S), y)
                                     + self.l2 * (self.class_weight ** 2).sum(), self.epochs, self.lr, progress,
                                     "sparse-cbm head")
        finally:
            self._noise = None
        return self

    def config(self) -> dict:
        return {**super().config(), "temperature": self.temperature, "epochs": self.epochs, "lr": self.lr,
                "l2": self.l2, "concept_layer": self.concept_layer}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, concept_layer={self.concept_layer!r}"


class ResidualHead(nn.Module):
    """PCBM-h residual: Z (n, d) -> (n, K) linear, fitted with the concept head frozen on
    ``CE(concept_logits + residual(Z), y) + l2 / 2 * |R|^2``."""

    def __init__(self, dim: int, n_classes: int, l2: float = 1e-2, max_iter: int = 300):
        super().__init__()
        self.dim, self.n_classes, self.l2, self.max_iter = int(dim), int(n_classes), float(l2), int(max_iter)
        self.linear = nn.Linear(dim, n_classes, dtype=torch.float64)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        return self.linear(Z)

    def fit(self, Z, concept_logits, y) -> ResidualHead:
        base = concept_logits.detach()
        _lbfgs(self.parameters(), lambda: F.cross_entropy(base + self(Z), y)
               + 0.5 * self.l2 * (self.linear.weight ** 2).sum(), self.max_iter)
        return self

    def config(self) -> dict:
        return {"dim": self.dim, "n_classes": self.n_classes, "l2": self.l2, "max_iter": self.max_iter}

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_classes={self.n_classes}, l2={self.l2}"


HEADS = {"linear": LinearHead, "glm": GLMHead, "labo": LaBoHead, "sparse": SparseGumbelHead}


def make_head(name: str, n_concepts: int, n_classes: int, **params) -> _Head:
    """Build the head registered as ``name`` (``linear``, ``glm``, ``labo``, ``sparse``)."""
    if name not in HEADS:
        raise ValueError(f"head: expected one of {sorted(HEADS) + ['energy']}, got {name!r}")
    return HEADS[name](n_concepts, n_classes, **params)
