"""Fashion-MNIST from its IDX files (by default where Debian's ``dataset-fashion-mnist`` puts them).

The folder is, in order of precedence: the ``data_dir`` argument, the environment variable
``BOTTLENECKS_FASHION_MNIST``, then :data:`DEFAULT_FASHION_MNIST_DIR`. It must hold the four
original files, gzipped or not::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   (60 000 images)
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    (10 000 images)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..validation import check_choice
from .idx import read_idx

__all__ = [
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "fashion_mnist_dir",
    "fashion_mnist_files",
    "load_fashion_mnist",
]

#: where ``apt-get install dataset-fashion-mnist`` installs the files
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: environment variable naming another folder with the same files
FASHION_MNIST_ENV = "BOTTLENECKS_FASHION_MNIST"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
SPLITS = ("train", "test")
_PREFIX = {"train": "train", "test": "t10k"}
IMAGE_SHAPE = (28, 28)


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder to read: ``data_dir``, else ``$BOTTLENECKS_FASHION_MNIST``, else Debian's."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_FASHION_MNIST_DIR


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_files(
    data_dir: str | os.PathLike | None = None, split: str = "train"
) -> tuple[Path, Path]:
    """``(images_path, labels_path)`` of one split; ``FileNotFoundError`` saying how to get them."""
    check_choice(split, "split", SPLITS)
    folder = fashion_mnist_dir(data_dir)
    stems = (f"{_PREFIX[split]}-images-idx3-ubyte", f"{_PREFIX[split]}-labels-idx1-ubyte")
    found = [_find(folder, stem) for stem in stems]
    missing = [f"{stem}[.gz]" for stem, path in zip(stems, found, strict=True) if path is None]
    if missing:
        where = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        raise FileNotFoundError(
            f"Fashion-MNIST ({split} split) not found: {folder} {where}. "
            f"Get it with `apt-get install dataset-fashion-mnist` (installs to "
            f"{DEFAULT_FASHION_MNIST_DIR}), or pass data_dir= / set ${FASHION_MNIST_ENV} "
            "to a folder holding the original IDX files (e.g. train-images-idx3-ubyte.gz)."
        )
    return found[0], found[1]


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST.

    Returns ``images: (n, 28, 28) uint8`` (0 = background) and ``labels: (n,) int64`` in 0..9,
    indexing :data:`FASHION_MNIST_CLASSES`; n is 60 000 for ``'train'`` and 10 000 for ``'test'``.
    """
    images_path, labels_path = fashion_mnist_files(data_dir, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (n, 28, 28), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path}: expected one label per image, shape ({images.shape[0]},), "
            f"got shape {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
        raise ValueError(
            f"{labels_path}: expected labels in 0..{len(FASHION_MNIST_CLASSES) - 1}, "
            f"got values in {labels.min()}..{labels.max()}"
        )
    return images, labels
