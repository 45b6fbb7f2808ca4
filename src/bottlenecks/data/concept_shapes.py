"""Concept shapes: small rendered RGB images with ground-truth concepts, for concept bottlenecks.

Each image is one filled shape on a background. Nine binary concepts (:data:`CONCEPT_NAMES`):

- colour  ``red``, ``green``, ``blue`` (one of three, uniform; nuisance for the class)
- shape   ``square``, ``circle``, ``triangle`` (one of three)
- size    ``large`` (else small; nuisance)
- texture ``striped`` (horizontal stripes inside the shape, random phase)
- spurious ``tinted background`` (a warm background tint)

The class is the rule *shape x texture* (6 classes, :data:`CLASS_NAMES`, e.g. ``"striped circle"``):
class ``2 * shape + striped``. A linear head over the binary concepts represents it exactly (the
class score ``[shape = s] + (striped if t else 1 - striped)`` is 2 for the true class and at most 1
for the others).

A fourth split, ``'concepts'``, draws every concept independently (tint included): it is the
concept-annotation set (like the Broden or CUB examples PCBM learns its concept vectors from), so
concept detectors learned on it cannot borrow the tint for *striped*.

The spurious concept is the setting of PCBM's editing experiment: in ``'train'`` and ``'test'``
the background is tinted exactly when the shape is striped, except for a fraction
``1 - spurious_agreement`` of images; in ``'shifted'`` the tint is an independent coin flip.

Knobs (all documented on :func:`make_concept_shapes`) and why they have their defaults: the tint is
a large, global colour change, easy to read from any embedding; the stripes have low contrast
(``stripe_contrast``) under pixel noise (``noise``) and a random phase, so *striped* is the hardest
concept to read. A head trained on predicted concepts therefore leans on the tint for the texture
half of the class, and removing the tint from the head (a global edit, no retraining) helps on the
shifted split. Raise ``stripe_contrast`` and the edit matters less; lower ``spurious_agreement``
and the head leans on the tint less.

>>> ds = make_concept_shapes(1000, split="train", seed=0)
>>> ds.images.shape, ds.concepts.shape, ds.labels.shape     # (1000, 3, 16, 16), (1000, 9), (1000,)
>>> ds.concept_names[ds.spurious_index]                     # 'tinted background'
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ..validation import check_choice, check_positive_int

__all__ = [
    "CLASS_NAMES",
    "CONCEPT_GROUPS",
    "CONCEPT_NAMES",
    "SPURIOUS_CONCEPT",
    "ConceptShapes",
    "make_concept_shapes",
]

COLOURS = ("red", "green", "blue")
SHAPES = ("square", "circle", "triangle")
SPURIOUS_CONCEPT = "tinted background"
CONCEPT_NAMES = (*COLOURS, *SHAPES, "large", "striped", SPURIOUS_CONCEPT)
#: concept groups (for group interventions): name -> concept names
CONCEPT_GROUPS = {
    "colour": list(COLOURS),
    "shape": list(SHAPES),
    "size": ["large"],
    "texture": ["striped"],
    "background": [SPURIOUS_CONCEPT],
}
CLASS_NAMES = tuple(f"{t} {s}" for s in SHAPES for t in ("plain", "striped"))
SPLITS = ("train", "test", "shifted", "concepts")
_SPLIT_OFFSET = {"train": 0, "test": 1, "shifted": 2, "concepts": 3}

# RGB fill of each colour and of the background; the tint shifts the background to warm.
_FILL = np.array([[0.85, 0.15, 0.15], [0.15, 0.75, 0.2], [0.2, 0.3, 0.9]], dtype=np.float32)
_BACKGROUND = np.array([0.45, 0.45, 0.45], dtype=np.float32)
_TINT_DIRECTION = np.array([1.0, 0.4, -1.0], dtype=np.float32)


@dataclass
class ConceptShapes:
    """One split of the concept-shapes data set.

    images: (n, 3, H, W) float32 in [0, 1]; concepts: (n, 9) int64 in {0, 1}; labels: (n,) int64.
    """

    images: np.ndarray
    concepts: np.ndarray
    labels: np.ndarray
    concept_names: list[str]
    class_names: list[str]
    spurious_concept: str
    split: str
    concept_groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def spurious_index(self) -> int:
        return self.concept_names.index(self.spurious_concept)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _masks(shape: np.ndarray, large: np.ndarray, cy: np.ndarray, cx: np.ndarray, size: int) -> np.ndarray:
    """Boolean (n, H, W) masks of each image's shape, centred at (cy, cx) in pixels."""
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float32) + 0.5, np.arange(size, dtype=np.float32) + 0.5,
                         indexing="ij")
    dy = yy[None] - cy[:, None, None]
    dx = xx[None] - cx[:, None, None]
    r = np.where(large, 0.36, 0.24).astype(np.float32)[:, None, None] * size  # half-width in pixels
    square = (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    circle = dy ** 2 + dx ** 2 <= r ** 2
    # upward triangle: apex at -r, base at +r, half-width growing linearly from 0 to r
    triangle = (dy >= -r) & (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) * 0.55)
    return np.where(shape[:, None, None] == 0, square, np.where(shape[:, None, None] == 1, circle, triangle))


