"""kymatio's 2-D scattering transform as an encoder (skipped when kymatio is not installed)."""

import pytest
import scipy.special
import torch

from bottlenecks.encoders import ScatteringEncoder, get_encoder
from bottlenecks.encoders.scattering import import_scattering2d

pytest.importorskip("kymatio", reason="kymatio is not installed (pip install 'bottlenecks[scattering]')")


def images(n=6, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, generator=g)


def test_output_shape_and_config():
    enc = get_encoder("scattering")
    assert isinstance(enc, ScatteringEncoder)
    assert enc.config["J"] == 2 and enc.config["L"] == 8 and enc.config["max_order"] == 2
    out = enc.encode(images(), progress=False)
    channels = 1 + 2 * 8 + 8 * 8 * 2 * 1 // 2  # 1 + J L + L^2 J (J-1) / 2
    assert out.shape == (6, channels * 7 * 7) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_deterministic_batch_independent_and_per_image():
    x = images()
    a = get_encoder("scattering").encode(x, batch_size=6, progress=False)
    b = get_encoder("scattering").encode(x, batch_size=4, progress=False)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    one = get_encoder("scattering").encode(x[2:3], progress=False)
    torch.testing.assert_close(one[0], a[2], rtol=1e-5, atol=1e-6)
    c = get_encoder("scattering").encode(images(seed=1), progress=False)
    assert not torch.allclose(a, c)


def test_channel_dimension_and_other_sizes():
    enc = get_encoder("scattering", J=1, L=4, max_order=1)
    out = enc.encode(images(2, 16)[:, None], progress=False)  # (n, 1, H, W) accepted
    assert out.shape == (2, (1 + 4) * 8 * 8)
    with pytest.raises(ValueError, match="grey images"):
        enc.encode(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="smaller than 2"):
        get_encoder("scattering", J=3).encode(torch.rand(2, 4, 4))


def test_2d_frontend_imports_on_current_scipy_without_patching():
    had = hasattr(scipy.special, "sph_harm")  # gone since SciPy 1.17; kymatio.torch needs it
    cls = import_scattering2d()
    assert issubclass(cls, torch.nn.Module) and cls.__module__ == "kymatio.scattering2d.frontend.torch_frontend"
    assert hasattr(scipy.special, "sph_harm") == had
