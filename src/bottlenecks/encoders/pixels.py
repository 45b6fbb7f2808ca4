"""``pixels``: the identity encoder, images (n, H, W) -> (n, H*W)."""

from __future__ import annotations

import torch

from .registry import Encoder

__all__ = ["PixelEncoder"]


class PixelEncoder(Encoder):
    """Flatten each image: (n, H, W) or (n, C, H, W) -> (n, H*W) or (n, C*H*W) float32."""

    name = "pixels"

    def __init__(self, device=None):
        super().__init__("pixels", {}, device=device)

    def _encode_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.reshape(batch.shape[0], -1).float()
