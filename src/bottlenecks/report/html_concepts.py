"""``report.html`` of a concept-bottleneck run: concept weights per class (heat map and a sortable
table with a sparse view), a per-sample explanation (the image, its concept scores and each
concept's contribution to the decision), the intervention curves and the edit log with the
accuracy before and after each edit."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .html import Page, _require_plotly, image_data_uri

__all__ = ["concepts_page", "explanation_record"]


def explanation_record(explanation: Mapping, image=None, true_class: str | None = None,
                       true_concepts=None, index: int | None = None) -> dict:
    """One sample for the page from ``ConceptBottleneckModel.explain(Z, i, top=n_concepts)``:
    the explanation plus the image (``(H, W)``, ``(H, W, 3)`` or ``(3, H, W)`` in [0, 1], kept at 3
    decimals), the true class and the true concept values. Plain data: it goes into metrics.json."""
    rec = {"index": index, "true_class": true_class, **dict(explanation)}
    if image is not None:
        rec["image"] = np.round(np.asarray(image, dtype=np.float64), 3).tolist()
    if true_concepts is not None:
        rec["true_concepts"] = np.asarray(true_concepts).astype(int).tolist()
    return rec


def _check(results) -> Mapping:
    need = ("concept_names", "class_names", "weights")
    if not isinstance(results, Mapping) or any(k not in results for k in need):
        got = sorted(results) if isinstance(results, Mapping) else type(results).__name__
        raise ValueError(f"results: expected a concept-bottleneck results dict with {list(need)} (metrics.json of "
                         f"`bottlenecks concepts demo`), got keys {got}")
    W = np.asarray(results["weights"], dtype=float)
    shape = (len(results["class_names"]), len(results["concept_names"]))
    if W.shape != shape:
        raise ValueError(f"results['weights']: expected shape (classes, concepts) = {shape}, got {W.shape}")
    return results


def _weights_figure(W, W_edit, concepts, classes):
    go = _require_plotly().graph_objects
    lim = float(np.abs(W).max()) or 1.0
    fig = go.Figure()
    for k, (name, M) in enumerate((("before the edit", W), ("after the edit", W_edit))):
        if M is None:
            continue
        fig.add_trace(go.Heatmap(z=np.round(M, 4).tolist(), x=concepts, y=classes, zmid=0, zmin=-lim, zmax=lim,
                                 colorscale="RdBu", reversescale=True, visible=k == 0, name=name,
                                 text=[["" if abs(v) < 1e-9 else f"{v:.2f}" for v in row] for row in M.tolist()],
                                 texttemplate="%{text}", colorbar={"title": "weight"},
                                 hovertemplate="class %{y}<br>concept %{x}<br>weight %{z:.3f}<extra>" + name +
                                               "</extra>"))
    layout = {"height": 140 + 40 * len(classes), "template": "plotly_white", "margin": {"t": 60, "r": 10},
              "yaxis": {"autorange": "reversed"}}
    if W_edit is not None:
        layout["updatemenus"] = [{"type": "buttons", "direction": "right", "x": 0, "xanchor": "left", "y": 1.02,
                                  "yanchor": "bottom",
                                  "buttons": [{"label": "before the edit", "method": "restyle",
                                               "args": [{"visible": [True, False]}]},
                                              {"label": "after the edit", "method": "restyle",
                                               "args": [{"visible": [False, True]}]}]}]
    fig.update_layout(**layout)
    return fig


def _intervention_figure(curves: Mapping, baseline: float | None):
    go = _require_plotly().graph_objects
    fig = go.Figure()
    for name, c in curves.items():
        units = [""] + [", ".join(u) for u in c.get("units", [])]
        fig.add_trace(go.Scatter(x=c["n_intervened"], y=[100 * a for a in c["accuracy"]], mode="lines+markers",
                                 name=name, legendgroup=name, customdata=units[: len(c["accuracy"])],
                                 hovertemplate=f"<b>{name}</b><br>%{{x}} intervened (last: %{{customdata}})"
                                               "<br>class accuracy %{y:.1f}%<extra></extra>"))
    if baseline is not None:
        fig.add_hline(y=100 * baseline, line={"dash": "dash", "color": "#888"},
                      annotation_text="black-box probe", annotation_position="bottom right")
    fig.update_layout(xaxis_title="concepts (or groups) set to their true value", yaxis_title="class accuracy (%)",
                      height=380, template="plotly_white", margin={"t": 20, "r": 10})
    return fig


def _pct(v):
    return (f"{100 * v:.1f}%", 100 * v) if isinstance(v, (int, float)) else "–"


def concepts_page(results: Mapping, explanations: list | None = None, title: str | None = None) -> Page:
    """The page of a concept-bottleneck run from its results dict (the demo's ``metrics.json``):
    ``concept_names``, ``class_names``, ``weights (classes, concepts)``, optional ``edited_weights``,
    ``edit_log``, ``intervention_curves`` and accuracies; ``explanations`` (a list of
    :func:`explanation_record`, the run's ``explanations.json``; default: ``results["explanations"]``)
    for the per-sample view."""
    r = _check(results)
    explanations = explanations if explanations is not None else r.get("explanations")
    concepts, classes = list(r["concept_names"]), list(r["class_names"])
    W = np.asarray(r["weights"], dtype=float)
    W_edit = np.asarray(r["edited_weights"], dtype=float) if r.get("edited_weights") is not None else None
    cfg = r.get("config", {})
    page = Page(title or "Concept bottleneck", kind="concepts",
                subtitle=f"{len(concepts)} concepts, {len(classes)} classes; encoder {cfg.get('encoder', '?')}, "
                         f"scorer {cfg.get('scorer', '?')}, head {cfg.get('head', '?')}, seed {cfg.get('seed', '?')}")
    rows = [[label, _pct(r.get(key))] for key, label in (
        ("concept_accuracy", "concept accuracy (test)"), ("test_accuracy", "class accuracy (test)"),
        ("shifted_accuracy", "class accuracy (shifted)"), ("intervened_accuracy", "all true concepts intervened"))
        if key in r]
    if isinstance(r.get("black_box"), Mapping):
        rows.append(["black-box linear probe (test)", _pct(r["black_box"].get("test"))])
    if rows:
        page.heading("Summary")
        page.table(["measure", "value"], rows, table_id="summary", sortable=False)

    page.heading("Concept weights per class")
    page.figure(_weights_figure(W, W_edit, concepts, classes), fig_id="weights",
                caption="effective weight of each concept in each class's logit; hover for values" +
                        ("; buttons: before / after the edit" if W_edit is not None else ""))
    page.html('<div class="bn-controls"><label><input type="checkbox" id="sparse-view" checked> sparse view '
              "(hide concepts no class uses, blank the zero weights)</label>"
              '<span class="bn-count" id="weights-count"></span></div>')
    used = (np.abs(W) > 1e-9).sum(0)
    page.table(["concept", *classes, "classes using it", "max |w|"],
               [[c, *[float(w) for w in W[:, j]], int(used[j]), float(np.abs(W[:, j]).max())]
                for j, c in enumerate(concepts)],
               table_id="weights-table", caption="click a header to sort (e.g. by a class to see its concepts)")

    if explanations:
        page.heading("Explain one prediction")
        page.text("Click an image (red outline: misclassified). Bars: the concept scores of the image and each "
                  "concept's contribution (standardised score x weight) to the predicted class's logit.")
        samples = []
        for e in explanations:
            s = {k: v for k, v in e.items() if k != "image"}
            k = e.get("class")  # the model's class label: an index into class_names when they are 0..C-1
            s["predicted"] = classes[k] if isinstance(k, int) and 0 <= k < len(classes) else e.get("class_name")
            if e.get("image") is not None:
                s["src"] = image_data_uri(e["image"])
            samples.append(s)
        page.data("samples", samples)
        page.html('<div class="bn-gallery" id="gallery"></div><div class="bn-explain"><div class="bn-big" '
                  'id="explain-image"></div><div><div class="bn-plot" id="explain-plot"></div></div></div>')

    if r.get("intervention_curves"):
        page.heading("Interventions")
        bb = r.get("black_box", {}).get("test") if isinstance(r.get("black_box"), Mapping) else None
        page.figure(_intervention_figure(r["intervention_curves"], bb), fig_id="interventions", toggles=True,
                    caption="test accuracy as more concepts are set to their true value; hover for the concepts set")

    if r.get("edit_log") is not None:
        page.heading("Edits")
        rows = []
        for e in r["edit_log"]:
            what = ", ".join(e.get("concepts", [])) if isinstance(e.get("concepts"), list) else e.get("concepts")
            rows.append([e.get("op", "?"), what, str(e.get("classes", "all")), e.get("scale")])
        page.table(["edit", "concepts", "classes", "scale"], rows, table_id="edit-log", sortable=False)
        acc = [[split, _pct(r.get(before)), _pct(r.get(after))] for split, before, after in (
            ("test", "test_accuracy", "edited_test_accuracy"),
            ("shifted", "shifted_accuracy", "edited_shifted_accuracy"),
            ("test, all concepts intervened", "intervened_accuracy", "edited_intervened_accuracy")) if after in r]
        if acc:
            page.table(["split", "before the edit", "after the edit"], acc, table_id="edit-accuracy", sortable=False)
    if r.get("variants"):
        page.heading("Other concept sources and heads")
        page.table(["model", "concept acc.", "test", "all intervened", "shifted", "shifted after edit"],
                   [[k, _pct(v.get("concept_accuracy")), _pct(v.get("test_accuracy")),
                     _pct(v.get("intervened_accuracy")), _pct(v.get("shifted_accuracy")),
                     _pct(v.get("edited_shifted_accuracy"))] for k, v in r["variants"].items()], table_id="variants")
    page.data("concepts", concepts).data("classes", classes)
    page.script("concepts.js")
    return page
