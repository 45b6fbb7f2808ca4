"""Choosing a concept set from a large candidate pool.

Two methods, both on embeddings only (no live language model):

- :func:`submodular_select` -- LaBo's selection (Yang et al., CVPR 2023). For each class, pick
  ``k`` of the concepts generated for it by greedily maximising the monotone submodular function

      F(S) = alpha * sum_{c in S} D(c) + beta * sum_{c' in pool} max(0, max_{c in S} cos(c', c))

  where ``D(c) >= 0`` is the concept's discriminability (its share of the mutual information
  between concept and class, from image-concept similarities, :func:`discriminability`) and the
  second term is facility-location coverage of the class's candidate pool. Greedy maximisation of a
  monotone submodular function under a cardinality constraint is within ``1 - 1/e`` of the optimum
  (Nemhauser, Wolsey & Fisher, 1978).
- :func:`labelfree_filter` -- Label-free CBM's filters (Oikarinen et al., ICLR 2023): too long,
  too similar to a class name, near-duplicate of another concept, too weakly activated by images.
"""

from __future__ import annotations

import torch

from ..progress import wants_progress
from ..validation import as_tensor, check_finite, check_ndim, check_nonempty, check_positive_int

__all__ = ["discriminability", "facility_location", "labelfree_filter", "run_concept_selection", "selection_objective",
           "submodular_select"]


def _embeddings(x, name: str) -> torch.Tensor:
    t = as_tensor(x, name)
    if not t.is_floating_point():
        t = t.double()
    check_ndim(t, 2, name, "(n, d)")
    check_nonempty(t, name)
    return check_finite(t, name).double()


def _unit_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    norms = x.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        bad = torch.nonzero(norms[:, 0] == 0).flatten()[:5].tolist()
        raise ValueError(f"{name}: rows {bad} have zero norm; cosine similarity needs non-zero embeddings")
    return x / norms


def _labels(y, n: int, name: str = "labels") -> torch.Tensor:
    t = as_tensor(y, name)
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise ValueError(f"{name}: expected integer class ids, got non-integer floats")
    elif t.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer class ids, got a bool tensor")
    t = t.long()
    check_ndim(t, 1, name, "(n,)")
    if t.shape[0] != n:
        raise ValueError(f"{name}: expected {n} entries (one per row), got {t.shape[0]}")
    if n and int(t.min()) < 0:
        raise ValueError(f"{name}: expected class ids >= 0, got {int(t.min())}")
    return t


def discriminability(concept_embeddings, image_embeddings, labels, *, temperature: float | None = 0.1) -> torch.Tensor:
    """LaBo's discriminability of every concept: ``(C, d), (n, d), (n,) -> (C,)``, all ``>= 0``.

    ``Sim(c, y)`` is the mean similarity (dot product) of the class-``y`` images with concept ``c``.
    It is turned into a joint ``p(c, y) = p(c | y) / N`` over concepts and the ``N`` classes present,
    with ``p(c | y)`` proportional to ``Sim(c, y)`` (``temperature=None``, as LaBo does with CLIP
    scores; needs positive similarities) or to ``exp(Sim(c, y) / temperature)`` (any sign). The score
    is the concept's term of the mutual information between concept and class,
    ``D(c) = sum_y p(c, y) log(p(c, y) / (p(c) p(y))) = p(c) KL(p(y | c) || p(y))``, rescaled by the
    number of concepts so that its mean does not shrink as the pool grows. A concept that every class
    matches equally scores 0; one that only its class matches scores up to ``log N``.
    """
    concepts = _embeddings(concept_embeddings, "concept_embeddings")
    images = _embeddings(image_embeddings, "image_embeddings")
    if images.shape[1] != concepts.shape[1]:
        raise ValueError(f"image_embeddings have {images.shape[1]} features but concept_embeddings have "
                         f"{concepts.shape[1]}; expected one embedding space")
    y = _labels(labels, images.shape[0])
    classes = torch.unique(y)
    onehot = (y[:, None] == classes[None, :]).double()  # (n, N)
    sim = concepts @ ((onehot / onehot.sum(0)).T @ images).T  # (C, N): similarity to the class means
    if temperature is None:
        if bool((sim <= 0).any()):
            raise ValueError("discriminability with temperature=None needs positive image-concept similarities "
                             f"(got a minimum of {float(sim.min()):.3g}); pass a temperature, e.g. 0.1")
        p_c_given_y = sim / sim.sum(0, keepdim=True)
    else:
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive number or None, got {temperature!r}")
        p_c_given_y = torch.softmax(sim / float(temperature), dim=0)
    n_cls = p_c_given_y.shape[1]
    joint = p_c_given_y / n_cls  # p(c, y) with a uniform class prior
    p_c = joint.sum(1, keepdim=True)
    terms = torch.xlogy(joint, joint) - joint * torch.log(p_c / n_cls)  # 0 log 0 = 0
    return terms.sum(1).clamp_min(0) * concepts.shape[0]


