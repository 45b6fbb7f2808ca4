"""Concept sources: maps from embeddings Z (n, d) to raw concept scores (n, C).

- :class:`LabelScorer`: one logistic probe per concept, fitted on concept labels (classic CBM).
- :class:`CAVScorer`: concept activation vectors, one linear SVM per concept fitted on positive
  and negative example sets; the score is the signed margin ``(w . z + b) / |w|`` (PCBM).
- :class:`TextScorer`: cosine similarity between Z and given concept text embeddings (E (C, d)
  from any ``encode_text``; Z must live in the same space, e.g. CLIP image and text towers).

Every scorer is linear or cosine in Z, fixed after ``fit``, and reports ``threshold_`` (C,), the
score above which a concept is called present.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import as_tensor, check_finite, check_float, check_ndim, check_nonempty

__all__ = ["CAVScorer", "LabelScorer", "TextScorer", "as_concept_labels", "as_embeddings", "make_scorer",
           "text_scorer"]


def as_embeddings(Z, name: str = "Z", dim: int | None = None) -> torch.Tensor:
    """Array-like (n, d) -> float64 tensor, checked (finite, 2-D, non-empty, width ``dim``)."""
    t = as_tensor(Z, name)
    if not t.is_floating_point():
        t = t.double()
    t = check_float(t, name).double()
    check_ndim(t, 2, name, "(n_samples, dim)")
    check_nonempty(t, name)
    check_finite(t, name)
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name}: expected embeddings of dimension {dim} (as fitted), got shape {tuple(t.shape)}")
    return t


def as_concept_labels(C, n: int, n_concepts: int, name: str = "concept_labels") -> torch.Tensor:
    """Array-like (n, C) of {0, 1} / bool -> float64 tensor of 0/1."""
    t = as_tensor(C, name)
    check_ndim(t, 2, name, "(n_samples, n_concepts)")
    if t.shape != (n, n_concepts):
        raise ValueError(f"{name}: expected shape ({n}, {n_concepts}) (one row per sample, one column per "
                         f"concept), got {tuple(t.shape)}")
    t = t.double()
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name}: expected binary concept labels (0/1 or bool), got values outside {{0, 1}}")
    return t


def _fit_linear(Z: torch.Tensor, T: torch.Tensor, loss: str, l2: float, max_iter: int) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """C independent linear models on (Z, T[:, j]) at once with L-BFGS: (d,) weights and bias per column.

    ``loss='logistic'``: mean BCE; ``'squared_hinge'``: mean max(0, 1 - s t)^2 with t in {-1, 1}
    (the linear SVM's L2 loss). Penalty ``l2 / 2 * |w|^2`` per concept.
    """
    n, d = Z.shape
    W = torch.zeros(T.shape[1], d, dtype=Z.dtype, requires_grad=True)
    b = torch.zeros(T.shape[1], dtype=Z.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        s = Z @ W.T + b
        if loss == "logistic":
            value = F.binary_cross_entropy_with_logits(s, T, reduction="sum") / n
        else:
            value = (1.0 - s * (2 * T - 1)).clamp_min(0).pow(2).sum() / n
        value = value + 0.5 * l2 * (W ** 2).sum()
        value.backward()
        return value

    opt.step(closure)
    return W.detach(), b.detach()


class LabelScorer:
    """One logistic probe per concept: Z (n, d) -> logits (n, C); fitted on concept labels.

    ``l2`` is the ridge penalty per concept (on standardised Z, chosen by the caller).
    """

    kind = "labels"

    def __init__(self, l2: float = 1e-3, max_iter: int = 500):
        self.l2 = float(l2)
        self.max_iter = int(max_iter)

    def fit(self, Z, concept_labels) -> LabelScorer:
        Z = as_embeddings(Z)
        T = as_concept_labels(concept_labels, Z.shape[0], as_tensor(concept_labels).shape[-1])
        self.mean_ = Z.mean(0)
        self.std_ = Z.std(0).clamp_min(1e-8)
        self.weight_, self.bias_ = _fit_linear((Z - self.mean_) / self.std_, T, "logistic", self.l2, self.max_iter)
        self.threshold_ = torch.zeros(T.shape[1], dtype=torch.float64)
        return self

    @property
    def dim_(self) -> int:
        return int(self.weight_.shape[1])

    def scores(self, Z) -> torch.Tensor:
        Z = as_embeddings(Z, dim=self.dim_)
        return ((Z - self.mean_) / self.std_) @ self.weight_.T + self.bias_

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean_, "std": self.std_, "weight": self.weight_, "bias": self.bias_,
                "threshold": self.threshold_}

    def load_state(self, state: dict[str, torch.Tensor]) -> LabelScorer:
        self.mean_, self.std_, self.weight_, self.bias_ = state["mean"], state["std"], state["weight"], state["bias"]
        self.threshold_ = state["threshold"]
        return self

    def config(self) -> dict:
        return {"kind": self.kind, "l2": self.l2, "max_iter": self.max_iter}


class CAVScorer(LabelScorer):
    """Concept activation vectors: per concept a linear SVM (squared hinge, L2) separating positive
    from negative examples; score = signed margin ``(w . z + b) / |w|`` (n, C), with z standardised
    by the training embeddings' per-feature mean and std (raw units for :meth:`fit_sets`).

    Fit from concept labels (positives = label 1) or from explicit example sets with
    :meth:`fit_sets`.
    """

    kind = "cav"

    def fit(self, Z, concept_labels) -> CAVScorer:
        Z = as_embeddings(Z)
        T = as_concept_labels(concept_labels, Z.shape[0], as_tensor(concept_labels).shape[-1])
        self.mean_ = Z.mean(0)
        self.std_ = Z.std(0).clamp_min(1e-8)
        W, b = _fit_linear((Z - self.mean_) / self.std_, T, "squared_hinge", self.l2, self.max_iter)
        norm = W.norm(dim=1).clamp_min(1e-12)
        self.weight_, self.bias_ = W / norm[:, None], b / norm
        self.threshold_ = torch.zeros(T.shape[1], dtype=torch.float64)
        return self

    def fit_sets(self, positives, negatives) -> CAVScorer:
        """positives / negatives: lists (one per concept) of (n_j, d) example embeddings."""
        if len(positives) != len(negatives) or not positives:
            raise ValueError(f"positives and negatives: expected one non-empty example set per concept each, got "
                             f"{len(positives)} and {len(negatives)} sets")
        ws, bs = [], []
        for j, (p, q) in enumerate(zip(positives, negatives, strict=True)):
            p, q = as_embeddings(p, f"positives[{j}]"), as_embeddings(q, f"negatives[{j}]", dim=p.shape[1])
            labels = torch.cat([torch.ones(len(p)), torch.zeros(len(q))]).double()[:, None]
            w, b = _fit_linear(torch.cat([p, q]), labels, "squared_hinge", self.l2, self.max_iter)
            ws.append(w[0] / w[0].norm().clamp_min(1e-12))
            bs.append(b[0] / w[0].norm().clamp_min(1e-12))
        self.weight_, self.bias_ = torch.stack(ws), torch.stack(bs)
        self.mean_ = torch.zeros(self.weight_.shape[1], dtype=torch.float64)
        self.std_ = torch.ones(self.weight_.shape[1], dtype=torch.float64)
        self.threshold_ = torch.zeros(len(ws), dtype=torch.float64)
        return self


class TextScorer:
    """Cosine similarity with concept text embeddings: Z (n, d) -> (n, C) in [-1, 1].

    ``embeddings``: (C, d) from any ``encode_text`` (e.g. ``concepts.text.embed_concepts``).
    ``threshold_`` is set by ``fit`` to each concept's median training score (no labels needed).
    """

    kind = "text"

    def __init__(self, embeddings):
        E = as_embeddings(embeddings, "concept_embeddings")
        self.weight_ = E / E.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @property
    def dim_(self) -> int:
        return int(self.weight_.shape[1])

    def fit(self, Z, concept_labels=None) -> TextScorer:
        self.threshold_ = self.scores(Z).median(0).values
        return self

    def scores(self, Z) -> torch.Tensor:
        Z = as_embeddings(Z, dim=self.dim_)
        return (Z / Z.norm(dim=1, keepdim=True).clamp_min(1e-12)) @ self.weight_.T

    def state(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight_, "threshold": self.threshold_}

    def load_state(self, state: dict[str, torch.Tensor]) -> TextScorer:
        self.weight_, self.threshold_ = state["weight"], state["threshold"]
        return self

    def config(self) -> dict:
        return {"kind": self.kind}


def text_scorer(names, encode_text=None, *, template: str | None = None) -> TextScorer:
    """A :class:`TextScorer` over ``names`` embedded by ``encode_text`` (list of str -> (n, d));
    ``None`` uses :func:`.text.default_text_encoder` (open_clip when asked for, else the offline
    MiniLM). ``template`` (e.g. ``"a photo of a {}"``) is applied to each name first."""
    from .text import default_text_encoder, embed_concepts  # lazy: sentence-transformers is optional

    encode = default_text_encoder() if encode_text is None else encode_text
    return TextScorer(embed_concepts(list(names), encode, template=template).double())


def make_scorer(config: dict, state: dict[str, torch.Tensor] | None = None):
    """Rebuild a scorer from ``config()`` (and ``state()`` when given)."""
    kind = config["kind"]
    if kind == "text":
        if state is None:
            raise ValueError("a text scorer needs its state (the concept embeddings) to be rebuilt")
        return TextScorer(state["weight"]).load_state(state)
    cls = {"labels": LabelScorer, "cav": CAVScorer}[kind]
    scorer = cls(config["l2"], config["max_iter"])
    return scorer.load_state(state) if state is not None else scorer
