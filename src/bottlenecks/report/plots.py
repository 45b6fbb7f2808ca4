"""PNG figures for reports, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Figure sizes are fixed by the arguments (no tight bounding box), so a PNG's pixel size is
predictable: ``width = figure width in inches * dpi``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..validation import as_tensor, check_finite, check_positive_int

__all__ = ["image_grid_size", "save_bar_chart", "save_image_grid"]

_TITLE_IN = 0.3  # inches above each grid row when cells have titles
_SUPTITLE_IN = 0.4  # inches above the whole figure for a suptitle


def _new_figure(figsize: tuple[float, float], dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=fig.dpi)
    return path


def _as_numpy(x, name: str) -> np.ndarray:
    """Array-like or tensor (any device) -> NumPy, rejecting NaN/inf with a clear message."""
    t = as_tensor(x.detach().cpu() if hasattr(x, "detach") else x, name)
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    check_finite(t, name)
    return t.numpy()


def image_grid_size(
    n: int, ncols: int | None = None, *, titles: bool = False, suptitle: bool = False,
    cell_size: float = 1.2,
) -> tuple[int, int, tuple[float, float]]:
    """Layout of :func:`save_image_grid`: ``(nrows, ncols, (width_in, height_in))``."""
    n = check_positive_int(n, "n")
    ncols = min(n, math.ceil(math.sqrt(n))) if ncols is None else check_positive_int(ncols, "ncols")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    height = nrows * (cell_size + (_TITLE_IN if titles else 0.0))
    height += _SUPTITLE_IN if suptitle else 0.0
    return nrows, ncols, (ncols * cell_size, height)


def save_image_grid(
    images,
    path: str | os.PathLike,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    suptitle: str | None = None,
    *,
    image_shape: tuple[int, int] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cell_size: float = 1.2,
    dpi: int = 100,
) -> Path:
    """Draw ``images`` as a grid of small pictures (e.g. k-means centroids) and write a PNG.

    images: (n, H, W) grey-scale, (n, H, W, 3|4) colour, or (n, H*W) rows with ``image_shape``
    given — NumPy array, list or tensor. All cells share one colour scale: ``vmin``/``vmax``,
    else 0..255 for uint8 and the data's min..max otherwise. ``ncols`` defaults to about
    sqrt(n). Each cell is ``cell_size`` inches square (plus a title strip when ``titles`` is
    given), so the PNG is ``ncols * cell_size * dpi`` pixels wide. Creates parent folders;
    returns the path written.
    """
    arr = _as_numpy(images, "images")
    if arr.ndim == 2:
        if image_shape is None:
            raise ValueError(
                f"images: got rows of shape {arr.shape}; expected (n, H, W) images, "
                "or pass image_shape=(H, W) to reshape (n, H*W) rows"
            )
        h, w = (int(s) for s in image_shape)
        if h * w != arr.shape[1]:
            raise ValueError(
                f"image_shape={tuple(image_shape)} holds {h * w} pixels but images rows have "
                f"{arr.shape[1]}; expected H*W == {arr.shape[1]}"
            )
        arr = arr.reshape(arr.shape[0], h, w)
    colour = arr.ndim == 4 and arr.shape[-1] in (3, 4)
    if arr.ndim != 3 and not colour:
        raise ValueError(
            f"images: expected shape (n, H, W), (n, H, W, 3|4) or (n, H*W) with image_shape, "
            f"got {arr.shape}"
        )
    n = arr.shape[0]
    if n == 0:
        raise ValueError(f"images: expected at least 1 image, got shape {arr.shape}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles: expected one title per image ({n}), got {len(titles)}")
    if vmin is None:
        vmin = 0.0 if arr.dtype == np.uint8 else float(arr.min())
    if vmax is None:
        vmax = 255.0 if arr.dtype == np.uint8 else float(arr.max())
    if colour and arr.dtype != np.uint8:
        arr = np.clip((arr - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)

    nrows, ncols, figsize = image_grid_size(
        n, ncols, titles=titles is not None, suptitle=suptitle is not None, cell_size=cell_size
    )
    fig = _new_figure(figsize, dpi)
    head_in = (_SUPTITLE_IN if suptitle is not None else 0.0)
    head_in += _TITLE_IN if titles is not None else 0.02 * cell_size
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1.0 - head_in / figsize[1],
                        wspace=0.08, hspace=_TITLE_IN / cell_size if titles is not None else 0.05)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(arr[i], cmap=None if colour else cmap, vmin=vmin, vmax=vmax,
                  interpolation="nearest")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8, pad=2)
    if suptitle is not None:
        fig.suptitle(suptitle, y=1.0 - 0.1 / figsize[1], va="top")
    return _save(fig, path)


def _table_values(table: Mapping[str, Mapping[str, float]]):
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            "table: expected a non-empty mapping {group: {method: value}}, "
            f"got {type(table).__name__} {table!r:.80}"
        )
    groups = [str(g) for g in table]
    methods: list[str] = []
    for g, row in table.items():
        if not isinstance(row, Mapping):
            raise TypeError(
                f"table[{g!r}]: expected a mapping {{method: value}}, got {type(row).__name__}"
            )
        methods.extend(str(m) for m in row if str(m) not in methods)
    if not methods:
        raise ValueError("table: every group is empty; expected at least one {method: value}")
    values = np.full((len(groups), len(methods)), np.nan)
    for i, row in enumerate(table.values()):
        for m, v in row.items():
            if v is None:
                continue
            try:
                values[i, methods.index(str(m))] = float(v)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"table[{groups[i]!r}][{m!r}]: expected a number or None, got {v!r}"
                ) from err
    return groups, methods, values


def save_bar_chart(
    table: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    ylabel: str,
    title: str,
    log: bool = False,
    *,
    annotate: bool = False,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Grouped bar chart of ``table = {group: {method: value}}`` (e.g. seconds per problem shape).

    One cluster of bars per group (x axis, in the table's order), one colour per method (legend,
    in first-seen order). A missing or ``None``/NaN value leaves a gap. ``log=True`` uses a log
    y axis and then needs every value > 0. ``annotate=True`` writes each value above its bar.
    ``figsize`` defaults to a width that grows with the number of bars. Creates parent folders;
    returns the path written.
    """
    groups, methods, values = _table_values(table)
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise ValueError("table: no numeric values to plot; expected at least one number")
    if not np.isfinite(present).all():
        raise ValueError(f"table: expected finite values, got {present[~np.isfinite(present)]}")
    if log and (present <= 0).any():
        raise ValueError(
            f"log=True needs every value > 0, got minimum {present.min()}; "
            "use log=False or drop the non-positive entries"
        )
    n_groups, n_methods = values.shape
    if figsize is None:
        figsize = (max(6.0, 1.5 + n_groups * (0.35 * n_methods + 0.5)), 4.5)
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot()
    width = 0.8 / n_methods
    x = np.arange(n_groups, dtype=float)
    for j, method in enumerate(methods):
        bars = ax.bar(x + (j - (n_methods - 1) / 2) * width, np.nan_to_num(values[:, j]),
                      width, label=method)
        for bar, v in zip(bars, values[:, j], strict=True):
            if np.isnan(v):
                bar.set_visible(False)
            elif annotate:
                ax.annotate(f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                            textcoords="offset points")
    ax.set_xticks(x)
    rotate = n_groups > 4 or max(len(g) for g in groups) > 12
    ax.set_xticklabels(groups, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, ncols=min(n_methods, 4))
    fig.tight_layout()
    return _save(fig, path)
