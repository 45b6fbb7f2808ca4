"""The concepts demo: the concept-bottleneck pipeline end to end on generated concept shapes.

PCBM's setting: concept vectors (CAVs) are learned on a concept-annotation split where every
concept is independent, a sparse GLM head is fitted on training data where the background tint
agrees with the texture 90% of the time, and removing the tint from the head (a global edit,
no retraining) is judged on a shifted split where the tint is a coin flip.

:func:`run` writes ``out/report.md``, ``out/metrics.json`` and PNGs and returns the results:
concept accuracy, class accuracy against a black-box linear probe on the same embeddings,
intervention curves, per-class concept weights, shifted accuracy before/after the edit, and the
same numbers for other concept sources/heads so the main configuration can be judged against them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..concepts.heads import LinearHead
from ..concepts.interventions import intervention_curve
from ..concepts.model import ConceptBottleneckModel
from ..data.concept_shapes import make_concept_shapes
from ..encoders import get_encoder
from ..progress import phase
from ..report.html_browse import build_html
from ..report.html_concepts import explanation_record
from ..threads import fixed_threads
from ..validation import InstanceOf, Interval, Options
from .base import StudyConfig, StudyResults, prepare_out, write_json

__all__ = ["TARGETS", "ConceptsDemoConfig", "ConceptsDemoResults", "run"]

#: the issue's targets: name -> (threshold, description)
TARGETS = {
    "concept_accuracy": (0.95, "concept accuracy >= 95%"),
    "gap_to_black_box": (0.02, "class accuracy within 2 points of a black-box linear probe"),
    "intervened_accuracy": (0.99, "intervening with all true concepts lifts class accuracy to >= 99%"),
    "edit_gain_shifted": (0.10, "removing the spurious concept raises shifted accuracy by >= 10 points"),
}


def _encode(encoder: str, images: np.ndarray, progress) -> torch.Tensor:
    """(n, 3, H, W) -> (n, D) with a registry encoder; the scattering encoder takes grey images,
    so each colour channel is encoded on its own and the three are concatenated."""
    x = torch.from_numpy(images)
    if encoder == "pixels":
        return get_encoder("pixels").encode(x, progress=progress)
    enc = get_encoder("scattering", J=2, L=8, max_order=1)
    n, c, h, w = x.shape
    return enc.encode(x.reshape(n * c, h, w), progress=progress).reshape(n, -1)


def _black_box(Z, y, Zs: dict, seed: int, l2_grid=(1e-4, 1e-3, 1e-2, 1e-1)) -> dict:
    """Linear probe on standardised embeddings, l2 chosen on a 20% validation split, refitted on all.
    One thread, like the concept models, so its numbers do not depend on the caller's thread count."""
    with fixed_threads(1):
        return _black_box_fit(Z, y, Zs, seed, l2_grid)


