"""A concept-bottleneck head trained by gradient, one mini-batch at a time (the joint CBM of Koh et
al., "Concept Bottleneck Models", ICML 2020), for streams where the sklearn-style
:class:`~bottlenecks.concepts.ConceptBottleneckModel` (fitted once on all data) does not apply::

    x (batch, dim_in) -> Linear -> concept logits (batch, n_concepts) -> sigmoid -> p
      -> Linear -> class logits (batch, n_classes)

Loss ``CE(class) + concept_weight * BCE(concepts)``. The class layer reads only the concept
probabilities, so an intervention replaces some of them with the true values (0 or 1).

>>> head = ConceptBottleneckHead(512, n_concepts=9, n_classes=6)
>>> logits, concept_logits = head(x)
>>> head.loss(logits, concept_logits, y, c)
>>> head.intervene(x, [7], c[:, [7]])     # class logits with concept 7 set to its true value
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_positive_int

__all__ = ["ConceptBottleneckHead"]


class ConceptBottleneckHead(nn.Module):
    """``x: (batch, dim_in) -> (class logits (batch, n_classes), concept logits (batch, n_concepts))``."""

    def __init__(self, dim_in: int, n_concepts: int, n_classes: int, concept_weight: float = 1.0, seed: int = 0):
        super().__init__()
        self.dim_in = check_positive_int(dim_in, "dim_in")
        self.n_concepts = check_positive_int(n_concepts, "n_concepts")
        self.n_classes = check_positive_int(n_classes, "n_classes", 2)
        if not (math.isfinite(concept_weight) and concept_weight >= 0):
            raise ValueError(f"concept_weight: expected a finite number >= 0, got {concept_weight!r}")
        self.concept_weight, self.seed = float(concept_weight), int(seed)
        self.concepts = nn.Linear(self.dim_in, self.n_concepts)
        self.classes = nn.Linear(self.n_concepts, self.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for layer in (self.concepts, self.classes):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 2 * bound - bound)
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=g) * 2 * bound - bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2 or x.shape[1] != self.dim_in:
            raise ValueError(f"x: expected shape (batch, {self.dim_in}), got {tuple(x.shape)}")
        c_logits = self.concepts(x)
        return self.classes(torch.sigmoid(c_logits)), c_logits

    def loss(self, logits: torch.Tensor, concept_logits: torch.Tensor, y: torch.Tensor,
             c: torch.Tensor) -> torch.Tensor:
        """``CE(logits, y) + concept_weight * BCE(concept_logits, c)``; ``c: (batch, n_concepts)`` in {0, 1}."""
        if c.shape != concept_logits.shape:
            raise ValueError(f"c: expected shape {tuple(concept_logits.shape)} (one 0/1 entry per concept), "
                             f"got {tuple(c.shape)}")
        return F.cross_entropy(logits, y) + self.concept_weight * F.binary_cross_entropy_with_logits(
            concept_logits, c.to(concept_logits.dtype))

    @torch.no_grad()
    def intervene(self, x: torch.Tensor, concepts, values: torch.Tensor) -> torch.Tensor:
        """Class logits ``(batch, n_classes)`` with the probabilities of ``concepts`` (indices) replaced
        by ``values: (batch, len(concepts))`` (the true 0/1 concepts)."""
        idx = list(concepts)
        bad = [i for i in idx if not 0 <= int(i) < self.n_concepts]
        if bad:
            raise ValueError(f"concepts: indices {bad} out of range; expected 0..{self.n_concepts - 1}")
        if values.shape != (x.shape[0], len(idx)):
            raise ValueError(f"values: expected shape ({x.shape[0]}, {len(idx)}), got {tuple(values.shape)}")
        p = torch.sigmoid(self.concepts(x))
        p[:, idx] = values.to(p.dtype)
        return self.classes(p)

    def extra_repr(self) -> str:
        return (f"dim_in={self.dim_in}, n_concepts={self.n_concepts}, n_classes={self.n_classes}, "
                f"concept_weight={self.concept_weight:g}")
