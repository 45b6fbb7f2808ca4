"""The information-plane study: Shwartz-Ziv & Tishby (2017) on the 12-bit data set, with a tanh
and a ReLU network (the comparison of Saxe et al. 2018).

:func:`run` trains a 12-10-7-5-4-3-2 network per activation, records ``I(X;T)`` and ``I(T;Y)``
of every hidden layer at log-spaced epochs (binning estimator by default), and writes one PNG
per activation, ``report.md`` and ``metrics.json`` to ``out``.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..data.twelve_bit import load_twelve_bit
from ..info.metrics import degree_of_ib
from ..info.plane import InfoPlane
from ..progress import phase, track
from ..report.html_browse import build_html
from ..validation import InstanceOf, Interval, Options, check_choice, check_positive_int
from .base import StudyConfig, StudyResults, prepare_out, write_json

__all__ = ["InfoPlaneConfig", "InfoPlaneResults", "TwelveBitNet", "run"]

WIDTHS = (10, 7, 5, 4, 3)
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
H_Y_PUBLISHED = 0.99916  # bits, Shwartz-Ziv & Tishby


class TwelveBitNet(nn.Module):
    """``(batch, 12) -> (batch, 2)`` logits through hidden layers ``widths`` with one activation.

    Hidden layer ``i``'s output (after the activation) is the module named ``act{i}``."""

    def __init__(self, activation: str = "tanh", widths=WIDTHS, dim_in: int = 12, n_classes: int = 2):
        super().__init__()
        check_choice(activation, "activation", ACTIVATIONS)
        self.activation = activation
        self.widths = tuple(check_positive_int(w, "width") for w in widths)
        dims = (dim_in, *self.widths)
        for i in range(len(self.widths)):
            self.add_module(f"fc{i}", nn.Linear(dims[i], dims[i + 1]))
            self.add_module(f"act{i}", ACTIVATIONS[activation]())
        self.head = nn.Linear(dims[-1], n_classes)

    @property
    def layer_names(self) -> list[str]:
        return [f"act{i}" for i in range(len(self.widths))]

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.widths)):
            x = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x))
        return self.head(x)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, widths={self.widths}"


