"""``report.html`` of an information-plane run: I(X;T) against I(T;Y) for every layer over
training, with the epoch and the layer on hover; the training curves; the per-layer summary."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .html import Page, _require_plotly

__all__ = ["info_page"]


def _check(results) -> Mapping:
    if not isinstance(results, Mapping) or not isinstance(results.get("runs"), Mapping) or not results["runs"]:
        got = sorted(results) if isinstance(results, Mapping) else type(results).__name__
        raise ValueError(f"results: expected an information-plane results dict with a non-empty 'runs' mapping "
                         f"(metrics.json of `bottlenecks info plane`), got keys {got}")
    for name, run in results["runs"].items():
        if not run.get("history"):
            raise ValueError(f"results['runs'][{name!r}]: expected a 'history' list of {{epoch, layer, i_xt, "
                             "i_ty}}, got none")
    return results["runs"]


def _plane_figure(runs: Mapping):
    plotly = _require_plotly()
    from plotly.subplots import make_subplots

    go = plotly.graph_objects
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[f"{n} network" for n in runs],
                        shared_yaxes=True, horizontal_spacing=0.05)
    max_epoch = max(h["epoch"] for run in runs.values() for h in run["history"]) or 1
    # epochs are sampled log-spaced, so the colour follows log10(1 + epoch)
    ticks = [e for e in (0, 1, 10, 100, 1000, 10000, 100000) if e <= max_epoch] + [max_epoch]
    colorbar = {"title": "epoch", "tickvals": [math.log10(1 + e) for e in ticks], "ticktext": [str(e) for e in ticks]}
    for col, (name, run) in enumerate(runs.items(), start=1):
        layers = list(dict.fromkeys(h["layer"] for h in run["history"]))
        widths = {k: v.get("width") for k, v in run.get("layers", {}).items()}
        for i, layer in enumerate(layers):
            pts = sorted((h for h in run["history"] if h["layer"] == layer), key=lambda h: h["epoch"])
            label = f"{layer} (width {widths[layer]})" if widths.get(layer) else layer
            fig.add_trace(go.Scatter(
                x=[p["i_xt"] for p in pts], y=[p["i_ty"] for p in pts], mode="lines+markers", name=label,
                legendgroup=label, showlegend=col == 1,
                line={"color": "rgba(120,120,120,0.35)", "width": 1},
                marker={"size": 7, "color": [math.log10(1 + p["epoch"]) for p in pts], "colorscale": "Viridis",
                        "cmin": 0, "cmax": math.log10(1 + max_epoch), "symbol": i % 12,
                        "showscale": col == 1 and i == 0, "colorbar": colorbar},
                customdata=[[p["epoch"], layer] for p in pts],
                hovertemplate=f"<b>{name}</b>, layer %{{customdata[1]}}<br>epoch %{{customdata[0]}}"
                              "<br>I(X;T) %{x:.3f} bits<br>I(T;Y) %{y:.4f} bits<extra></extra>"),
                row=1, col=col)
        fig.update_xaxes(title_text="I(X;T) bits", row=1, col=col)
    fig.update_yaxes(title_text="I(T;Y) bits", row=1, col=1)
    fig.update_layout(height=500, template="plotly_white", margin={"t": 40, "r": 10},
                      legend={"title": "layer (marker shape)", "orientation": "h", "y": -0.18})
    return fig


def _curves_figure(runs: Mapping):
    go = _require_plotly().graph_objects
    fig = go.Figure()
    for name, run in runs.items():
        curve = run.get("curve") or []
        for key, dash in (("train_acc", "solid"), ("test_acc", "dot")):
            if curve and key in curve[0]:
                fig.add_trace(go.Scatter(x=[c["epoch"] for c in curve], y=[100 * c[key] for c in curve],
                                         mode="lines", name=f"{name} {key.replace('_acc', '')}", legendgroup=name,
                                         line={"dash": dash},
                                         hovertemplate=f"{name} {key}<br>epoch %{{x}}<br>%{{y:.1f}}%<extra></extra>"))
    fig.update_layout(xaxis_title="epoch", yaxis_title="accuracy (%)", height=320, template="plotly_white",
                      margin={"t": 20, "r": 10})
    return fig


def info_page(results: Mapping, title: str | None = None) -> Page:
    """The page of an information-plane run from its results dict (``metrics.json``):
    ``{"config", "runs": {activation: {"history": [{epoch, layer, i_xt, i_ty}], "curve", "layers"}}}``."""
    runs = _check(results)
    cfg = results.get("config", {})
    page = Page(title or "Information plane", kind="info",
                subtitle=f"estimator {cfg.get('estimator', '?')}, {cfg.get('epochs', '?')} epochs, seed "
                         f"{cfg.get('seed', '?')}")
    page.heading("Information plane")
    page.figure(_plane_figure(runs), fig_id="plane", toggles=True,
                caption="each point: one layer at one epoch (colour: epoch); hover for the epoch and the layer; tick "
                        "a layer to show or hide it")
    page.heading("Training")
    page.figure(_curves_figure(runs), fig_id="training", toggles=True)
    page.heading("Layers")
    rows = []
    for name, run in runs.items():
        for layer, s in run.get("layers", {}).items():
            rows.append([name, layer, s.get("width"), s.get("i_xt_final"), s.get("i_xt_peak"),
                         s.get("i_xt_peak_epoch"), s.get("i_ty_final"), s.get("compression_bits")])
    if rows:
        page.table(["network", "layer", "width", "I(X;T) final", "I(X;T) peak", "peak epoch", "I(T;Y) final",
                    "compression bits"], rows, table_id="layers", caption="bits; click a header to sort")
    page.data("layers", sorted({h["layer"] for run in runs.values() for h in run["history"]}))
    return page
