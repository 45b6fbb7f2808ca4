"""The 2D toy of the discrete key-value bottleneck paper (Träuble et al., 2023, Figure 2).

Eight Gaussian classes (std 0.035) in the unit square, 100 samples per class; in the continual
setting they form 4 tasks of 2 classes. The keys of a bottleneck are fitted on points drawn
uniformly from the unit square (:func:`uniform_unit_square`), not on the class data.

Class centres (:data:`TOY2D_CENTERS`): class ``k`` sits at angle ``2*pi*k/8`` on a circle of
radius 0.35 around (0.5, 0.5) — class 0 at (0.85, 0.5), then counter-clockwise. All centres lie
in [0.15, 0.85]^2 and neighbours are 0.268 apart (7.6 std), so the classes hardly overlap (about
1 point in 10 000 lies nearer a neighbour's centre) and consecutive classes (one task in the
default class order) are neighbours on the circle.

>>> x, y = make_toy2d()                    # (800, 2) float32 in [0, 1], (800,) int64 in 0..7
>>> x_test, y_test = make_toy2d(split="test")  # same centres, independent samples
>>> keys_data = uniform_unit_square(1000)  # (1000, 2) float32
>>> grid = unit_square_grid(100)           # (100*100, 2); predictions.reshape(100, 100)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..validation import check_choice, check_positive_int

__all__ = [
    "TOY2D_CENTERS",
    "TOY2D_EXTENT",
    "TOY2D_N_CLASSES",
    "TOY2D_STD",
    "make_toy2d",
    "uniform_unit_square",
    "unit_square_grid",
]

TOY2D_N_CLASSES = 8
TOY2D_STD = 0.035
_RADIUS = 0.35
#: (8, 2) float64 class centres: class k at angle 2*pi*k/8 on a circle of radius 0.35 around (0.5, 0.5)
TOY2D_CENTERS = np.array(
    [[0.5 + _RADIUS * math.cos(2 * math.pi * k / TOY2D_N_CLASSES),
      0.5 + _RADIUS * math.sin(2 * math.pi * k / TOY2D_N_CLASSES)] for k in range(TOY2D_N_CLASSES)]
)
TOY2D_CENTERS.setflags(write=False)
#: (xmin, xmax, ymin, ymax) of the unit square, as matplotlib's ``imshow(extent=...)`` takes it
TOY2D_EXTENT = (0.0, 1.0, 0.0, 1.0)

SPLITS = ("train", "test")
# independent random streams per use: the same seed never gives correlated train / test / key data
_STREAM = {"train": 0, "test": 1, "uniform": 2}


def _rng(seed, stream: str) -> np.random.Generator:
    seed = check_positive_int(seed, "seed", minimum=0)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM[stream],)))


def make_toy2d(
    n_per_class: int = 100,
    std: float = TOY2D_STD,
    seed: int = 0,
    centers=None,
    split: str = "train",
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the toy: ``n_per_class`` points around each centre, clipped to the unit square.

    Returns ``x: (n_classes * n_per_class, 2) float32`` in [0, 1] and ``y: (n,) int64`` with
    class ``k`` for points drawn around ``centers[k]``. Samples are grouped by class (all of class
    0, then class 1, ...); continual streams shuffle them. ``centers`` defaults to
    :data:`TOY2D_CENTERS` (8 classes); any ``(k, 2)`` array of points in the unit square may be
    given instead. ``split='train'`` and ``split='test'`` draw from independent random streams of
    the same ``seed``, so a test set never repeats training points; each split is reproducible.
    """
    n_per_class = check_positive_int(n_per_class, "n_per_class")
    check_choice(split, "split", SPLITS)
    if isinstance(std, bool) or not isinstance(std, numbers.Real) or not math.isfinite(std) or std < 0:
        raise ValueError(f"std: expected a finite number >= 0, got {std!r}")
    centers = TOY2D_CENTERS if centers is None else np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != 2 or centers.shape[0] < 1:
        raise ValueError(f"centers: expected a (k, 2) array with k >= 1, got shape {centers.shape}")
    if not np.isfinite(centers).all() or (centers < 0).any() or (centers > 1).any():
        raise ValueError("centers: expected finite points inside the unit square [0, 1]^2")
    rng = _rng(seed, split)
    k = centers.shape[0]
    noise = rng.normal(0.0, float(std), size=(k, n_per_class, 2))
    x = np.clip(centers[:, None, :] + noise, 0.0, 1.0).reshape(k * n_per_class, 2)
    y = np.repeat(np.arange(k, dtype=np.int64), n_per_class)
    return x.astype(np.float32), y


def uniform_unit_square(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 2) float32`` points drawn uniformly from [0, 1)^2 — the data the paper fits keys on.

    Drawn from a random stream independent of :func:`make_toy2d`'s for the same ``seed``.
    """
    n = check_positive_int(n, "n")
    return _rng(seed, "uniform").random((n, 2)).astype(np.float32)


def unit_square_grid(resolution: int = 100) -> np.ndarray:
    """Cell centres of a ``resolution x resolution`` grid over the unit square: ``(G*G, 2) float32``.

    Row ``iy * G + ix`` is the point ``((ix + 0.5) / G, (iy + 0.5) / G)``, so the predictions of a
    model on these points, ``pred.reshape(G, G)``, are indexed ``[iy, ix]`` — the layout
    ``imshow(..., origin='lower', extent=TOY2D_EXTENT)`` and
    :func:`bottlenecks.report.continual_plots.plot_decision_regions` expect.
    """
    g = check_positive_int(resolution, "resolution")
    centres = (np.arange(g, dtype=np.float64) + 0.5) / g
    gx, gy = np.meshgrid(centres, centres, indexing="xy")  # gx[iy, ix] = centres[ix]
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
