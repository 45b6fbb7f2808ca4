"""Frozen encoders behind one registry, and an on-disk feature cache keyed by content.

>>> enc = get_encoder("scattering", J=2)                 # or "pixels", "timm:resnet18", "minilm", ...
>>> feats = FeatureCache().get_or_compute(enc, ds.images, ds.name, ds.split)   # (n, D) float32

Modules: ``registry`` (the :class:`Encoder` base: batches, eval mode, progress bar, sharding
under ``torchrun``; ``register_encoder`` / ``get_encoder``), ``pixels``, ``scattering``
(kymatio), ``torch_module`` (:class:`TorchModuleEncoder` for any ``nn.Module``, tensor image
preprocessing), ``online`` (torchvision / timm / open_clip), ``text`` (sentence-transformers,
the offline MiniLM), ``cache`` (:class:`FeatureCache`).

Built-in names: ``pixels``, ``scattering``, ``torchvision:<model_name>``, ``timm:<model_name>``,
``open_clip:<model>/<pretrained>``, ``sentence-transformers:<model_name>``, ``minilm``.
"""

from .cache import CACHE_ENV, FORMAT_VERSION, FeatureCache, default_cache_dir, fingerprint
from .online import open_clip_encoder, penultimate, timm_encoder, torchvision_encoder
from .pixels import PixelEncoder
from .registry import Encoder, available_encoders, get_encoder, register_encoder, shard_bounds
from .scattering import ScatteringEncoder
from .text import SentenceTransformerEncoder, minilm_encoder, sentence_transformers_encoder
from .torch_module import ImagePreprocess, TorchModuleEncoder, to_rgb

register_encoder("pixels", PixelEncoder)
register_encoder("scattering", ScatteringEncoder)
register_encoder("torchvision", torchvision_encoder, parametrized=True, usage="torchvision:<model_name>")
register_encoder("timm", timm_encoder, parametrized=True, usage="timm:<model_name>")
register_encoder("open_clip", open_clip_encoder, parametrized=True, usage="open_clip:<model>/<pretrained>")
register_encoder("sentence-transformers", sentence_transformers_encoder, parametrized=True,
                 usage="sentence-transformers:<model_name>")
register_encoder("minilm", minilm_encoder)

__all__ = [
    "CACHE_ENV",
    "FORMAT_VERSION",
    "Encoder",
    "FeatureCache",
    "ImagePreprocess",
    "PixelEncoder",
    "ScatteringEncoder",
    "SentenceTransformerEncoder",
    "TorchModuleEncoder",
    "available_encoders",
    "default_cache_dir",
    "fingerprint",
    "get_encoder",
    "minilm_encoder",
    "open_clip_encoder",
    "penultimate",
    "register_encoder",
    "sentence_transformers_encoder",
    "shard_bounds",
    "timm_encoder",
    "to_rgb",
    "torchvision_encoder",
]