def facility_location(similarity: torch.Tensor, subset) -> float:
    """Coverage ``sum_i max(0, max_{j in subset} similarity[i, j])`` of a ground set: ``(m, m) -> float``.

    Zero for the empty set; clipping at 0 keeps the function monotone when similarities are negative.
    """
    idx = list(subset)
    if not idx:
        return 0.0
    return float(similarity[:, idx].amax(dim=1).clamp_min(0).sum())


def selection_objective(subset, scores: torch.Tensor, similarity: torch.Tensor, *, alpha: float = 1.0,
                        beta: float = 1.0) -> float:
    """LaBo's ``F(S) = alpha * sum_{c in S} scores[c] + beta * facility_location(similarity, S)`` on one pool."""
    idx = list(subset)
    return alpha * float(scores[idx].sum()) + beta * facility_location(similarity, idx)


def _greedy(scores: torch.Tensor, similarity: torch.Tensor, k: int, alpha: float, beta: float) -> list[int]:
    """Greedy maximisation of :func:`selection_objective` over one pool (indices into it, in pick order).

    ``cover[i]`` holds ``max(0, max_{j in S} sim[i, j])``; adding ``j`` gains
    ``alpha * scores[j] + beta * sum_i max(0, sim[i, j] - cover[i])``. Ties go to the lower index.
    """
    m = scores.shape[0]
    cover = torch.zeros(m, dtype=similarity.dtype)
    taken = torch.zeros(m, dtype=torch.bool)
    picked = []
    for _ in range(min(k, m)):
        gains = alpha * scores + beta * (similarity - cover[:, None]).clamp_min(0).sum(0)
        gains[taken] = -torch.inf
        j = int(torch.argmax(gains))  # first maximum on ties
        picked.append(j)
        taken[j] = True
        cover = torch.maximum(cover, similarity[:, j].clamp_min(0))
    return picked