def _record_epochs(epochs: int, n_points: int) -> list[int]:
    """``n_points`` roughly log-spaced epochs in ``[0, epochs]`` (early training changes fastest)."""
    pts = np.unique(np.round(np.geomspace(1, epochs + 1, n_points)).astype(int) - 1)
    return sorted(set(pts.tolist()) | {0, epochs})


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _train_one(activation: str, x, y, train_idx, test_idx, *, epochs, lr, batch_size, seed, estimator, bins,
               n_points, progress) -> tuple[dict, InfoPlane]:
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
        torch.manual_seed(seed)
        model = TwelveBitNet(activation)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    record_at = set(_record_epochs(epochs, n_points))
    plane = InfoPlane(model, model.layer_names, x, y, estimator=estimator, bins=bins)
    curve = []
    t0 = time.perf_counter()
    xtr, ytr = x[train_idx], y[train_idx]
    for epoch in track(range(epochs + 1), f"{activation} net", progress=progress):
        if epoch > 0:  # epoch 0 is the untrained network
            model.train()
            for idx in torch.randperm(len(train_idx), generator=g).split(batch_size):
                loss = loss_fn(model(xtr[idx]), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        if epoch in record_at:
            plane.record(epoch)
            model.eval()
            with torch.no_grad():
                curve.append({"epoch": epoch, "train_loss": float(loss_fn(model(xtr), ytr)),
                              "test_loss": float(loss_fn(model(x[test_idx]), y[test_idx])),
                              "train_acc": _accuracy(model, xtr, ytr),
                              "test_acc": _accuracy(model, x[test_idx], y[test_idx])})
    seconds = time.perf_counter() - t0
    acts = plane.activations()
    layers = {}
    for name in model.layer_names:
        traj = plane.trajectory(name)
        peak = int(np.argmax(traj[:, 1]))
        layers[name] = {"width": acts[name].shape[1],
                        "i_xt_final": float(traj[-1, 1]), "i_ty_final": float(traj[-1, 2]),
                        "i_xt_peak": float(traj[peak, 1]), "i_xt_peak_epoch": int(traj[peak, 0]),
                        "i_ty_max": float(traj[:, 2].max()),
                        "compression_bits": float(traj[peak, 1] - traj[-1, 1]),
                        "degree_of_ib_bits": degree_of_ib(acts[name], x, y, bins=bins)}
    plane.remove()
    final = curve[-1]
    return {"activation": activation, "seconds": seconds, "final": final, "curve": curve, "layers": layers,
            "history": plane.history}, plane



@dataclass
class InfoPlaneConfig(StudyConfig):
    """``activation``: 'tanh', 'relu' or 'both'. ``epochs`` of Adam (``lr``, mini-batches of
    ``batch_size``) on a seeded ``train_fraction`` split of the 4096 inputs (the paper used 85%);
    ``n_points`` log-spaced epochs are recorded. Information is measured on all 4096 inputs with
    ``estimator`` ('binning' with ``bins`` equal bins, as in the paper, or any
    :class:`~bottlenecks.info.plane.InfoPlane` estimator). ``seed``: data split, initialisation
    and batch order (same seed, same numbers)."""

    activation: str = "both"
    epochs: int = 1500
    seed: int = 0
    estimator: str = "binning"
    bins: int = 30
    lr: float = 1e-3
    batch_size: int = 256
    train_fraction: float = 0.85
    n_points: int = 40

    constraints: ClassVar[dict] = {
        "activation": Options((*ACTIVATIONS, "both")), "epochs": Interval(int, 1, None),
        "seed": Interval(int, 0, None), "bins": Interval(int, 2, None), "batch_size": Interval(int, 1, None),
        "n_points": Interval(int, 2, None), "train_fraction": Interval(float, 0, 1, closed="neither"),
        "lr": Interval(float, 0, None, closed="neither"), "estimator": InstanceOf(str, "an estimator name")}


@dataclass
class InfoPlaneResults(StudyResults):
    """What ``metrics.json`` holds: the config, the data's sizes and entropies, per activation its
    run (accuracy and loss curve, per-layer information summary, the recorded plane history), the
    PNG names and the environment."""

    config: dict
    data: dict
    runs: dict
    pngs: list
    environment: dict = field(default_factory=dict)


def run(config: InfoPlaneConfig, out="runs/info-plane", progress: bool | None = True) -> InfoPlaneResults:
    """Train the 12-bit network(s), plot their information planes and write ``report.md`` and
    ``metrics.json`` (rewritten after each network) into ``out``; return the results."""
    from ..report.info_plane_report import info_plane_markdown

    cfg = config
    out = prepare_out(out)
    x, y = load_twelve_bit()
    p1 = float(y.float().mean())
    h_y = -(p1 * math.log2(p1) + (1 - p1) * math.log2(1 - p1))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    n_train = int(round(cfg.train_fraction * len(x)))
    train_idx, test_idx = perm[:n_train], perm[n_train:]
    results = InfoPlaneResults(
        config={"activation": cfg.activation, "epochs": cfg.epochs, "seed": cfg.seed, "estimator": cfg.estimator,
                "bins": cfg.bins, "lr": cfg.lr, "batch_size": cfg.batch_size, "train_fraction": cfg.train_fraction,
                "n_points": cfg.n_points, "widths": list(WIDTHS)},
        data={"n": len(x), "n_train": n_train, "h_y_bits": h_y, "h_y_published_bits": H_Y_PUBLISHED,
              "h_x_bits": math.log2(len(x))},
        runs={}, pngs=[],
        environment={"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads()})
    for act in (ACTIVATIONS if cfg.activation == "both" else (cfg.activation,)):
        res, plane = _train_one(act, x, y, train_idx, test_idx, epochs=cfg.epochs, lr=cfg.lr,
                                batch_size=cfg.batch_size, seed=cfg.seed, estimator=cfg.estimator, bins=cfg.bins,
                                n_points=cfg.n_points, progress=progress)
        how = f"binning, {cfg.bins} bins" if cfg.estimator == "binning" else cfg.estimator
        png = plane.plot(out / f"info-plane-{act}.png", title=f"12-bit, {act} network ({how})")
        results.pngs.append(png.name)
        results.runs[act] = res
        phase(f"{act}: test acc {res['final']['test_acc']:.3f}, {res['seconds']:.1f} s", progress)
        write_json(results, out / "metrics.json")  # partial: the networks finished so far
    write_json(results, out / "metrics.json")
    (out / "report.md").write_text(info_plane_markdown(results.to_dict()))
    build_html(out)  # report.html: the information plane with epoch and layer on hover
    return results
