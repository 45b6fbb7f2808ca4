"""``ConceptBottleneckModel``: embeddings -> concept scores -> classes, scikit-learn style.

>>> cbm = ConceptBottleneckModel(concepts=names, scorer="labels", head="glm").fit(Z, y, concept_labels=C)
>>> cbm.predict(Z_test), cbm.concept_scores(Z_test)          # (n,), (n, C)
>>> cbm.intervene(Z_test, ["striped"], C_test[:, [7]])       # (n, K) probabilities
>>> cbm.edit("tinted background").predict(Z_shifted); cbm.undo()

The pipeline, one part per module:

- a *scorer* (:mod:`.sources`) maps Z (n, d) to raw concept scores S (n, C): ``'labels'`` (logistic
  probes on concept labels), ``'cav'`` (linear-SVM margins, PCBM) or ``'text'`` (cosine similarity
  with given concept text embeddings), or a scorer instance;
- the scores are standardised with training statistics and fed to a *head* (:mod:`.heads`):
  ``'glm'`` (sparse elastic net, GLM-SAGA path), ``'linear'``, ``'labo'``, ``'sparse'``
  (Sparse-CBM Gumbel-softmax) or ``'energy'`` (the energy-based CBM, which replaces scorer and head);
- ``residual=True`` adds PCBM-h's residual from Z to the logits.

Training modes for concept labels (classic CBM): ``'independent'`` (head fitted on true concepts,
set to the calibrated on/off values), ``'sequential'`` (head fitted on predicted scores) and
``'joint'`` (probes and a linear head trained together, ``CE + joint_weight * BCE``).

Concept scores used for interventions are calibrated from training percentiles: a concept set to
"present" gets the ``percentiles[1]``-th percentile of its training scores, "absent" the
``percentiles[0]``-th. The scorer may be fitted on separate concept-annotation data
(``concept_data=(Z_c, C_c)``, as PCBM learns its concept vectors from a concept bank).

Two backends sit behind this one interface: the concept-score pipeline above and the energy-based
CBM (``head='energy'``). Whichever fitted it, the model returns the same types: class labels as
NumPy arrays (like ``classes_``, which may hold strings); scores, logits and probabilities
(``predict_proba``, ``intervene``) as float64 tensors; concept decisions as bool tensors.

Fitting and scoring run on ``num_threads`` intra-op threads (default 1, restored afterwards): the
scorers and heads are iterative solvers that turn the thread count's rounding differences into
different weights (and, through a flat validation curve, a different lambda), so pinning it makes
the same seed give the same numbers whatever the caller's thread setting.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    corrupt,
    load_state,
    read_checkpoint,
    read_tensors,
    write_checkpoint,
)
from ..threads import fixed_threads
from ..validation import as_tensor, check_choice, check_ndim
from .edits import apply_edit, describe_edit
from .heads import ResidualHead, make_head
from .sources import CAVScorer, LabelScorer, TextScorer, as_concept_labels, as_embeddings, make_scorer

__all__ = ["ConceptBottleneckModel"]

SCORERS = ("labels", "cav", "text")
TRAINING = ("independent", "sequential", "joint")
FORMAT = "bottlenecks.concepts/1"


def _check_names(concepts) -> list[str]:
    if isinstance(concepts, str):
        raise TypeError(f"concepts: expected a list of concept names, got a single str {concepts!r}")
    names = list(concepts) if concepts is not None else []
    if not names:
        raise ValueError("concepts: expected at least 1 concept name, got an empty concept set")
    bad = [c for c in names if not isinstance(c, str) or not c.strip()]
    if bad:
        raise TypeError(f"concepts: expected non-empty strings, got {bad[0]!r}")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ValueError(f"concepts: expected unique names, got duplicates {dup}")
    return names


class ConceptBottleneckModel:
    """A concept bottleneck on fixed embeddings (see the module docstring for the parts).

    Args:
        concepts: the C concept names (unique, non-empty).
        scorer: ``'labels'``, ``'cav'``, ``'text'`` or a scorer instance (see :mod:`.sources`).
        head: ``'glm'``, ``'linear'``, ``'labo'``, ``'sparse'`` or ``'energy'``.
        residual: add a PCBM-h residual Z -> logits.
        training: ``'independent'``, ``'sequential'`` or ``'joint'`` (label concepts only).
        concept_embeddings: (C, d) text embeddings for ``scorer='text'``.
        class_of_concept: (C,) class each concept was generated for (LaBo's prior).
        groups: ``{group: [concept names]}`` usable wherever concept names are taken.
        scorer_params, head_params, residual_params: keyword arguments of those parts.
        val_fraction: share of the training rows held out to choose the head's lambda (GLM).
        percentiles: (off, on) percentiles of the training scores for interventions.
        seed: every random choice (validation split, mini-batches, Gumbel noise, energy init).
        num_threads: intra-op threads while fitting and scoring (not the energy head, which picks its
            own); the default 1 makes results independent of the caller's thread count, None keeps it.
        progress: progress of the iterative solvers (``bottlenecks.progress``: ``False`` nothing,
            ``None`` a bar on a terminal, ``True`` also plain lines in a log). ``quiet=True`` is the
            earlier spelling of ``progress=False``.
    """

    def __init__(self, concepts, scorer="labels", head: str = "glm", residual: bool = False, *,
                 training: str = "sequential", concept_embeddings=None, class_of_concept=None, groups=None,
                 scorer_params: dict | None = None, head_params: dict | None = None,
                 residual_params: dict | None = None, joint_weight: float = 1.0, joint_epochs: int = 200,
                 val_fraction: float = 0.2, percentiles: tuple[float, float] = (5.0, 95.0), seed: int = 0,
                 num_threads: int | None = 1, progress: bool | None = None, quiet: bool | None = None):
        self.concepts = _check_names(concepts)
        if isinstance(scorer, str):
            check_choice(scorer, "scorer", SCORERS)
        elif not hasattr(scorer, "scores"):
            raise TypeError(f"scorer: expected one of {list(SCORERS)} or a scorer with .scores(Z), got {scorer!r}")
        self.scorer = scorer
        self.head = check_choice(head, "head", ("glm", "linear", "labo", "sparse", "energy"))
        self.residual = bool(residual)
        self.training = check_choice(training, "training", TRAINING)
        self.concept_embeddings = concept_embeddings
        self.class_of_concept = class_of_concept
        self.groups = {str(k): list(v) for k, v in (groups or {}).items()}
        for g, members in self.groups.items():
            unknown = [m for m in members if m not in self.concepts]
            if unknown:
                raise ValueError(f"groups[{g!r}]: unknown concept names {unknown}; known: {self.concepts}")
        self.scorer_params = dict(scorer_params or {})
        self.head_params = dict(head_params or {})
        self.residual_params = dict(residual_params or {})
        self.joint_weight, self.joint_epochs = float(joint_weight), int(joint_epochs)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
        self.val_fraction = float(val_fraction)
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles: expected (off, on) with 0 <= off < on <= 100, got {percentiles!r}")
        self.percentiles = (float(lo), float(hi))
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seed: expected an int, got {seed!r}")
        self.seed = int(seed)
        self.progress = progress if quiet is None else (False if quiet else None)
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral)
                                        or num_threads < 1):
            raise ValueError(f"num_threads: expected an int >= 1 or None, got {num_threads!r}")
        self.num_threads = None if num_threads is None else int(num_threads)

    # -- names -------------------------------------------------------------------------------
    @property
    def n_concepts(self) -> int:
        return len(self.concepts)

    def concept_indices(self, concepts) -> list[int]:
        """Concept names, group names or indices (one or a list) -> sorted unique column indices."""
        items = [concepts] if isinstance(concepts, (str, numbers.Integral)) else list(concepts)
        if not items:
            raise ValueError("concepts: expected at least one concept name, group or index, got none")
        out: list[int] = []
        for c in items:
            if isinstance(c, str):
                if c in self.groups:
                    out.extend(self.concepts.index(m) for m in self.groups[c])
                elif c in self.concepts:
                    out.append(self.concepts.index(c))
                else:
                    raise KeyError(f"unknown concept {c!r}; known concepts: {self.concepts}"
                                   + (f", groups: {sorted(self.groups)}" if self.groups else ""))
            elif isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= int(c) < self.n_concepts:
                out.append(int(c))
            else:
                raise KeyError(f"concept index {c!r} out of range 0..{self.n_concepts - 1}")
        return sorted(set(out))

    def class_indices(self, classes) -> list[int]:
        """Class labels (as in ``classes_``) or class names -> row indices of the head."""
        self._check_fitted()
        items = [classes] if isinstance(classes, (str, numbers.Integral)) else list(classes)
        out = []
        labels = [c.item() if hasattr(c, "item") else c for c in self.classes_.tolist()]
        for c in items:
            if isinstance(c, str) and c in self.class_names_:
                out.append(self.class_names_.index(c))
            elif not isinstance(c, str) and c in labels:
                out.append(labels.index(c))
            else:
                raise KeyError(f"unknown class {c!r}; known classes: {self.class_names_}")
        return sorted(set(out))

    # -- fitting -----------------------------------------------------------------------------
    def _build_scorer(self, Z: torch.Tensor):
        if not isinstance(self.scorer, str):
            return self.scorer
        if self.scorer == "text":
            if self.concept_embeddings is None:
                raise ValueError("scorer='text' needs concept_embeddings (C, d), e.g. from "
                                 "concepts.text.embed_concepts")
            E = as_embeddings(self.concept_embeddings, "concept_embeddings")
            if E.shape[0] != self.n_concepts:
                raise ValueError(f"concept_embeddings: expected one row per concept ({self.n_concepts}), "
                                 f"got shape {tuple(E.shape)}")
            if E.shape[1] != Z.shape[1]:
                raise ValueError(f"concept_embeddings have dimension {E.shape[1]} but Z has dimension {Z.shape[1]}; "
                                 "text scores need image and text embeddings in one space (e.g. CLIP's two towers)")
            return TextScorer(E)
        return (LabelScorer if self.scorer == "labels" else CAVScorer)(**self.scorer_params)

    def fit(self, Z, y, concept_labels=None, *, concept_data=None) -> ConceptBottleneckModel:
        """Z: (n, d) embeddings, y: (n,) class labels, concept_labels: (n, C) in {0, 1}.

        ``concept_data=(Z_c, C_c)``: fit the scorer on these concept-annotated embeddings instead
        of (Z, concept_labels). The head is always fitted on (Z, y).
        """
        Z = as_embeddings(Z)
        y_raw = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
        if y_raw.ndim != 1 or y_raw.shape[0] != Z.shape[0]:
            raise ValueError(f"y: expected {Z.shape[0]} labels of shape ({Z.shape[0]},) (one per row of Z), "
                             f"got shape {y_raw.shape}")
        if y_raw.dtype.kind in "fc" and not np.isfinite(y_raw).all():
            raise ValueError(f"y contains NaN or infinity ({int((~np.isfinite(y_raw)).sum())} labels); "
                             "expected class labels")
        self.classes_, y_idx = np.unique(y_raw, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y: expected at least 2 classes, got {len(self.classes_)}")
        self.class_names_ = [str(c) for c in self.classes_.tolist()]
        y_idx = torch.as_tensor(y_idx, dtype=torch.long)
        self.n_features_in_ = Z.shape[1]
        C_true = None
        if concept_labels is not None:
            C_true = as_concept_labels(concept_labels, Z.shape[0], self.n_concepts)
        self.edit_scale_ = torch.ones(len(self.classes_), self.n_concepts, dtype=torch.float64)
        self.edit_log_: list[dict] = []
        self._undo: list[torch.Tensor] = []
        self._backend.fit(self, Z, y_idx, C_true, concept_data)
        return self

    @property
    def _backend(self):
        return _ENERGY if self.head == "energy" else _SCORES

    def _fit_concept_head(self, Z, y_idx, C_true, concept_data) -> ConceptBottleneckModel:
        # 1. scorer
        scorer = self._build_scorer(Z)
        if not hasattr(scorer, "threshold_"):
            if isinstance(scorer, TextScorer):
                scorer.fit(Z)
            else:
                Zc, Cc = (Z, C_true) if concept_data is None else concept_data
                if Cc is None:
                    raise ValueError(f"scorer={self.scorer!r} needs concept labels: pass concept_labels (n, C) "
                                     "or concept_data=(Z_c, C_c)")
                Zc = as_embeddings(Zc, "concept_data Z", dim=Z.shape[1])
                scorer.fit(Zc, as_concept_labels(Cc, Zc.shape[0], self.n_concepts, "concept_data labels"))
        if scorer.weight_.shape != (self.n_concepts, Z.shape[1]):
            raise ValueError(f"scorer: gives {scorer.weight_.shape[0]} concepts over dimension "
                             f"{scorer.weight_.shape[1]}; expected {self.n_concepts} concepts over Z's {Z.shape[1]}")
        self.scorer_ = scorer
        S = scorer.scores(Z)
        self._calibrate(S)

        # 2. head
        if self.training == "independent":
            if C_true is None:
                raise ValueError("training='independent' fits the head on true concepts: pass concept_labels")
            H = self._standardise((1 - C_true) * self.off_ + C_true * self.on_)
        else:
            H = self._standardise(S)
        params = dict(self.head_params)
        if self.head == "labo" and self.class_of_concept is not None:
            params.setdefault("class_of_concept", self.class_of_concept)
        self.head_ = make_head(self.head, self.n_concepts, len(self.classes_), **params)
        fit_idx, val_idx = self._split(len(y_idx))
        kw = {"seed": self.seed, "progress": self.progress}
        if len(val_idx) and self.head == "glm":
            # lambda is chosen on what the head sees at test time: predicted scores, also when
            # 'independent' fits it on true concepts (those are separable at any lambda)
            kw.update(S_val=self._standardise(S[val_idx]), y_val=y_idx[val_idx])
            self.head_.fit(H[fit_idx], y_idx[fit_idx], **kw)
        else:
            self.head_.fit(H, y_idx, **kw)
        if self.training == "joint":
            self._fit_joint(Z, y_idx, C_true)

        # 3. residual (PCBM-h)
        self.residual_ = None
        if self.residual:
            self.z_mean_, self.z_std_ = Z.mean(0), Z.std(0).clamp_min(1e-8)
            with torch.no_grad():
                base = self._logits_from_scores(self.scorer_.scores(Z), None)
            self.residual_ = ResidualHead(Z.shape[1], len(self.classes_), **self.residual_params)
            self.residual_.fit((Z - self.z_mean_) / self.z_std_, base, y_idx)
        return self

    def _split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.val_fraction == 0 or n < 10:
            return torch.arange(n), torch.arange(0)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_val = max(1, int(round(self.val_fraction * n)))
        return perm[n_val:], perm[:n_val]

    def _calibrate(self, S: torch.Tensor) -> None:
        """Training statistics of the raw scores: standardisation and on/off intervention values."""
        self.score_mean_ = S.mean(0)
        self.score_std_ = S.std(0).clamp_min(1e-8)
        q = torch.tensor([p / 100 for p in self.percentiles], dtype=S.dtype)
        self.off_, self.on_ = torch.quantile(S, q, dim=0)

    def _standardise(self, S: torch.Tensor) -> torch.Tensor:
        return (S - self.score_mean_) / self.score_std_

    def _fit_joint(self, Z: torch.Tensor, y: torch.Tensor, C_true: torch.Tensor | None) -> None:
        """Joint CBM: the label probes and the head trained together (Adam, full batch)."""
        if not isinstance(self.scorer_, LabelScorer) or isinstance(self.scorer_, CAVScorer) or C_true is None:
            raise ValueError("training='joint' needs scorer='labels' and concept_labels")
        if self.head not in ("linear", "labo", "sparse"):
            raise ValueError(f"training='joint' trains the head by gradient: use head='linear', 'labo' or "
                             f"'sparse', got {self.head!r}")
        sc = self.scorer_
        Zs = (Z - sc.mean_) / sc.std_
        W = sc.weight_.clone().requires_grad_(True)
        b = sc.bias_.clone().requires_grad_(True)
        params = [W, b, *self.head_.parameters()]
        opt = torch.optim.Adam(params, lr=0.01)
        for _ in range(self.joint_epochs):
            opt.zero_grad()
            S = Zs @ W.T + b
            loss = F.cross_entropy(self.head_(self._standardise(S)), y)
            loss = loss + self.joint_weight * F.binary_cross_entropy_with_logits(S, C_true)
            loss = loss + 0.5 * sc.l2 * (W ** 2).sum()
            loss.backward()
            opt.step()
        sc.weight_, sc.bias_ = W.detach(), b.detach()
        S = sc.scores(Z)
        mean, std = self.score_mean_, self.score_std_
        self._calibrate(S)
        self.score_mean_, self.score_std_ = mean, std  # the head was trained on this standardisation

    def _fit_energy(self, Z: torch.Tensor, y: torch.Tensor, C_true: torch.Tensor | None,
                    concept_data=None) -> ConceptBottleneckModel:
        from .energy import EnergyCBM

        if C_true is None:
            raise ValueError("head='energy' learns concepts from labels: pass concept_labels (n, C)")
        self.z_mean_, self.z_std_ = Z.mean(0), Z.std(0).clamp_min(1e-8)
        params = dict(self.head_params)
        # head_params holds both constructor and fit() options of EnergyCBM; route each to its place
        fit_kw = {k: params.pop(k) for k in ("epochs", "lr", "batch_size", "weight_decay") if k in params}
        if concept_data is not None:  # PCBM's setting: concept energy learnt on a concept-annotation set
            Zc, Cc = concept_data
            Zc = as_embeddings(Zc, "concept_data Z", dim=Z.shape[1])
            Cc = as_concept_labels(Cc, Zc.shape[0], self.n_concepts, "concept_data labels")
            fit_kw["concept_data"] = (self._z(Zc).float(), Cc.float())
        self.energy_ = EnergyCBM(Z.shape[1], self.n_concepts, len(self.classes_), seed=self.seed, **params)
        self.energy_.fit(self._z(Z).float(), C_true.float(), y, progress=self.progress, **fit_kw)
        self.scorer_, self.head_, self.residual_ = None, None, None
        self.on_ = torch.ones(self.n_concepts, dtype=torch.float64)
        self.off_ = torch.zeros(self.n_concepts, dtype=torch.float64)
        return self

    # -- inference ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise RuntimeError("this ConceptBottleneckModel is not fitted yet: call fit(Z, y, ...) first")

    def _z(self, Z: torch.Tensor) -> torch.Tensor:
        return (Z - self.z_mean_) / self.z_std_

    def _input(self, Z) -> torch.Tensor:
        self._check_fitted()
        return as_embeddings(Z, dim=self.n_features_in_)

    def concept_scores(self, Z) -> torch.Tensor:
        """Z (n, d) -> raw concept scores (n, C) (probabilities for the energy head)."""
        return self._backend.concept_scores(self, self._input(Z))

    @property
    def threshold_(self) -> torch.Tensor:
        """(C,) score above which a concept counts as present."""
        self._check_fitted()
        return self._backend.threshold(self)

    def predict_concepts(self, Z) -> torch.Tensor:
        """Z (n, d) -> (n, C) bool: score above the concept's threshold."""
        return self.concept_scores(Z) > self.threshold_

    def concept_uncertainty(self, Z) -> torch.Tensor:
        """Z (n, d) -> (n, C) in [0, 1]: 1 at the midpoint of the concept's off/on values, 0 beyond them."""
        S = self.concept_scores(Z)
        mid, half = (self.on_ + self.off_) / 2, ((self.on_ - self.off_) / 2).clamp_min(1e-12)
        return (1.0 - (S - mid).abs() / half).clamp(0.0, 1.0)

    def effective_weight(self) -> torch.Tensor:
        """(K, C) class-concept weights after edits."""
        self._check_fitted()
        return self._backend.effective_weight(self)

    def _logits_from_scores(self, S: torch.Tensor, Z: torch.Tensor | None) -> torch.Tensor:
        feats = self.head_.features(self._standardise(S))
        logits = feats @ (self.head_.weight * self.edit_scale_).T + self.head_.bias
        if self.residual_ is not None and Z is not None:
            logits = logits + self.residual_(self._z(Z))
        return logits

    def decision_function(self, Z) -> torch.Tensor:
        """Z (n, d) -> class logits (n, K) (log-probabilities for the energy head)."""
        return self._intervened_logits(Z, None, None)

    def predict_proba(self, Z) -> torch.Tensor:
        """Z (n, d) -> (n, K) class probabilities."""
        return torch.softmax(self.decision_function(Z), dim=1)

    def predict(self, Z) -> np.ndarray:
        """Z (n, d) -> (n,) class labels (from ``classes_``)."""
        logits = self.decision_function(Z)
        return self.classes_[logits.argmax(1).numpy()]

    def score(self, Z, y) -> float:
        """Accuracy on (Z, y)."""
        return float((self.predict(Z) == np.asarray(y)).mean())

    # -- interventions -----------------------------------------------------------------------
    def _values(self, values, n: int, idx: list[int]) -> torch.Tensor:
        v = as_tensor(values, "values").double()
        if v.dim() == 1 and len(idx) == 1:
            v = v[:, None]
        check_ndim(v, 2, "values", "(n_samples, n_intervened_concepts)")
        if v.shape == (n, self.n_concepts) and len(idx) != self.n_concepts:
            v = v[:, idx]  # a full (n, C) matrix of true concepts: take the intervened columns
        if v.shape != (n, len(idx)):
            raise ValueError(f"values: expected shape ({n}, {len(idx)}) (one column per intervened concept) or "
                             f"({n}, {self.n_concepts}), got {tuple(v.shape)}")
        if bool(((v < 0) | (v > 1)).any()):
            raise ValueError("values: expected concept values in [0, 1] (0 absent, 1 present)")
        return v

    def intervened_scores(self, Z, concepts, values) -> torch.Tensor:
        """Concept scores (n, C) with ``concepts`` set to ``(1 - values) * off + values * on``."""
        Z = self._input(Z)
        idx = self.concept_indices(concepts)
        v = self._values(values, Z.shape[0], idx)
        S = self.concept_scores(Z).clone()
        S[:, idx] = (1 - v) * self.off_[idx] + v * self.on_[idx]  # exactly on / off at 1 / 0
        return S

    def _intervened_logits(self, Z, concepts, values) -> torch.Tensor:
        Z = self._input(Z)
        mask = C = None
        if concepts is not None:  # the intervened concepts and their values as (n, C) mask + values
            idx = self.concept_indices(concepts)
            mask = torch.zeros(Z.shape[0], self.n_concepts, dtype=torch.bool)
            mask[:, idx] = True
            C = torch.zeros(Z.shape[0], self.n_concepts, dtype=torch.float64)
            C[:, idx] = self._values(values, Z.shape[0], idx)
        return self._backend.masked_predictor(self, Z, C, logits=True)(mask)

    def intervene(self, Z, concepts, values) -> torch.Tensor:
        """Class probabilities (n, K) with ``concepts`` (names, groups or indices) set to ``values``
        ((n, m) in [0, 1], or the full (n, C) true-concept matrix) at their calibrated on/off values."""
        return torch.softmax(self._intervened_logits(Z, concepts, values), dim=1)

    def class_concept_proba(self) -> torch.Tensor:
        """(K, C) p(c_j = 1 | y = k) (energy head only)."""
        self._check_fitted()
        return self._backend.class_concept_proba(self)

    # -- explanations ------------------------------------------------------------------------
    def explain(self, Z, i: int | None = None, top: int = 5) -> dict:
        """Top contributing concepts of one prediction: row ``i`` of Z (n, d), or Z of shape (d,).

        Returns ``{"class", "class_name", "proba", "bias", "residual", "concepts": [{"concept", "score",
        "contribution"}, ...]}``, concepts sorted by |contribution| to the predicted class's logit.
        """
        Z = as_tensor(Z, "Z")
        z = Z[None] if Z.dim() == 1 else Z[[0 if i is None else int(i)]]
        self._check_fitted()
        self._backend.effective_weight(self)  # the energy head has none to explain with: it says so
        z = self._input(z)
        S = self.scorer_.scores(z)
        with torch.no_grad():
            feats = self.head_.features(self._standardise(S))[0]
            logits = self._logits_from_scores(S, z)[0]
            k = int(logits.argmax())
            contrib = feats * self.effective_weight()[k]
            resid = float(self.residual_(self._z(z))[0, k]) if self.residual_ is not None else 0.0
        order = contrib.abs().argsort(descending=True)[:top].tolist()
        return {"class": self.classes_[k].item() if hasattr(self.classes_[k], "item") else self.classes_[k],
                "class_name": self.class_names_[k], "proba": float(torch.softmax(logits, 0)[k]),
                "bias": float(self.head_.bias.detach()[k]), "residual": resid,
                "concepts": [{"concept": self.concepts[j], "score": float(S[0, j]),
                              "contribution": float(contrib[j])} for j in order]}

    # -- global edits ------------------------------------------------------------------------
    def edit(self, concepts, classes=None, scale: float = 0.0, renormalize: bool = True) -> ConceptBottleneckModel:
        """Scale the weight of ``concepts`` for ``classes`` (None: all) by ``scale`` (0 removes).

        ``renormalize`` rescales the rest of each edited class's weights to keep its L1 mass. Logged
        in ``edit_log_``; :meth:`undo` reverts the last edit exactly.
        """
        self._check_fitted()
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or scale < 0:
            raise ValueError(f"scale: expected a number >= 0 (0 removes the concept), got {scale!r}")
        idx = self.concept_indices(concepts)
        rows = list(range(len(self.classes_))) if classes is None else self.class_indices(classes)
        new, renormalize = self._backend.edit(self, idx, rows, float(scale), renormalize)
        self._undo.append(self.edit_scale_)
        self.edit_scale_ = new
        self.edit_log_.append(describe_edit([self.concepts[j] for j in idx],
                                            None if classes is None else [self.class_names_[k] for k in rows],
                                            float(scale), renormalize))
        return self

    def undo(self) -> ConceptBottleneckModel:
        """Revert the last edit (bit-identical weights)."""
        self._check_fitted()
        if not self._undo:
            raise RuntimeError("undo: there is no edit to undo (edit_log_ is empty)")
        self.edit_scale_ = self._undo.pop()
        self.edit_log_.pop()
        self._backend.apply_scale(self, self.edit_scale_)
        return self

    # -- persistence -------------------------------------------------------------------------
    def _config(self) -> dict:
        return {"format": FORMAT, "concepts": self.concepts, "head": self.head, "residual": self.residual,
                "training": self.training, "groups": self.groups, "percentiles": list(self.percentiles),
                "seed": self.seed, "val_fraction": self.val_fraction, "num_threads": self.num_threads,
                "head_params": self.head_.config() if self.head_ is not None else dict(self.head_params),
                "scorer": self.scorer_.config() if self.scorer_ is not None else None,
                "classes": self.classes_.tolist(),
                "classes_dtype": str(self.classes_.dtype), "n_features_in": self.n_features_in_,
                "residual_params": self.residual_.config() if self.residual_ is not None else None,
                "edit_log": self.edit_log_}

    def save_pretrained(self, directory) -> Path:
        """Write ``directory/model.safetensors`` (every tensor: scorer, head, residual,
        standardisation, edits and their undo history; the energy head's weights under ``energy.``)
        and ``directory/config.json``; the folder is created if missing. Returns the folder."""
        self._check_fitted()
        config = self._config()
        config.pop("format")  # the earlier layout's marker; config.json carries its own
        tensors = {"on": self.on_, "off": self.off_, "edit_scale": self.edit_scale_}
        tensors.update({f"undo.{i}": t for i, t in enumerate(self._undo)})
        self._backend.save(self, config, tensors)
        return write_checkpoint(directory, type(self).__name__, config, tensors)

    @classmethod
    def from_pretrained(cls, directory) -> ConceptBottleneckModel:
        """The model :meth:`save_pretrained` wrote: same predictions, edits and undo history. Also
        reads the earlier layout (``config.json`` of format ``bottlenecks.concepts/1``, the energy
        head in ``energy.safetensors`` / ``energy.json``)."""
        path = Path(directory)
        name = cls.__name__
        legacy = _legacy_config(path)
        if legacy is not None:
            cfg, t = legacy, read_tensors(path / WEIGHTS_NAME, name)
            if cfg.get("head") == "energy":
                from .energy import EnergyCBM

                energy = EnergyCBM.load(path / "energy")
                cfg["energy"] = energy.config()
                t.update({f"energy.{k}": v for k, v in energy.state_dict().items()})
        else:
            meta, t = read_checkpoint(path, name)
            cfg = meta["config"]
        try:
            return cls._restore(cfg, t, path / WEIGHTS_NAME)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            raise corrupt(path / CONFIG_NAME, name, f"its content is rejected: {err!r}") from None

    def save(self, path) -> Path:
        """Alias of :meth:`save_pretrained`."""
        return self.save_pretrained(path)

    @classmethod
    def load(cls, path) -> ConceptBottleneckModel:
        """Alias of :meth:`from_pretrained`."""
        return cls.from_pretrained(path)

    @classmethod
    def _restore(cls, cfg: dict, t: dict[str, torch.Tensor], file) -> ConceptBottleneckModel:
        backend = _ENERGY if cfg["head"] == "energy" else _SCORES
        return backend.restore(cls, cfg, t, file)

    @classmethod
    def _restore_scores(cls, cfg: dict, t: dict[str, torch.Tensor], file) -> ConceptBottleneckModel:
        scorer = make_scorer(cfg["scorer"], {k[7:]: v for k, v in t.items() if k.startswith("scorer.")})
        hp = {k: v for k, v in cfg["head_params"].items() if k not in ("n_concepts", "n_classes")}
        model = cls(cfg["concepts"], scorer=scorer, head=cfg["head"], residual=cfg["residual"],
                    training=cfg["training"], groups=cfg["groups"], head_params=hp,
                    percentiles=tuple(cfg["percentiles"]), seed=cfg["seed"], val_fraction=cfg["val_fraction"],
                    num_threads=cfg.get("num_threads", 1))
        model._restore_common(cfg, t)
        model.scorer_ = scorer
        model.head_ = make_head(cfg["head"], len(cfg["concepts"]), len(cfg["classes"]), **hp)
        load_state(model.head_, {k[5:]: v for k, v in t.items() if k.startswith("head.")}, file, "concept head")
        model.residual_ = None
        if cfg["residual_params"] is not None:
            rp = {k: v for k, v in cfg["residual_params"].items() if k not in ("dim", "n_classes")}
            model.residual_ = ResidualHead(cfg["n_features_in"], len(cfg["classes"]), **rp)
            load_state(model.residual_, {k[9:]: v for k, v in t.items() if k.startswith("residual.")}, file,
                       "residual head")
            model.z_mean_, model.z_std_ = t["z_mean"], t["z_std"]
        model.score_mean_, model.score_std_ = t["score_mean"], t["score_std"]
        return model

    def _restore_common(self, cfg: dict, t: dict[str, torch.Tensor]) -> None:
        """Classes, on/off values and the edit history, shared by every head."""
        self.classes_ = np.asarray(cfg["classes"], dtype=cfg["classes_dtype"])
        self.class_names_ = [str(c) for c in self.classes_.tolist()]
        self.n_features_in_ = cfg["n_features_in"]
        self.on_, self.off_, self.edit_scale_ = t["on"], t["off"], t["edit_scale"]
        n_undo = sum(1 for k in t if k.startswith("undo."))
        self._undo = [t[f"undo.{i}"] for i in range(n_undo)]
        self.edit_log_ = list(cfg["edit_log"])

    def __repr__(self) -> str:
        scorer = self.scorer if isinstance(self.scorer, str) else type(self.scorer).__name__
        return (f"ConceptBottleneckModel(n_concepts={self.n_concepts}, scorer={scorer!r}, head={self.head!r}, "
                f"residual={self.residual}, training={self.training!r})")


def _legacy_config(path: Path) -> dict | None:
    """The config of the earlier layout (``format`` ``bottlenecks.concepts/1``), else None."""
    try:
        cfg = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return cfg if isinstance(cfg, dict) and cfg.get("format") == FORMAT else None


# -- backends ------------------------------------------------------------------------------------
# The model is one small interface over two kinds of head. Each backend is stateless: the fitted
# parts live on the model (``scorer_``/``head_``/``residual_`` or ``energy_``), so the attributes a
# user inspects and the checkpoint layout are the same whichever backend fitted them.


class _ScoreBackend:
    """scorer -> standardised concept scores -> class-concept head (+ PCBM-h residual)."""

    def fit(self, m: ConceptBottleneckModel, Z, y, C_true, concept_data) -> None:
        with fixed_threads(m.num_threads):
            m._fit_concept_head(Z, y, C_true, concept_data)

    def concept_scores(self, m, Z: torch.Tensor) -> torch.Tensor:
        with fixed_threads(m.num_threads):
            return m.scorer_.scores(Z)

    def threshold(self, m) -> torch.Tensor:
        return m.scorer_.threshold_

    def effective_weight(self, m) -> torch.Tensor:
        return m.head_.weight.detach() * m.edit_scale_

    def class_concept_proba(self, m) -> torch.Tensor:
        raise NotImplementedError("p(c | y) queries need head='energy'")

    def masked_predictor(self, m, Z: torch.Tensor, C, logits: bool = False):
        """``mask (n, C) bool or None -> (n,) class indices`` (or ``(n, K)`` logits), the masked
        concepts set to ``C`` (n, C) at their calibrated on/off values (exactly on / off at 1 / 0)."""
        S = m.concept_scores(Z)
        S_true = None if C is None else (1 - C) * m.off_ + C * m.on_

        def predict(mask):
            S_in = S if mask is None else torch.where(mask, S_true, S)
            with torch.no_grad(), fixed_threads(m.num_threads):
                out = m._logits_from_scores(S_in, Z)
            return out if logits else out.argmax(1)
        return predict

    def edit(self, m, idx, rows, scale: float, renormalize: bool):
        return apply_edit(m.edit_scale_, m.head_.weight.detach(), idx, rows, scale, renormalize), renormalize

    def apply_scale(self, m, scale: torch.Tensor) -> None:
        """Nothing to push: the logits read ``edit_scale_`` directly."""

    def save(self, m, config: dict, tensors: dict) -> None:
        tensors.update({f"scorer.{k}": v for k, v in m.scorer_.state().items()})
        tensors.update({f"head.{k}": v for k, v in m.head_.state_dict().items()})
        if m.residual_ is not None:
            tensors.update({f"residual.{k}": v for k, v in m.residual_.state_dict().items()})
            tensors.update({"z_mean": m.z_mean_, "z_std": m.z_std_})
        tensors.update({"score_mean": m.score_mean_, "score_std": m.score_std_})

    def restore(self, cls, cfg: dict, t: dict, file) -> ConceptBottleneckModel:
        return cls._restore_scores(cfg, t, file)


class _EnergyBackend:
    """The energy-based CBM (:class:`~.energy.EnergyCBM`): one model replaces scorer and head;
    concept scores are probabilities, predictions come from energy minimisation."""

    def fit(self, m: ConceptBottleneckModel, Z, y, C_true, concept_data) -> None:
        m._fit_energy(Z, y, C_true, concept_data)

    def concept_scores(self, m, Z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return m.energy_.concept_proba(m._z(Z).float()).double()

    def threshold(self, m) -> torch.Tensor:
        return torch.full((m.n_concepts,), 0.5, dtype=torch.float64)

    def effective_weight(self, m) -> torch.Tensor:
        raise NotImplementedError("the energy head has no class-concept weight matrix to read; "
                                  "use class_concept_proba() for p(c | y)")

    def class_concept_proba(self, m) -> torch.Tensor:
        return m.energy_.class_concept_proba().double()

    def masked_predictor(self, m, Z: torch.Tensor, C, logits: bool = False):
        """``mask (n, C) bool or None -> (n,) class indices`` (or ``(n, K)`` log-probabilities):
        ``EnergyCBM`` clamps the masked concepts to ``C`` and minimises the energy over the rest."""
        Zs = m._z(Z).float()
        values = None if C is None else C.float()

        def predict(mask):
            with torch.no_grad():
                p = m.energy_.predict_proba(Zs, concept_mask=mask, concept_values=None if mask is None else values)
            return p.double().clamp_min(1e-30).log() if logits else p.argmax(1)
        return predict

    def edit(self, m, idx, rows, scale: float, renormalize: bool):
        # the scale multiplies each concept's term in the global energy; there is no weight mass to
        # keep (a removed concept reads its training mean), so renormalize does not apply
        new = m.edit_scale_.clone()
        new[np.ix_(rows, idx)] = scale
        m.energy_.edit_concepts(new)
        return new, False

    def apply_scale(self, m, scale: torch.Tensor) -> None:
        m.energy_.edit_concepts(scale)

    def save(self, m, config: dict, tensors: dict) -> None:
        config["energy"] = m.energy_.config()
        tensors.update({f"energy.{k}": v for k, v in m.energy_.state_dict().items()})
        tensors.update({"z_mean": m.z_mean_, "z_std": m.z_std_})

    def restore(self, cls, cfg: dict, t: dict, file) -> ConceptBottleneckModel:
        from .energy import EnergyCBM

        model = cls(cfg["concepts"], head="energy", groups=cfg["groups"], head_params=cfg["head_params"],
                    percentiles=tuple(cfg["percentiles"]), seed=cfg["seed"], val_fraction=cfg["val_fraction"])
        model._restore_common(cfg, t)
        model.energy_ = EnergyCBM(**cfg["energy"])
        load_state(model.energy_, {k[7:]: v for k, v in t.items() if k.startswith("energy.")}, file, "EnergyCBM")
        model.energy_.eval()
        model.scorer_, model.head_, model.residual_ = None, None, None
        model.z_mean_, model.z_std_ = t["z_mean"], t["z_std"]
        return model


_SCORES, _ENERGY = _ScoreBackend(), _EnergyBackend()