def submodular_select(concept_embeddings, class_of_concept, k_per_class: int, *, image_embeddings=None,
                      labels=None, alpha: float = 1.0, beta: float = 1.0, temperature: float | None = 0.1,
                      scores=None) -> list[int]:
    """LaBo's submodular concept selection: ``k_per_class`` concepts from each class's candidates.

    Args:
        concept_embeddings: ``(C, d)`` candidate concept embeddings (e.g. text embeddings).
        class_of_concept: ``(C,)`` int, the class each candidate was generated for.
        k_per_class: concepts to keep per class; a class with fewer candidates keeps all of them.
        image_embeddings, labels: ``(n, d)`` and ``(n,)`` images in the same space as the concepts,
            for the discriminability score (:func:`discriminability`). Without them (or with
            ``alpha=0``) only the coverage term counts.
        alpha, beta: weights of discriminability and of coverage (cosine facility location over the
            class's candidates). Both must be ``>= 0`` for the ``1 - 1/e`` guarantee.
        temperature: passed to :func:`discriminability`.
        scores: ``(C,)`` non-negative discriminability scores to use instead of computing them.

    Returns the selected indices into ``concept_embeddings``: classes in increasing order, each
    class's picks in greedy order.
    """
    concepts = _embeddings(concept_embeddings, "concept_embeddings")
    n_concepts = concepts.shape[0]
    owner = _labels(class_of_concept, n_concepts, "class_of_concept")
    k = check_positive_int(k_per_class, "k_per_class")
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta: expected weights >= 0 (the greedy guarantee needs them), "
                         f"got alpha={alpha}, beta={beta}")
    if scores is not None:
        d = as_tensor(scores, "scores").double().flatten()
        if d.shape[0] != n_concepts:
            raise ValueError(f"scores: expected {n_concepts} values (one per concept), got {d.shape[0]}")
        check_finite(d, "scores")
        if bool((d < 0).any()):
            raise ValueError("scores: expected non-negative discriminability scores (a monotone objective)")
    elif image_embeddings is not None and alpha > 0:
        if labels is None:
            raise ValueError("image_embeddings were given without labels; pass both or neither")
        d = discriminability(concepts, image_embeddings, labels, temperature=temperature)
    else:
        d = torch.zeros(n_concepts, dtype=torch.float64)
    unit = _unit_rows(concepts, "concept_embeddings")
    selected: list[int] = []
    for cls in torch.unique(owner).tolist():
        pool = torch.nonzero(owner == cls).flatten()
        if pool.numel() <= k:
            selected.extend(pool.tolist())
            continue
        sim = unit[pool] @ unit[pool].T
        selected.extend(pool[_greedy(d[pool], sim, k, float(alpha), float(beta))].tolist())
    return selected


def _check_names(names) -> list[str]:
    if isinstance(names, str) or not hasattr(names, "__len__"):
        raise TypeError(f"names: expected a list of concept names (str), got {type(names).__name__}")
    names = list(names)
    if not names:
        raise ValueError("names: the concept set is empty; expected at least one concept")
    bad = [i for i, s in enumerate(names) if not isinstance(s, str)]
    if bad:
        raise TypeError(f"names: expected strings, got {type(names[bad[0]]).__name__} at position {bad[0]}")
    return names


def _same_rows(x: torch.Tensor, n: int, name: str, other: str) -> None:
    if x.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (one per entry of {other}), got {x.shape[0]}")


