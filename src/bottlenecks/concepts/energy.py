"""Energy-based concept bottleneck model (ECBM; Xu et al., ICLR 2024) on embeddings.

Three energies, low energy = compatible:

- class energy    ``E_class(x, y) = -a_y(x)``                  (an MLP on the embedding),
- concept energy  ``E_concept(x, c) = sum_k softplus(s_k(x)) - c_k s_k(x)``  (so ``p(c_k | x) = sigmoid(s_k)``),
- global energy   ``E_global(c, y) = -g_y(c)``,  ``g(c) = b + theta c + h(c)``  (class prior, one weight per
  class and concept, and a small MLP ``h`` for interactions between concepts).

Training minimises negative log-likelihoods of the labelled data:

- ``E_global``: softmax cross-entropy of the class given the true concepts (the paper's loss), plus
  the likelihood of the concepts given the class (exact over all ``2**K`` states up to
  ``exact_max`` concepts, the pseudo-likelihood ``sum_k log p(c_k | c_-k, y)`` beyond), so that
  ``p(c | y) ∝ exp(-E_global(c, y))`` matches the data and :meth:`EnergyCBM.class_concept_proba`
  answers "how likely is concept k for class y";
- ``E_concept``: binary cross-entropy;
- ``E_class``: with ``class_loss='residual'`` (the default), softmax cross-entropy of the class
  under the total energy with the true concepts clamped, ``p(y | x, c) ∝ exp(-E_class(x, y) -
  lambda_g E_global(c, y))``, with ``E_global`` held fixed: the class energy learns what the concepts
  do not explain, so clamping the true concepts decides the class. ``class_loss='paper'`` trains
  ``E_class`` as a classifier of its own, as the paper does; overfit, it can outvote true concepts.

Inference minimises the total energy ``E_class + lambda_c E_concept + lambda_g E_global`` over
relaxed concepts ``c = sigmoid(l)`` in [0, 1] with the class summed out (softmax), i.e. the
mean-field free energy ``lambda_c E_concept(x, c) - H(c) - log sum_y exp(-E_class(x, y) - lambda_g
E_global(c, y))``. Its stationary point is the fixed point ``l = lambda_c s(x) + d/dc log sum_y
exp(a_y + lambda_g g_y(c))``, iterated with damping: the evidence from the image plus what the
likely classes say about each concept. No step thresholds the concepts, so the class prediction is
differentiable in every energy (``infer(..., differentiable=True)``). Known concepts are clamped to
their values during the iterations: that is an intervention, and it moves the class through the
global energy. (The interaction MLP is evaluated at the relaxed concepts, the usual mean-field
approximation; the rest of the total energy is linear in c, where the approximation is exact.)

Global edits (:meth:`EnergyCBM.edit_concepts`) scale how much a concept counts for a class in the
global energy; a removed concept is read at its training mean. ``fit(..., concept_data=(Zc, Cc))``
learns the concept energy on a separate concept-annotation set, as PCBM learns its concept vectors.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..checkpoint import Checkpointable, corrupt, load_state, read_legacy_pair
from ..progress import track
from ..threads import small_op_threads
from ..validation import (
    as_tensor,
    check_choice,
    check_finite,
    check_float,
    check_ndim,
    check_nonempty,
    check_positive_int,
)

__all__ = ["EnergyCBM"]


def _threads(numel: int, num_threads: int | None = None):
    """``num_threads`` threads if given, else one while the ops are small: training takes thousands
    of steps of microsecond ops (:func:`bottlenecks.threads.small_op_threads`)."""
    return small_op_threads(numel, num_threads)


def _uniform_(t: torch.Tensor, bound: float, g: torch.Generator) -> None:
    with torch.no_grad():
        t.uniform_(-bound, bound, generator=g)


class EnergyCBM(nn.Module, Checkpointable):
    """Energy-based CBM: ``Z (n, dim_in) -> concepts (n, n_concepts), classes (n, n_classes)``.

    Args:
        dim_in, n_concepts, n_classes: sizes.
        hidden: width of the shared feature layer the class and concept energies read.
        global_hidden: width of the concept-interaction MLP of the global energy (0: none, then
            ``p(c | y)`` factorises over concepts).
        lambda_concept, lambda_global: weights of the concept and global energies in the total energy
            (and of their losses in training).
        infer_steps, damping: damped fixed-point iterations of the mean-field inference.
        exact_max: :meth:`class_concept_proba` enumerates all ``2**n_concepts`` states up to this many
            concepts and runs a Gibbs sampler beyond; training fits ``p(c | y)`` exactly up to it too.
        class_loss: ``'residual'`` or ``'paper'`` (see the module docstring).
        num_threads: intra-op threads while fitting, inferring and sampling; ``None`` uses one thread
            for small operations and torch's setting otherwise (on a busy machine, 1 is often fastest).
        seed: initial weights and mini-batch order.
    """

    def __init__(self, dim_in: int, n_concepts: int, n_classes: int, hidden: int = 64, *, global_hidden: int = 32,
                 lambda_concept: float = 1.0, lambda_global: float = 1.0, infer_steps: int = 30,
                 damping: float = 0.5, exact_max: int = 12, class_loss: str = "residual", seed: int = 0,
                 num_threads: int | None = None):
        super().__init__()
        self.dim_in = check_positive_int(dim_in, "dim_in")
        self.n_concepts = check_positive_int(n_concepts, "n_concepts")
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        self.hidden = check_positive_int(hidden, "hidden")
        self.global_hidden = check_positive_int(global_hidden, "global_hidden", minimum=0)
        if lambda_concept <= 0 or lambda_global < 0:
            raise ValueError(f"lambda_concept must be > 0 and lambda_global >= 0, "
                             f"got {lambda_concept} and {lambda_global}")
        if not 0 < damping <= 1:
            raise ValueError(f"damping: expected a number in (0, 1], got {damping}")
        self.lambda_concept, self.lambda_global = float(lambda_concept), float(lambda_global)
        self.infer_steps = check_positive_int(infer_steps, "infer_steps", minimum=0)
        self.damping = float(damping)
        self.exact_max = int(exact_max)
        self.class_loss = check_choice(class_loss, "class_loss", ("residual", "paper"))
        self.seed = int(seed)
        self.num_threads = None if num_threads is None else check_positive_int(num_threads, "num_threads")
        self.trunk = nn.Linear(dim_in, hidden)
        self.concept_head = nn.Linear(hidden, n_concepts)  # s(x): concept energy
        self.class_head = nn.Linear(hidden, n_classes)  # a(x): class energy
        self.prior = nn.Parameter(torch.zeros(n_classes))  # b: global energy, class prior
        self.unary = nn.Parameter(torch.zeros(n_classes, n_concepts))  # theta: per class and concept
        self.inter_in = nn.Linear(n_concepts, self.global_hidden) if self.global_hidden else None
        self.inter_out = nn.Linear(self.global_hidden, n_classes) if self.global_hidden else None
        # input standardisation: fixed once fit sees the data, so buffers (saved, not trained)
        self.register_buffer("z_mean", torch.zeros(dim_in))
        self.register_buffer("z_scale", torch.ones(dim_in))
        # global edits: how much concept k counts for class y in the global energy (1: as trained, 0: replaced
        # by its training mean), and that mean; fixed numbers, not trained, so buffers
        self.register_buffer("concept_scale", torch.ones(n_classes, n_concepts))
        self.register_buffer("concept_mean", torch.full((n_concepts,), 0.5))
        self.reset_parameters()

    def config(self) -> dict:
        """The constructor's arguments (JSON-able): ``EnergyCBM(**m.config())`` rebuilds the architecture;
        ``load_state_dict`` then restores the weights and the input standardisation."""
        return {"dim_in": self.dim_in, "n_concepts": self.n_concepts, "n_classes": self.n_classes,
                "hidden": self.hidden, "global_hidden": self.global_hidden, "lambda_concept": self.lambda_concept,
                "lambda_global": self.lambda_global, "infer_steps": self.infer_steps, "damping": self.damping,
                "exact_max": self.exact_max, "class_loss": self.class_loss, "seed": self.seed,
                "num_threads": self.num_threads}

    # save_pretrained(dir) / from_pretrained(dir) come from Checkpointable (model.safetensors + config.json)
    def save(self, path) -> Path:
        """Alias of :meth:`save_pretrained` (``path`` is the folder)."""
        return self.save_pretrained(path)

    @classmethod
    def load(cls, path, device=None) -> EnergyCBM:
        """:meth:`from_pretrained`, which also reads the earlier ``path.safetensors`` + ``path.json``
        layout (loaded in eval mode, as it was)."""
        path = Path(path)
        if path.is_dir():
            return cls.from_pretrained(path, device)
        meta, state = read_legacy_pair(path, cls.__name__)
        meta.pop("class")
        try:
            model = cls(**meta)
        except (TypeError, ValueError) as err:
            raise corrupt(path.with_suffix(".json"), cls.__name__, f"its config is rejected: {err}") from None
        load_state(model, state, path.with_suffix(".safetensors"), cls.__name__)
        return model.to(device).eval() if device is not None else model.eval()

    def reset_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        for lin in (self.trunk, self.concept_head, self.class_head, self.inter_in, self.inter_out):
            if lin is None:
                continue
            bound = 1.0 / math.sqrt(lin.in_features)
            _uniform_(lin.weight, bound, g)
            _uniform_(lin.bias, bound, g)
        with torch.no_grad():
            # the class energy starts at "nothing beyond the concepts": a random head on the shared
            # features (which the concept loss scales up) would add confident noise to every class
            self.class_head.weight.zero_()
            self.class_head.bias.zero_()
            self.prior.zero_()
            self.unary.zero_()
            self.z_mean.zero_()
            self.z_scale.fill_(1.0)
            self.concept_scale.fill_(1.0)
            self.concept_mean.fill_(0.5)

    def extra_repr(self) -> str:
        return (f"dim_in={self.dim_in}, n_concepts={self.n_concepts}, n_classes={self.n_classes}, "
                f"hidden={self.hidden}, global_hidden={self.global_hidden}, lambda_concept={self.lambda_concept}, "
                f"lambda_global={self.lambda_global}, infer_steps={self.infer_steps}, class_loss={self.class_loss!r}")

    # -- energies -----------------------------------------------------------------------------
    def _features(self, Z: torch.Tensor) -> torch.Tensor:
        return F.relu(self.trunk((Z - self.z_mean) / self.z_scale))

    def concept_logits(self, Z: torch.Tensor) -> torch.Tensor:
        """``s(x)``: ``(n, dim_in) -> (n, n_concepts)``; the concept energy is linear in c with slope ``-s``."""
        return self.concept_head(self._features(Z))

    def class_energy(self, Z: torch.Tensor) -> torch.Tensor:
        """``E_class(x, y)`` for every class: ``(n, dim_in) -> (n, n_classes)``."""
        return -self.class_head(self._features(Z))

    def concept_energy(self, Z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``E_concept(x, c) = sum_k softplus(s_k) - c_k s_k``: ``(n, dim_in), (n, K) -> (n,)``."""
        s = self.concept_logits(Z)
        return (F.softplus(s) - c * s).sum(1)

    def global_scores(self, c: torch.Tensor) -> torch.Tensor:
        """``g(c) = -E_global(c, .)``: ``(..., K) -> (..., n_classes)``; c may be relaxed to [0, 1].

        After a global edit (:meth:`edit_concepts`) class y reads ``m + concept_scale[y] * (c - m)``
        (``m``: the training mean of the concepts) in place of ``c``.
        """
        if bool((self.concept_scale == 1).all()):
            out = self.prior + c @ self.unary.T
            if self.inter_in is not None:
                out = out + self.inter_out(torch.tanh(self.inter_in(c)))
            return out
        m = self.concept_mean
        seen = m + self.concept_scale * (c[..., None, :] - m)  # (..., n_classes, K): what each class reads
        out = self.prior + (seen * self.unary).sum(-1)
        if self.inter_in is not None:
            h = self.inter_out(torch.tanh(self.inter_in(seen)))  # (..., n_classes, n_classes)
            out = out + h.diagonal(dim1=-2, dim2=-1)
        return out

    def edit_concepts(self, scale) -> EnergyCBM:
        """Global edit: ``scale (n_classes, n_concepts)`` says how much each concept counts for each class in
        the global energy (0 removes it: the class reads the concept's training mean instead; 1 keeps it).

        The class energy and the concept energy are untouched; ``edit_concepts(torch.ones(...))`` restores
        the trained model exactly. Returns self.
        """
        scale = as_tensor(scale, "scale").to(device=self.concept_scale.device, dtype=self.concept_scale.dtype)
        if scale.shape != self.concept_scale.shape:
            raise ValueError(f"scale: expected shape {tuple(self.concept_scale.shape)} (classes, concepts), "
                             f"got {tuple(scale.shape)}")
        check_finite(scale, "scale")
        if bool((scale < 0).any()):
            raise ValueError("scale: expected values >= 0 (0 removes a concept for a class, 1 keeps it)")
        with torch.no_grad():
            self.concept_scale.copy_(scale)
        return self

    def global_energy(self, c: torch.Tensor) -> torch.Tensor:
        """``E_global(c, y)`` for every class: ``(n, K) -> (n, n_classes)``."""
        return -self.global_scores(c)

    def total_energy(self, Z: torch.Tensor, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``E_class(x, y) + lambda_c E_concept(x, c) + lambda_g E_global(c, y)``: ``-> (n,)``."""
        rows = torch.arange(Z.shape[0], device=Z.device)
        return (self.class_energy(Z)[rows, y] + self.lambda_concept * self.concept_energy(Z, c)
                + self.lambda_global * self.global_energy(c)[rows, y])

    # -- inference ------------------------------------------------------------------------------
    def infer(self, Z, concept_mask=None, concept_values=None, *,
              differentiable: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Minimise the total energy: ``Z (n, dim_in) -> (concepts (n, K) in [0, 1], log p(y | x) (n, n_classes))``.

        ``concept_mask`` (n, K) bool marks known concepts, clamped to ``concept_values`` (n, K) float
        (0/1 labels, or any value in [0, 1]). ``differentiable=True`` keeps the graph through the
        iterations (for training through inference or checking gradients); otherwise no graph is kept.
        """
        Z = self._check_Z(Z)
        mask, values = self._check_intervention(concept_mask, concept_values, Z.shape[0], Z)
        with _threads(Z.shape[0] * max(self.dim_in, self.hidden), self.num_threads), \
                torch.enable_grad() if differentiable else torch.no_grad():
            s = self.concept_logits(Z)
            a = -self.class_energy(Z)
            logits = self.lambda_concept * s  # the concept energy's own minimiser of the free energy
            c = self._clamp(torch.sigmoid(logits), mask, values)
            for _ in range(self.infer_steps):
                pull = self._class_pull(a, c, differentiable)
                logits = (1 - self.damping) * logits + self.damping * (self.lambda_concept * s + pull)
                c = self._clamp(torch.sigmoid(logits), mask, values)
            log_p = torch.log_softmax(a + self.lambda_global * self.global_scores(c), dim=1)
        if not differentiable:
            c, log_p = c.detach(), log_p.detach()
        return c, log_p

    def _class_pull(self, a: torch.Tensor, c: torch.Tensor, differentiable: bool) -> torch.Tensor:
        """``d/dc log sum_y exp(a_y + lambda_g g_y(c))``: what the likely classes say about each concept."""
        if self.lambda_global == 0:
            return torch.zeros_like(c)
        with torch.enable_grad():
            c_in = c if (differentiable and c.requires_grad) else c.detach().requires_grad_(True)
            lse = torch.logsumexp(a + self.lambda_global * self.global_scores(c_in), dim=1).sum()
            (grad,) = torch.autograd.grad(lse, c_in, create_graph=differentiable)
        return grad

    @staticmethod
    def _clamp(c: torch.Tensor, mask, values) -> torch.Tensor:
        return c if mask is None else torch.where(mask, values, c)

    def concept_proba(self, Z, concept_mask=None, concept_values=None) -> torch.Tensor:
        """Inferred concepts: ``(n, dim_in) -> (n, n_concepts)`` in [0, 1] (after joint inference with the class)."""
        return self.infer(Z, concept_mask, concept_values)[0]

    def predict_proba(self, Z, concept_mask=None, concept_values=None) -> torch.Tensor:
        """``p(y | x)`` after inference, with known concepts clamped: ``(n, dim_in) -> (n, n_classes)``."""
        return self.infer(Z, concept_mask, concept_values)[1].exp()

    def predict(self, Z, concept_mask=None, concept_values=None) -> torch.Tensor:
        """Most likely class: ``(n, dim_in) -> (n,)`` int64."""
        return self.infer(Z, concept_mask, concept_values)[1].argmax(1)

    # -- p(c | y) -----------------------------------------------------------------------------------
    @torch.no_grad()
    def class_concept_proba(self, *, method: str = "auto", n_chains: int = 256, n_sweeps: int = 60,
                            burn_in: int = 20, seed: int | None = None) -> torch.Tensor:
        """``p(c_k = 1 | y)`` under ``p(c | y) ∝ exp(-E_global(c, y))``: ``-> (n_classes, n_concepts)``.

        ``method='exact'`` sums over all ``2**n_concepts`` states; ``'gibbs'`` runs ``n_chains``
        chains per class for ``n_sweeps`` sweeps and averages the conditional probabilities of the
        sweeps after ``burn_in`` (Rao-Blackwellised); ``'auto'`` is exact up to ``exact_max`` concepts.
        """
        if method not in ("auto", "exact", "gibbs"):
            raise ValueError(f"method: expected 'auto', 'exact' or 'gibbs', got {method!r}")
        K = self.n_concepts
        if method == "exact" or (method == "auto" and K <= self.exact_max):
            if K > 20:
                raise ValueError(f"method='exact' enumerates 2**{K} states; use method='gibbs' beyond 20 concepts")
            states = self._states()
            weights = torch.softmax(self.global_scores(states), dim=0)  # (2^K, n_classes): p(c | y)
            return weights.T @ states
        if burn_in >= n_sweeps:
            raise ValueError(f"burn_in ({burn_in}) must be smaller than n_sweeps ({n_sweeps})")
        n_chains = check_positive_int(n_chains, "n_chains")
        with _threads(self.n_classes * n_chains * max(self.global_hidden, 1), self.num_threads):
            return self._gibbs(n_chains, n_sweeps, burn_in, self.seed if seed is None else int(seed))

    def _gibbs(self, n_chains: int, n_sweeps: int, burn_in: int, seed: int) -> torch.Tensor:
        """Gibbs sampling of every class's ``p(c | y)``; the interaction MLP's pre-activations are
        updated in place of recomputing them, so one sweep costs ``O(chains * K * global_hidden)``."""
        K, N, dev, dt = self.n_concepts, self.n_classes, self.unary.device, self.unary.dtype
        g = torch.Generator(device="cpu").manual_seed(seed)
        y = torch.arange(N, device=dev).repeat_interleave(n_chains)  # (N * chains,)
        c = (torch.rand(len(y), K, generator=g) < 0.5).to(device=dev, dtype=dt)
        scale, m = self.concept_scale[y], self.concept_mean  # (rows, K): an edited class reads m + scale (c - m)
        theta = self.unary[y] * scale  # (rows, K)
        pre = self.inter_in(m + scale * (c - m)) if self.inter_in is not None else None
        w_out = self.inter_out.weight[y] if self.inter_out is not None else None  # (rows, H)
        total = torch.zeros(len(y), K, dtype=dt, device=dev)
        for sweep in range(n_sweeps):
            for k in range(K):
                delta = theta[:, k]
                if pre is not None:
                    col = scale[:, k:k + 1] * self.inter_in.weight[:, k]  # (rows, H): one unit of c_k, as read
                    on = pre + (1 - c[:, k:k + 1]) * col
                    off = pre - c[:, k:k + 1] * col
                    delta = delta + ((torch.tanh(on) - torch.tanh(off)) * w_out).sum(1)
                p_on = torch.sigmoid(delta)
                new = (torch.rand(len(y), generator=g).to(dev) < p_on).to(dt)
                if pre is not None:
                    pre = pre + (new - c[:, k])[:, None] * col
                c[:, k] = new
                if sweep >= burn_in:
                    total[:, k] += p_on
        return (total / (n_sweeps - burn_in)).view(N, n_chains, K).mean(1)

    # -- training ---------------------------------------------------------------------------------
    def losses(self, Z: torch.Tensor, C: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four training losses on a batch (means): class, concept, global (y | c) and global (c | y)."""
        z = self._features(Z)
        g = self.global_scores(C)
        class_scores = self.class_head(z)
        if self.class_loss == "residual":  # p(y | x, true c) under the total energy; E_global gets no gradient here
            class_scores = class_scores + self.lambda_global * g.detach()
        return {
            "class": F.cross_entropy(class_scores, y),
            "concept": F.binary_cross_entropy_with_logits(self.concept_head(z), C),
            "global_y": F.cross_entropy(g, y),
            "global_c": self._concepts_given_class_nll(C, y),
        }

    def _global_loss(self, C: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.global_scores(C), y) + self._concepts_given_class_nll(C, y)

    def _embedding_loss(self, Z: torch.Tensor, C: torch.Tensor, y: torch.Tensor, Zc: torch.Tensor | None = None,
                        Cc: torch.Tensor | None = None) -> torch.Tensor:
        """Class loss on ``(Z, C, y)``; concept loss on ``(Zc, Cc)`` when given (a concept-annotation set), else
        on ``(Z, C)``."""
        z = self._features(Z)
        class_scores = self.class_head(z)
        if self.class_loss == "residual":
            with torch.no_grad():
                class_scores = class_scores + self.lambda_global * self.global_scores(C)
        zc, Cc = (z, C) if Zc is None else (self._features(Zc), Cc)
        return (F.cross_entropy(class_scores, y)
                + self.lambda_concept * F.binary_cross_entropy_with_logits(self.concept_head(zc), Cc))

    def _states(self) -> torch.Tensor:
        """All ``2**K`` binary concept vectors: ``-> (2**K, K)``."""
        K = self.n_concepts
        bits = torch.arange(2 ** K, device=self.unary.device)
        return ((bits[:, None] >> torch.arange(K, device=bits.device)) & 1).to(self.unary.dtype)

    def _concepts_given_class_nll(self, C: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean ``-log p(c | y)`` per concept: exact (all ``2**K`` states) up to ``exact_max`` concepts, else
        the pseudo-likelihood ``-sum_k log p(c_k | c_-k, y)`` (consistent, but blind to the balance between
        states that differ in two or more concepts when the data fix every single-concept conditional)."""
        if self.n_concepts <= self.exact_max:
            rows = torch.arange(C.shape[0], device=C.device)
            log_z = torch.logsumexp(self.global_scores(self._states()), dim=0)  # (n_classes,)
            return (log_z[y] - self.global_scores(C)[rows, y]).mean() / self.n_concepts
        return F.binary_cross_entropy_with_logits(self._pseudo_logits(C, y), C)

    def _pseudo_logits(self, C: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(c_k = 1 | c_-k, y) - log p(c_k = 0 | c_-k, y) = g_y(c, c_k=1) - g_y(c, c_k=0)``: ``-> (n, K)``."""
        out = self.unary[y]
        if self.inter_in is not None:
            n, K = C.shape
            eye = torch.eye(K, dtype=torch.bool, device=C.device)
            flipped = torch.stack([C[:, None, :].expand(n, K, K).masked_fill(eye, v) for v in (1.0, 0.0)])
            hidden = torch.tanh(self.inter_in(flipped))  # (2, n, K, H)
            # only class y's output is needed (its bias cancels in the difference): (2, n, K)
            h = torch.einsum("snkh,nh->snk", hidden, self.inter_out.weight[y])
            out = out + h[0] - h[1]
        return out

    def fit(self, Z, C, y, *, epochs: int = 100, lr: float = 1e-2, batch_size: int = 256, weight_decay: float = 0.0,
            concept_data=None, progress: bool | None = None) -> EnergyCBM:
        """Train on embeddings ``Z (n, dim_in)``, binary concepts ``C (n, n_concepts)``, classes ``y (n,)``.

        Two stages of ``epochs`` each (Adam, cosine learning-rate decay to 0): first the global energy
        on ``(C, y)`` alone (``global_y + global_c``), then, with it fixed, the embedding's energies
        (``class + lambda_c concept``). Fitting the concept-to-class energy first means the residual
        class energy only learns what the true concepts leave unexplained (see :meth:`losses`).
        ``concept_data=(Zc, Cc)``: learn the concept energy from this concept-annotation set instead
        (PCBM's setting: concept detectors trained where concepts vary independently do not learn to read
        a concept that only correlates with another in the training data); each step then takes one
        batch of it next to the batch of ``(Z, C, y)``.
        Sets ``loss_history_`` (``{"global": [...], "embedding": [...]}``, mean loss per epoch) and
        ``n_samples_seen_``.
        """
        Z = self._check_Z(Z)
        n = Z.shape[0]
        C = self._check_C(C, n, Z)
        y = self._check_y(y, n)
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        self.reset_parameters()
        with torch.no_grad():
            self.z_mean.copy_(Z.mean(0))
            self.z_scale.copy_(Z.std(0, unbiased=False).clamp_min(1e-6) if n > 1 else torch.ones_like(Z[0]))
            self.concept_mean.copy_(C.mean(0))
        self.train()
        if concept_data is not None:
            if not isinstance(concept_data, (tuple, list)) or len(concept_data) != 2:
                raise TypeError("concept_data: expected a pair (Zc (m, dim_in), Cc (m, n_concepts))")
            Zc = self._check_Z(concept_data[0])
            concept_data = (Zc, self._check_C(concept_data[1], Zc.shape[0], Zc))
        history = self._fit_stages(Z, C, y, n, epochs, lr, batch_size, weight_decay, progress, concept_data)
        self.eval()
        self.loss_history_ = history
        self.n_samples_seen_ = n
        return self

    def _fit_stages(self, Z, C, y, n, epochs, lr, batch_size, weight_decay, progress,
                    concept_data=None) -> dict[str, list[float]]:
        g = torch.Generator().manual_seed(self.seed + 1)
        global_params = [self.prior, self.unary] + [p for m in (self.inter_in, self.inter_out) if m is not None
                                                    for p in m.parameters()]
        embedding_params = [p for m in (self.trunk, self.concept_head, self.class_head) for p in m.parameters()]
        b, K, N = min(batch_size, n), self.n_concepts, self.n_classes
        # the largest operand of a step: the flipped concept vectors of the pseudo-likelihood, or all 2**K states
        global_numel = b * K * K * max(self.global_hidden, 1) if K > self.exact_max else max(b, 2 ** K) * N
        with _threads(global_numel, self.num_threads):
            global_history = self._train_stage(global_params, lambda idx: self._global_loss(C[idx], y[idx]),
                                               n, epochs, lr, batch_size, weight_decay, g, progress, "global energy")
        with _threads(b * max(self.dim_in, self.hidden, K, N), self.num_threads):
            embedding_history = self._train_stage(
                embedding_params, self._embedding_batches(Z, C, y, concept_data, batch_size, g),
                n, epochs, lr, batch_size, weight_decay, g, progress, "class/concept energy")
        return {"global": global_history, "embedding": embedding_history}

    def _embedding_batches(self, Z, C, y, concept_data, batch_size: int, g: torch.Generator):
        """``idx -> loss`` of the embedding stage; with a concept set, its batches cycle through seeded permutations."""
        if concept_data is None:
            return lambda idx: self._embedding_loss(Z[idx], C[idx], y[idx])
        Zc, Cc = concept_data
        m, state = Zc.shape[0], {"order": torch.zeros(0, dtype=torch.long), "pos": 0}

        def loss(idx):
            if state["pos"] >= len(state["order"]):
                state["order"], state["pos"] = torch.randperm(m, generator=g).to(Zc.device), 0
            jdx = state["order"][state["pos"]:state["pos"] + batch_size]
            state["pos"] += batch_size
            return self._embedding_loss(Z[idx], C[idx], y[idx], Zc[jdx], Cc[jdx])

        return loss

    def _train_stage(self, params, batch_loss, n, epochs, lr, batch_size, weight_decay, g, progress,
                     desc) -> list[float]:

        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        # cosine decay to 0: the last steps average over mini-batches instead of chasing the last one's
        # frequencies (p(c | y) is fit to the data's class-conditional frequencies)
        steps = epochs * math.ceil(n / batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
        history = []
        for _ in track(range(epochs), f"EnergyCBM {desc}", progress=progress, leave=False):
            order = torch.randperm(n, generator=g).to(self.unary.device)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                loss = batch_loss(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / n)
        return history

    # -- checks -------------------------------------------------------------------------------------
    def _check_Z(self, Z) -> torch.Tensor:
        p = self.unary
        Z = as_tensor(Z, "Z")
        if not Z.is_floating_point():
            Z = Z.to(p.dtype)
        check_float(Z, "Z")
        check_ndim(Z, 2, "Z", "(n, dim_in)")
        check_nonempty(Z, "Z")
        if Z.shape[1] != self.dim_in:
            raise ValueError(f"Z has {Z.shape[1]} features but the model was built for dim_in={self.dim_in}; "
                             "expected embeddings from the same encoder")
        return check_finite(Z.to(device=p.device, dtype=p.dtype), "Z")

    def _check_C(self, C, n: int, Z: torch.Tensor) -> torch.Tensor:
        C = as_tensor(C, "C")
        check_ndim(C, 2, "C", "(n, n_concepts)")
        if C.shape != (n, self.n_concepts):
            raise ValueError(f"C: expected shape ({n}, {self.n_concepts}) (one row per embedding, one column per "
                             f"concept), got {tuple(C.shape)}")
        C = C.to(device=Z.device, dtype=Z.dtype)
        if not bool(((C == 0) | (C == 1)).all()):
            raise ValueError("C: expected binary concept labels (0 or 1)")
        return C

    def _check_y(self, y, n: int) -> torch.Tensor:
        y = as_tensor(y, "y")
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise ValueError("y: expected integer class ids")
        y = y.long().to(self.unary.device)
        check_ndim(y, 1, "y", "(n,)")
        if y.shape[0] != n:
            raise ValueError(f"y: expected {n} labels (one per row of Z), got {y.shape[0]}")
        if int(y.min()) < 0 or int(y.max()) >= self.n_classes:
            raise ValueError(f"y: expected class ids in 0..{self.n_classes - 1}, got {int(y.min())}..{int(y.max())}")
        return y

    def _check_intervention(self, mask, values, n: int, Z: torch.Tensor):
        if mask is None:
            if values is not None:
                raise ValueError("concept_values were given without concept_mask; pass the mask of known concepts")
            return None, None
        if values is None:
            raise ValueError("concept_mask needs concept_values (n, n_concepts) for the known concepts")
        mask = as_tensor(mask, "concept_mask").to(Z.device)
        values = as_tensor(values, "concept_values").to(device=Z.device, dtype=Z.dtype)
        for name, t in (("concept_mask", mask), ("concept_values", values)):
            if t.shape != (n, self.n_concepts):
                raise ValueError(f"{name}: expected shape ({n}, {self.n_concepts}), got {tuple(t.shape)}")
        if mask.dtype != torch.bool:
            raise TypeError(f"concept_mask: expected a bool tensor, got {mask.dtype}")
        if bool(((values < 0) | (values > 1))[mask].any()):
            raise ValueError("concept_values: known concepts must lie in [0, 1]")
        return mask, values
