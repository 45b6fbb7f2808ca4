"""PNG figures of continual-learning runs: accuracy over training steps, accuracy matrices, and
decision regions of the 2D toy after each task. Drawn on matplotlib's Agg canvas (no pyplot).

Figure sizes are fixed by the arguments (no tight bounding box), so a PNG is
``figure inches * dpi`` pixels; each function's docstring gives its figure size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..validation import check_positive_int
from .plots import _as_numpy, _new_figure, _save

__all__ = ["class_palette", "plot_accuracy_curves", "plot_accuracy_matrices", "plot_decision_regions"]

_REGION_WHITE = 0.55  # how much white is mixed into a class colour to paint its decision region


def _check_mapping(obj, name: str, what: str) -> None:
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{name}: expected a non-empty mapping {what}, got {type(obj).__name__} {obj!r:.80}")


def _vector(values, name: str) -> np.ndarray:
    arr = _as_numpy(values, name).astype(np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of numbers, got shape {arr.shape}")
    return arr


def class_palette(n_classes: int) -> np.ndarray:
    """``(n_classes, 3)`` RGB colours in [0, 1]: tab10 up to 10 classes, tab20 up to 20, then hues."""
    import matplotlib

    n = check_positive_int(n_classes, "n_classes")
    if n <= 10:
        colours = matplotlib.colormaps["tab10"].colors[:n]
    elif n <= 20:
        colours = matplotlib.colormaps["tab20"].colors[:n]
    else:
        colours = matplotlib.colormaps["hsv"](np.linspace(0.0, 1.0, n, endpoint=False))[:, :3]
    return np.asarray(colours, dtype=np.float64)[:, :3]


# --------------------------------------------------------------------------- accuracy curves
def plot_accuracy_curves(
    curves: Mapping[str, Mapping[str, Sequence[float] | None]],
    task_boundaries: Sequence[float],
    path: str | os.PathLike,
    title: str = "",
    *,
    xlabel: str = "training step",
    ylabel: str = "class-balanced accuracy",
    ylim: tuple[float, float] | None = (0.0, 1.0),
    figsize: tuple[float, float] = (7.0, 4.5),
    dpi: int = 100,
) -> Path:
    """Accuracy over training for all methods on one plot; writes a PNG and returns its path.

    curves: ``{method: {"steps": [...], "mean": [...], "std": [...] or None}}`` — one line per
    method (legend in the mapping's order), with a shaded band ``mean ± std`` when ``std`` is given.
    task_boundaries: training steps where a task ends (e.g.
    :meth:`~bottlenecks.continual.ClassIncrementalStream.task_boundaries`), drawn as vertical dotted
    lines; the segments between them are labelled "task 1", "task 2", ... above the plot. The legend
    sits to the right of the plot. ``ylim``
    (default 0..1, ``None``: automatic) gets a small margin. The figure is ``figsize`` inches.
    """
    _check_mapping(curves, "curves", "{method: {'steps', 'mean', 'std'}}")
    lines = []
    for method, curve in curves.items():
        if not isinstance(curve, Mapping) or "steps" not in curve or "mean" not in curve:
            raise ValueError(f"curves[{method!r}]: expected a mapping with 'steps' and 'mean' "
                             f"(and optionally 'std'), got {curve!r:.80}")
        steps = _vector(curve["steps"], f"curves[{method!r}]['steps']")
        mean = _vector(curve["mean"], f"curves[{method!r}]['mean']")
        std = curve.get("std")
        std = None if std is None else _vector(std, f"curves[{method!r}]['std']")
        for label, arr in (("mean", mean), ("std", std)):
            if arr is not None and arr.shape != steps.shape:
                raise ValueError(f"curves[{method!r}]: expected '{label}' as long as 'steps' ({steps.size}), "
                                 f"got {arr.size}")
        if std is not None and (std < 0).any():
            raise ValueError(f"curves[{method!r}]['std']: expected values >= 0, got minimum {std.min()}")
        lines.append((str(method), steps, mean, std))
    bounds = _vector(task_boundaries, "task_boundaries") if len(task_boundaries) else np.zeros(0)
    if (np.diff(bounds) <= 0).any():
        raise ValueError(f"task_boundaries: expected increasing steps, got {bounds.tolist()}")

    fig = _new_figure(figsize, dpi)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    for method, steps, mean, std in lines:
        (line,) = ax.plot(steps, mean, label=method, lw=1.6, marker="o" if steps.size <= 30 else None, ms=3)
        if std is not None:
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    if ylim is not None:
        lo, hi = (float(v) for v in ylim)
        pad = 0.02 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)
    for b in bounds:
        ax.axvline(b, color="0.35", ls=":", lw=1.2, zorder=0)
    if bounds.size:
        x_max = max(float(steps.max()) for _, steps, _, _ in lines)
        x_min = min(0.0, min(float(steps.min()) for _, steps, _, _ in lines))
        edges = [x_min, *bounds.tolist()]
        if x_max > edges[-1]:
            edges.append(x_max)
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            ax.text((a + b) / 2, 1.01, f"task {k + 1}", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color="0.35")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, pad=18 if bounds.size else 6)  # room for the task labels
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


# --------------------------------------------------------------------------- accuracy matrices
def plot_accuracy_matrices(
    mats: Mapping[str, object],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    panel_size: float = 2.6,
    cmap: str = "viridis",
    digits: int = 2,
    dpi: int = 100,
) -> Path:
    """A row of accuracy-matrix heatmaps, one per method, on one colour scale 0..1; writes a PNG.

    mats: ``{method: R}`` with ``R`` a ``(T, T)`` array, ``R[i, j]`` = accuracy on task ``j`` after
    training on task ``i`` (rows: "after task i", columns: "task j", numbered from 1). Each cell
    shows its value with ``digits`` decimals (left out when T > 15); NaN cells (not evaluated) stay
    blank. Methods may have different T. The figure is ``(n * panel_size + 1, panel_size + 0.6)``
    inches (plus 0.4 for a ``title``).
    """
    import matplotlib

    _check_mapping(mats, "mats", "{method: (T, T) accuracy matrix}")
    arrays = []
    for method, R in mats.items():
        arr = np.array(R.detach().cpu().double().numpy() if hasattr(R, "detach") else R, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
            raise ValueError(f"mats[{method!r}]: expected a square (T, T) matrix, got shape {arr.shape}")
        if np.isinf(arr).any():
            raise ValueError(f"mats[{method!r}]: expected finite accuracies or NaN, got infinity")
        arrays.append((str(method), arr))
    n = len(arrays)
    figsize = (n * panel_size + 1.0, panel_size + 0.6 + (0.4 if title else 0.0))
    fig = _new_figure(figsize, dpi)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    image = None
    for k, (ax, (method, R)) in enumerate(zip(axes, arrays, strict=True)):
        T = R.shape[0]
        image = ax.imshow(np.ma.masked_invalid(R), cmap=colormap, vmin=0.0, vmax=1.0, interpolation="nearest")
        if T <= 15:
            size = float(np.clip(0.35 * 72 * panel_size / T, 5.0, 10.0))  # ~1/3 of a cell's width, in points
            for i in range(T):
                for j in range(T):
                    if np.isnan(R[i, j]):
                        continue
                    rgba = colormap(np.clip(R[i, j], 0.0, 1.0))
                    dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
                    ax.text(j, i, f"{R[i, j]:.{digits}f}", ha="center", va="center", fontsize=size,
                            color="white" if dark else "black")
        ticks = np.arange(T)
        step = max(1, T // 8)
        ax.set_xticks(ticks[::step], [str(t + 1) for t in ticks[::step]])
        ax.set_yticks(ticks[::step], [str(t + 1) for t in ticks[::step]])
        ax.set_xlabel("task evaluated")
        if k == 0:
            ax.set_ylabel("after training task")
        ax.set_title(method, fontsize=10)
    fig.colorbar(image, ax=list(axes), shrink=0.85, label="accuracy")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------- decision regions
def plot_decision_regions(
    panels: Mapping[str, Sequence[object]],
    extent: Sequence[float] | None,
    points: Sequence[tuple[object, object]],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    n_classes: int | None = None,
    show_seen: bool = False,
    panel_size: float = 1.6,
    marker_size: float = 6.0,
    dpi: int = 100,
) -> Path:
    """Decision regions after each task, methods x tasks, with each task's training points on top.

    panels: ``{method: [pred_after_task_0, pred_after_task_1, ...]}`` (or a ``(T, G, G)`` array), each a
    ``(G, G)`` integer array of predicted classes on a grid over ``extent``, indexed ``[iy, ix]`` with ``iy = 0`` at
    the bottom (e.g. predictions on :func:`bottlenecks.data.toy2d.unit_square_grid` reshaped to
    ``(G, G)``). extent: ``(xmin, xmax, ymin, ymax)`` of the grid; ``None`` is the unit square.
    points: one ``(x (n, 2), y (n,))`` pair per task — the task's training points, drawn in their
    class colour with a dark edge over the lighter region colours. ``show_seen=True`` also draws
    earlier tasks' points, faint. ``n_classes`` (the colour count) defaults to the largest class in
    the predictions and labels + 1. One row per method (labelled on the left), one column per task
    ("after task 1", ...); the figure is ``(T * panel_size + 0.4, M * panel_size + 0.4)`` inches
    (plus 0.4 for a ``title``).
    """
    _check_mapping(panels, "panels", "{method: [grid predictions after each task]}")
    extent = (0.0, 1.0, 0.0, 1.0) if extent is None else tuple(float(v) for v in extent)
    if len(extent) != 4 or not (extent[0] < extent[1] and extent[2] < extent[3]):
        raise ValueError(f"extent: expected (xmin, xmax, ymin, ymax) with xmin < xmax and ymin < ymax, got {extent}")
    if isinstance(points, Mapping) or not isinstance(points, Sequence) or len(points) == 0:
        raise ValueError("points: expected a non-empty list of (x, y) pairs, one per task, "
                         f"got {type(points).__name__}")
    T = len(points)
    task_points = []
    for t, pair in enumerate(points):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"points[{t}]: expected a pair (x (n, 2), y (n,)), got {type(pair).__name__}")
        x, y = _as_numpy(pair[0], f"points[{t}][0]"), _as_numpy(pair[1], f"points[{t}][1]")
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"points[{t}][0]: expected (n, 2) coordinates, got shape {x.shape}")
        if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            raise ValueError(f"points[{t}][1]: expected ({x.shape[0]},) class labels >= 0 (integers), "
                             f"got shape {y.shape} dtype {y.dtype}")
        task_points.append((x.astype(np.float64), y.astype(np.int64)))
    rows = []
    for method, preds in panels.items():
        if hasattr(preds, "shape") and len(preds.shape) == 3:  # a (T, G, G) array or tensor
            preds = list(preds)
        if isinstance(preds, Mapping) or not isinstance(preds, Sequence) or len(preds) != T:
            got = len(preds) if isinstance(preds, Sequence) else type(preds).__name__
            raise ValueError(f"panels[{method!r}]: expected a list of {T} grid predictions (one per task, "
                             f"as many as points), got {got}")
        grids = []
        for t, pred in enumerate(preds):
            g = _as_numpy(pred, f"panels[{method!r}][{t}]")
            if g.ndim != 2 or not np.issubdtype(g.dtype, np.integer) or (g < 0).any():
                raise ValueError(f"panels[{method!r}][{t}]: expected a (G, G) array of class ids >= 0 "
                                 f"(integers), got shape {g.shape} dtype {g.dtype}")
            grids.append(g.astype(np.int64))
        rows.append((str(method), grids))
    largest = max(max(int(g.max()) for _, grids in rows for g in grids),
                  max(int(y.max()) if y.size else 0 for _, y in task_points))
    if n_classes is None:
        n_classes = largest + 1
    n_classes = check_positive_int(n_classes, "n_classes")
    if largest >= n_classes:
        raise ValueError(f"n_classes={n_classes} but a class id {largest} occurs; expected ids in 0..{n_classes - 1}")
    palette = class_palette(n_classes)
    light = palette * (1.0 - _REGION_WHITE) + _REGION_WHITE

    M = len(rows)
    figsize = (T * panel_size + 0.4, M * panel_size + 0.4 + (0.4 if title else 0.0))
    fig = _new_figure(figsize, dpi)
    fig.set_layout_engine("constrained", w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    axes = fig.subplots(M, T, squeeze=False)
    for r, (method, grids) in enumerate(rows):
        for t, grid in enumerate(grids):
            ax = axes[r, t]
            ax.imshow(light[grid], origin="lower", extent=extent, interpolation="nearest", aspect="auto")
            if show_seen:
                for x, y in task_points[:t]:
                    ax.scatter(x[:, 0], x[:, 1], c=palette[y], s=marker_size * 0.5, alpha=0.35, lw=0)
            x, y = task_points[t]
            ax.scatter(x[:, 0], x[:, 1], c=palette[y], s=marker_size, edgecolors="black", linewidths=0.3)
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"after task {t + 1}", fontsize=9)
            if t == 0:
                ax.set_ylabel(method, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