def make_concept_shapes(
    n: int,
    split: str = "train",
    seed: int = 0,
    image_size: int = 16,
    *,
    spurious_agreement: float = 0.9,
    stripe_contrast: float = 0.18,
    tint_strength: float = 0.12,
    noise: float = 0.1,
    jitter: float = 1.5,
) -> ConceptShapes:
    """Render ``n`` images of ``split`` (``'train'``, ``'test'``, ``'shifted'`` or ``'concepts'``).

    - ``spurious_agreement``: probability that *tinted background* equals *striped* in ``'train'``
      and ``'test'`` (``'shifted'`` always draws it independently with probability 0.5).
    - ``stripe_contrast``: relative darkening of every other pair of rows inside a striped shape
      (0 makes *striped* invisible, 1 black stripes); low by default so texture is hard to read.
    - ``tint_strength``: size of the background's colour shift when tinted.
    - ``noise``: std of the Gaussian pixel noise (images are clipped to [0, 1] afterwards).
    - ``jitter``: the shape's centre moves uniformly by up to this many pixels in x and y.

    Classes are balanced in expectation (drawn uniformly); colour and size are uniform and
    independent of the class. The same ``(n, split, seed, ...)`` gives the same arrays; splits
    use independent random streams.
    """
    n = check_positive_int(n, "n")
    split = check_choice(split, "split", SPLITS)
    image_size = check_positive_int(image_size, "image_size", minimum=8)
    spurious_agreement = _fraction(spurious_agreement, "spurious_agreement")
    stripe_contrast = _fraction(stripe_contrast, "stripe_contrast")
    for value, name in ((tint_strength, "tint_strength"), (noise, "noise"), (jitter, "jitter")):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    rng = np.random.default_rng([int(seed), _SPLIT_OFFSET[split], 7])

    labels = rng.integers(0, len(CLASS_NAMES), size=n)
    shape, striped = labels // 2, labels % 2
    colour = rng.integers(0, 3, size=n)
    large = rng.integers(0, 2, size=n)
    if split in ("shifted", "concepts"):
        tinted = rng.integers(0, 2, size=n)
    else:
        agree = rng.random(n) < spurious_agreement
        tinted = np.where(agree, striped, 1 - striped)

    centre = image_size / 2 + rng.uniform(-jitter, jitter, size=(2, n)).astype(np.float32)
    mask = _masks(shape, large.astype(bool), centre[0], centre[1], image_size)  # (n, H, W)
    phase = rng.integers(0, 4, size=n)
    rows = np.arange(image_size)
    dark_rows = ((rows[None, :] + phase[:, None]) // 2) % 2 == 1  # (n, H): 2-pixel stripes
    shade = 1.0 - stripe_contrast * (dark_rows & striped[:, None].astype(bool)).astype(np.float32)

    background = _BACKGROUND[None] + tint_strength * tinted[:, None].astype(np.float32) * _TINT_DIRECTION[None]
    fill = _FILL[colour][:, :, None, None] * shade[:, None, :, None]  # (n, 3, H, 1)
    images = np.where(mask[:, None], fill, background[:, :, None, None])
    images = images + rng.normal(0.0, noise, size=images.shape)
    images = np.clip(images, 0.0, 1.0).astype(np.float32)

    concepts = np.zeros((n, len(CONCEPT_NAMES)), dtype=np.int64)
    concepts[np.arange(n), colour] = 1
    concepts[np.arange(n), 3 + shape] = 1
    concepts[:, 6] = large
    concepts[:, 7] = striped
    concepts[:, 8] = tinted
    return ConceptShapes(images=images, concepts=concepts, labels=labels.astype(np.int64),
                         concept_names=list(CONCEPT_NAMES), class_names=list(CLASS_NAMES),
                         spurious_concept=SPURIOUS_CONCEPT, split=split,
                         concept_groups={k: list(v) for k, v in CONCEPT_GROUPS.items()})
