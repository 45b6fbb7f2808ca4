"""``report.html`` of a continual run (and of any results with the same ``methods`` layout, e.g. a
comparison): the summary table, accuracy curves with hover values and per-method toggles, the
accuracy matrices R[i][j] with hover values, and the key usage per head of a key-value
bottleneck (which keys each task used)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .html import Page, _require_plotly

__all__ = ["continual_page", "key_usage_figure"]

_METRICS = (("final_accuracy", "final acc. %", True), ("average_accuracy", "avg acc. %", True),
            ("forgetting", "forgetting %", True), ("backward_transfer", "BWT %", True), ("seconds", "time s", False))
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")


def _stat_cell(stat, pct: bool):
    if not stat or stat.get("mean") is None or (isinstance(stat["mean"], float) and math.isnan(stat["mean"])):
        return ("–", "")
    scale = 100.0 if pct else 1.0
    mean, std = stat["mean"] * scale, (stat.get("std") or 0.0) * scale
    return (f"{mean:.1f} ± {std:.1f}" if std else f"{mean:.1f}", mean)


def _base(name: str) -> str:
    return name[: -len("-joint")] if name.endswith("-joint") else name


def _check(results) -> Mapping:
    if not isinstance(results, Mapping) or not isinstance(results.get("methods"), Mapping) or not results["methods"]:
        got = sorted(results) if isinstance(results, Mapping) else type(results).__name__
        raise ValueError(f"results: expected a continual results dict with a non-empty 'methods' mapping "
                         f"(metrics.json of a continual run), got keys {got}")
    return results["methods"]


def _curves_figure(methods: Mapping, colour: dict):
    go = _require_plotly().graph_objects
    fig = go.Figure()
    boundaries = []
    for name, res in methods.items():
        runs = [r for r in res["runs"] if r.get("curve", {}).get("steps")]
        if not runs:
            continue
        steps = runs[0]["curve"]["steps"]
        accs = np.array([r["curve"]["accuracy"][: len(steps)] for r in runs], dtype=float) * 100
        mean, std = accs.mean(0), accs.std(0)
        c, dash = colour[_base(name)], "dot" if name.endswith("-joint") else "solid"
        if len(runs) > 1:
            fig.add_trace(go.Scatter(x=list(steps) + list(steps)[::-1], y=list(mean + std) + list(mean - std)[::-1],
                                     fill="toself", fillcolor=c, opacity=0.15, line={"width": 0}, hoverinfo="skip",
                                     legendgroup=name, showlegend=False, name=name))
        fig.add_trace(go.Scatter(x=steps, y=mean, mode="lines", name=name, legendgroup=name,
                                 line={"color": c, "dash": dash}, customdata=std,
                                 hovertemplate=f"<b>{name}</b><br>step %{{x}}<br>accuracy %{{y:.1f}}% "
                                               "± %{customdata:.1f}<extra></extra>"))
        if not boundaries and "task_boundaries" in runs[0]:
            boundaries = runs[0]["task_boundaries"][:-1]
    for i, b in enumerate(boundaries):
        fig.add_vline(x=b, line={"dash": "dot", "color": "#999", "width": 1})
        fig.add_annotation(x=b, y=1.02, yref="paper", text=f"task {i + 2}", showarrow=False, xanchor="left",
                           font={"size": 10, "color": "#777"})
    fig.update_layout(xaxis_title="training step", yaxis_title="class-balanced test accuracy (%)",
                      yaxis_range=[0, 101], height=420, margin={"t": 30, "r": 10}, hovermode="closest",
                      template="plotly_white", legend={"groupclick": "togglegroup"})
    return fig


def _matrices_figure(mats: dict):
    plotly = _require_plotly()
    from plotly.subplots import make_subplots

    go = plotly.graph_objects
    n = len(mats)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(mats), horizontal_spacing=0.06,
                        vertical_spacing=0.16)
    for k, (name, R) in enumerate(mats.items()):
        T = R.shape[0]
        labels = [f"task {j + 1}" for j in range(T)]
        z = np.where(np.isnan(R), None, np.round(100 * R, 1))
        text = [["" if v is None else f"{v:.0f}" for v in row] for row in z.tolist()]
        fig.add_trace(go.Heatmap(z=z.tolist(), x=labels, y=[f"after {j + 1}" for j in range(T)], zmin=0, zmax=100,
                                 colorscale="Viridis", showscale=k == 0, text=text, texttemplate="%{text}",
                                 name=name, colorbar={"title": "%", "len": 0.8},
                                 hovertemplate=f"<b>{name}</b><br>trained through %{{y}}<br>tested on %{{x}}"
                                               "<br>accuracy %{z:.1f}%<extra></extra>"),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=300 * rows + 40, margin={"t": 40, "r": 10}, template="plotly_white")
    return fig


def key_usage_figure(usage, heads=None, method: str = "dkvb"):
    """Heat map of key usage: ``usage (heads, tasks, keys)`` counts; a menu picks the head.
    Each row is a task; a cell is the share of that task's training inputs that chose the key."""
    go = _require_plotly().graph_objects
    u = np.asarray(usage, dtype=float)
    if u.ndim != 3 or u.size == 0:
        raise ValueError(f"key usage: expected counts of shape (heads, tasks, keys), got {u.shape}")
    heads = list(range(u.shape[0])) if heads is None else list(heads)
    share = u / np.maximum(u.sum(2, keepdims=True), 1)
    fig = go.Figure()
    tasks = [f"task {t + 1}" for t in range(u.shape[1])]
    for i, h in enumerate(heads):
        fig.add_trace(go.Heatmap(z=np.round(100 * share[i], 2).tolist(), y=tasks, colorscale="Blues",
                                 visible=i == 0, name=f"head {h}", colorbar={"title": "% of task"},
                                 hovertemplate=f"head {h}, key %{{x}}<br>%{{y}}: %{{z:.2f}}% of its inputs"
                                               "<extra></extra>"))
    buttons = [{"label": f"head {h}", "method": "update",
                "args": [{"visible": [j == i for j in range(len(heads))]}, {"title.text": f"{method}: head {h}"}]}
               for i, h in enumerate(heads)]
    fig.update_layout(updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.18}],
                      title={"text": f"{method}: head {heads[0]}", "x": 0.01}, xaxis_title="key",
                      yaxis={"autorange": "reversed"}, height=320, margin={"t": 60, "r": 10},
                      template="plotly_white")
    return fig


