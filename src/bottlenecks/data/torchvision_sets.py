"""CIFAR-10 / CIFAR-100 through ``torchvision.datasets`` (an optional dependency, imported lazily).

The files are looked for in (in order) the ``root`` argument, ``$BOTTLENECKS_TORCHVISION``, then
``~/.cache/bottlenecks/torchvision``; torchvision keeps them in ``cifar-10-batches-py/`` or
``cifar-100-python/`` under that folder. Nothing is downloaded unless ``download=True``.

>>> train, test = load_cifar("cifar10", download=True)        # once, when online
>>> train.images.shape                                        # (50000, 32, 32) float32 grey in [0, 1]
>>> train, test = load_cifar("cifar10", grayscale=False)      # (50000, 3, 32, 32) RGB, channels first
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .images import ImageDataset

__all__ = ["CIFAR_SETS", "TORCHVISION_ENV", "default_torchvision_dir", "load_cifar"]

#: environment variable naming the folder that holds torchvision's data sets
TORCHVISION_ENV = "BOTTLENECKS_TORCHVISION"
#: canonical name -> (torchvision class name, torchvision's folder under root, display name)
CIFAR_SETS = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "CIFAR-10"),
    "cifar100": ("CIFAR100", "cifar-100-python", "CIFAR-100"),
}
_INSTALL_HINT = ("pip install torchvision (CPU-only wheels: pip install torchvision --index-url "
                 "https://download.pytorch.org/whl/cpu); install the build that matches your torch")
# ITU-R 601-2 luma, the weights of Pillow's convert("L")
_LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


def default_torchvision_dir() -> Path:
    """``$BOTTLENECKS_TORCHVISION`` if set, else ``~/.cache/bottlenecks/torchvision``."""
    env = os.environ.get(TORCHVISION_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bottlenecks" / "torchvision"


def _canonical(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name: expected 'cifar10' or 'cifar100', got {type(name).__name__}")
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in CIFAR_SETS:
        raise ValueError(f"unknown torchvision data set {name!r}; expected one of: {', '.join(CIFAR_SETS)}")
    return key


def _import_torchvision_datasets():
    try:
        import torchvision.datasets as datasets
    except ImportError as err:
        raise ImportError(f"CIFAR-10/100 are loaded through torchvision, which is not installed: "
                          f"{_INSTALL_HINT}") from err
    except (RuntimeError, OSError) as err:  # e.g. a torchvision built for another torch
        raise ImportError(f"torchvision is installed but failed to import ({err}); {_INSTALL_HINT}") from err
    return datasets


def _to_dataset(tv, key: str, split: str, grayscale: bool) -> ImageDataset:
    data = np.asarray(tv.data)
    if data.ndim != 4 or data.shape[-1] != 3:
        raise ValueError(f"{CIFAR_SETS[key][2]}: expected torchvision's images as (n, H, W, 3) uint8, got shape "
                         f"{data.shape}")
    images = data.astype(np.float32) / np.float32(255.0)
    if grayscale:
        images = np.ascontiguousarray(images @ _LUMA)  # (n, H, W)
    else:
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # (n, 3, H, W)
    labels = np.asarray(tv.targets, dtype=np.int64)
    return ImageDataset(images=images, labels=labels, class_names=tuple(str(c) for c in tv.classes), name=key,
                        image_shape=(int(data.shape[1]), int(data.shape[2])), split=split)


def load_cifar(
    name: str = "cifar10",
    root: str | os.PathLike | None = None,
    download: bool = False,
    grayscale: bool = True,
) -> tuple[ImageDataset, ImageDataset]:
    """CIFAR-10 or CIFAR-100 -> (train, test) :class:`ImageDataset` (50 000 / 10 000 32x32 images).

    name: ``'cifar10'`` or ``'cifar100'`` (``'CIFAR-10'`` etc. also work; CIFAR-100 uses its 100 fine labels).
    root: the folder holding torchvision's files (default :func:`default_torchvision_dir`).
    download: fetch the files into ``root`` when they are absent (needs a network connection).
    grayscale: ``True`` (default) -> ``(n, 32, 32)`` float32 grey in [0, 1] (luma 0.299 R + 0.587 G
        + 0.114 B), as :class:`ImageDataset` documents; ``False`` -> RGB ``(n, 3, 32, 32)``, channels
        first, the layout of the project's encoders.

    Raises ``ImportError`` (with the install command) without torchvision, ``FileNotFoundError``
    when the files are absent and ``download=False``, ``ConnectionError`` when a download fails and
    ``ValueError`` when the files exist but fail torchvision's integrity check.
    """
    key = _canonical(name)
    cls_name, folder, title = CIFAR_SETS[key]
    root = Path(root).expanduser() if root is not None else default_torchvision_dir()
    datasets = _import_torchvision_datasets()
    if not download and not (root / folder).is_dir():
        raise FileNotFoundError(f"{title} not found: expected torchvision's files in {root / folder}/. Pass "
                                f"download=True (CLI: --download) to fetch them into {root} when online, or give "
                                f"the folder that holds {folder}/ as root (CLI: --data-dir)")
    cls = getattr(datasets, cls_name)
    out = []
    for split in ("train", "test"):
        try:
            tv = cls(root=str(root), train=split == "train", download=bool(download))
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise ValueError(f"{title} in {root / folder}/ is incomplete or corrupted ({err}); delete that folder "
                             "and load it again with download=True (CLI: --download)") from err
        except OSError as err:  # URLError, timeouts, no space left
            if not download:
                raise
            raise ConnectionError(f"could not download {title} into {root}: {err}. Check that this machine is "
                                  f"online, or copy torchvision's {folder}/ folder into {root}") from err
        out.append(_to_dataset(tv, key, split, grayscale))
    return out[0], out[1]
