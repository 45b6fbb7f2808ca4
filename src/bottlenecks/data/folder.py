"""A folder of images, one sub-folder per class, read with Pillow.

Two layouts::

    root/<class_name>/*.png|jpg            -> a seeded stratified split (default 80/20)
    root/train/<class_name>/*.png|jpg      -> the given split
    root/test/<class_name>/*.png|jpg

>>> train, test = load_image_folder("my_images", image_size=32)
>>> train.images.shape, train.class_names          # (n, 32, 32) float32 in [0, 1], sorted folder names

Colour: ``grayscale=True`` (the default) gives ``(n, H, W)``, as :class:`ImageDataset` documents;
``grayscale=False`` gives RGB **channels-first** ``(n, 3, H, W)`` — the layout every encoder of
``bottlenecks.encoders`` takes (``to_rgb``, ``TorchModuleEncoder``, ``pixels``). ``image_shape``
is ``(H, W)`` either way. Images are read as 8-bit (16-bit files are clipped by Pillow's conversion).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .embeddings import stratified_split
from .images import ImageDataset

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

#: file suffixes (case-insensitive) read as images; other files are ignored
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _import_pil():
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - Pillow comes with matplotlib
        raise ImportError("load_image_folder needs Pillow to read images: pip install pillow") from err
    return Image


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _collect(folder: Path) -> dict[str, list[Path]]:
    """class name -> its image files, for every class sub-folder of ``folder``."""
    classes = _class_dirs(folder)
    if not classes:
        loose = _image_files(folder)
        hint = (f" (it holds {len(loose)} loose image(s): move them into one sub-folder per class)"
                if loose else "")
        raise ValueError(f"{folder}: expected one sub-folder per class (root/<class_name>/*.png), found none{hint}")
    return {d.name: _image_files(d) for d in classes}


def _size(image_size) -> tuple[int, int] | None:
    """None, an int or (H, W) -> (H, W)."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size: expected None, an int or a pair (H, W), got {image_size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_size: expected positive sizes, got {(h, w)}")
    return h, w


def _read(files: list[Path], size: tuple[int, int] | None, grayscale: bool):
    """-> (images uint8: (n, H, W) or (n, H, W, 3), (H, W), files that were resized); ``size=None``: the
    first image's size."""
    Image = _import_pil()
    mode = "L" if grayscale else "RGB"
    images, resized = None, []
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img.load()
                img = img.convert(mode)
        except (OSError, ValueError, SyntaxError) as err:  # Pillow's UnidentifiedImageError is an OSError
            raise ValueError(f"{f}: could not read it as an image ({err})") from err
        if size is None:
            size = (img.height, img.width)
        if (img.height, img.width) != size:
            resized.append(f)
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        if images is None:
            images = np.empty((len(files), size[0], size[1]) + (() if grayscale else (3,)), dtype=np.uint8)
        images[i] = np.asarray(img, dtype=np.uint8)
    return images, size, resized


def load_image_folder(
    root: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool = True,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> tuple[ImageDataset, ImageDataset]:
    """Read ``root`` (see the module's layouts) -> (train, test) :class:`ImageDataset`.

    class_names: the sorted class folder names (train and test together); labels index them.
    image_size: ``None`` (the first image's size), an int (square) or ``(H, W)``; images of another
        size are resized (bilinear). With ``None``, images that differ from the first one are
        resized to it and a ``UserWarning`` says how many.
    grayscale: ``True`` -> ``(n, H, W)``; ``False`` -> RGB ``(n, 3, H, W)`` (channels first).
    seed, test_fraction: the stratified split of the one-folder layout (ignored with train/ and test/).
    The data set's ``name`` is the folder's name. Files are read in sorted order, so the same folder
    always gives the same arrays.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder" + (" (it is a file)" if root.exists() else ""))
    size = _size(image_size)
    name = root.resolve().name
    split_dirs = {s: root / s for s in ("train", "test") if (root / s).is_dir()}
    if len(split_dirs) == 1:
        have, miss = next(iter(split_dirs)), ({"train", "test"} - set(split_dirs)).pop()
        raise ValueError(f"{root}: found {have}/ but no {miss}/; expected both train/<class>/ and test/<class>/, "
                         "or class folders directly under the root (split here)")
    if split_dirs:
        per_split = {s: _collect(d) for s, d in split_dirs.items()}
        class_names = tuple(sorted(set(per_split["train"]) | set(per_split["test"])))
    else:
        per_split = {"all": _collect(root)}
        class_names = tuple(sorted(per_split["all"]))
    empty = [c for c in class_names if not any(files.get(c) for files in per_split.values())]
    if empty:
        raise ValueError(f"{root}: class folder(s) {', '.join(empty)} hold no images; expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    index = {c: i for i, c in enumerate(class_names)}
    files, labels = {}, {}
    for s, by_class in per_split.items():
        files[s] = [f for c in sorted(by_class) for f in by_class[c]]
        labels[s] = np.asarray([index[c] for c in sorted(by_class) for _ in by_class[c]], dtype=np.int64)
        if not files[s]:
            raise ValueError(f"{root / s if s != 'all' else root}: holds no images ending in "
                             f"{', '.join(IMAGE_SUFFIXES)}")
    # read every split at one size: the first image's, unless image_size says otherwise
    order = ["train", "test"] if split_dirs else ["all"]
    arrays, n_resized = {}, 0
    for s in order:
        arrays[s], size, resized = _read(files[s], size, grayscale)
        n_resized += len(resized)
    if image_size is None and n_resized:
        warnings.warn(f"{root}: {n_resized} image(s) differ in size from the first one and were resized to "
                      f"{size[0]}x{size[1]}; pass image_size to choose the size", UserWarning, stacklevel=2)
    if not split_dirs:
        tr, te = stratified_split(labels["all"], test_fraction=test_fraction, seed=seed)
        if te.size == 0:
            raise ValueError(f"{root}: every class has a single image, so no test set can be split off; "
                             "add images or use root/train/ and root/test/")
        arrays = {"train": arrays["all"][tr], "test": arrays["all"][te]}
        labels = {"train": labels["all"][tr], "test": labels["all"][te]}
    out = []
    for s in ("train", "test"):
        images = arrays[s].astype(np.float32) / np.float32(255.0)
        if not grayscale:
            images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        out.append(ImageDataset(images=images, labels=labels[s], class_names=class_names, name=name,
                                image_shape=(int(size[0]), int(size[1])), split=s))
    return out[0], out[1]