def continual_page(results: Mapping, key_usage: Mapping | None = None, title: str | None = None,
                   notes: list[str] | None = None) -> Page:
    """The page of a continual run from its results dict (``metrics.json``): ``{"config",
    "methods": {name: {"runs": [...], "summary": {...}}}}``. ``key_usage`` (the run's
    ``key_usage.json``; default ``results["key_usage"]``): ``{"method", "seed", "heads", "usage":
    (heads, tasks, keys) counts}`` adds the key-usage heat map."""
    methods = _check(results)
    notes = notes if notes is not None else results.get("notes")
    cfg = results.get("config", {})
    seeds = sorted({r["seed"] for m in methods.values() for r in m.get("runs", []) if "seed" in r})
    page = Page(title or "Continual learning run", kind="continual",
                subtitle=f"{len(methods)} methods, {cfg.get('n_tasks', '?')} tasks, seeds "
                         f"{', '.join(map(str, seeds)) or '?'}")
    for line in notes or []:
        page.text(line.lstrip("- "), cls="bn-note")
    page.heading("Summary")
    rows = []
    for name, res in methods.items():
        summary = res.get("summary", {})
        rows.append([name] + [_stat_cell(summary.get(k), pct) for k, _, pct in _METRICS])
    page.table(["method"] + [label for _, label, _ in _METRICS], rows, table_id="summary",
               caption="mean ± std over seeds; click a header to sort. -joint: the same method trained i.i.d.")
    bases = list(dict.fromkeys(_base(n) for n in methods))
    colour = {b: _COLOURS[i % len(_COLOURS)] for i, b in enumerate(bases)}
    page.heading("Accuracy over the stream")
    page.figure(_curves_figure(methods, colour), fig_id="curves", toggles=True,
                caption="mean over seeds (band: ± std); dotted: i.i.d. (joint) training; tick a method to show or "
                        "hide it, hover for values")
    mats = {name: np.nanmean([np.array(r["R"], dtype=float) for r in res["runs"]], axis=0)
            for name, res in methods.items() if res.get("runs") and "R" in res["runs"][0]}
    if mats:
        page.heading("Accuracy matrices")
        page.figure(_matrices_figure(mats), fig_id="matrices",
                    caption="R[i][j]: accuracy on task j's classes after training through task i (mean over seeds)")
    ku = key_usage if key_usage is not None else results.get("key_usage")
    if ku:
        page.heading("Key usage per head")
        page.figure(key_usage_figure(ku["usage"], ku.get("heads"), ku.get("method", "dkvb")), fig_id="key-usage",
                    caption="which keys each task's training inputs chose in value training, per head (menu: "
                            f"pick a head; seed {ku.get('seed', '?')})")
    page.data("methods", list(methods))
    return page