def labelfree_filter(names, concept_embeddings, *, class_names=None, class_embeddings=None, image_embeddings=None,
                     max_length: int | None = 30, class_sim: float | None = 0.85, dup_sim: float | None = 0.9,
                     min_activation: float | None = None, top_k: int = 5,
                     normalize: bool = True) -> tuple[list[int], dict[int, str]]:
    """Label-free CBM's concept filters, applied in the paper's order.

    1. **length**: names longer than ``max_length`` characters go.
    2. **class name**: a concept equal to a class name (ignoring case and a leading "a", "an",
       "the") or with cosine similarity ``>= class_sim`` to a class embedding goes.
    3. **near-duplicates**: for every pair of surviving concepts with cosine ``>= dup_sim`` the one
       with the lower summed similarity to the surviving set goes (the more specific one; the paper
       keeps the more general concept); pairs are visited in index order.
    4. **low activation**: when ``min_activation`` is set, a concept whose mean similarity with its
       ``top_k`` most similar images is ``< min_activation`` goes.

    Args:
        names: list of C concept names.
        concept_embeddings: ``(C, d)`` text embeddings of the names.
        class_names, class_embeddings: list of N class names and/or ``(N, d)`` their embeddings.
        image_embeddings: ``(n, d)`` images in the concepts' space, for the activation filter.
        normalize: compare unit-normalised rows (cosine); ``False`` uses the raw dot products.
        A threshold of ``None`` turns its filter off.

    Returns ``(kept, reasons)``: kept indices (increasing) and, for every removed index, why.
    """
    names = _check_names(names)
    emb = _embeddings(concept_embeddings, "concept_embeddings")
    _same_rows(emb, len(names), "concept_embeddings", "names")
    top_k = check_positive_int(top_k, "top_k")
    unit = _unit_rows(emb, "concept_embeddings") if normalize else emb
    reasons: dict[int, str] = {}

    def alive() -> list[int]:
        return [i for i in range(len(names)) if i not in reasons]

    if max_length is not None:
        for i, s in enumerate(names):
            if len(s) > max_length:
                reasons[i] = f"length: {len(s)} characters > max_length={max_length}"

    if class_names is not None:
        class_names = _check_names(class_names)
        canon = {_canonical(c): c for c in class_names}
        for i in alive():
            hit = canon.get(_canonical(names[i]))
            if hit is not None:
                reasons[i] = f"class name: same text as class {hit!r}"
    if class_embeddings is not None and class_sim is not None:
        cls = _embeddings(class_embeddings, "class_embeddings")
        if cls.shape[1] != emb.shape[1]:
            raise ValueError(f"class_embeddings have {cls.shape[1]} features but concept_embeddings have "
                             f"{emb.shape[1]}; expected one embedding space")
        if class_names is not None:
            _same_rows(cls, len(class_names), "class_embeddings", "class_names")
        cls = _unit_rows(cls, "class_embeddings") if normalize else cls
        sims = unit @ cls.T  # (C, N)
        for i in alive():
            j = int(sims[i].argmax())
            if float(sims[i, j]) >= class_sim:
                label = repr(class_names[j]) if class_names is not None else f"#{j}"
                reasons[i] = f"class name: similarity {float(sims[i, j]):.3f} >= class_sim={class_sim} to class {label}"

    if dup_sim is not None:
        idx = alive()
        if len(idx) > 1:
            sims = unit[idx] @ unit[idx].T
            generality = sims.sum(1)
            gone: set[int] = set()
            close = torch.nonzero(torch.triu(sims >= dup_sim, diagonal=1)).tolist()  # pairs a < b, row-major
            for a, b in close:
                if a not in gone and b not in gone:
                    drop, keep = (a, b) if float(generality[a]) < float(generality[b]) else (b, a)
                    gone.add(drop)
                    reasons[idx[drop]] = (f"near-duplicate: similarity {float(sims[a, b]):.3f} >= dup_sim={dup_sim} "
                                          f"to #{idx[keep]} {names[idx[keep]]!r}")

    if min_activation is not None:
        if image_embeddings is None:
            raise ValueError("min_activation needs image_embeddings (n, d) in the concepts' space")
        images = _embeddings(image_embeddings, "image_embeddings")
        if images.shape[1] != emb.shape[1]:
            raise ValueError(f"image_embeddings have {images.shape[1]} features but concept_embeddings have "
                             f"{emb.shape[1]}; expected one embedding space")
        images = _unit_rows(images, "image_embeddings") if normalize else images
        idx = alive()
        if idx:
            act = unit[idx] @ images.T  # (C', n)
            top = act.topk(min(top_k, act.shape[1]), dim=1).values.mean(1)
            for i, value in zip(idx, top.tolist(), strict=True):
                if value < min_activation:
                    reasons[i] = (f"low activation: mean of top-{top_k} image similarities {value:.3f} "
                                  f"< min_activation={min_activation}")

    return alive(), dict(sorted(reasons.items()))


