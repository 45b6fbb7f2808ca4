"""scikit-learn's 8x8 handwritten digits as images, with a fixed stratified train/test split.

The 1 797 images ship with scikit-learn, so this data set is always available: it is the stand-in
when Fashion-MNIST is not installed.
"""

from __future__ import annotations

import numpy as np

from ..validation import check_choice

__all__ = ["DIGITS_CLASSES", "load_digits_images"]

DIGITS_CLASSES = tuple(str(d) for d in range(10))
SPLITS = ("train", "test")
_DIGITS_MAX = 16  # sklearn's pixel values are integers in 0..16


def load_digits_images(
    split: str = "train", *, test_size: float = 0.2, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One split of scikit-learn's digits.

    Returns ``images: (n, 8, 8) uint8`` scaled from 0..16 to 0..255 (like Fashion-MNIST) and
    ``labels: (n,) int64`` in 0..9. The split is stratified by label and fixed by
    ``random_state``: the same arguments always give the same images in the same order.
    With the defaults, n is 1 437 for ``'train'`` and 360 for ``'test'``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_choice(split, "split", SPLITS)
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(
            f"test_size: expected a fraction strictly between 0 and 1, got {test_size}"
        )
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / _DIGITS_MAX)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=random_state
    )
    idx = train_idx if split == "train" else test_idx
    return images[idx], labels[idx]
