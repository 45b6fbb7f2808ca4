"""The report of the cross-bottleneck comparison (:mod:`bottlenecks.studies.compare`): a table, an
accuracy-vs-forgetting scatter, an information plane (one point per head, and its trajectory over
the stream) and a short text generated from the numbers."""

from __future__ import annotations

import math
from pathlib import Path

from .plots import _new_figure, _save

__all__ = ["findings", "plot_accuracy_forgetting", "plot_information_plane", "table", "write_report"]

HEAD_NAMES = {"dkvb": "DKVB (key-value)", "vq": "VQ top-k codebook", "vib": "VIB", "cbm": "concept bottleneck",
              "linear": "linear probe", "mlp": "MLP probe", "replay": "replay (linear)"}
COLUMNS = (("iid_accuracy", "i.i.d. acc.", "pct"), ("final_accuracy", "stream acc.", "pct"),
           ("learning_accuracy", "acc. just learned", "pct"),
           ("forgetting", "forgetting", "pct"), ("backward_transfer", "BWT", "pct"),
           ("i_xz", "I(X;Z) bits", "range_xz"), ("i_zy", "I(Z;Y) bits", "range_zy"),
           ("changed_fraction", "params changed / step", "pct2"), ("iid_train_seconds", "train s (i.i.d.)", "f1"),
           ("stream_train_seconds", "train s (stream)", "f1"), ("inference_ms_per_1k", "infer ms / 1k", "f1"))
DISCRETE_COLUMNS = (("dead_fraction", "dead codes", "pct"), ("stream_dead_fraction", "dead codes (stream)", "pct"),
                    ("perplexity", "perplexity / codebook", "f1"), ("h_z_bits", "H(Z) bits", "f2"),
                    ("h_z_codebook_bits", "H(Z_c) bits / codebook", "f2"))
CONCEPT_COLUMNS = (("concept_accuracy", "concept acc.", "pct"), ("intervention_gain", "intervention gain", "pct"),
                   ("stream_concept_accuracy", "concept acc. (stream)", "pct"),
                   ("stream_intervention_gain", "intervention gain (stream)", "pct"))


def _stat(summary: dict, key: str):
    s = summary.get(key)
    if not s or s.get("mean") is None or (isinstance(s["mean"], float) and math.isnan(s["mean"])):
        return None
    return s["mean"], s.get("std") or 0.0


