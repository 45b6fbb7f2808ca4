"""Reproduction of the information-plane experiment of Shwartz-Ziv & Tishby (2017) on the 12-bit data
set, with a tanh and a ReLU network (the comparison of Saxe et al. 2018).

:func:`run_info_plane` trains a 12-10-7-5-4-3-2 network per activation, records ``I(X;T)`` and
``I(T;Y)`` of every hidden layer at log-spaced epochs (binning estimator by default), and writes one
PNG per activation, ``report.md`` and ``metrics.json`` to ``out``.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.twelve_bit import load_twelve_bit
from ..validation import check_choice, check_positive_int
from .metrics import degree_of_ib
from .plane import InfoPlane

__all__ = ["TwelveBitNet", "run_info_plane"]

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
               n_points, quiet) -> tuple[dict, InfoPlane]:
    from tqdm.auto import tqdm

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
    for epoch in tqdm(range(epochs + 1), disable=quiet, desc=f"{activation} net"):
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


def run_info_plane(out, activation: str = "both", epochs: int = 1500, seed: int = 0, quiet: bool = False, *,
                   estimator: str = "binning", bins: int = 30, lr: float = 1e-3, batch_size: int = 256,
                   train_fraction: float = 0.85, n_points: int = 40) -> dict:
    """Train the 12-bit network(s) and plot their information planes.

    ``out``: folder for ``info-plane-<activation>.png``, ``report.md``, ``metrics.json``.
    ``activation``: 'tanh', 'relu' or 'both'. ``epochs`` of Adam (``lr``, mini-batches of
    ``batch_size``) on a seeded ``train_fraction`` split of the 4096 inputs (the paper used 85%);
    ``n_points`` log-spaced epochs are recorded. Information is measured on all 4096 inputs with
    ``estimator`` ('binning' with ``bins`` equal bins, as in the paper, or any
    :class:`~bottlenecks.info.plane.InfoPlane` estimator). ``seed``: data split, initialisation and
    batch order (same seed, same numbers). ``quiet`` hides progress bars. Returns the metrics dict
    written to ``metrics.json``. About 30 s per network at the defaults on one CPU core.
    """
    check_choice(activation, "activation", (*ACTIVATIONS, "both"))
    epochs = check_positive_int(epochs, "epochs")
    n_points = check_positive_int(n_points, "n_points", 2)
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction: expected a fraction in (0, 1), got {train_fraction!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_twelve_bit()
    p1 = float(y.float().mean())
    h_y = -(p1 * math.log2(p1) + (1 - p1) * math.log2(1 - p1))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train = int(round(train_fraction * len(x)))
    train_idx, test_idx = perm[:n_train], perm[n_train:]
    runs, pngs = {}, []
    for act in (ACTIVATIONS if activation == "both" else (activation,)):
        res, plane = _train_one(act, x, y, train_idx, test_idx, epochs=epochs, lr=lr, batch_size=batch_size,
                                seed=seed, estimator=estimator, bins=bins, n_points=n_points, quiet=quiet)
        how = f"binning, {bins} bins" if estimator == "binning" else estimator
        png = plane.plot(out / f"info-plane-{act}.png", title=f"12-bit, {act} network ({how})")
        pngs.append(png.name)
        runs[act] = res
        if not quiet:
            print(f"{act}: test acc {res['final']['test_acc']:.3f}, {res['seconds']:.1f} s")
    metrics = {"config": {"activation": activation, "epochs": epochs, "seed": seed, "estimator": estimator,
                          "bins": bins, "lr": lr, "batch_size": batch_size, "train_fraction": train_fraction,
                          "n_points": n_points, "widths": list(WIDTHS)},
               "data": {"n": len(x), "n_train": n_train, "h_y_bits": h_y, "h_y_published_bits": H_Y_PUBLISHED,
                        "h_x_bits": math.log2(len(x))},
               "runs": runs, "pngs": pngs,
               "environment": {"python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads()}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(_report(metrics))
    metrics["out"] = str(out)
    return metrics


def _report(m: dict) -> str:
    c, d = m["config"], m["data"]
    lines = ["# Information plane: 12-bit data set, tanh vs ReLU", "",
             f"- data: 4096 12-bit inputs (stand-in labelling with the published label entropy, see "
             f"`bottlenecks.data.twelve_bit`), H(Y) = {d['h_y_bits']:.5f} bits (published {d['h_y_published_bits']}), "
             f"H(X) = {d['h_x_bits']:.0f} bits; {d['n_train']} training inputs (seeded split)",
             f"- network 12-{'-'.join(map(str, c['widths']))}-2, Adam lr {c['lr']}, batch {c['batch_size']}, "
             f"{c['epochs']} epochs, seed {c['seed']}",
             f"- call: `run_info_plane(out, activation={c['activation']!r}, epochs={c['epochs']}, seed={c['seed']}, "
             f"estimator={c['estimator']!r}, bins={c['bins']})`; python {m['environment']['python']}, torch "
             f"{m['environment']['torch']}, {m['environment']['threads']} thread(s); times are wall-clock on a shared, "
             "noisy machine",
             f"- estimator: {c['estimator']}" + (f" ({c['bins']} equal bins over each layer's range, on all 4096 "
                                                 "inputs)" if c["estimator"] == "binning" else ""),
             "- I(X;T) <= H(X) = 12 bits and I(T;Y) <= H(Y) hold by construction (plug-in on the 4096 inputs); "
             "binning makes I(X;T) a property of the bin width, not of the continuous layer (Saxe et al. 2018)",
             ""]
    for act, r in m["runs"].items():
        f = r["final"]
        lines += [f"## {act}", "",
                  f"![{act}](info-plane-{act}.png)", "",
                  f"final train / test accuracy {f['train_acc']:.3f} / {f['test_acc']:.3f}, "
                  f"train / test loss {f['train_loss']:.4f} / {f['test_loss']:.4f}; {r['seconds']:.1f} s", "",
                  "| layer | width | I(X;T) peak (epoch) | I(X;T) final | compression | I(T;Y) final | "
                  "I(T;Y) max | degree of IB I(X;T\\|Y) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, L in r["layers"].items():
            lines.append(f"| {name} | {L['width']} | {L['i_xt_peak']:.3f} ({L['i_xt_peak_epoch']}) | "
                         f"{L['i_xt_final']:.3f} | {L['compression_bits']:.3f} | {L['i_ty_final']:.4f} | "
                         f"{L['i_ty_max']:.4f} | {L['degree_of_ib_bits']:.3f} |")
        lines.append("")
    lines.append("Values in bits. \"compression\" = peak minus final I(X;T).")
    return "\n".join(lines) + "\n"
