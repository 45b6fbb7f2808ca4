"""The information plane of Shwartz-Ziv & Tishby (2017): ``I(X;T)`` against ``I(T;Y)`` for the
activations ``T`` of chosen layers, recorded over training.

>>> with InfoPlane(model, ["net.1", "net.3"], x, y) as plane:
...     for epoch in range(epochs):
...         train_one_epoch(model)
...         plane.record(epoch)
...     plane.plot("plane.png")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..validation import as_tensor, check_nonempty, check_positive_int
from .binning import binned_information  # noqa: F401  (part of this module's API)
from .bounds import pairwise_information_bounds
from .estimators import canonical_method, mutual_information
from .metrics import degree_of_ib

__all__ = ["ESTIMATORS", "InfoPlane", "binned_information"]

# canonical names; the aliases of bottlenecks.info.METHOD_ALIASES ("binning", "ksg", "cca") are accepted too
ESTIMATORS = ("plugin", "pairwise", "ksg1", "ksg2", "mixed", "gaussian")


class InfoPlane:
    """Record ``I(X;T)`` and ``I(T;Y)`` (bits) of the named layers of ``model`` over training.

    model: any ``nn.Module``; layers: names from ``dict(model.named_modules())`` whose forward
    outputs are ``T`` (a tuple output uses its first element; outputs are flattened per sample);
    x: (n, ...) inputs, y: (n,) labels. ``estimator``: ``'plugin'`` or its alias ``'binning'`` (the
    same estimator: Shwartz-Ziv & Tishby's plug-in estimate over ``bins`` equal bins over each
    layer's range, see :func:`binned_information`), ``'pairwise'`` (the layer
    made noisy, ``T + N(0, noise_var I)``: Kolchinsky-Tracey KL upper bound on ``I(X;T)`` and the KL
    mixture estimate of ``I(T;Y)``, see :func:`~bottlenecks.info.bounds.pairwise_information_bounds`)
    or a method of :func:`bottlenecks.info.mutual_information` (``'ksg1'``, ``'ksg2'``, ``'mixed'``,
    ``'gaussian'`` or their aliases ``'ksg'``, ``'cca'``, with ``k`` neighbours), applied to ``(x, T)`` and ``(T, y)``.
    ``record(epoch)`` only measures when ``epoch % every == 0``.

    Forward hooks are registered at construction; :meth:`remove` (or leaving a ``with`` block)
    takes them off. ``history`` is a list of ``{"epoch", "layer", "i_xt", "i_ty"}`` dicts.
    """

    def __init__(self, model: nn.Module, layers: list[str], x, y, estimator: str = "plugin", bins: int = 30,
                 every: int = 1, *, k: int = 3, batch_size: int | None = None, noise_var: float | None = None):
        estimator = estimator if estimator == "pairwise" else canonical_method(estimator, "estimator")
        if (estimator == "pairwise") != (noise_var is not None):
            raise ValueError("noise_var: needed by (and only by) estimator='pairwise', "
                             f"got estimator={estimator!r}, noise_var={noise_var!r}")
        self.noise_var = noise_var
        self.bins = check_positive_int(bins, "bins")
        self.every = check_positive_int(every, "every")
        self.k = check_positive_int(k, "k")
        self.batch_size = None if batch_size is None else check_positive_int(batch_size, "batch_size")
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise ValueError("layers: expected at least one layer name, got an empty list")
        modules = dict(model.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ValueError(f"layers: {missing} not found in the model; available: {sorted(modules)}")
        self.x = check_nonempty(as_tensor(x, "x"), "x")
        self.y = as_tensor(y, "y").reshape(-1)
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"x and y: expected the same number of samples, got {self.x.shape[0]} and "
                             f"{self.y.shape[0]}")
        self.model = model
        self.layers = layers
        self.estimator = estimator
        self.history: list[dict] = []
        self._capture: dict[str, list[torch.Tensor]] | None = None
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in layers]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if self._capture is None:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            self._capture[name].append(out.detach().reshape(out.shape[0], -1).cpu())
        return hook

    def activations(self) -> dict[str, torch.Tensor]:
        """Run the model on ``x`` (no grad, eval mode, previous mode restored) -> ``{layer: (n, d)}``."""
        if not self._handles:
            raise RuntimeError("InfoPlane: hooks were removed; create a new InfoPlane to record again")
        was_training = self.model.training
        param = next(self.model.parameters(), None)
        x = self.x
        if param is not None:
            x = x.to(device=param.device, dtype=param.dtype if x.is_floating_point() else x.dtype)
        self._capture = {name: [] for name in self.layers}
        self.model.eval()
        try:
            with torch.no_grad():
                step = self.batch_size or x.shape[0]
                for start in range(0, x.shape[0], step):
                    self.model(x[start:start + step])
            acts = {}
            for name in self.layers:
                if not self._capture[name]:
                    raise RuntimeError(f"layer {name!r} was not called in the forward pass")
                acts[name] = torch.cat(self._capture[name])
            return acts
        finally:
            self._capture = None
            self.model.train(was_training)

    def measure(self, t: torch.Tensor) -> tuple[float, float]:
        """``(I(X;T), I(T;Y))`` in bits for activations ``t: (n, d)`` with the chosen estimator."""
        if self.estimator == "plugin":
            return binned_information(t, self.y, self.bins)
        if self.estimator == "pairwise":
            b = pairwise_information_bounds(t, self.noise_var, y=self.y, units="bits")
            return b["i_xt_upper"], b["i_ty_kl"]
        t = t.double()
        x = self.x.reshape(self.x.shape[0], -1).double()
        y = self.y.reshape(-1, 1).double()
        kw = {"method": self.estimator, "k": self.k, "units": "bits"}
        return mutual_information(x, t, **kw), mutual_information(t, y, **kw)

    def record(self, epoch: int) -> list[dict]:
        """Measure every layer now and append to ``history``; returns the new entries (empty when
        ``epoch % every != 0``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected an integer >= 0, got {epoch!r}")
        if epoch % self.every:
            return []
        new = []
        for name, t in self.activations().items():
            i_xt, i_ty = self.measure(t)
            new.append({"epoch": epoch, "layer": name, "i_xt": float(i_xt), "i_ty": float(i_ty)})
        self.history.extend(new)
        return new

    def degree_of_ib(self, method: str = "binning", **kwargs) -> dict[str, float]:
        """Kawaguchi et al.'s ``I(X; T | Y)`` in bits of every layer now: ``{layer: value}`` (see
        :func:`bottlenecks.info.metrics.degree_of_ib`; ``bins`` defaults to this plane's)."""
        if method in ("binning", "plugin"):
            kwargs.setdefault("bins", self.bins)
        x = self.x.reshape(self.x.shape[0], -1)
        return {name: degree_of_ib(t, x, self.y, method, **kwargs) for name, t in self.activations().items()}

    def trajectory(self, layer: str) -> np.ndarray:
        """``(m, 3)`` array of ``(epoch, I(X;T), I(T;Y))`` rows for one layer, in recording order."""
        rows = [(h["epoch"], h["i_xt"], h["i_ty"]) for h in self.history if h["layer"] == layer]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 3)

    def plot(self, path: str | os.PathLike, *, title: str | None = None, cmap: str = "viridis",
             figsize: tuple[float, float] = (6.0, 4.5), dpi: int = 100) -> Path:
        """Draw the information plane (``I(X;T)`` on x, ``I(T;Y)`` on y; one line per layer, points
        coloured by epoch, with a colour bar) and write a PNG to ``path``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import Normalize
        from matplotlib.figure import Figure

        if not self.history:
            raise RuntimeError("InfoPlane.plot: nothing recorded yet; call record(epoch) first")
        fig = Figure(figsize=figsize, dpi=check_positive_int(dpi, "dpi"))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        epochs = [h["epoch"] for h in self.history]
        norm = Normalize(vmin=min(epochs), vmax=max(max(epochs), min(epochs) + 1))
        markers = "osD^v<>ph*"
        sc = None
        for i, layer in enumerate(self.layers):
            traj = self.trajectory(layer)
            if len(traj) == 0:
                continue
            ax.plot(traj[:, 1], traj[:, 2], color="0.6", linewidth=0.8, zorder=1)
            sc = ax.scatter(traj[:, 1], traj[:, 2], c=traj[:, 0], cmap=cmap, norm=norm, s=22,
                            marker=markers[i % len(markers)], edgecolors="k", linewidths=0.3, zorder=2, label=layer)
        if sc is not None:
            fig.colorbar(sc, ax=ax, label="epoch")
        ax.set_xlabel("I(X;T) [bits]")
        ax.set_ylabel("I(T;Y) [bits]")
        ax.set_title(title or f"Information plane ({self.estimator})")
        ax.legend(loc="lower right", fontsize="small")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=fig.dpi)
        return path

    def remove(self) -> None:
        """Remove the forward hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> InfoPlane:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (f"InfoPlane(layers={self.layers}, estimator={self.estimator!r}, bins={self.bins}, "
                f"every={self.every}, n={self.x.shape[0]}, recorded={len(self.history)})")
