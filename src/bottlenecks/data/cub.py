"""CUB-200-2011 (Caltech-UCSD Birds) with its 312 crowd-sourced attributes, as concept labels.

Reads the official folder as it unpacks (``CUB_200_2011/`` or its parent)::

    images/<NNN.Class_Name>/<file>.jpg
    images.txt                      <image_id> <path under images/>
    classes.txt                     <class_id> <NNN.Class_Name>
    image_class_labels.txt          <image_id> <class_id>
    train_test_split.txt            <image_id> <1 = train, 0 = test>
    attributes/image_attribute_labels.txt   <image_id> <attribute_id> <is_present> <certainty_id> <time>
    attributes.txt (next to the folder, in it, or in attributes/)   <attribute_id> <has_part::value>

The usual concept-bottleneck processing (Koh et al., 2020) is the default: on the training split,
an attribute is on for a class when at least half of the class's votes say present (votes of "not
visible" -- certainty 1 with is_present 0 -- do not count; a tie or no vote counts as present, as in
their code); attributes on for at least 10 classes are kept (112 on the real data) and every image
gets its class's values. The raw per-image votes of the kept attributes stay in
``instance_attributes`` (with ``certainty``: 1 not visible, 2 guessing, 3 probably, 4 definitely).

>>> train = load_cub("CUB_200_2011", "train")
>>> train.attributes.shape, len(train.attribute_names)   # (5994, 112), 112
>>> x = train.load_images(image_size=224)                 # (5994, 3, 224, 224) float32 in [0, 1]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import wants_progress

__all__ = ["CUBDataset", "attribute_phrase", "class_level_attributes", "describe_cub", "load_cub", "write_tiny_cub"]

SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class CUBDataset:
    """One split of CUB-200-2011.

    image_paths: n files;  image_ids: (n,) official 1-based ids;  labels: (n,) int64 in 0..n_classes-1;
    attributes: (n, A) uint8 concept labels (class-level majority votes when filtered);
    instance_attributes, certainty: (n, A) uint8 raw votes and their certainty (0 where the file has no line);
    class_attributes: (n_classes, A) uint8 the class-level table (from the training split);
    attribute_ids: (A,) official 1-based ids of the kept attributes.
    """

    root: Path
    split: str
    image_paths: tuple[Path, ...]
    image_ids: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    attributes: np.ndarray
    attribute_names: tuple[str, ...]
    attribute_ids: np.ndarray
    instance_attributes: np.ndarray
    certainty: np.ndarray
    class_attributes: np.ndarray

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_attributes(self) -> int:
        return len(self.attribute_names)

    def attribute_texts(self) -> list[str]:
        """The attribute names as phrases for a text encoder: ``has_bill_shape::hooked`` -> ``bill shape: hooked``."""
        return [attribute_phrase(a) for a in self.attribute_names]

    def load_images(self, image_size: int | tuple[int, int] = 224, indices=None) -> np.ndarray:
        """Read images (all, or ``indices``) -> ``(m, 3, H, W)`` float32 RGB in [0, 1], resized (bilinear)."""
        from PIL import Image

        h, w = (image_size, image_size) if np.isscalar(image_size) else (int(image_size[0]), int(image_size[1]))
        idx = range(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), 3, h, w), dtype=np.float32)
        for row, i in enumerate(idx):
            with Image.open(self.image_paths[int(i)]) as img:
                img = img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
                out[row] = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return out


def attribute_phrase(name: str) -> str:
    """``has_bill_shape::curved_(up_or_down)`` -> ``bill shape: curved (up or down)``."""
    part, _, value = name.partition("::")
    part = part.removeprefix("has_").replace("_", " ")
    return f"{part}: {value.replace('_', ' ')}" if value else part


def _find_root(root: Path) -> Path:
    if (root / "images.txt").is_file():
        return root
    if (root / "CUB_200_2011" / "images.txt").is_file():
        return root / "CUB_200_2011"
    raise FileNotFoundError(f"{root}: no images.txt here or in {root / 'CUB_200_2011'}; expected the "
                            "CUB_200_2011 folder (images/, images.txt, classes.txt, image_class_labels.txt, "
                            "train_test_split.txt, attributes/image_attribute_labels.txt)")


def _table(path: Path, n_cols: int, what: str) -> list[list[str]]:
    """Whitespace-separated lines -> their first ``n_cols`` fields (blank lines skipped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected {what}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split(maxsplit=n_cols - 1) if n_cols > 1 else [line.strip()]
            if not parts:
                continue
            if len(parts) < n_cols:
                raise ValueError(f"{path}:{lineno}: expected {what}, got {line.strip()!r}")
            rows.append(parts[:n_cols])
    return rows


def _id_map(path: Path, what: str) -> dict[int, str]:
    return {int(a): b.strip() for a, b in _table(path, 2, what)}


def _attribute_votes(path: Path, n_images_max: int, n_attr: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (is_present, certainty), each (max image id + 1, n_attr) uint8; rows and columns by official id - 1.

    The real file has a few lines with an extra field; only the first four are read.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected lines '<image_id> <attribute_id> <is_present> "
                                "<certainty_id> <time>'")
    try:
        v = np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2, 3), ndmin=2)
    except ValueError:  # ragged lines numpy cannot take: read them one by one
        v = np.array([[int(t) for t in line.split()[:4]] for line in open(path, encoding="utf-8") if line.strip()],
                     dtype=np.int64).reshape(-1, 4)
    img, att = v[:, 0] - 1, v[:, 1] - 1
    if v.size and (img.min() < 0 or img.max() >= n_images_max or att.min() < 0 or att.max() >= n_attr):
        raise ValueError(f"{path}: image ids must be in 1..{n_images_max} and attribute ids in 1..{n_attr}")
    present = np.zeros((n_images_max, n_attr), dtype=np.uint8)
    certainty = np.zeros((n_images_max, n_attr), dtype=np.uint8)
    present[img, att] = v[:, 2] != 0
    certainty[img, att] = v[:, 3]
    return present, certainty


