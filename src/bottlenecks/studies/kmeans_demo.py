"""The k-means demo: cluster an image data set (or an ``.npy`` / ``.npz`` array) with the exact
engine, report the time, the inertia and the purity against the labels, and save the centroids
as images (``centroids.png``, ``metrics.json``)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..progress import phase
from ..report.html_browse import build_html
from ..validation import InstanceOf, Interval, Options, check_device
from .base import StudyConfig, StudyResults, prepare_out

__all__ = ["KMeansDemoConfig", "KMeansDemoResults", "load_points", "purity", "run"]

PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@dataclass
class KMeansDemoConfig(StudyConfig):
    """``dataset``: ``fashion-mnist`` (digits when absent), ``digits``, or a path to an ``.npy`` /
    ``.npz`` (arrays ``x`` and optional ``y``); ``data_dir``: the Fashion-MNIST folder. The other
    fields are :func:`bottlenecks.cluster.kmeans`'s (``n_clusters`` is its ``k``)."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    n_clusters: int = 10
    n_init: int = 1
    max_iter: int = 100
    tol: float = 1e-4
    precision: str = "auto"
    prune: bool = True
    device: str = "cpu"
    seed: int = 0

    constraints: ClassVar[dict] = {
        "n_clusters": Interval(int, 1, None), "n_init": Interval(int, 1, None), "max_iter": Interval(int, 1, None),
        "seed": Interval(int, 0, None), "precision": Options(PRECISIONS), "tol": Interval(float, 0, None),
        "dataset": InstanceOf(str, "a data set name or a path"), "data_dir": [InstanceOf(str, "a path"), None],
        "prune": InstanceOf(bool), "device": InstanceOf(str, "a torch device name")}

    def validate(self) -> None:
        check_device(self.device)


@dataclass
class KMeansDemoResults(StudyResults):
    """What ``metrics.json`` holds (``purity`` is None without labels)."""

    dataset: str
    n_samples: int
    n_features: int
    k: int
    seed: int
    inertia: float
    n_iter: int
    seconds: float
    precision: str
    purity: float | None = None
    centroids_png: str | None = None


def purity(labels: np.ndarray, classes: np.ndarray) -> float:
    """Fraction of points whose cluster's majority class is their own class (``classes``: any
    labels, e.g. strings or negative numbers)."""
    classes = np.unique(np.asarray(classes), return_inverse=True)[1].reshape(-1)
    table = np.zeros((labels.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(table, (labels, classes), 1)
    return float(table.max(1).sum() / len(labels))


def load_points(cfg: KMeansDemoConfig):
    """-> (x (n, d) float32, labels or None, image shape or None, name, class names)."""
    path = Path(cfg.dataset).expanduser()
    if path.suffix.lower() in (".npy", ".npz"):
        from ..data import load_arrays

        try:
            arrays = load_arrays(path, ("x",), ("y",), npy_name="x")
        except (FileNotFoundError, ValueError) as err:  # their messages start with the path: name the field
            raise type(err)(f"dataset {err}") from None
        return (*_points(arrays["x"], arrays.get("y"), path), None, path.name, None)
    from ..data import load_image_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # an explicit data_dir is an explicit request: no falling back to digits without it
        ds = load_image_dataset(cfg.dataset, data_dir=cfg.data_dir, split="train", fallback=cfg.data_dir is None)
    for w in caught:
        warnings.warn(str(w.message), UserWarning, stacklevel=2)
    return ds.flat, ds.labels, ds.image_shape, ds.name, ds.class_names


def _points(x, y, path: Path):
    """Rows of ``x`` as float32 ``(n, d)`` and labels ``y`` (any kind: purity only compares them)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" or x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{path}: x: expected a numeric array of samples (n, ...), got {x.dtype} of shape {x.shape}")
    x = x.astype(np.float32).reshape(len(x), -1)
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: x contains NaN or infinity (or values too large for float32)")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise ValueError(f"{path}: y: expected one label per row of x, shape ({len(x)},), got {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(f"{path}: y contains NaN or infinity; expected class labels")
        if y.dtype.kind not in "biufUS":
            raise ValueError(f"{path}: y: expected numbers or strings as labels, got dtype {y.dtype}")
    return x, y


def run(config: KMeansDemoConfig, out="runs/kmeans", progress: bool | None = True) -> KMeansDemoResults:
    """Cluster, measure, write ``metrics.json`` (and ``centroids.png`` for images) into ``out``."""
    import torch

    from ..cluster import kmeans
    from ..report.plots import save_image_grid

    cfg = config
    out = prepare_out(out, create=False)  # checked now, created once the data has loaded
    x, y, shape, name, class_names = load_points(cfg)
    if cfg.n_clusters > len(x):
        raise ValueError(f"n_clusters: {name} has {len(x)} samples; expected n_clusters <= {len(x)}, "
                         f"got {cfg.n_clusters}")
    prepare_out(out)
    phase(f"k-means: {name}, {x.shape[0]} samples x {x.shape[1]} features, k={cfg.n_clusters}, seed={cfg.seed}",
          progress)
    xt = torch.from_numpy(x).to(cfg.device)
    t0 = time.perf_counter()
    res = kmeans(xt, cfg.n_clusters, n_init=cfg.n_init, max_iter=cfg.max_iter, tol=cfg.tol, seed=cfg.seed,
                 precision=cfg.precision, prune=cfg.prune, progress=progress)
    seconds = time.perf_counter() - t0
    labels = res.labels.cpu().numpy()
    results = KMeansDemoResults(dataset=name, n_samples=int(x.shape[0]), n_features=int(x.shape[1]),
                                k=cfg.n_clusters, seed=cfg.seed, inertia=res.inertia, n_iter=res.n_iter,
                                seconds=round(seconds, 3), precision=res.info["precision"])
    if y is not None:
        results.purity = purity(labels, np.asarray(y))
    if shape is not None:
        centroids = res.centroids.cpu().numpy().reshape(-1, *shape)
        titles = None
        if y is not None and class_names is not None:
            majority = [np.bincount(np.asarray(y)[labels == j], minlength=len(class_names)).argmax()
                        if (labels == j).any() else -1 for j in range(cfg.n_clusters)]
            titles = [class_names[m][:12] if m >= 0 else "(empty)" for m in majority]
        png = save_image_grid(centroids, out / "centroids.png", titles=titles,
                              suptitle=f"k-means centroids of {name} (k={cfg.n_clusters})")
        results.centroids_png = str(png)
    results.to_json(out / "metrics.json")
    build_html(out)  # report.html: the numbers and the centroids in one page
    return results
