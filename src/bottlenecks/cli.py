"""The command line: ``bottlenecks <command> ...``. Thin: it parses, calls the library, prints."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _kmeans_parser(sub) -> None:
    p = sub.add_parser("kmeans", help="cluster a data set with the exact k-means engine",
                       description="Cluster an image data set (or an .npy/.npz array) with exact k-means; "
                                   "print cluster purity and time, save the centroids as images.")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist (default; falls back to digits when absent), digits, or a path to "
                        ".npy / .npz (arrays 'x' and optional 'y')")
    p.add_argument("--data-dir", default=None, help="folder holding the Fashion-MNIST IDX files")
    p.add_argument("-k", "--clusters", type=int, default=10, help="number of clusters (default 10)")
    p.add_argument("--n-init", type=int, default=1)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--no-prune", action="store_true", help="disable Hamerly bound pruning")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/kmeans", help="folder for centroids.png and metrics.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_kmeans)


def _load(args):
    """-> (x (n, d) float32, labels or None, image shape or None, name, class names)."""
    path = Path(args.dataset)
    if path.suffix in (".npy", ".npz"):
        if not path.exists():
            raise SystemExit(f"error: --dataset {path}: no such file")
        arr = np.load(path)
        x, y = (arr, None) if path.suffix == ".npy" else (arr["x"], arr["y"] if "y" in arr else None)
        return np.asarray(x, np.float32).reshape(len(x), -1), y, None, path.name, None
    from .data import load_image_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = load_image_dataset(args.dataset, data_dir=args.data_dir, split="train")
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"error: {err}") from None
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return ds.flat, ds.labels, ds.image_shape, ds.name, ds.class_names


def purity(labels: np.ndarray, classes: np.ndarray) -> float:
    """Fraction of points whose cluster's majority class is their own class."""
    table = np.zeros((labels.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(table, (labels, classes), 1)
    return float(table.max(1).sum() / len(labels))


def run_kmeans(args) -> int:
    import torch

    from .cluster import kmeans
    from .report.plots import save_image_grid

    x, y, shape, name, class_names = _load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"k-means: {name}, {x.shape[0]} samples x {x.shape[1]} features, k={args.clusters}, seed={args.seed}")
    xt = torch.from_numpy(x).to(args.device)
    t0 = time.perf_counter()
    try:
        res = kmeans(xt, args.clusters, n_init=args.n_init, max_iter=args.max_iter, tol=args.tol, seed=args.seed,
                     precision=args.precision, prune=not args.no_prune, progress=not args.quiet)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    seconds = time.perf_counter() - t0
    labels = res.labels.cpu().numpy()
    metrics = {"dataset": name, "n_samples": int(x.shape[0]), "n_features": int(x.shape[1]),
               "k": args.clusters, "seed": args.seed, "inertia": res.inertia, "n_iter": res.n_iter,
               "seconds": round(seconds, 3), "precision": res.info["precision"]}
    if y is not None:
        metrics["purity"] = purity(labels, np.asarray(y))
    print(f"  {res.n_iter} iterations in {seconds:.2f} s ({res.info['precision']} search), inertia {res.inertia:.6g}")
    if "purity" in metrics:
        print(f"  cluster purity against the labels: {metrics['purity']:.3f}")
    if shape is not None:
        centroids = res.centroids.cpu().numpy().reshape(-1, *shape)
        titles = None
        if y is not None and class_names is not None:
            majority = [np.bincount(np.asarray(y)[labels == j], minlength=len(class_names)).argmax()
                        if (labels == j).any() else -1 for j in range(args.clusters)]
            titles = [class_names[m][:12] if m >= 0 else "(empty)" for m in majority]
        png = save_image_grid(centroids, out / "centroids.png", titles=titles,
                              suptitle=f"k-means centroids of {name} (k={args.clusters})")
        print(f"  centroids: {png}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"  metrics:   {out / 'metrics.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="bottlenecks",
                                     description="Put bottlenecks into neural networks, train them and look inside.")
    parser.add_argument("--version", action="version", version=f"bottlenecks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    _kmeans_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
