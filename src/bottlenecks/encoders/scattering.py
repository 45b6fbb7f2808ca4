"""``scattering``: kymatio's 2-D wavelet scattering transform, a fixed (weight-free) encoder.

(n, H, W) -> (n, K * (H // 2^J) * (W // 2^J)) with K = 1 + J*L + L^2 * J*(J-1)/2 channels for
``max_order=2`` (1 + J*L for ``max_order=1``): 28x28 images with J=2, L=8 give 81 * 7 * 7 = 3969.
"""

from __future__ import annotations

import importlib
import importlib.metadata

import torch

from ..validation import check_choice, check_positive_int
from .registry import Encoder

__all__ = ["ScatteringEncoder", "import_scattering2d"]

_INSTALL_HINT = ('the scattering encoder needs kymatio: pip install "kymatio>=0.3" '
                 '(or the extra bottlenecks[scattering])')


def import_scattering2d():
    """Return kymatio's torch ``ScatteringTorch2D`` class, imported from its own module.

    Not ``from kymatio.torch import Scattering2D``: kymatio 0.3.0's ``kymatio.torch`` also imports
    the 3-D harmonic frontend, whose filter bank does ``from scipy.special import sph_harm``, a
    function SciPy 1.17 removed, so that import fails on current SciPy. The package's own
    ``__init__`` only imports lazy entry points, and the 2-D torch frontend and its filter bank
    use nothing but ``scipy.fft``, so importing that one module works unpatched.
    """
    try:
        module = importlib.import_module("kymatio.scattering2d.frontend.torch_frontend")
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return module.ScatteringTorch2D


def _kymatio_version() -> str:
    try:
        return importlib.metadata.version("kymatio")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - checked at import
        return "unknown"


class ScatteringEncoder(Encoder):
    """Scattering2D(J, L, max_order) built for the shape of the images it is given.

    images: (n, H, W) or (n, 1, H, W) floats -> (n, K*H'*W') float32 with H' = H // 2^J.
    """

    def __init__(self, J: int = 2, L: int = 8, max_order: int = 2, device=None):
        J = check_positive_int(J, "J")
        L = check_positive_int(L, "L")
        max_order = check_choice(max_order, "max_order", (1, 2))
        self._cls = import_scattering2d()
        super().__init__("scattering", {"J": J, "L": L, "max_order": max_order, "kymatio": _kymatio_version()},
                         device=device)
        self.J, self.L, self.max_order = J, L, max_order
        self._transforms: dict[tuple[int, int], torch.nn.Module] = {}

    def _prepare(self, inputs):
        x = super()._prepare(inputs)
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 3:
            raise ValueError(f"inputs: the scattering encoder takes grey images (n, H, W) or (n, 1, H, W), "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if min(h, w) < 2 ** self.J:
            raise ValueError(f"inputs: images of {h}x{w} are smaller than 2^J = {2 ** self.J}; lower J")
        return x

    def transform(self, shape: tuple[int, int]) -> torch.nn.Module:
        """The kymatio module for images of ``shape`` (built once per shape)."""
        key = (int(shape[0]), int(shape[1]))
        if key not in self._transforms:
            module = self._cls(J=self.J, shape=key, L=self.L, max_order=self.max_order)
            self._transforms[key] = module.to(self.device)
        return self._transforms[key]

    def modules(self) -> list[torch.nn.Module]:
        return list(self._transforms.values())

    def _encode_batch(self, batch: torch.Tensor) -> torch.Tensor:
        module = self.transform(batch.shape[-2:])
        out = module(batch.to(self.device, torch.float32).contiguous())  # (b, K, H', W')
        return out.reshape(batch.shape[0], -1)
