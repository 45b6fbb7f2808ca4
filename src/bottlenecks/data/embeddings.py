"""User embeddings: ``.npz`` or ``.safetensors`` files of feature rows and integer labels.

The file holds either four arrays ``x_train, y_train, x_test, y_test`` or two arrays ``x, y``,
which are then split into train and test with a seeded stratified split::

    np.savez("feats.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    safetensors.numpy.save_file({"x": x, "y": y}, "feats.safetensors")

>>> ds = load_embeddings("feats.npz")
>>> ds.x_train.shape, ds.y_train.dtype            # (n, D) float32, int64
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..validation import as_tensor, check_finite

__all__ = ["EMBEDDING_SUFFIXES", "EmbeddingDataset", "load_embeddings", "stratified_split"]

#: file suffixes :func:`load_embeddings` reads
EMBEDDING_SUFFIXES = (".npz", ".safetensors")
_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
_FLAT_KEYS = ("x", "y")


@dataclass(frozen=True)
class EmbeddingDataset:
    """Feature rows with integer labels, split into train and test.

    x_train: (n_train, D) float32;  y_train: (n_train,) int64 (non-negative class labels);
    x_test: (n_test, D) float32;  y_test: (n_test,) int64.
    ``name`` is the file's stem, ``source`` the resolved path of the file it was read from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str

    @property
    def dim(self) -> int:
        """D, the number of features per row."""
        return int(self.x_train.shape[1])

    @property
    def classes(self) -> np.ndarray:
        """The sorted labels present in train or test: (k,) int64."""
        return np.union1d(self.y_train, self.y_test)

    @property
    def n_classes(self) -> int:
        return int(self.classes.size)


def stratified_split(y, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of the labels ``y: (n,)`` -> (train indices, test indices), each sorted.

    Each class puts ``round(test_fraction * count)`` of its samples in the test set, at least one
    and at most ``count - 1``; a class with a single sample stays in the training set. The same
    ``y``, ``test_fraction`` and ``seed`` always give the same indices.
    """
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a fraction strictly between 0 and 1, got {test_fraction}")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y: expected a 1-D array of labels, got shape {y.shape}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = 0 if idx.size < 2 else min(max(int(round(test_fraction * idx.size)), 1), idx.size - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    empty = np.zeros(0, dtype=np.int64)
    return (np.sort(np.concatenate(train + [empty])).astype(np.int64),
            np.sort(np.concatenate(test + [empty])).astype(np.int64))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix.lower() == ".npz":
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: could not read it as an .npz archive (not a zip file); write it with "
                             "np.savez(path, x=..., y=...)")
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ValueError(f"{path}: could not read it as an .npz archive ({err})") from err
        except ValueError as err:  # object arrays need pickle, which we never load
            raise ValueError(f"{path}: could not read it as an .npz of numeric arrays ({err}); save plain "
                             "numeric arrays, e.g. np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))"
                             ) from err
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: could not read it as a .safetensors file ({err})") from err


def load_arrays(path, required: tuple[str, ...], optional: tuple[str, ...] = (), *,
                npy_name: str | None = None) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` / ``.safetensors`` file (``.npy``: one array, taken as
    ``npy_name`` when given). Every failure is a ``ValueError`` / ``FileNotFoundError`` naming the
    file and what it should hold: a missing file, a corrupt or truncated archive, pickled arrays,
    a missing array, another file type."""
    path = Path(path).expanduser()
    want = ", ".join(repr(k) for k in required) or "arrays"
    kinds = ".npz / .safetensors" + (" / .npy" if npy_name else "")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected an {kinds} file with arrays {want}")
    suffix = path.suffix.lower()
    if suffix == ".npy" and npy_name is not None:
        try:
            arrays = {npy_name: np.load(path, allow_pickle=False)}
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"{path}: could not read it as an .npy array ({err})") from None
    elif suffix in EMBEDDING_SUFFIXES:
        arrays = _read_arrays(path)
    else:
        extra = " (an .npy holds one array)" if suffix == ".npy" else ""
        raise ValueError(f"{path}: expected an {kinds} file with arrays {want}, got a {suffix or 'suffix-less'} "
                         f"file{extra}")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{path}: has arrays {sorted(arrays)}; expected {missing[0]!r} (it needs {want})")
    return {k: arrays[k] for k in (*required, *optional) if k in arrays}


