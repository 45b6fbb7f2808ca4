"""A variational-information-bottleneck classification head on frozen features (Alemi et al.,
"Deep Variational Information Bottleneck", ICLR 2017)::

    x (batch, dim_in) -> MLP encoder (one hidden ReLU layer) -> VariationalIB -> z (batch, dim_z)
      -> Linear decoder -> logits (batch, n_classes)

The objective is ``CE + beta * mean KL(q(z|x) || N(0, I))``; the KL term upper-bounds the rate
``I(X; Z)`` (the paper's variational bound). In eval mode ``z`` is the mean ``mu``.

>>> head = VIBClassifier(512, 10, beta=1e-3)
>>> logits, kl = head(x)                 # (n, 10), (n,)
>>> loss = head.loss(logits, y, kl)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_positive_int
from .layers import VariationalIB

__all__ = ["VIBClassifier"]


class VIBClassifier(nn.Module):
    """``x: (batch, dim_in) -> (logits (batch, n_classes), kl (batch,))``.

    Args:
        dim_in: size of the frozen features.
        n_classes: number of classes.
        dim_z: size of the stochastic code.
        hidden: width of the encoder's hidden layer (``None``: the VIB reads ``x`` directly).
        beta: weight of the KL term.
        seed: seeds the initial weights and the sampling noise.
    """

    def __init__(self, dim_in: int, n_classes: int, dim_z: int = 32, hidden: int | None = 128,
                 beta: float = 1e-3, seed: int = 0):
        super().__init__()
        self.dim_in = check_positive_int(dim_in, "dim_in")
        self.n_classes = check_positive_int(n_classes, "n_classes", 2)
        self.hidden = None if hidden is None else check_positive_int(hidden, "hidden")
        self.seed = int(seed)
        self.encoder = (nn.Sequential(nn.Linear(self.dim_in, self.hidden), nn.ReLU()) if self.hidden
                        else nn.Identity())
        self.vib = VariationalIB(self.hidden or self.dim_in, dim_z, beta=beta)
        self.decoder = nn.Linear(self.vib.dim_z, self.n_classes)
        self.generator = torch.Generator().manual_seed(self.seed + 1)  # the reparameterisation noise
        self.reset_parameters()

    @property
    def beta(self) -> float:
        return self.vib.beta

    def reset_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer in linears:
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 2 * bound - bound)
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=g) * 2 * bound - bound)
        # the VIB's own init: logvar starts at 0 (the prior's variance)
        nn.init.zeros_(self.vib.logvar.weight)
        nn.init.zeros_(self.vib.logvar.bias)
        self.generator.manual_seed(self.seed + 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (batch, dim_in) -> (z (batch, dim_z), kl (batch,))``; ``z = mu`` in eval mode."""
        if x.dim() != 2 or x.shape[1] != self.dim_in:
            raise ValueError(f"x: expected shape (batch, {self.dim_in}), got {tuple(x.shape)}")
        return self.vib(self.encoder(x), generator=self.generator if self.training else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, kl = self.encode(x)
        return self.decoder(z), kl

    def loss(self, logits: torch.Tensor, y: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        """``CE + beta * mean KL``."""
        return self.vib.loss(F.cross_entropy(logits, y), kl)

    def extra_repr(self) -> str:
        return f"dim_in={self.dim_in}, n_classes={self.n_classes}, hidden={self.hidden}, seed={self.seed}"
