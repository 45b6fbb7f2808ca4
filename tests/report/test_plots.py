"""PNG plots: files are written, non-empty, readable, and of the predicted pixel size."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from bottlenecks.report import image_grid_size, save_bar_chart, save_image_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC
    return mpimg.imread(path)


def test_image_grid_written_with_predicted_size(tmp_path):
    images = np.random.default_rng(0).random((6, 5, 7))
    path = save_image_grid(images, tmp_path / "sub" / "dir" / "grid.png", ncols=3,
                           cell_size=1.0, dpi=50)
    assert path == tmp_path / "sub" / "dir" / "grid.png"
    png = read_png(path)
    assert png.shape[:2] == (100, 150)  # 2 rows x 3 cols of 1 inch at 50 dpi
    assert png[..., :3].std() > 0  # something was drawn


def test_image_grid_titles_suptitle_and_layout(tmp_path):
    nrows, ncols, (w, h) = image_grid_size(10, 5, titles=True, suptitle=True, cell_size=1.0)
    assert (nrows, ncols) == (2, 5)
    path = save_image_grid(np.zeros((10, 4, 4), dtype=np.uint8), tmp_path / "t.png",
                           titles=[f"c{i}" for i in range(10)], ncols=5, suptitle="centroids",
                           cell_size=1.0, dpi=40)
    assert read_png(path).shape[:2] == (round(h * 40), round(w * 40))


def test_image_grid_default_ncols_and_flat_rows(tmp_path):
    assert image_grid_size(10)[:2] == (3, 4)
    assert image_grid_size(3, ncols=8)[:2] == (1, 3)
    rows = torch.rand(5, 12)  # tensors and (n, H*W) rows with image_shape are accepted
    png = read_png(save_image_grid(rows, tmp_path / "r.png", image_shape=(3, 4), dpi=30,
                                   cell_size=1.0))
    assert png.shape[:2] == (60, 90)


def test_image_grid_colour_images(tmp_path):
    images = np.random.default_rng(1).random((4, 6, 6, 3)).astype(np.float32)
    assert read_png(save_image_grid(images, tmp_path / "c.png", dpi=20)).ndim == 3


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"images": np.zeros((0, 4, 4))}, ValueError, "at least 1 image"),
        ({"images": np.zeros((4, 16))}, ValueError, "image_shape"),
        ({"images": np.zeros((4, 16)), "image_shape": (3, 5)}, ValueError, "H\\*W == 16"),
        ({"images": np.zeros((2, 4, 4)), "titles": ["a"]}, ValueError, "one title per image"),
        ({"images": np.full((2, 4, 4), np.nan)}, ValueError, "NaN"),
        ({"images": np.zeros(4)}, ValueError, "expected shape"),
        ({"images": np.zeros((2, 4, 4)), "ncols": 0}, ValueError, "ncols"),
    ],
)
def test_image_grid_errors(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        save_image_grid(path=tmp_path / "x.png", **kwargs)
    assert not (tmp_path / "x.png").exists()


TABLE = {
    "n=10k d=64 k=16": {"ours": 0.01, "sklearn": 0.05, "faiss": 0.02},
    "n=100k d=128 k=256": {"ours": 0.3, "sklearn": 2.1},
    "n=1M d=32 k=1024": {"ours": 3.0, "faiss": None},
}


@pytest.mark.parametrize("log", [False, True])
def test_bar_chart_written(tmp_path, log):
    path = save_bar_chart(TABLE, tmp_path / "b" / "bench.png", ylabel="seconds",
                          title="k-means fit", log=log, annotate=True, figsize=(6, 4), dpi=50)
    png = read_png(path)
    assert png.shape[:2] == (200, 300)
    assert png[..., :3].std() > 0


def test_bar_chart_default_size_grows_with_bars(tmp_path):
    small = read_png(save_bar_chart({"a": {"m": 1.0}}, tmp_path / "s.png", "y", "t", dpi=20))
    wide = {f"shape{i}": {f"m{j}": float(i + j + 1) for j in range(4)} for i in range(8)}
    big = read_png(save_bar_chart(wide, tmp_path / "w.png", "y", "t", dpi=20))
    assert big.shape[1] > small.shape[1]


@pytest.mark.parametrize(
    "table, kwargs, error, match",
    [
        ({}, {}, ValueError, "non-empty mapping"),
        ({"a": {}}, {}, ValueError, "every group is empty"),
        ({"a": 1.0}, {}, TypeError, r"table\['a'\]: expected a mapping"),
        ({"a": {"m": "fast"}}, {}, TypeError, "expected a number or None"),
        ({"a": {"m": 0.0}}, {"log": True}, ValueError, "log=True needs every value > 0"),
        ({"a": {"m": float("inf")}}, {}, ValueError, "finite"),
        ({"a": {"m": None}}, {}, ValueError, "no numeric values"),
    ],
)
def test_bar_chart_errors(tmp_path, table, kwargs, error, match):
    with pytest.raises(error, match=match):
        save_bar_chart(table, tmp_path / "x.png", "y", "t", **kwargs)
