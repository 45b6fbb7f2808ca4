"""``report.html`` of a codebook run (TokFSM): the models' accuracy and training loss, a code
browser (every recorded code with its usage, its contexts with the firing token highlighted,
precision / recall against the run's labels; search by token or label, sort), best code vs best
neuron per label, and steering success per state."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .html import Page, _require_plotly

__all__ = ["codebook_page"]


def _check(results, codes) -> Mapping:
    if not isinstance(results, Mapping) or not isinstance(results.get("models"), Mapping):
        got = sorted(results) if isinstance(results, Mapping) else type(results).__name__
        raise ValueError(f"results: expected a codebook results dict with a 'models' mapping (metrics.json of "
                         f"`bottlenecks codebook tokfsm`), got keys {got}")
    if codes is not None:
        if not isinstance(codes, Mapping) or not isinstance(codes.get("codes"), list):
            raise ValueError("codes: expected a dict with a 'codes' list (codes.json of a codebook run), got "
                             f"{sorted(codes) if isinstance(codes, Mapping) else type(codes).__name__}")
        for i, c in enumerate(codes["codes"][:1]):
            missing = [k for k in ("name", "site", "usage", "share", "contexts") if k not in c]
            if missing:
                raise ValueError(f"codes['codes'][{i}]: missing {missing}")
    return results


def _loss_figure(models: Mapping):
    go = _require_plotly().graph_objects
    fig = go.Figure()
    for name, m in models.items():
        loss = np.asarray(m.get("train_loss") or [], dtype=float)
        if not loss.size:
            continue
        w = max(1, len(loss) // 200)  # at most ~200 points a curve: the page's size
        n = len(loss) // w * w
        smooth = loss[:n].reshape(-1, w).mean(1)
        fig.add_trace(go.Scatter(x=((np.arange(len(smooth)) + 1) * w).tolist(), y=np.round(smooth, 4).tolist(),
                                 mode="lines", name=name, legendgroup=name,
                                 hovertemplate=f"<b>{name}</b><br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>"))
    fig.update_layout(xaxis_title="step", yaxis_title=f"train LM loss (mean of {w} steps)" if models else "",
                      height=340, template="plotly_white", margin={"t": 20, "r": 10})
    return fig


def _code_vs_neuron_figure(analysis: Mapping):
    go = _require_plotly().graph_objects
    fig = go.Figure()
    for where, label in (("state", "state token"), ("next", "next token")):
        a = analysis.get(where)
        if not a or "best_code_precision" not in a:
            continue
        cp, npr, cr = (np.asarray(a[k], dtype=float) for k in ("best_code_precision", "best_neuron_precision",
                                                                "best_code_recall"))
        states = np.arange(len(cp))
        fig.add_trace(go.Scatter(x=np.round(npr, 4).tolist(), y=np.round(cp, 4).tolist(), mode="markers", name=label,
                                 legendgroup=label, customdata=np.stack([states, np.round(cr, 4)], 1).tolist(),
                                 hovertemplate=f"<b>{label}</b>, state %{{customdata[0]}}<br>best code precision "
                                               "%{y:.3f} (recall %{customdata[1]:.3f})<br>best neuron precision "
                                               "%{x:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"},
                             hoverinfo="skip", showlegend=False))
    fig.update_layout(xaxis_title="best neuron precision (same recall)", yaxis_title="best code precision",
                      height=380, template="plotly_white", margin={"t": 20, "r": 10}, xaxis_range=[0, 1.02],
                      yaxis_range=[0, 1.02])
    return fig


def _steering_figure(steering: Mapping):
    go = _require_plotly().graph_objects
    names = [k for k, s in steering.items() if s.get("per_state")]
    z = [[round(100 * float(v), 1) for v in steering[k]["per_state"]] for k in names]
    fig = go.Figure(go.Heatmap(z=z, y=names, x=list(range(len(z[0]))) if z else [], colorscale="Greens", zmin=0,
                               zmax=100, colorbar={"title": "% of prompts"},
                               hovertemplate="%{y}<br>target state %{x}<br>%{z:.0f}% of prompts continue with a "
                                             "successor<extra></extra>"))
    fig.update_layout(xaxis_title="target state", height=140 + 26 * len(names), template="plotly_white",
                      margin={"t": 20, "r": 10, "l": 10}, yaxis={"automargin": True})
    return fig


def _pct(v):
    return (f"{100 * v:.1f}%", 100 * v) if isinstance(v, (int, float)) else "–"


def codebook_page(results: Mapping, codes: Mapping | None = None, title: str | None = None) -> Page:
    """The page of a codebook run from its results dict (``metrics.json`` of the TokFSM study) and
    the code records (``codes.json``: ``{"label_name", "tokens_name", "codes": [{"name", "site",
    "usage", "share", "top": [{"label", "precision", "recall", "count"}], "contexts": [{"tokens",
    "at", "label"}]}]}``)."""
    r = _check(results, codes)
    cfg = r.get("config", {})
    page = Page(title or "Codebook features: TokFSM", kind="codebook",
                subtitle=f"{cfg.get('steps', '?')} steps of {cfg.get('batch_size', '?')} sequences, "
                         f"{cfg.get('num_codes', '?')} codes per codebook, k={cfg.get('k', '?')}, seed "
                         f"{cfg.get('seed', '?')}")
    page.heading("Models")
    rows = []
    for name, m in r["models"].items():
        gap = m.get("gap_to_original")
        dead = m.get("dead_codes") or {}
        rows.append([name, _pct(m.get("transition_accuracy")),
                     (f"{-gap['points']:+.1f} ± {gap['paired_se']:.1f}", -gap["points"]) if gap else "",
                     _pct(dead.get("mean")) if dead else "–", dead.get("perplexity"), m.get("final_train_loss")])
    page.table(["model", "transition accuracy", "vs original (pt ± SE)", "dead codes", "code perplexity",
                "train loss"], rows, table_id="models")
    page.figure(_loss_figure(r["models"]), fig_id="loss", toggles=True, caption="training loss; tick a model to "
                "show or hide it")
    if codes is not None:
        cs = codes["codes"]
        page.heading("Code browser")
        page.text(codes.get("description") or "Codes recorded on held-out sequences.")
        page.html('<div class="bn-controls"><input type="search" id="code-search" '
                  'placeholder="search: a word, token:7 (fires on token 7), label:37 (best labels)">'
                  '<label>sort <select id="code-sort"><option value="usage">usage</option>'
                  '<option value="precision">precision</option><option value="recall">recall</option>'
                  '<option value="name">codebook order</option></select></label>'
                  '<label>codebook <select id="code-site"><option value="">all</option></select></label>'
                  '<span class="bn-count" id="code-count"></span></div>'
                  '<div class="bn-browser"><div class="bn-list"><table class="bn-table" id="code-list"><thead><tr>'
                  f"<th>code</th><th>usage</th><th>best {codes.get('label_name', 'label')}</th><th>precision</th>"
                  '<th>recall</th></tr></thead><tbody></tbody></table></div><div class="bn-detail" id="code-detail">'
                  '<p class="bn-empty">click a code to see where it fires</p></div></div>')
        page.data("codes", cs).data("label_name", codes.get("label_name", "label"))
        page.data("tokens_name", codes.get("tokens_name", "tokens"))
        page.script("codes.js")
    a = r.get("analysis") or {}
    if a.get("state"):
        page.heading("Best code vs best neuron per state")
        page.figure(_code_vs_neuron_figure(a), fig_id="code-vs-neuron", toggles=True,
                    caption=f"one point per state; analysis model {a.get('model', '?')}; hover for the state")
    if a.get("steering"):
        st = a["steering"]
        page.heading("Steering")
        page.table(["steering", "codes per state", "next states that follow s", "unsteered", "states steered"],
                   [[k, s.get("mean_codes_used"), _pct(s.get("mean_success")), _pct(s.get("baseline_mean")),
                     _pct(s.get("states_steered"))] for k, s in st.items()], table_id="steering")
        if any(s.get("per_state") for s in st.values()):
            page.figure(_steering_figure(st), fig_id="steering-per-state",
                        caption="per target state: share of prompts steered into a successor of the state")
    return page
