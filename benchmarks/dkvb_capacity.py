"""Capacity of the discrete key-value bottleneck on the main job: class-incremental Fashion-MNIST
on frozen scattering features, final class-balanced accuracy and forgetting against the size of
the bottleneck (heads x keys per head) and top-k.

    python benchmarks/dkvb_capacity.py                      # 64/128/256 heads x 512/1024/4096 keys x top-k 1/4
    python benchmarks/dkvb_capacity.py --heads 64 --keys 512 --topk 1   # one configuration

Everything else stays at the paper's defaults as this project implements them (key dim 14,
random projections, keys from exact k-means on the unlabelled training inputs, values trained
with SGD lr 0.3 without momentum, gradient-norm clip 1.0, label smoothing 0.1, batch 256, the
non-parametric mean decoder) and the stream of ``bottlenecks continual`` (5 tasks of 2 classes,
5 epochs per task, seeded class order). The keys of a (heads, keys) pair are fitted once and
shared by both top-k. Configurations run smallest first; the report is rewritten after each, so
a cut run still leaves its finished rows. Writes ``benchmarks/results/dkvb-capacity.md``,
``.json`` and ``dkvb-capacity.png``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

#: the i.i.d. linear probe on the same features (benchmarks/results/continual-fashion-mnist.md)
LINEAR_IID = 90.2


def features(seed: int):
    """Standardised scattering features of Fashion-MNIST (cached on disk after the first run)."""
    import numpy as np

    from bottlenecks.data import load_image_dataset
    from bottlenecks.encoders import FeatureCache, get_encoder

    train = load_image_dataset("fashion-mnist", split="train")
    test = load_image_dataset(train.name, split="test")
    encoder, cache = get_encoder("scattering"), FeatureCache()
    x_tr, x_te = (cache.get_or_compute(encoder, ds.images, dataset_id=train.name, split=ds.split).numpy()
                  for ds in (train, test))
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    return (np.asarray(x_tr, np.float32), np.asarray(train.labels), np.asarray(x_te, np.float32),
            np.asarray(test.labels))


def write(out: Path, rows: list[dict], args, argv) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: (r["topk"], r["heads"] * r["keys"], r["heads"]))
    lines = [
        "# Discrete key-value bottleneck: capacity on class-incremental Fashion-MNIST",
        "",
        f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}; python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs (shared with other engineers' niced jobs)",
        f"- command: `python benchmarks/dkvb_capacity.py {' '.join(argv)}`",
        "- stream: 5 tasks x 2 classes (seeded order), 5 epochs per task, batch 256; frozen scattering features "
        "(3969, standardised); key dim 14, random projections, keys by exact k-means (20 Lloyd iterations from "
        "random rows) on the unlabelled training inputs, values by SGD lr 0.3 (no momentum, clip 1.0, label "
        f"smoothing 0.1), mean decoder; seed {args.seed}",
        "- *final*: class-balanced accuracy on the whole test set after the stream; *forgetting*: mean drop "
        "from each task's best accuracy to its final one (Chaudhry et al., 2018); *dead keys*: keys no "
        "training input selected",
        f"- targets: final >= 87% with forgetting <= 3 points; stretch: within 3 points of the i.i.d. linear "
        f"probe ({LINEAR_IID}%)",
        "",
        "| heads | keys | top-k | final % | forgetting (points) | dead keys % | fit keys s | train s | meets target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r["final"] >= 87 and r["forgetting"] <= 3
        stretch = r["final"] >= LINEAR_IID - 3
        lines.append(f"| {r['heads']} | {r['keys']} | {r['topk']} | {r['final']:.1f} | {r['forgetting']:.1f} | "
                     f"{r['dead'] * 100:.0f} | {r['fit_s']:.0f} | {r['train_s']:.0f} | "
                     f"{'yes' + (' (stretch too)' if stretch else '') if ok else 'no'} |")
    lines += ["", "![final accuracy vs size](dkvb-capacity.png)", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "dkvb-capacity.md").write_text("\n".join(lines) + "\n")
    (out / "dkvb-capacity.json").write_text(json.dumps({"seed": args.seed, "rows": rows}, indent=2))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for topk, marker in ((1, "o"), (4, "s")):
        for heads, colour in ((64, "C0"), (128, "C1"), (256, "C2")):
            pts = sorted((r["keys"], r["final"]) for r in rows if r["topk"] == topk and r["heads"] == heads)
            if pts:
                ax.plot([heads * k for k, _ in pts], [a for _, a in pts], marker=marker, color=colour,
                        linestyle="-" if topk == 1 else "--", label=f"{heads} heads, top-{topk}")
    ax.axhline(LINEAR_IID, color="grey", linestyle=":", label=f"linear probe i.i.d. ({LINEAR_IID}%)")
    ax.axhline(87, color="black", linestyle=":", linewidth=0.8, label="target 87%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("key-value pairs (heads x keys per head)")
    ax.set_ylabel("final class-balanced accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "dkvb-capacity.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", default="64,128,256")
    p.add_argument("--keys", default="512,1024,4096")
    p.add_argument("--topk", default="1,4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv

    import torch

    from bottlenecks.continual.methods import DKVBLearner
    from bottlenecks.continual.streams import ClassIncrementalStream
    from bottlenecks.studies.continual import ContinualConfig, run_stream

    x_tr, y_tr, x_te, y_te = features(args.seed)
    data = (torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(), torch.from_numpy(x_te),
            torch.from_numpy(y_te).long())
    cfg = ContinualConfig(methods=("dkvb",), joint=False, seed=args.seed, eval_every=10**9).resolved(len(x_tr))
    stream = ClassIncrementalStream(y_tr, cfg.n_tasks, None, class_order="seeded", seed=args.seed)
    out = Path(args.out)
    previous = out / "dkvb-capacity.json"
    rows = json.loads(previous.read_text())["rows"] if previous.exists() and len(argv) else []
    sizes = sorted(((int(h), int(k)) for h in args.heads.split(",") for k in args.keys.split(",")),
                   key=lambda hk: (hk[0] * hk[1], hk[0]))
    for heads, keys in sizes:
        shared: dict = {}
        for topk in (int(t) for t in args.topk.split(",")):
            learner = DKVBLearner(x_tr.shape[1], 10, num_codebooks=heads, keys_per_codebook=keys, topk=topk,
                                  seed=args.seed)
            t0 = time.perf_counter()
            fitted = bool(shared)
            learner.prepare(data[0], shared)  # the keys, fitted once per (heads, keys)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = run_stream(learner, data, stream, cfg, args.seed, shared=shared)
            train_s = time.perf_counter() - t0
            usage = learner.bottleneck.key_usage()
            row = {"heads": heads, "keys": keys, "topk": topk, "final": 100 * res["final_accuracy"],
                   "forgetting": 100 * res["forgetting"], "average": 100 * res["average_accuracy"],
                   "dead": usage["mean_dead_fraction"], "fit_s": fit_s if not fitted else 0.0,
                   "train_s": train_s, "R": res["R"]}
            rows = [r for r in rows if (r["heads"], r["keys"], r["topk"]) != (heads, keys, topk)] + [row]
            write(out, rows, args, argv)
            print(f"{heads} x {keys} top-{topk}: final {row['final']:.1f}% forgetting {row['forgetting']:.1f} "
                  f"dead {100 * row['dead']:.0f}% fit {fit_s:.0f}s train {train_s:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
