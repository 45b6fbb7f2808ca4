"""Continual-learning PNGs: written, readable, of the predicted pixel size, and input checks."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from bottlenecks.report.continual_plots import (
    class_palette,
    plot_accuracy_curves,
    plot_accuracy_matrices,
    plot_decision_regions,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC
    png = mpimg.imread(path)
    assert png[..., :3].std() > 0  # something was drawn
    return png


def test_accuracy_curves(tmp_path):
    steps = list(range(0, 40, 2))
    curves = {
        "dkvb": {"steps": steps, "mean": np.linspace(0.2, 0.9, 20).tolist(), "std": [0.05] * 20},
        "mlp": {"steps": steps, "mean": np.linspace(0.2, 0.3, 20), "std": None},
        "joint": {"steps": steps, "mean": np.linspace(0.3, 1.0, 20)},
    }
    path = plot_accuracy_curves(curves, [10, 20, 30, 40], tmp_path / "a" / "curves.png", "toy2d", dpi=50)
    assert path == tmp_path / "a" / "curves.png"
    assert read_png(path).shape[:2] == (225, 350)  # 7 x 4.5 inches at 50 dpi
    read_png(plot_accuracy_curves(curves, [], tmp_path / "nob.png", figsize=(4, 3), dpi=30, ylim=None))


def test_accuracy_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_accuracy_curves({}, [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="'steps' and 'mean'"):
        plot_accuracy_curves({"m": {"mean": [1.0]}}, [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="as long as 'steps'"):
        plot_accuracy_curves({"m": {"steps": [0, 1], "mean": [0.5]}}, [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="increasing"):
        plot_accuracy_curves({"m": {"steps": [0, 1], "mean": [0.5, 0.6]}}, [2, 1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        plot_accuracy_curves({"m": {"steps": [0, 1], "mean": [0.5, np.nan]}}, [], tmp_path / "x.png")


def test_accuracy_matrices(tmp_path):
    R = np.tril(np.full((4, 4), 0.8))
    R_nan = R.copy()
    R_nan[np.triu_indices(4, 1)] = np.nan
    path = plot_accuracy_matrices({"dkvb": R, "mlp": np.eye(4) * 0.9, "partial": R_nan, "two": np.eye(2)},
                                  tmp_path / "mats.png", dpi=40, panel_size=2.0)
    assert read_png(path).shape[:2] == (round(2.6 * 40), round(9.0 * 40))
    titled = plot_accuracy_matrices({"a": R}, tmp_path / "t.png", "title", dpi=40, panel_size=2.0)
    assert read_png(titled).shape[:2] == (round(3.0 * 40), round(3.0 * 40))
    with pytest.raises(ValueError, match="square"):
        plot_accuracy_matrices({"a": np.zeros((2, 3))}, tmp_path / "x.png")


def test_decision_regions(tmp_path):
    g = 20
    rng = np.random.default_rng(0)
    grid_pred = lambda k: (np.arange(g * g).reshape(g, g) % (2 * k + 2)).astype(np.int64)  # noqa: E731
    panels = {m: [grid_pred(t) for t in range(4)] for m in ("dkvb", "linear", "mlp")}
    points = [(rng.random((10, 2)), np.repeat([2 * t, 2 * t + 1], 5)) for t in range(4)]
    path = plot_decision_regions(panels, None, points, tmp_path / "regions.png", dpi=40, show_seen=True)
    png = read_png(path)
    assert png.shape[:2] == (round((3 * 1.6 + 0.4) * 40), round((4 * 1.6 + 0.4) * 40))
    path = plot_decision_regions({"dkvb": panels["dkvb"][:1]}, (0, 2, 0, 1), points[:1], tmp_path / "one.png",
                                 "one", n_classes=12, dpi=30)
    read_png(path)


def test_decision_regions_errors(tmp_path):
    pred = np.zeros((5, 5), dtype=np.int64)
    pts = [(np.zeros((2, 2)), np.array([0, 1]))]
    with pytest.raises(ValueError, match="list of 1 grid predictions"):
        plot_decision_regions({"m": [pred, pred]}, None, pts, tmp_path / "x.png")
    with pytest.raises(ValueError, match="class ids"):
        plot_decision_regions({"m": [pred.astype(float)]}, None, pts, tmp_path / "x.png")
    with pytest.raises(ValueError, match="\\(n, 2\\)"):
        plot_decision_regions({"m": [pred]}, None, [(np.zeros((2, 3)), np.array([0, 1]))], tmp_path / "x.png")
    with pytest.raises(ValueError, match="n_classes=1"):
        plot_decision_regions({"m": [pred]}, None, pts, tmp_path / "x.png", n_classes=1)
    with pytest.raises(ValueError, match="extent"):
        plot_decision_regions({"m": [pred]}, (1, 0, 0, 1), pts, tmp_path / "x.png")


def test_class_palette():
    assert class_palette(8).shape == (8, 3)
    assert class_palette(15).shape == (15, 3)
    p = class_palette(30)
    assert p.shape == (30, 3) and len({tuple(c) for c in p.round(4)}) == 30