def _features(x: np.ndarray, what: str) -> np.ndarray:
    t = as_tensor(x, what)
    if t.dim() != 2:
        extra = "; a single feature per sample must be given as x.reshape(-1, 1)" if t.dim() == 1 else ""
        raise ValueError(f"{what}: expected a 2-D array of feature rows (n, D), got shape {tuple(t.shape)}{extra}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{what}: expected at least 1 sample and 1 feature, got shape {tuple(t.shape)}")
    arr = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    check_finite(torch.from_numpy(arr), what)  # after the cast: float64 values too large for float32 are inf
    return arr


def _labels(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array of class labels (n,), got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            bad = y[~(np.isfinite(y) & (y == np.round(y)))][:3]
            raise TypeError(f"{what}: expected integer class labels, got dtype {y.dtype} with non-integer values "
                            f"such as {bad.tolist()}; store labels as integers, e.g. y.astype(np.int64)")
    elif y.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected integer class labels, got dtype {y.dtype}; map class names to "
                        "integers first, e.g. np.unique(names, return_inverse=True)[1]")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{what}: expected non-negative class labels (0, 1, ...), got minimum {int(y.min())}")
    return y


def _pair(x, y, xname: str, yname: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _features(x, xname), _labels(y, yname)
    if len(x) != len(y):
        raise ValueError(f"{xname} has {len(x)} rows but {yname} has {len(y)} labels; expected one label per row")
    return x, y


def load_embeddings(path: str | os.PathLike, seed: int = 0, test_fraction: float = 0.2) -> EmbeddingDataset:
    """Read embeddings and labels from ``path`` (``.npz`` or ``.safetensors``).

    The file holds ``x_train, y_train, x_test, y_test`` (used as given), or ``x, y`` (split with
    :func:`stratified_split`: ``test_fraction`` of every class, drawn with ``seed``). Features are
    returned as float32 ``(n, D)`` and labels as int64 ``(n,)``. Other arrays in the file are
    ignored. Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for an unknown suffix,
    an unreadable file, missing arrays, mismatched shapes or NaN / infinite features, and
    ``TypeError`` for non-numeric features or non-integer labels.
    """
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a fraction strictly between 0 and 1, got {test_fraction}")
    path = Path(path).expanduser()
    if path.suffix.lower() not in EMBEDDING_SUFFIXES:
        raise ValueError(f"{path}: unknown file type {path.suffix or '(no suffix)'!r}; expected one of "
                         f"{', '.join(EMBEDDING_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    arrays = _read_arrays(path)
    if all(k in arrays for k in _SPLIT_KEYS):
        x_tr, y_tr = _pair(arrays["x_train"], arrays["y_train"], "x_train", "y_train")
        x_te, y_te = _pair(arrays["x_test"], arrays["y_test"], "x_test", "y_test")
        if x_tr.shape[1] != x_te.shape[1]:
            raise ValueError(f"x_train has {x_tr.shape[1]} features per row but x_test has {x_te.shape[1]}; "
                             "expected the same embedding size")
    elif all(k in arrays for k in _FLAT_KEYS):
        x, y = _pair(arrays["x"], arrays["y"], "x", "y")
        tr, te = stratified_split(y, test_fraction=test_fraction, seed=seed)
        if te.size == 0:
            raise ValueError(f"{path}: every class has a single sample, so no test set can be split off; "
                             "give more samples or store x_train, y_train, x_test, y_test")
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
    else:
        found = ", ".join(sorted(arrays)) or "no arrays"
        raise ValueError(f"{path}: expected arrays {', '.join(_SPLIT_KEYS)} (a given split) or {', '.join(_FLAT_KEYS)} "
                         f"(split {1 - test_fraction:.0%}/{test_fraction:.0%} here), found: {found}")
    return EmbeddingDataset(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, name=path.stem,
                            source=str(path.resolve()))
