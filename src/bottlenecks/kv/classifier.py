"""A classifier around the bottleneck: frozen encoder -> key-value bottleneck -> decoder."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CONFIG_NAME, Checkpointable, read_config
from ..validation import as_tensor, check_choice, check_positive_int
from .bottleneck import DiscreteKeyValueBottleneck

DECODERS = ("mean", "linear", "mlp")


class KeyValueClassifier(nn.Module, Checkpointable):
    """``(batch, ...) -> logits (batch, num_classes)``.

    Args:
        encoder: a frozen feature extractor (kept in eval mode, run without gradient), or
            ``None`` when the inputs are already embeddings.
        bottleneck: a :class:`DiscreteKeyValueBottleneck`.
        decoder: ``'mean'`` — the paper's non-parametric decoder: the logits are the mean over
            heads of the fetched values (``dim_value`` must equal ``num_classes``); ``'linear'``
            or ``'mlp'`` (one hidden layer of ``hidden`` units) on the concatenated values.
        num_classes: defaults to ``bottleneck.dim_value``.

    ``save_pretrained(folder)`` / ``from_pretrained(folder, encoder=...)`` save and load the
    bottleneck and the decoder; the frozen encoder is not saved (it has its own loader): pass it
    again when loading.
    """

    def __init__(self, encoder: nn.Module | None, bottleneck: DiscreteKeyValueBottleneck,
                 decoder: str = "mean", num_classes: int | None = None, hidden: int = 128):
        super().__init__()
        check_choice(decoder, "decoder", DECODERS)
        num_classes = bottleneck.dim_value if num_classes is None else check_positive_int(num_classes, "num_classes")
        if decoder == "mean" and bottleneck.dim_value != num_classes:
            raise ValueError(f"the 'mean' decoder reads class logits straight from the values: dim_value="
                             f"{bottleneck.dim_value} must equal num_classes={num_classes}")
        self.encoder = encoder
        if encoder is not None:
            encoder.requires_grad_(False).eval()
        self.bottleneck = bottleneck
        self.decoder_kind, self.num_classes, self.hidden = decoder, num_classes, check_positive_int(hidden, "hidden")
        width = bottleneck.num_codebooks * bottleneck.dim_value
        if decoder == "linear":
            self.decoder = nn.Linear(width, num_classes)
        elif decoder == "mlp":
            self.decoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        else:
            self.decoder = None

    # ------------------------------------------------------------------ files
    def config(self) -> dict:
        """What rebuilds the classifier without its encoder (the bottleneck's own config nested)."""
        return {"bottleneck": self.bottleneck.config(), "decoder": self.decoder_kind,
                "num_classes": self.num_classes, "hidden": self.hidden,
                "encoder": None if self.encoder is None else type(self.encoder).__name__}

    def _checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The bottleneck's and the decoder's tensors; the frozen encoder's are left to its own loader."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def _checkpoint_extra(self) -> tuple[dict, dict]:
        return {"bottleneck": self.bottleneck._checkpoint_extra()[0]}, {}

    def _restore_extra(self, state: dict, tensors: dict) -> None:
        self.bottleneck._restore_extra(state.get("bottleneck", {}), {})

    @classmethod
    def _from_config(cls, config: dict) -> KeyValueClassifier:
        config.pop("encoder", None)
        bottleneck = DiscreteKeyValueBottleneck(**config.pop("bottleneck"))
        return cls(None, bottleneck, **config)

    @classmethod
    def from_pretrained(cls, directory, device=None, *, encoder: nn.Module | None = None) -> KeyValueClassifier:
        """The classifier :meth:`save_pretrained` wrote to ``directory``, with ``encoder`` (which
        must be given when it was saved with one) in front of it."""
        saved = read_config(directory, cls.__name__)["config"].get("encoder")
        if saved is not None and encoder is None:
            raise ValueError(f"{Path(directory) / CONFIG_NAME}: this KeyValueClassifier was saved with an encoder "
                             f"({saved}) whose weights are not in the checkpoint; pass encoder=... to from_pretrained")
        model = super().from_pretrained(directory)
        if encoder is not None:
            model.encoder = encoder.requires_grad_(False).eval()
        return model.to(device) if device is not None else model

    def save(self, path) -> Path:
        """Alias of :meth:`save_pretrained`."""
        return self.save_pretrained(path)

    @classmethod
    def load(cls, path, device=None, *, encoder: nn.Module | None = None) -> KeyValueClassifier:
        """Alias of :meth:`from_pretrained`."""
        return cls.from_pretrained(path, device, encoder=encoder)

    def train(self, mode: bool = True) -> KeyValueClassifier:
        super().train(mode)
        if self.encoder is not None:  # the encoder stays frozen
            self.encoder.eval()
        return self

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's embedding ``(batch, dim_in)`` (``x`` itself without encoder)."""
        return x if self.encoder is None else self.encoder(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, _, _ = self.bottleneck(self.embed(x))  # (batch, C, dim_value)
        if self.decoder is None:
            return values.mean(dim=1)
        return self.decoder(values.flatten(1))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Class indices ``(n,)``, in eval mode (untrained keys masked). Warns when no value has
        been trained yet: every logit is then the same and every prediction is class 0."""
        check_positive_int(batch_size, "batch_size")
        x = as_tensor(x, "x")
        b = self.bottleneck
        if bool(b.keys_ready) and not bool(b.value_usage.any()) and not bool(b.values.any()):
            warnings.warn("predict: no values have been trained yet (all are zero), so every input gets "
                          "the same logits and class 0; call fit(x, y) after fit_keys", RuntimeWarning,
                          stacklevel=2)
        was_training = self.training
        self.eval()
        parts = [self(x[s:s + batch_size]).argmax(dim=1) for s in range(0, len(x), batch_size)]
        out = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=b.keys.device)
        self.train(was_training)
        return out

    def fit(self, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 1, **kwargs) -> KeyValueClassifier:
        """Train the values (and a parametric decoder) with the paper's defaults; see
        :func:`bottlenecks.kv.train_values`. Returns ``self``."""
        from .training import train_values

        train_values(self, x, y, epochs=epochs, **kwargs)
        return self


