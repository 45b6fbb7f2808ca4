"""The registry: names, families with a model, errors that list what is known."""

import pytest
import torch

from bottlenecks.encoders import (
    Encoder,
    PixelEncoder,
    available_encoders,
    get_encoder,
    register_encoder,
)
from bottlenecks.encoders import registry as registry_module
from bottlenecks.encoders.registry import shard_bounds


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))


def test_builtins_are_registered():
    names = available_encoders()
    for name in ("pixels", "scattering", "torchvision", "timm", "open_clip", "sentence-transformers", "minilm"):
        assert name in names
    assert names == sorted(names)


def test_unknown_name_lists_known_encoders():
    with pytest.raises(ValueError, match="unknown encoder 'nope'") as info:
        get_encoder("nope")
    msg = str(info.value)
    assert "pixels" in msg and "timm:<model_name>" in msg and "open_clip:<model>/<pretrained>" in msg


def test_family_needs_model_and_plain_names_take_none():
    with pytest.raises(ValueError, match="needs a model name"):
        get_encoder("timm")
    with pytest.raises(ValueError, match="takes no model name"):
        get_encoder("pixels:foo")
    with pytest.raises(TypeError):
        get_encoder(3)


def test_register_and_get(clean_registry):
    class Scaled(Encoder):
        def __init__(self, scale=1.0, device=None):
            super().__init__("scaled", {"scale": scale}, device=device)

        def _encode_batch(self, batch):
            return batch.reshape(len(batch), -1) * self.config["scale"]

    register_encoder("scaled", Scaled)
    enc = get_encoder("scaled", scale=2.0)
    assert enc.config == {"scale": 2.0}
    x = torch.rand(3, 2, 2)
    torch.testing.assert_close(enc.encode(x, progress=False), 2 * x.reshape(3, -1))
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("scaled", Scaled)
    register_encoder("scaled", Scaled, overwrite=True)

    register_encoder("fam", lambda model, **cfg: Scaled(**cfg), parametrized=True)
    assert get_encoder("fam:anything", scale=3.0).config == {"scale": 3.0}


def test_register_instance_and_bad_factories(clean_registry):
    inst = PixelEncoder()
    register_encoder("mine", inst)
    assert get_encoder("mine") is inst
    with pytest.raises(ValueError, match="takes no config"):
        get_encoder("mine", x=1)
    with pytest.raises(ValueError, match="without ':'"):
        register_encoder("a:b", PixelEncoder)
    with pytest.raises(TypeError, match="factory"):
        register_encoder("bad", 42)
    register_encoder("notenc", lambda: object())
    with pytest.raises(TypeError, match="expected an Encoder"):
        get_encoder("notenc")


def test_config_must_be_jsonable():
    with pytest.raises(TypeError, match="JSON-able"):
        Encoder("x", {"f": object()})
    with pytest.raises(TypeError, match="JSON-able"):
        Encoder("x", {"nan": float("nan")})


def test_shard_bounds_cover_rows_in_order():
    for n in (0, 1, 5, 7, 10):
        for world in (1, 2, 3):
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [b - a for a, b in bounds]
            assert sizes == [len(t) for t in torch.tensor_split(torch.arange(n), world)]


def test_distributed_true_without_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="init_process_group"):
        PixelEncoder().encode(torch.rand(2, 3, 3), distributed=True)
