"""The 2D toy: 8 well-separated Gaussian classes in the unit square, splits, key data, grid."""

from __future__ import annotations

import numpy as np
import pytest

from bottlenecks.data.toy2d import (
    TOY2D_CENTERS,
    TOY2D_N_CLASSES,
    TOY2D_STD,
    make_toy2d,
    uniform_unit_square,
    unit_square_grid,
)


def test_shapes_dtypes_and_range():
    x, y = make_toy2d()
    assert x.shape == (800, 2) and x.dtype == np.float32
    assert y.shape == (800,) and y.dtype == np.int64
    assert (x >= 0).all() and (x <= 1).all()
    assert np.bincount(y).tolist() == [100] * TOY2D_N_CLASSES
    assert TOY2D_STD == 0.035


def test_centres_are_inside_and_well_separated():
    c = TOY2D_CENTERS
    assert c.shape == (8, 2) and (c >= 0.1).all() and (c <= 0.9).all()
    d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(8)
    assert d.min() > 6 * TOY2D_STD
    x, y = make_toy2d()
    for k in range(8):
        assert np.abs(x[y == k].mean(0) - c[k]).max() < 0.015
        assert x[y == k].std(0) == pytest.approx([TOY2D_STD] * 2, rel=0.25)
    nearest = np.argmin(np.linalg.norm(x[:, None] - c[None], axis=-1), axis=1)
    assert (nearest == y).mean() >= 0.995  # the classes hardly overlap (seed 0: 1 point in 800)


def test_seeds_and_splits():
    x0, y0 = make_toy2d(seed=0)
    x0b, _ = make_toy2d(seed=0)
    x1, _ = make_toy2d(seed=1)
    xt, yt = make_toy2d(seed=0, split="test")
    assert np.array_equal(x0, x0b)
    assert not np.array_equal(x0, x1)
    assert not np.array_equal(x0, xt) and np.array_equal(y0, yt)
    assert make_toy2d(n_per_class=5, split="test")[0].shape == (40, 2)


def test_custom_centres_and_clipping():
    x, y = make_toy2d(n_per_class=50, std=0.2, centers=[[0.0, 0.0], [1.0, 1.0]])
    assert x.shape == (100, 2) and set(y.tolist()) == {0, 1}
    assert (x >= 0).all() and (x <= 1).all() and (x == 0).any() and (x == 1).any()
    x, _ = make_toy2d(n_per_class=3, std=0.0)
    assert np.allclose(x[::3], TOY2D_CENTERS)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_per_class": 0}, ValueError, "n_per_class"),
        ({"std": -0.1}, ValueError, "std"),
        ({"split": "val"}, ValueError, "split"),
        ({"centers": [[0.5, 0.5, 0.5]]}, ValueError, "\\(k, 2\\)"),
        ({"centers": [[1.5, 0.5]]}, ValueError, "unit square"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_toy2d(**kwargs)


def test_uniform_points_for_keys():
    u = uniform_unit_square(2000, seed=3)
    assert u.shape == (2000, 2) and u.dtype == np.float32
    assert (u >= 0).all() and (u < 1).all()
    assert u.mean(0) == pytest.approx([0.5, 0.5], abs=0.03)
    assert np.array_equal(u, uniform_unit_square(2000, seed=3))
    assert not np.array_equal(u, uniform_unit_square(2000, seed=4))


def test_grid_layout_matches_reshape():
    g = 4
    pts = unit_square_grid(g)
    assert pts.shape == (16, 2) and pts.dtype == np.float32
    grid = pts.reshape(g, g, 2)
    assert np.allclose(grid[0, :, 0], [0.125, 0.375, 0.625, 0.875])  # x grows along ix
    assert np.allclose(grid[:, 0, 1], [0.125, 0.375, 0.625, 0.875])  # y grows along iy
    assert np.allclose(grid[2, 3], [0.875, 0.625])
