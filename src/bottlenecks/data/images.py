"""One entry point for the labelled image data sets: :func:`load_image_dataset` returns an
:class:`ImageDataset`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .digits import DIGITS_CLASSES, load_digits_images
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

__all__ = ["DATASETS", "DatasetFallbackWarning", "ImageDataset", "load_image_dataset"]


class DatasetFallbackWarning(UserWarning):
    """A requested data set was missing and another one was loaded in its place."""


@dataclass(frozen=True)
class ImageDataset:
    """A labelled set of grey-scale images.

    images: (n, H, W) float32 in [0, 1];  labels: (n,) int64 in 0..len(class_names)-1.
    ``fallback_from`` names the data set that was asked for when this one replaced it, else None.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    image_shape: tuple[int, int]
    split: str = "train"
    fallback_from: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def flat(self) -> np.ndarray:
        """The images as feature rows: (n, H*W) float32 (a view, no copy)."""
        return self.images.reshape(len(self), -1)


def _fashion_mnist(data_dir, split):
    return load_fashion_mnist(data_dir, split), FASHION_MNIST_CLASSES


def _digits(data_dir, split):
    return load_digits_images(split), DIGITS_CLASSES


#: data set name -> loader(data_dir, split) -> ((images uint8, labels int64), class names)
DATASETS: dict[str, Callable] = {"fashion-mnist": _fashion_mnist, "digits": _digits}
_FALLBACK = {"fashion-mnist": "digits"}


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name: expected a data set name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(
            f"unknown image data set {name!r}; expected one of: {', '.join(sorted(DATASETS))}"
        )
    return key


def load_image_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    fallback: bool = True,
) -> ImageDataset:
    """Load ``name`` (``'fashion-mnist'`` or ``'digits'``), one ``split`` (``'train'``/``'test'``).

    ``data_dir`` is only used by Fashion-MNIST (see :func:`load_fashion_mnist`). With
    ``fallback=True``, a missing Fashion-MNIST is replaced by scikit-learn's digits and a
    :class:`DatasetFallbackWarning` says so; the result's ``name`` is then ``'digits'`` and its
    ``fallback_from`` is ``'fashion-mnist'``. With ``fallback=False`` the ``FileNotFoundError``
    (which says how to install the files) propagates. Corrupt files always raise.
    """
    key = _canonical(name)
    fallback_from = None
    try:
        (images, labels), class_names = DATASETS[key](data_dir, split)
    except FileNotFoundError as err:
        if not fallback or key not in _FALLBACK:
            raise
        fallback_from, key = key, _FALLBACK[key]
        warnings.warn(
            f"{fallback_from} is not available, using scikit-learn's {key} instead "
            f"(smaller images, different classes). {err}",
            DatasetFallbackWarning,
            stacklevel=2,
        )
        (images, labels), class_names = DATASETS[key](data_dir, split)
    images = np.asarray(images, dtype=np.float32) / np.float32(255.0)
    return ImageDataset(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(class_names),
        name=key,
        image_shape=(int(images.shape[1]), int(images.shape[2])),
        split=split,
        fallback_from=fallback_from,
    )
