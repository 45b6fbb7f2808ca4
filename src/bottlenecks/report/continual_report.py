"""The continual-learning report: ``metrics.json``, ``report.md`` and the PNGs beside them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .continual_plots import plot_accuracy_curves, plot_accuracy_matrices

METRICS = (("final_accuracy", "final acc."), ("average_accuracy", "avg acc."),
           ("forgetting", "forgetting"), ("backward_transfer", "BWT"), ("seconds", "time s"))


def _fmt(stat: dict | None, pct: bool) -> str:
    if not stat or stat.get("mean") is None or (isinstance(stat["mean"], float) and math.isnan(stat["mean"])):
        return "–"
    scale = 100.0 if pct else 1.0
    mean, std = stat["mean"] * scale, (stat.get("std") or 0.0) * scale
    return f"{mean:.1f} ± {std:.1f}" if std else f"{mean:.1f}"


def table(results: dict) -> str:
    """Markdown table: methods × metrics (mean ± std over seeds, accuracies in %)."""
    lines = ["| method | " + " | ".join(label for _, label in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for name, res in results["methods"].items():
        cells = [_fmt(res["summary"].get(key), pct=key != "seconds") for key, _ in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_curve(runs: list[dict]) -> dict:
    steps = runs[0]["curve"]["steps"]
    accs = np.array([r["curve"]["accuracy"][: len(steps)] for r in runs], dtype=float)
    return {"steps": steps, "mean": accs.mean(0).tolist(), "std": accs.std(0).tolist() if len(runs) > 1 else None}


def write_report(results: dict, out: Path, title: str, notes: list[str] | None = None,
                 extra_images: dict[str, Path] | None = None) -> Path:
    """Write ``metrics.json``, ``accuracy_curves.png``, ``accuracy_matrices.png`` and
    ``report.md`` into ``out``; returns the path of ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=2, default=float))
    methods = results["methods"]
    curves = {name: _mean_curve(res["runs"]) for name, res in methods.items() if res["runs"][0]["curve"]["steps"]}
    stream_runs = [res["runs"][0] for res in methods.values() if "task_boundaries" in res["runs"][0]]
    boundaries = stream_runs[0]["task_boundaries"][:-1] if stream_runs else []
    images = {}
    if curves:
        images["Class-balanced test accuracy over training steps (all classes; dotted: task boundaries)"] = \
            plot_accuracy_curves(curves, boundaries, out / "accuracy_curves.png", title=title)
    mats = {name: np.nanmean([np.array(r["R"], dtype=float) for r in res["runs"]], axis=0)
            for name, res in methods.items() if "R" in res["runs"][0]}
    if mats:
        images["Accuracy matrix R[i][j]: accuracy on task j's classes after training on task i (mean over seeds)"] = \
            plot_accuracy_matrices(mats, out / "accuracy_matrices.png")
    images.update(extra_images or {})
    parts = [f"# {title}", "", *(notes or []), "", table(results), "",
             "Accuracies in %, mean ± std over seeds. *final acc.*: class-balanced accuracy on the whole test "
             "set after the stream; *avg acc.*: mean of the last row of R; *forgetting*: mean drop from each "
             "task's best accuracy to its final one (Chaudhry et al., 2018); *BWT*: backward transfer "
             "(Lopez-Paz & Ranzato, 2017). `-joint` rows train the same method i.i.d. on all data until its "
             "accuracy on a held-out 10% of the training data stops improving (early stopping, patience 3; its "
             "upper bound).", ""]
    for caption, path in images.items():
        parts += [f"![{caption}]({Path(path).name})", "", f"*{caption}*", ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report
