"""Data sets: Fashion-MNIST (IDX files), scikit-learn's digits, and the IDX reader they share.

>>> ds = load_image_dataset("fashion-mnist", split="test")   # falls back to digits if missing
>>> ds.images.shape, ds.labels.shape                          # (n, 28, 28) float32, (n,) int64
"""

from .digits import DIGITS_CLASSES, load_digits_images
from .fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    load_fashion_mnist,
)
from .idx import IDXFormatError, read_idx, write_idx
from .images import DATASETS, DatasetFallbackWarning, ImageDataset, load_image_dataset
from .toy2d import make_toy2d, uniform_unit_square, unit_square_grid

__all__ = [
    "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR",
    "DIGITS_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "DatasetFallbackWarning",
    "IDXFormatError",
    "ImageDataset",
    "load_digits_images",
    "load_fashion_mnist",
    "load_image_dataset",
    "make_toy2d",
    "read_idx",
    "uniform_unit_square",
    "unit_square_grid",
    "write_idx",
]
