"""PNG figures for concept bottlenecks: intervention curves and per-class concept weights."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .plots import _as_numpy, _new_figure, _save

__all__ = ["save_concept_weights", "save_intervention_curve"]


def save_intervention_curve(curves: Mapping[str, Mapping], path: str | os.PathLike, *,
                            baselines: Mapping[str, float] | None = None, title: str = "Test-time interventions",
                            dpi: int = 100) -> Path:
    """Accuracy vs number of intervened concepts, one line per curve.

    curves: ``{label: {"n_intervened": [...], "accuracy": [...]}}`` (as ``intervention_curve`` returns);
    baselines: ``{label: accuracy}`` drawn as dashed horizontal lines.
    """
    if not curves:
        raise ValueError("curves: expected at least one curve, got none")
    fig = _new_figure((5.5, 3.8), dpi)
    ax = fig.add_subplot(1, 1, 1)
    for label, c in curves.items():
        x = np.asarray(c["n_intervened"])
        y = _as_numpy(c["accuracy"], f"curves[{label!r}]['accuracy']")
        if x.shape != y.shape:
            raise ValueError(f"curves[{label!r}]: n_intervened has {x.shape} entries, accuracy {y.shape}")
        ax.plot(x, 100 * y, marker="o", markersize=3, label=label)
    for label, v in (baselines or {}).items():
        ax.axhline(100 * float(v), linestyle="--", linewidth=1, color="grey")
        ax.text(0, 100 * float(v), f" {label}", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("concepts set to their true value")
    ax.set_ylabel("class accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.13)
    return _save(fig, path)


def save_concept_weights(weights, concept_names: Sequence[str], class_names: Sequence[str],
                         path: str | os.PathLike, *, highlight: Sequence[str] = (), edited=None,
                         title: str = "Concept weights per class", ncols: int = 3, dpi: int = 100) -> Path:
    """One horizontal bar chart per class of its (K, C) concept weights.

    ``highlight``: concept names drawn in red (e.g. the spurious one); ``edited``: optional (K, C)
    weights after an edit, drawn as black outlines over the fitted bars.
    """
    W = _as_numpy(weights, "weights")
    k, c = W.shape
    if len(concept_names) != c or len(class_names) != k:
        raise ValueError(f"weights: shape {W.shape} needs {k} class names and {c} concept names, "
                         f"got {len(class_names)} and {len(concept_names)}")
    E = _as_numpy(edited, "edited") if edited is not None else None
    ncols = min(ncols, k)
    nrows = math.ceil(k / ncols)
    fig = _new_figure((3.2 * ncols, 0.25 * c * nrows + 0.9 * nrows + 0.5), dpi)
    lim = float(np.abs(W).max() if E is None else max(np.abs(W).max(), np.abs(E).max())) * 1.1 or 1.0
    colours = ["tab:red" if n in set(highlight) else "tab:blue" for n in concept_names]
    ypos = np.arange(c)
    for i in range(k):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.barh(ypos, W[i], color=colours)
        if E is not None:
            ax.barh(ypos, E[i], fill=False, edgecolor="black", linewidth=0.8)
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_yticks(ypos)
        ax.set_yticklabels(concept_names if i % ncols == 0 else [], fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(str(class_names[i]), fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.16, right=0.98, top=1 - 0.5 / fig.get_figheight(), bottom=0.06, hspace=0.45,
                        wspace=0.08)
    return _save(fig, path)