def _cell(summary: dict, key: str, kind: str) -> str:
    if kind.startswith("range"):
        lo, hi = (("i_xz_lower", "i_xz_upper") if kind == "range_xz" else ("i_zy_low", "i_zy_high"))
        a, b = _stat(summary, lo), _stat(summary, hi)
        return "–" if a is None or b is None else f"{a[0]:.2f} – {b[0]:.2f}"
    s = _stat(summary, key)
    if s is None:
        return "–"
    mean, std = s
    if kind == "pct":
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    if kind == "pct2":
        return f"{100 * mean:.2f}%"
    digits = 2 if kind == "f2" else 1
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def _md_table(summary: dict, columns) -> str:
    rows = [h for h in summary if any(_stat(summary[h], k) is not None or k in ("i_xz", "i_zy")
                                      for k, _, _ in columns)]
    lines = ["| head | " + " | ".join(label for _, label, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for h in rows:
        lines.append(f"| {HEAD_NAMES.get(h, h)} | " + " | ".join(_cell(summary[h], k, kind) for k, _, kind in columns)
                     + " |")
    return "\n".join(lines)


def _with_learning_accuracy(results) -> dict:
    """The summary plus ``learning_accuracy``: the mean of R's diagonal (accuracy on each task just after
    learning it; low values mean the head did not learn new tasks, whatever its forgetting), mean ± std
    over seeds, computed from the stored accuracy matrices."""
    import numpy as np

    out = {}
    for h, s in results.summary.items():
        v = [float(np.mean(np.diag(np.asarray(r["R"], dtype=float)))) for r in results.runs[h]]
        std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        out[h] = {**s, "learning_accuracy": {"mean": float(np.mean(v)), "std": std, "n": len(v)}}
    return out


def table(results) -> str:
    """The main Markdown table (every head), then the discrete heads' and the concept head's."""
    summary = _with_learning_accuracy(results)
    parts = [_md_table(summary, COLUMNS)]
    discrete = {h: s for h, s in summary.items() if _stat(s, "dead_fraction") is not None}
    if discrete:
        parts += ["", _md_table(discrete, DISCRETE_COLUMNS)]
    concepts = {h: s for h, s in summary.items() if _stat(s, "concept_accuracy") is not None}
    if concepts:
        parts += ["", _md_table(concepts, CONCEPT_COLUMNS)]
    return "\n".join(parts)


def _colours(heads) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {h: cmap(i % 10) for i, h in enumerate(heads)}


def plot_accuracy_forgetting(results, path) -> Path:
    """Stream accuracy (y) against forgetting (x), one point per head and seed, the mean as a
    larger marker; the i.i.d. accuracy as a hollow marker at zero forgetting."""
    fig = _new_figure((6.4, 4.8), 110)
    ax = fig.add_subplot(1, 1, 1)
    colours = _colours(results.runs)
    for h, runs in results.runs.items():
        f = [100 * r["forgetting"] for r in runs]
        a = [100 * r["final_accuracy"] for r in runs]
        ax.scatter(f, a, color=colours[h], alpha=0.35, s=18)
        ax.scatter([sum(f) / len(f)], [sum(a) / len(a)], color=colours[h], s=70, label=HEAD_NAMES.get(h, h),
                   edgecolor="black")
        ax.scatter([0], [100 * sum(r["iid_accuracy"] for r in runs) / len(runs)], facecolor="none",
                   edgecolor=colours[h], s=70)
    ax.set_xlabel("forgetting (points; lower is better)")
    ax.set_ylabel("class-balanced test accuracy after the stream (%)")
    ax.set_title("Accuracy vs forgetting (hollow: the same head trained i.i.d.)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_information_plane(results, path) -> Path:
    """``I(X;Z)`` (x: midpoint of the bound interval, bar: the interval) against ``I(Z;Y)`` (y:
    midpoint of the two estimates) of each head trained i.i.d. (large marker, seed mean), and its
    trajectory over the stream (small markers after each task, seed mean, joined in order)."""
    fig = _new_figure((6.4, 4.8), 110)
    ax = fig.add_subplot(1, 1, 1)
    colours = _colours(results.runs)

    def mid(d):
        return (d["i_xz_lower"] + d["i_xz_upper"]) / 2, (d["i_zy_low"] + d["i_zy_high"]) / 2

    for h, runs in results.runs.items():
        n = len(runs)
        T = len(runs[0]["trajectory"])
        traj = [[sum(mid(r["trajectory"][t])[i] for r in runs) / n for t in range(T)] for i in (0, 1)]
        ax.plot(traj[0], traj[1], "-o", color=colours[h], ms=3, lw=1, alpha=0.7)
        x, y = (sum(mid(r)[i] for r in runs) / n for i in (0, 1))
        lo = sum(r["i_xz_lower"] for r in runs) / n
        hi = sum(r["i_xz_upper"] for r in runs) / n
        ax.errorbar([x], [y], xerr=[[x - lo], [hi - x]], fmt="s", color=colours[h], ms=7, mec="black",
                    label=HEAD_NAMES.get(h, h), capsize=2)
    ax.set_xlabel("I(X;Z) bits (pairwise bounds, noise var. {:g})".format(results.config.get("noise_var", 0)))
    ax.set_ylabel("I(Z;Y) bits")
    ax.set_title("Information plane: i.i.d. heads (squares) and their path over the stream (dots)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def findings(results) -> list[str]:
    """Sentences that say what the numbers show, each computed from them."""
    s = _with_learning_accuracy(results)
    heads = list(s)

    def m(h, k):
        v = _stat(s[h], k)
        return None if v is None else v[0]

    out = []
    iid = sorted(heads, key=lambda h: -m(h, "iid_accuracy"))
    out.append(f"I.i.d., {HEAD_NAMES.get(iid[0], iid[0])} is most accurate ({100 * m(iid[0], 'iid_accuracy'):.1f}%), "
               f"{HEAD_NAMES.get(iid[-1], iid[-1])} least ({100 * m(iid[-1], 'iid_accuracy'):.1f}%).")
    st = sorted(heads, key=lambda h: -m(h, "final_accuracy"))
    fg = sorted(heads, key=lambda h: m(h, "forgetting"))
    out.append(f"On the class-incremental stream, {HEAD_NAMES.get(st[0], st[0])} keeps the most accuracy "
               f"({100 * m(st[0], 'final_accuracy'):.1f}%, forgetting {100 * m(st[0], 'forgetting'):.1f} points); "
               f"{HEAD_NAMES.get(fg[0], fg[0])} forgets least ({100 * m(fg[0], 'forgetting'):.1f} points) and "
               f"{HEAD_NAMES.get(fg[-1], fg[-1])} most ({100 * m(fg[-1], 'forgetting'):.1f}).")
    stuck = [h for h in heads if m(h, "learning_accuracy") < 0.8 * max(m(k, "learning_accuracy") for k in heads)]
    if stuck:
        out.append("Forgetting is measured from each task's peak, and some heads peak low because they do not fully "
                   "learn the new tasks next to the old ones: "
                   + "; ".join(f"{HEAD_NAMES.get(h, h)} reaches {100 * m(h, 'learning_accuracy'):.1f}% on each task "
                               "just after learning it" for h in stuck)
                   + f" (best head {100 * max(m(k, 'learning_accuracy') for k in heads):.1f}%).")
    plain = [h for h in heads if h != "replay"]  # the heads that keep no samples of earlier tasks
    if "replay" in heads and plain:
        best = max(plain, key=lambda h: m(h, "final_accuracy"))
        least = min(plain, key=lambda h: m(h, "forgetting"))
        out.append(f"Without a replay buffer, {HEAD_NAMES.get(best, best)} keeps the most accuracy "
                   f"({100 * m(best, 'final_accuracy'):.1f}%) and {HEAD_NAMES.get(least, least)} forgets least "
                   f"({100 * m(least, 'forgetting'):.1f} points); i.i.d. {HEAD_NAMES.get(best, best)} reaches "
                   f"{100 * m(best, 'iid_accuracy'):.1f}%.")
    gaps = {h: m(h, "iid_accuracy") - m(h, "final_accuracy") for h in heads}
    small = min(gaps, key=gaps.get)
    out.append(f"The smallest gap between a head's i.i.d. accuracy and its stream accuracy is "
               f"{HEAD_NAMES.get(small, small)}'s ({100 * gaps[small]:.1f} points).")
    ch = sorted(heads, key=lambda h: m(h, "changed_fraction"))
    out.append(f"Locality of updates: one step of {HEAD_NAMES.get(ch[0], ch[0])} changes "
               f"{100 * m(ch[0], 'changed_fraction'):.2f}% of its trained parameters, of "
               f"{HEAD_NAMES.get(ch[-1], ch[-1])} {100 * m(ch[-1], 'changed_fraction'):.1f}%.")
    zy = sorted(heads, key=lambda h: -(m(h, "i_zy_low") + m(h, "i_zy_high")))
    xz = sorted(heads, key=lambda h: m(h, "i_xz_upper"))
    out.append(f"Information: {HEAD_NAMES.get(xz[0], xz[0])} keeps the least about the input (I(X;Z) "
               f"{m(xz[0], 'i_xz_lower'):.2f}–{m(xz[0], 'i_xz_upper'):.2f} bits), "
               f"{HEAD_NAMES.get(zy[0], zy[0])} the most about the label (I(Z;Y) "
               f"{m(zy[0], 'i_zy_low'):.2f}–{m(zy[0], 'i_zy_high'):.2f} bits).")
    for h in heads:
        if m(h, "dead_fraction") is not None:
            out.append(f"{HEAD_NAMES.get(h, h)}: {100 * m(h, 'dead_fraction'):.1f}% of codes unused on the test set "
                       f"after i.i.d. training ({100 * m(h, 'stream_dead_fraction'):.1f}% after the stream).")
        if m(h, "concept_accuracy") is not None:
            out.append(f"{HEAD_NAMES.get(h, h)}: concept accuracy {100 * m(h, 'concept_accuracy'):.1f}%; setting every "
                       f"concept to its true value changes accuracy by {100 * m(h, 'intervention_gain'):+.1f} points "
                       f"({100 * m(h, 'stream_intervention_gain'):+.1f} after the stream).")
    return out


CAVEATS = [
    "What these numbers do not show: the information values are estimates of a *noisy* version of each "
    "representation (Z + Gaussian noise of the stated variance, after scaling Z to unit total variance): a "
    "deterministic head on continuous inputs has infinite I(X;Z), so only the noisy quantity is finite; its "
    "ranking of heads can change with the noise variance. I(X;Z) is given as the interval between the "
    "Bhattacharyya (lower) and KL (upper) bounds; I(Z;Y) as the interval between the two mixture estimates (not "
    "a confidence interval); both are capped at log2(n) for n test samples.",
    "Seeds vary the heads' initialisation, the class order and the shuffling, not the data split or the test "
    "set; ± is the standard deviation over seeds (sample std), not a confidence interval.",
    "Times are wall-clock seconds of the training steps on a CPU shared with other jobs: compare them within "
    "this run only.",
]


def write_report(results, out, stem: str = "report", command: str | None = None,
                 notes: list[str] | None = None, caveats: list[str] | None = None) -> Path:
    """Write ``<stem>.json``, ``<stem>-scatter.png``, ``<stem>-plane.png`` and ``<stem>.md`` into
    ``out`` (``notes``: more lines for the list under the title; ``caveats``: more lines for "what
    the numbers do not show"); returns the Markdown file's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results.to_json(out / f"{stem}.json")
    scatter = plot_accuracy_forgetting(results, out / f"{stem}-scatter.png")
    plane = plot_information_plane(results, out / f"{stem}-plane.png")
    cfg, data = results.config, results.data
    lrs = "; ".join(f"{h} {v['best']:g}" + (" (" + ", ".join(f"{float(k):g}: {100 * a:.1f}%" for k, a in
                                                         v["scores"].items()) + ")" if v.get("scores") else "")
                    for h, v in results.learning_rates.items())
    parts = [f"# Bottleneck comparison: {data.get('name')}", "",
             f"Every head on the same frozen features, the same data and the same class-incremental stream "
             f"({cfg.get('n_tasks')} tasks), seeds {cfg.get('seed')}..{cfg.get('seed') + cfg.get('seeds') - 1} "
             f"(mean ± std). Total time {results.seconds:.0f} s." + (f" Command: `{command}`." if command else ""),
             "",
             *[f"- data: {n}" for n in data.get("notes", [])],
             f"- split: {data.get('n_train')} train / {data.get('n_val')} validation (stratified, for early "
             f"stopping and learning rates) / {data.get('n_test')} test",
             f"- learning rates (chosen on the validation split, i.i.d., before the runs; validation accuracy of "
             f"each rate of the grid): {lrs}",
             f"- every run trains until validation accuracy has not improved for {cfg.get('patience')} epochs "
             f"(at least {cfg.get('min_epochs', 1)}, at most {cfg.get('max_epochs')}), and keeps its best epoch; in "
             "the stream, on each task's classes",
             *[f"- {n}" for n in notes or []],
             "", "## What the comparison found", "", *[f"- {s}" for s in findings(results)], "",
             "## Table", "", table(results), "",
             "Accuracies class-balanced, in %. *stream acc.*: after the last task, over all classes; *forgetting*: "
             "mean drop from each task's best accuracy to its final one (Chaudhry et al. 2018); *acc. just learned*: "
             "mean of R's diagonal (accuracy on each task right after training on it); *BWT*: backward "
             "transfer (Lopez-Paz & Ranzato 2017); *I(X;Z)*, *I(Z;Y)*: pairwise-distance estimates (Kolchinsky & "
             f"Tracey 2017) on {data.get('n_info')} test samples of the representation each decoder reads; "
             "*params changed / step*: fraction of trained scalars one stream step changes (every "
             f"{cfg.get('param_probe_every')}th step measured); *dead codes*: codes no test sample selects; "
             "*H(Z)*: plug-in entropy of the whole code (capped at log2 n) and per codebook.", "",
             "## Figures", "",
             f"![accuracy vs forgetting]({scatter.name})", "",
             f"![information plane]({plane.name})", "",
             "## What the numbers do not show", "", *[f"- {c}" for c in [*CAVEATS, *(caveats or [])]], ""]
    md = out / f"{stem}.md"
    md.write_text("\n".join(parts))
    return md
