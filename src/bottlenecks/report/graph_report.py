"""The VQGraph report: ``results.json``, ``report.md`` and PNGs (accuracy bars, code usage, a 2-D
view of the tokenizer's node embeddings coloured by class and by code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the paper's numbers (Yang et al., 2024, Table 1, transductive, SAGE teacher), in %
PAPER = {
    "cora": {"SAGE": 80.64, "MLP": 59.18, "GLNN": 80.54, "VQGraph": 83.93},
    "citeseer": {"SAGE": 70.49, "MLP": 58.50, "GLNN": 71.77, "VQGraph": 76.08},
}
ORDER = ("SAGE", "tokenizer", "MLP", "GLNN", "VQGraph")
LABELS = {"SAGE": "SAGE teacher", "tokenizer": "tokenizer (SAGE + codebook)", "MLP": "MLP",
          "GLNN": "GLNN (MLP student)", "VQGraph": "VQGraph (MLP student)"}


def _ms(vals) -> str:
    v = np.asarray(vals, dtype=float) * 100
    return f"{v.mean():.2f} ± {v.std():.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def accuracy_table(results, setting: str) -> str:
    """Markdown: method x (validation, test[, ind, prod]) mean ± std over seeds, in %; the paper's
    transductive number beside it where known."""
    runs = results.runs[setting]
    inductive = setting == "inductive"
    paper = PAPER.get(str(results.dataset.get("name", "")).lower(), {})
    cols = ["validation", "test (tran)" if inductive else "test"] + (["test (ind)", "prod"] if inductive else [])
    cols += [] if inductive else ["paper"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for m in ORDER:
        if m not in runs:
            continue
        r = runs[m]
        cells = [_ms(r["val"]), _ms(r["test"])]
        if inductive:
            cells += [_ms(r["ind"]), _ms(r["prod"])]
        else:
            cells.append(f"{paper[m]:.2f}" if m in paper else "–")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chosen_table(results, setting: str) -> str:
    """How often each hyper-parameter choice won on validation, per method."""
    lines = []
    for m in ORDER:
        ch = results.runs[setting].get(m, {}).get("chosen")
        if not ch or ch[0] is None:
            continue
        keys = [str(sorted(c.items())) for c in ch]
        vals, counts = np.unique(keys, return_counts=True)
        lines.append(f"- {m}: " + "; ".join(f"{v} x{c}" for v, c in zip(vals, counts, strict=True)))
    return "\n".join(lines)


def teacher_summary(results, setting: str) -> str:
    """One line: the teachers' kept epoch (mean, range over seeds) and the confidence of their soft labels
    (mean top probability; 1 / classes: uniform), or '' for runs that did not record them."""
    runs, parts = results.runs[setting], []
    for m in ("SAGE", "tokenizer"):
        r = runs.get(m, {})
        if "confidence" in r and "epoch" in r:
            parts.append(f"{LABELS[m]}: kept epoch {np.mean(r['epoch']):.0f} (range {min(r['epoch'])}-"
                         f"{max(r['epoch'])}), soft-label confidence {np.mean(r['confidence']):.2f}")
    if not parts:
        return ""
    sel = results.config.get("teacher_select", "acc")
    return (f"Teachers (epoch of the lowest validation {'loss' if sel == 'loss' else 'accuracy'}): "
            + "; ".join(parts) + ".")


def timing_table(results) -> str:
    t = results.timing
    if not t:
        return ""
    st = t.get("MLP student")
    lines = ["| model | whole graph min ms | median ms | per node µs | student speed-up | one node (2-hop) ms "
             "| student speed-up |", "|---|---|---|---|---|---|---|"]
    for name, r in t.items():
        ratio = r["min_ms"] / st["min_ms"] if st else float("nan")
        one = r.get("single_node_ms", float("nan"))
        ratio1 = one / st["single_node_ms"] if st and "single_node_ms" in st else float("nan")
        lines.append(f"| {name} | {r['min_ms']:.2f} | {r['median_ms']:.2f} | {r['per_node_us']:.3f} | {ratio:.1f}x "
                     f"| {one:.3f} | {ratio1:.1f}x |")
    return "\n".join(lines)


def plot_accuracies(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(results.runs)
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        runs = results.runs[setting]
        names = [m for m in ORDER if m in runs]
        keys = ["test"] + (["ind"] if setting == "inductive" else [])
        width = 0.8 / len(keys)
        for j, key in enumerate(keys):
            vals = [np.asarray(runs[m][key], float) * 100 for m in names]
            ax.bar(np.arange(len(names)) + j * width, [v.mean() for v in vals], width,
                   yerr=[v.std() for v in vals], capsize=3, label="tran" if key == "test" else "ind")
        ax.set_xticks(np.arange(len(names)) + width * (len(keys) - 1) / 2, names, rotation=20)
        ax.set_ylabel("test accuracy (%)")
        lo = min(np.asarray(runs[m]["test"]).mean() for m in names) * 100
        ax.set_ylim(max(0, lo - 10), 100)
        ax.set_title(f"{results.dataset.get('name')} — {setting}")
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_usage(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = np.asarray(results.usage, float)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(np.arange(1, len(u) + 1), u * 100)
    ax.set_xlabel("code rank")
    ax.set_ylabel("share of nodes (%)")
    ax.set_xscale("log")
    used = int((u > 0).sum())
    ax.set_title(f"code usage: {used} of {len(u)} codes used (first seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_view(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = results.view
    xy = np.asarray(v["xy"], float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    axes[0].scatter(xy[:, 0], xy[:, 1], c=v["label"], cmap="tab10", s=6)
    axes[0].set_title("tokenizer embeddings (PCA), coloured by class")
    codes = np.asarray(v["code"])
    _, dense = np.unique(codes, return_inverse=True)
    perm = np.random.default_rng(0).permutation(dense.max() + 1)  # neighbouring code ids get unrelated colours
    axes[1].scatter(xy[:, 0], xy[:, 1], c=perm[dense], cmap="nipy_spectral", s=6)
    axes[1].set_title(f"coloured by code ({len(np.unique(codes))} codes among these nodes)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def vqgraph_markdown(results, png_prefix: str = "") -> str:
    d, c = results.dataset, results.config
    parts = [f"# VQGraph on {d.get('name')}",
             "",
             f"{d.get('nodes')} nodes (largest connected component), {d.get('features')} features, "
             f"{d.get('edges')} edges, {d.get('classes')} classes. Seeds {c['seed']}..{c['seed'] + c['seeds'] - 1}; "
             f"per class {c['n_train']} train / {c['n_val']} validation nodes, the rest test. Accuracy in %, "
             "mean ± std over seeds; every hyper-parameter choice reads the validation split only.",
             f"Codebook: {c['num_codes']} codes of size {c['hidden']}; {c['conv'].upper()} layers from PyTorch "
             f"Geometric. Total time {results.seconds / 60:.1f} min.", ""]
    for setting in results.runs:
        parts += [f"## {setting.capitalize()}", "", accuracy_table(results, setting), ""]
        if setting == "inductive":
            parts += [f"{c['inductive_rate']:.0%} of the test nodes are held out of the training graph; "
                      "'tran' is the accuracy on the other test nodes, 'ind' on the held-out ones (the teachers "
                      "see them with their edges at test time, the students with their features only), "
                      f"prod = {1 - c['inductive_rate']:.1f} tran + {c['inductive_rate']:.1f} ind.", ""]
        parts += ["Choices made on validation (how many seeds):", "", chosen_table(results, setting), ""]
        teach = teacher_summary(results, setting)
        if teach:
            parts += [teach, ""]
    if results.codebook:
        perp = np.array([r["perplexity"] for r in results.codebook])
        used = np.array([r["used"] for r in results.codebook])
        parts += ["## Codebook", "",
                  f"Codes in use on the whole graph after training: {used.mean():.0f} ± {used.std():.0f} of "
                  f"{results.codebook[0]['num_codes']}; perplexity {perp.mean():.0f} ± {perp.std():.0f}; "
                  f"codes re-seeded during training (first seed): {results.codebook[0]['replaced']}.", ""]
        if results.usage:
            parts += [f"![code usage]({png_prefix}usage.png)", ""]
        if results.view:
            parts += [f"![embeddings]({png_prefix}embeddings.png)", ""]
    if results.timing:
        parts += ["## Inference on the whole graph (CPU, first seed)", "",
                  timing_table(results), "",
                  "Teachers read features and the graph (sparse adjacency); the student reads dense features "
                  "alone.", ""]
    parts += [f"![accuracy]({png_prefix}accuracy.png)", ""]
    return "\n".join(parts)


def write_vqgraph_report(results, out, png_prefix: str = "") -> Path:
    """Write ``results.json``, ``report.md``, ``accuracy.png``, ``usage.png``, ``embeddings.png`` to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results.to_json(out / "results.json")
    plot_accuracies(results, out / f"{png_prefix}accuracy.png")
    if results.usage:
        plot_usage(results, out / f"{png_prefix}usage.png")
    if results.view:
        plot_view(results, out / f"{png_prefix}embeddings.png")
    (out / "report.md").write_text(vqgraph_markdown(results, png_prefix))
    return out / "report.md"
