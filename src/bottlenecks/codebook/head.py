"""A vector-quantised classification head: top-k codes of one codebook, then a linear decoder.

    x (batch, dim_in) -> Linear -> z (batch, dim)
      -> CodebookLayer: the k most similar of K codes, their mean   q (batch, dim), ids (batch, k), loss ()
      -> Linear decoder -> logits (batch, n_classes)

Everything the decoder sees is a function of the k code ids (the layer's straight-through output
carries q's value), so the head is a discrete bottleneck of at most ``C(K, k)`` states. The
projection learns through the straight-through gradient, the codes from the codebook's
reconstruction loss (the layer's third output), dead codes are re-seeded by the layer (Tamkin et al. 2023).

>>> head = CodebookClassifier(512, 10, dim=64, num_codes=256, k=8)
>>> logits, ids, codebook_loss = head(x)     # (n, 10), (n, 8), ()
>>> loss = head.loss(logits, y, codebook_loss)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_positive_int
from .layer import CodebookLayer

__all__ = ["CodebookClassifier"]


def _init_linear(layer: nn.Linear, g: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` init (uniform in +-1/sqrt(fan_in)), drawn from ``g``."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 2 * bound - bound)
        layer.bias.copy_(torch.rand(layer.bias.shape, generator=g) * 2 * bound - bound)


class CodebookClassifier(nn.Module):
    """``x: (batch, dim_in) -> (logits (batch, n_classes), ids (batch, k), codebook loss ())``, the
    quantisers' (values, indices, loss) convention with the logits as values.

    Args:
        dim_in: size of the frozen features.
        n_classes: number of classes.
        dim: size of the projected vector the codebook quantises.
        num_codes: ``K``, codes in the codebook.
        k: codes chosen per sample; their mean is the decoder's input.
        metric: similarity of the top-k search (``'cosine'``, ``'dot'`` or ``'l2'``).
        seed: seeds the projection, the decoder and the codebook.
        **layer_options: passed to :class:`CodebookLayer` (``scale``, ``replace_every``, ...).
    """

    def __init__(self, dim_in: int, n_classes: int, dim: int = 64, num_codes: int = 256, k: int = 8,
                 metric: str = "cosine", seed: int = 0, **layer_options):
        super().__init__()
        self.dim_in = check_positive_int(dim_in, "dim_in")
        self.n_classes = check_positive_int(n_classes, "n_classes", 2)
        self.seed = int(seed)
        self.project = nn.Linear(self.dim_in, check_positive_int(dim, "dim"))
        self.codebook = CodebookLayer(dim, num_codes, k=k, metric=metric, seed=seed, **layer_options)
        self.decoder = nn.Linear(dim, self.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        _init_linear(self.project, g)
        _init_linear(self.decoder, g)
        self.codebook.reset_parameters()

    def quantise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x: (batch, dim_in) -> (q (batch, dim), ids (batch, k), loss ())``: the decoder's input, the
        codes and the codebook's loss."""
        if x.dim() != 2 or x.shape[1] != self.dim_in:
            raise ValueError(f"x: expected shape (batch, {self.dim_in}), got {tuple(x.shape)}")
        return self.codebook(self.project(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, ids, loss = self.quantise(x)
        return self.decoder(q), ids, loss

    def loss(self, logits: torch.Tensor, y: torch.Tensor, codebook_loss: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy plus the codebook's loss (the third output of :meth:`forward`)."""
        loss = F.cross_entropy(logits, y)
        return loss if codebook_loss is None else loss + codebook_loss

    def extra_repr(self) -> str:
        return f"dim_in={self.dim_in}, n_classes={self.n_classes}, seed={self.seed}"