def _black_box_fit(Z, y, Zs: dict, seed: int, l2_grid) -> dict:
    Z = torch.as_tensor(Z, dtype=torch.float64)
    mean, std = Z.mean(0), Z.std(0).clamp_min(1e-8)
    X = (Z - mean) / std
    y = torch.as_tensor(y, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val, fit = perm[: len(y) // 5], perm[len(y) // 5:]
    k = int(y.max()) + 1

    def acc(head, A, b):
        with torch.no_grad():
            return float((head(A).argmax(1) == b).double().mean())

    scores = {l2: acc(LinearHead(X.shape[1], k, l2=l2).fit(X[fit], y[fit]), X[val], y[val]) for l2 in l2_grid}
    best = max(scores, key=lambda v: (scores[v], v))
    head = LinearHead(X.shape[1], k, l2=best).fit(X, y)
    out = {"l2": best, "val_accuracy_by_l2": {str(k_): v for k_, v in scores.items()}}
    for name, (A, b) in Zs.items():
        out[name] = acc(head, (torch.as_tensor(A, dtype=torch.float64) - mean) / std, torch.as_tensor(b))
    return out


def _evaluate(model, Zt, Ct, yt, Zsh, ysh, spurious: str, seed: int) -> dict:
    ca = (model.predict_concepts(Zt).numpy() == Ct).mean(0)
    res = {"concept_accuracy": float(ca.mean()),
           "concept_accuracy_per_concept": dict(zip(model.concepts, map(float, ca), strict=True)),
           "test_accuracy": model.score(Zt, yt), "shifted_accuracy": model.score(Zsh, ysh),
           "intervened_accuracy": float((model.intervene(Zt, model.concepts, Ct).argmax(1).numpy()
                                         == np.searchsorted(model.classes_, yt)).mean())}
    model.edit(spurious)
    res["edited_test_accuracy"] = model.score(Zt, yt)
    res["edited_shifted_accuracy"] = model.score(Zsh, ysh)
    res["edited_intervened_accuracy"] = float((model.intervene(Zt, model.concepts, Ct).argmax(1).numpy()
                                               == np.searchsorted(model.classes_, yt)).mean())
    model.undo()
    res["edit_gain_shifted"] = res["edited_shifted_accuracy"] - res["shifted_accuracy"]
    return res


@dataclass
class ConceptsDemoConfig(StudyConfig):
    """``encoder``: ``'scattering'`` (kymatio, J=2, L=8, first order, per colour channel) or
    ``'pixels'``. ``n_train`` images for the concept-annotation split and as many for training;
    ``n_test`` for each of the test and shifted splits; images of ``image_size`` pixels a side.
    ``compare`` also fits the other sources and heads. ``threads``: torch intra-op threads
    during the run (restored after; None keeps the current setting). The default 1 is on
    purpose: the work is many small ops, where waking a thread pool costs more than the work
    (benchmarks/results/threads.md). The metrics do not depend on it: the models and the
    probe fit and score on one thread whatever it is."""

    seed: int = 0
    encoder: str = "scattering"
    n_train: int = 2000
    n_test: int = 1000
    image_size: int = 16
    compare: bool = True
    threads: int | None = 1

    constraints: ClassVar[dict] = {
        "encoder": Options(("pixels", "scattering")), "seed": Interval(int, 0, None),
        "n_train": Interval(int, 50, None), "n_test": Interval(int, 10, None), "image_size": Interval(int, 8, None),
        "threads": [Interval(int, 1, None), None], "compare": InstanceOf(bool)}


@dataclass
class ConceptsDemoResults(StudyResults):
    """What ``metrics.json`` holds (accuracies are fractions in [0, 1])."""

    config: dict
    concept_accuracy: float
    concept_accuracy_per_concept: dict
    test_accuracy: float
    shifted_accuracy: float
    intervened_accuracy: float
    edited_test_accuracy: float
    edited_shifted_accuracy: float
    edited_intervened_accuracy: float
    edit_gain_shifted: float
    black_box: dict
    gap_to_black_box: float
    intervention_curves: dict
    weights: list
    edited_weights: list
    edit_log: list
    concept_names: list
    class_names: list
    spurious_concept: str
    variants: dict
    seconds: dict
    targets: dict


def run(config: ConceptsDemoConfig, out="runs/concepts-demo", progress: bool | None = True) -> ConceptsDemoResults:
    """Run the demo and write ``out/report.md``, ``out/metrics.json`` and PNGs; return the results."""
    with fixed_threads(config.threads):
        return _run(config, prepare_out(out), progress)


def _variants(names, Z, tr, cs, te, sh, spurious, seed) -> dict:
    """The same data through other sources / heads, for comparison (not tuned)."""
    variants = {}
    for label, kw in (("labels + glm", {"scorer": "labels", "head": "glm"}),
                      ("cav + glm, lambda rule 'best'", {"scorer": "cav", "head": "glm",
                                                         "head_params": {"selection": "best"}}),
                      ("cav + linear", {"scorer": "cav", "head": "linear"}),
                      ("cav + glm + residual (PCBM-h)", {"scorer": "cav", "head": "glm", "residual": True})):
        m = ConceptBottleneckModel(names, seed=seed, progress=False, **kw).fit(
            Z["train"], tr.labels, concept_data=(Z["concepts"], cs.concepts))
        variants[label] = _evaluate(m, Z["test"], te.concepts, te.labels, Z["shifted"], sh.labels, spurious, seed)
    return variants


def _explanations(cbm, Z, te, class_names, per_class: int = 4) -> list[dict]:
    """Per-sample explanations of the first ``per_class`` test images of each class (report.html)."""
    idx = np.concatenate([np.flatnonzero(te.labels == k)[:per_class] for k in range(len(class_names))])
    return [explanation_record(cbm.explain(Z, int(i), top=cbm.n_concepts), te.images[i],
                               class_names[te.labels[i]], te.concepts[i], int(i)) for i in idx]


def _figures(out: Path, curves: dict, bb: dict, W, W_edit, names, spurious, tr, te) -> None:
    from ..report.concept_plots import save_concept_weights, save_intervention_curve
    from ..report.plots import save_image_grid

    save_intervention_curve({"random order": curves["random"], "most uncertain first": curves["uncertain"]},
                            out / "intervention_curve.png", baselines={"black-box probe": bb["test"]})
    save_concept_weights(W, names, tr.class_names, out / "concept_weights.png", highlight=[spurious],
                         edited=W_edit, title=f"GLM weights per class (outline: after removing '{spurious}')")
    idx = np.concatenate([np.flatnonzero(te.labels == k)[:4] for k in range(len(tr.class_names))])
    save_image_grid(te.images[idx].transpose(0, 2, 3, 1), out / "samples.png", ncols=8, vmin=0, vmax=1,
                    titles=[tr.class_names[te.labels[i]] + ("*" if te.concepts[i, -1] else "") for i in idx],
                    cell_size=1.0)


def _run(cfg: ConceptsDemoConfig, out: Path, progress) -> ConceptsDemoResults:
    from ..report.concepts_demo_report import concepts_demo_markdown, concepts_demo_summary

    seed = cfg.seed
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    phase("concepts demo: generating and encoding the images", progress)
    sets = {s: make_concept_shapes(n, s, seed=seed, image_size=cfg.image_size)
            for s, n in (("concepts", cfg.n_train), ("train", cfg.n_train), ("test", cfg.n_test),
                         ("shifted", cfg.n_test))}
    Z = {s: _encode(cfg.encoder, d.images, progress) for s, d in sets.items()}
    t_encode = time.perf_counter() - t0
    cs, tr, te, sh = sets["concepts"], sets["train"], sets["test"], sets["shifted"]
    names, spurious = tr.concept_names, tr.spurious_concept

    # main configuration: PCBM (CAVs from the concept split, sparse GLM head)
    phase("concepts demo: fitting the main model (CAVs + sparse GLM)", progress, t0)
    t1 = time.perf_counter()
    cbm = ConceptBottleneckModel(names, scorer="cav", head="glm", groups=tr.concept_groups, seed=seed,
                                 progress=progress)
    cbm.fit(Z["train"], tr.labels, concept_data=(Z["concepts"], cs.concepts))
    t_fit = time.perf_counter() - t1
    main = _evaluate(cbm, Z["test"], te.concepts, te.labels, Z["shifted"], sh.labels, spurious, seed)
    bb = _black_box(Z["train"], tr.labels, {"test": (Z["test"], te.labels), "shifted": (Z["shifted"], sh.labels)},
                    seed)
    curves = {p: intervention_curve(cbm, Z["test"], te.labels, te.concepts, policy=p, seed=seed)
              for p in ("random", "uncertain")}
    group_curve = intervention_curve(cbm, Z["test"], te.labels, te.concepts, policy="uncertain",
                                     groups=tr.concept_groups)
    W = cbm.effective_weight().clone()
    cbm.edit(spurious)
    W_edit = cbm.effective_weight().clone()
    edit_log = list(cbm.edit_log_)
    cbm.undo()
    cbm.save(out / "model")
    if cfg.compare:
        phase("concepts demo: the other sources and heads", progress, t0)
    variants = _variants(names, Z, tr, cs, te, sh, spurious, seed) if cfg.compare else {}

    head = cbm.head_
    chosen = head.path_[head.chosen_]
    config = {"seed": seed, "n_train": cfg.n_train, "n_test": cfg.n_test, "encoder": cfg.encoder,
              "image_size": cfg.image_size, "embedding_dim": int(Z["train"].shape[1]), "scorer": "cav", "head": "glm",
              "glm_lambda": chosen["lam"], "glm_nnz_per_class": chosen["nnz_per_class"],
              "glm_selection": head.selection, "glm_val_accuracy": chosen["val_accuracy"],
              "glm_best_val_accuracy": max(e["val_accuracy"] for e in head.path_),
              "glm_val_size": head.path_[0]["val_size"]}
    gap = bb["test"] - main["test_accuracy"]
    targets = {"concept_accuracy": main["concept_accuracy"] >= TARGETS["concept_accuracy"][0],
               "gap_to_black_box": gap <= TARGETS["gap_to_black_box"][0],
               "intervened_accuracy": main["intervened_accuracy"] >= TARGETS["intervened_accuracy"][0],
               "edit_gain_shifted": main["edit_gain_shifted"] >= TARGETS["edit_gain_shifted"][0]}
    results = ConceptsDemoResults(
        config=config, **main, black_box=bb, gap_to_black_box=gap,
        intervention_curves={**curves, "uncertain (groups)": group_curve},
        weights=W.tolist(), edited_weights=W_edit.tolist(), edit_log=edit_log,
        concept_names=names, class_names=tr.class_names, spurious_concept=spurious, variants=variants,
        seconds={"encode": t_encode, "fit_main": t_fit, "total": time.perf_counter() - t0}, targets=targets)
    _figures(out, curves, bb, W, W_edit, names, spurious, tr, te)
    metrics = results.to_dict()
    write_json(metrics, out / "metrics.json")
    (out / "report.md").write_text(concepts_demo_markdown(metrics, TARGETS))
    write_json(_explanations(cbm, Z["test"], te, tr.class_names), out / "explanations.json")
    build_html(out)  # report.html: weights, explanations, interventions, the edit
    phase(concepts_demo_summary(metrics), progress)
    return results