def _canonical(text: str) -> str:
    """Lower case, single spaces, underscores as spaces, no leading article."""
    words = text.replace("_", " ").lower().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def run_concept_selection(concepts, *, k_per_class: int = 5, encoder=None, image_embeddings=None, labels=None,
                          template: str | None = None, max_length: int | None = 30, class_sim: float | None = 0.85,
                          dup_sim: float | None = 0.9, min_activation: float | None = None, alpha: float = 1.0,
                          beta: float = 1.0, out=None, seed: int = 0, progress: bool | None = None) -> dict:
    """Offline concept-set preparation: Label-free CBM's filters, then LaBo's per-class selection.

    Args:
        concepts: ``{class name: [candidate concept, ...]}`` (e.g. from a language model, written down
            once), or the path of a JSON file holding it. Classes are numbered in this order.
        k_per_class: concepts kept per class.
        encoder: a name for :func:`~bottlenecks.concepts.text.default_text_encoder` (``None``: the
            offline MiniLM) or any ``encode_text`` callable.
        image_embeddings, labels: ``(n, d)`` images in the text space (CLIP) and their class ids
            (into the classes of ``concepts``), or a ``.npz`` path holding ``x`` and ``y``; they turn
            on the activation filter (with ``min_activation``) and LaBo's discriminability score.
        template, max_length, class_sim, dup_sim, min_activation, alpha, beta: as in
            :func:`embed_concepts`, :func:`labelfree_filter` and :func:`submodular_select`.
        out: folder for ``selected_concepts.json`` (the returned dict), or None.
        seed: accepted for a uniform command line; nothing here is random.

    Returns ``{"classes", "selected": {class: [concepts]}, "removed": [{"concept", "class", "reason"}],
    "n_candidates", "n_after_filters", "n_selected", "encoder"}``. A concept listed under several
    classes is a candidate of the first; the others list it as removed (a duplicate name).
    """
    import json
    from pathlib import Path

    from .text import default_text_encoder, embed_concepts

    source = "concepts"
    if isinstance(concepts, (str, Path)):
        source = str(concepts)
        try:
            concepts = json.loads(Path(concepts).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{source}: not a JSON file ({err}); expected {{class name: [concept names]}}") from None
    if not isinstance(concepts, dict) or not concepts:
        raise ValueError(f"{source}: expected a non-empty {{class name: [concept names]}} mapping")
    classes = [str(c) for c in concepts]
    checked = {}
    for cls, value in zip(classes, concepts.values(), strict=True):
        try:
            checked[cls] = _check_names(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{source}: class {cls!r}: {err}") from None
    names, owner, removed, first = [], [], [], {}
    for k, cls in enumerate(classes):
        for name in checked[cls]:
            if name in first:
                removed.append({"concept": name, "class": cls,
                                "reason": f"duplicate name: already a candidate of class {classes[first[name]]!r}"})
                continue
            first[name] = k
            names.append(name)
            owner.append(k)
    encode = default_text_encoder(encoder) if encoder is None or isinstance(encoder, str) else encoder
    emb = embed_concepts(names, encode, template=template)
    class_emb = embed_concepts(classes, encode, template=template) if class_sim is not None else None
    if isinstance(image_embeddings, (str, Path)):
        import numpy as np

        with np.load(image_embeddings) as f:
            image_embeddings, labels = f["x"], (f["y"] if labels is None else labels)
    kept, reasons = labelfree_filter(names, emb, class_names=classes, class_embeddings=class_emb,
                                     image_embeddings=image_embeddings, max_length=max_length, class_sim=class_sim,
                                     dup_sim=dup_sim, min_activation=min_activation)
    removed += [{"concept": names[i], "class": classes[owner[i]], "reason": why} for i, why in reasons.items()]
    if not kept:
        raise ValueError(f"every one of the {len(names)} candidate concepts was filtered out; loosen the filters")
    picked = submodular_select(emb[kept], [owner[i] for i in kept], k_per_class,
                               image_embeddings=image_embeddings if labels is not None else None, labels=labels,
                               alpha=alpha, beta=beta)
    selected = {cls: [] for cls in classes}
    for j in picked:
        selected[classes[owner[kept[j]]]].append(names[kept[j]])
    result = {"classes": classes, "selected": selected, "removed": removed, "n_candidates": len(names),
              "n_after_filters": len(kept), "n_selected": len(picked),
              "encoder": getattr(encode, "name", type(encode).__name__)}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "selected_concepts.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if wants_progress(progress):
        print(f"{len(names)} candidate concepts -> {len(kept)} after filters -> {len(picked)} selected "
              f"({k_per_class} per class at most)")
    return result