def _attribute_names(root: Path) -> dict[int, str]:
    for path in (root / "attributes.txt", root / "attributes" / "attributes.txt", root.parent / "attributes.txt"):
        if path.is_file():
            return _id_map(path, "lines '<attribute_id> <name>'")
    raise FileNotFoundError(f"{root}: no attributes.txt in {root}, {root / 'attributes'} or {root.parent}; "
                            "it ships next to CUB_200_2011/ in the official archive")


def class_level_attributes(present: np.ndarray, certainty: np.ndarray, labels: np.ndarray, n_classes: int,
                           min_class_fraction: float = 0.5) -> np.ndarray:
    """Majority vote per class: ``(n, A), (n, A), (n,) -> (n_classes, A)`` uint8.

    On when ``present votes >= min_class_fraction * counted votes``; "not visible" votes (absent with
    certainty 1) are not counted, so a class with no counted vote is on (Koh et al.'s tie rule).
    """
    counted = ~((present == 0) & (certainty == 1))
    onehot = np.eye(n_classes, dtype=np.int64)[labels]  # (n, n_classes)
    yes = onehot.T @ (present.astype(np.int64) * counted)
    total = onehot.T @ counted.astype(np.int64)
    return (yes >= min_class_fraction * total).astype(np.uint8)


def load_cub(root: str | os.PathLike, split: str = "train", *, filter_attributes: bool = True,
             min_class_fraction: float = 0.5, min_classes: int = 10, class_level: bool = True) -> CUBDataset:
    """Read one split (``'train'``, ``'test'`` or ``'all'``) of CUB-200-2011 -> :class:`CUBDataset`.

    filter_attributes: keep only attributes on (by class-level vote on the training split) for at
        least ``min_classes`` classes; ``False`` keeps all of them.
    min_class_fraction: the share of counted votes that makes an attribute on for a class (0.5: majority).
    class_level: ``attributes`` are the class-level votes (the usual CBM labels); ``False`` gives the
        raw per-image votes of the kept attributes there too.
    Images are not read here: use ``load_images`` or the paths.
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    if not 0.0 < min_class_fraction <= 1.0:
        raise ValueError(f"min_class_fraction: expected a number in (0, 1], got {min_class_fraction!r}")
    root = _find_root(Path(root).expanduser())
    paths = _id_map(root / "images.txt", "lines '<image_id> <path under images/>'")
    classes = _id_map(root / "classes.txt", "lines '<class_id> <NNN.Class_Name>'")
    image_class = {i: int(c) for i, c in _id_map(root / "image_class_labels.txt",
                                                  "lines '<image_id> <class_id>'").items()}
    is_train = {i: int(t) for i, t in _id_map(root / "train_test_split.txt",
                                               "lines '<image_id> <1 or 0>'").items()}
    names = _attribute_names(root)
    missing = sorted(set(paths) - set(image_class))[:5] or sorted(set(paths) - set(is_train))[:5]
    if missing:
        raise ValueError(f"{root}: image ids {missing} of images.txt have no class or no train/test split line")
    class_ids = sorted(classes)
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise ValueError(f"{root / 'classes.txt'}: expected class ids 1..{len(class_ids)}")
    attr_ids = sorted(names)
    if attr_ids != list(range(1, len(attr_ids) + 1)):
        raise ValueError(f"attributes.txt: expected attribute ids 1..{len(attr_ids)}")

    ids = np.array(sorted(paths), dtype=np.int64)
    labels = np.array([image_class[int(i)] - 1 for i in ids], dtype=np.int64)
    train = np.array([is_train[int(i)] == 1 for i in ids])
    present, certainty = _attribute_votes(root / "attributes" / "image_attribute_labels.txt", int(ids.max()),
                                          len(attr_ids))
    present, certainty = present[ids - 1], certainty[ids - 1]
    table = class_level_attributes(present[train], certainty[train], labels[train], len(class_ids),
                                   min_class_fraction)
    keep = np.arange(len(attr_ids))
    if filter_attributes:
        keep = np.flatnonzero(table.sum(0) >= min_classes)
        if keep.size == 0:
            raise ValueError(f"{root}: no attribute is on for >= {min_classes} classes (there are {len(class_ids)} "
                             "classes); lower min_classes or pass filter_attributes=False")
    rows = np.flatnonzero(train if split == "train" else ~train if split == "test" else np.ones_like(train))
    table = table[:, keep]
    instance = present[rows][:, keep]
    return CUBDataset(
        root=root, split=split,
        image_paths=tuple(root / "images" / paths[int(i)] for i in ids[rows]),
        image_ids=ids[rows], labels=labels[rows],
        class_names=tuple(_readable(classes[c]) for c in class_ids),
        attributes=table[labels[rows]] if class_level else instance.copy(),
        attribute_names=tuple(names[int(a) + 1] for a in keep), attribute_ids=keep.astype(np.int64) + 1,
        instance_attributes=instance, certainty=certainty[rows][:, keep], class_attributes=table,
    )


def _readable(folder_name: str) -> str:
    """``001.Black_footed_Albatross`` -> ``Black footed Albatross``."""
    _, dot, rest = folder_name.partition(".")
    return (rest if dot else folder_name).replace("_", " ")


def write_tiny_cub(root: str | os.PathLike, *, n_classes: int = 4, images_per_class: int = 6, n_attributes: int = 12,
                   image_size: int = 8, flip: float = 0.2, seed: int = 0, attributes_txt: str = "attributes",
                   ragged_lines: int = 2) -> Path:
    """Write a tiny CUB-200-2011 folder in the official layout under ``root`` (for tests) -> its path.

    Each class has a random on/off pattern over the attributes; each image's vote is the pattern,
    flipped with probability ``flip``, with a random certainty 1..4 (certainty 1 votes are recorded
    absent, as in the real data). Images alternate train / test. ``attributes_txt`` puts
    attributes.txt in ``"attributes"`` (attributes/), ``"root"`` (the folder) or ``"parent"``.
    ``ragged_lines`` vote lines get an extra field, as a few lines of the real file do.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Path(root).expanduser() / "CUB_200_2011"
    (base / "attributes").mkdir(parents=True, exist_ok=True)
    pattern = rng.random((n_classes, n_attributes)) < 0.5
    class_lines, image_lines, label_lines, split_lines, vote_lines = [], [], [], [], []
    image_id = 0
    for c in range(n_classes):
        folder = f"{c + 1:03d}.Bird_{chr(65 + c % 26)}{c // 26}_Kind"
        class_lines.append(f"{c + 1} {folder}")
        (base / "images" / folder).mkdir(parents=True, exist_ok=True)
        for j in range(images_per_class):
            image_id += 1
            rel = f"{folder}/Bird_{c + 1}_{j:04d}.jpg"
            pixels = rng.integers(0, 256, size=(image_size, image_size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "images" / rel, quality=95)
            image_lines.append(f"{image_id} {rel}")
            label_lines.append(f"{image_id} {c + 1}")
            split_lines.append(f"{image_id} {1 if j % 2 == 0 else 0}")
            for a in range(n_attributes):
                vote = bool(pattern[c, a]) ^ bool(rng.random() < flip)
                cert = int(rng.integers(1, 5))
                vote = vote and cert != 1
                vote_lines.append(f"{image_id} {a + 1} {int(vote)} {cert} {rng.uniform(1, 20):.3f}")
    for k in rng.choice(len(vote_lines), size=min(ragged_lines, len(vote_lines)), replace=False):
        vote_lines[k] += " 0"
    attr_lines = [f"{a + 1} has_part_{a // 3}::value_{a % 3}" for a in range(n_attributes)]
    where = {"attributes": base / "attributes", "root": base, "parent": base.parent}
    if attributes_txt not in where:
        raise ValueError(f"attributes_txt: expected one of {sorted(where)}, got {attributes_txt!r}")
    for path, lines in [(base / "classes.txt", class_lines), (base / "images.txt", image_lines),
                        (base / "image_class_labels.txt", label_lines), (base / "train_test_split.txt", split_lines),
                        (base / "attributes" / "image_attribute_labels.txt", vote_lines),
                        (where[attributes_txt] / "attributes.txt", attr_lines)]:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return base


def describe_cub(root: str | os.PathLike, *, min_classes: int = 10, min_class_fraction: float = 0.5, out=None,
                 seed: int = 0, progress: bool | None = None) -> dict:
    """Summary of a CUB-200-2011 folder after the usual attribute filtering (112 attributes on the real data).

    Returns ``{"root", "n_train", "n_test", "n_classes", "n_attributes_total", "n_attributes",
    "attribute_names", "positive_rate_train"}`` (the share of training images with each kept attribute
    on, class-level labels) and writes it to ``out/cub_summary.json`` when ``out`` is given. ``seed``
    is accepted for a uniform command line; nothing here is random.
    """
    import json

    train = load_cub(root, "train", min_classes=min_classes, min_class_fraction=min_class_fraction)
    test = load_cub(root, "test", min_classes=min_classes, min_class_fraction=min_class_fraction)
    n_total = len(_attribute_names(train.root))
    result = {"root": str(train.root), "n_train": len(train), "n_test": len(test), "n_classes": train.n_classes,
              "n_attributes_total": n_total, "n_attributes": train.n_attributes,
              "attribute_names": list(train.attribute_names),
              "positive_rate_train": [round(float(v), 6) for v in train.attributes.mean(0)]}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cub_summary.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if wants_progress(progress):
        print(f"CUB at {train.root}: {len(train)} train / {len(test)} test images, {train.n_classes} classes, "
              f"{train.n_attributes} of {n_total} attributes on for >= {min_classes} classes")
    return result
