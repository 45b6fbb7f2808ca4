"""Discrete key-value bottleneck: one training step (forward + backward), ours vs a reference,
and fitting the keys (k-means of every head) batched vs one k-means per head.

    python benchmarks/dkvb.py            # the paper's defaults and a small setting; key fitting
    python benchmarks/dkvb.py --quick    # small setting only

The reference is the straightforward implementation, as the paper's code does it: project, then
``torch.cdist`` between every input and every key of every head — the whole
``(heads, batch, keys)`` distance tensor, about 1 GiB at the defaults — then ``argmin`` and an
indexed gather of the values. Ours is ``bottlenecks.kv.DiscreteKeyValueBottleneck``: the lookup
goes through ``cluster.nearest`` in bounded chunks and the values through an embedding gather.
Both use the same projection, keys and values, so their logits must agree.

Settings: the paper's defaults on Gaussian inputs and keys (random N(0, 0.3^2) keys, far from
every input: easy for any bound), a small one, and the main job's real lookup: 256 training images
of Fashion-MNIST as frozen scattering features (3969, standardised) through the random projection,
keys fitted by ``fit_keys`` (k-means on all 60,000 training images, ``--real-iter`` Lloyd iterations,
20 by default as ``fit_keys``; minutes, so they are fitted once with ``--prepare-real`` and kept
under the feature cache's folder). ``--kernels``
also times the step with the lookup's kernel pinned (``cluster.small_d``'s ``'c32'``, the float32
kernel, and ``'c'``, the int8 pre-filter) besides the default (``'auto'``).

Each (setting, method) runs in a fresh process (this script with ``--worker``); peak memory is
the process's peak RSS during the warm-up and timed steps minus its RSS before them (the peak
counter is reset through ``/proc/self/clear_refs``), so buffers kept between steps count.
Time: min and median over ``--repeats`` steps after one warm-up step.

Key fitting: 60,000 Fashion-MNIST training images (pixels, standardised) through the
bottleneck's random projection to ``(60000, heads, 14)``, ``keys`` clusters per head from the
same random rows as ``fit_keys`` draws; the per-head loop is ``cluster.kmeans`` on each head's
``(60000, 14)`` in turn (what ``fit_keys`` ran before the batched engine), the batched fit one
``cluster.kmeans`` call on the 3-D tensor. Both in fresh processes, ``--fit-repeats`` times.
Writes ``benchmarks/results/dkvb.md`` and ``dkvb.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from fresh_process import peak_kib, reset_peak, rss_kib, run_worker, write_results

FITS = {  # heads x keys per head, Lloyd iterations (tol 1e-4 as fit_keys; 0 to run every iteration)
    "64 x 512, 20 iterations (fit_keys' default)": dict(heads=64, keys=512, iters=20, tol=1e-4),
    "256 x 4096, 10 iterations": dict(heads=256, keys=4096, iters=10, tol=0.0),
}
SETTINGS = {
    "paper defaults": dict(batch=256, dim_in=2048, heads=256, keys=4096, dim_key=14, classes=10),
    # the main job's lookup: frozen scattering features of Fashion-MNIST (3969, standardised) through
    # the random projection, keys fitted by fit_keys (k-means, --real-iter iterations, all 60,000 training images)
    "real (Fashion-MNIST scattering, k-means keys)": dict(batch=256, dim_in=3969, heads=256, keys=4096, dim_key=14,
                                                        classes=10, real=True),
    "small": dict(batch=64, dim_in=128, heads=16, keys=512, dim_key=8, classes=10),
}
#: the lookup kernels timed besides the default (cluster.small_d's backends): the float32 kernel
#: (the default before the int8 bound was tightened) and the int8 pre-filter always
KERNELS = {"bottlenecks": "auto", "bottlenecks, float32 kernel": "c32", "bottlenecks, int8 kernel": "c"}


def real_batch_path(setting: dict, seed: int) -> Path:
    from bottlenecks.encoders.cache import default_cache_dir

    name = (f"dkvb-real-{setting['fit_heads']}of{setting['heads']}x{setting['keys']}x{setting['dim_key']}"
            f"-iter{setting['kmeans_iter']}-seed{seed}.safetensors")
    return default_cache_dir().parent / "benchmarks" / name


def prepare_real(setting: dict, seed: int) -> Path:
    """Fit the keys of the real setting once (``fit_keys`` on the 60,000 training images, minutes)
    and keep them, with their projections and one training batch, in a file; the timed workers only
    read it. With ``fit_heads`` < ``heads`` a bottleneck of ``fit_heads`` heads is fitted and the
    timed one repeats its heads (head c: projection and keys of fitted head c mod ``fit_heads``): the
    same work per head as distinct heads, at a fraction of the fit's cost."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from bottlenecks.kv import DiscreteKeyValueBottleneck

    path = real_batch_path(setting, seed)
    if path.exists():
        return path
    sys.path.insert(0, str(Path(__file__).parent))
    from dkvb_capacity import features

    x_tr, y_tr, _, _ = features(seed)
    b = DiscreteKeyValueBottleneck(x_tr.shape[1], setting["fit_heads"], setting["keys"], setting["dim_key"],
                                   dim_value=setting["classes"], seed=seed)
    t0 = time.perf_counter()
    b.fit_keys(torch.from_numpy(x_tr), kmeans_iter=setting["kmeans_iter"], progress=False)
    print(f"fit_keys: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(x_tr), generator=g)[:setting["batch"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"keys": b.keys.contiguous(), "projection": b.projection.contiguous(),
               "x": torch.from_numpy(np.ascontiguousarray(x_tr[rows.numpy()])),
               "y": torch.from_numpy(np.asarray(y_tr)[rows.numpy()]).long()}, str(tmp))
    os.replace(tmp, path)
    return path


def build(setting: dict, seed: int):
    import torch

    from bottlenecks.kv import DiscreteKeyValueBottleneck

    torch.manual_seed(seed)
    b = DiscreteKeyValueBottleneck(setting["dim_in"], setting["heads"], setting["keys"], setting["dim_key"],
                                   dim_value=setting["classes"], seed=seed)
    g = torch.Generator().manual_seed(seed)
    if setting.get("real"):
        from safetensors.torch import load_file

        saved = load_file(str(real_batch_path(setting, seed)))
        fh = setting["fit_heads"]  # head c takes the projection and keys of fitted head c % fh
        heads = torch.arange(setting["heads"]) % fh
        with torch.no_grad():
            b.projection.copy_(saved["projection"][heads])
        b.set_keys(saved["keys"][heads].contiguous()).freeze_keys()
        with torch.no_grad():
            b.values.normal_(generator=g)
        return b, saved["x"], saved["y"]
    b.set_keys(torch.randn(b.keys.shape, generator=g) * 0.3).freeze_keys()
    with torch.no_grad():
        b.values.normal_(generator=g)
    x = torch.randn(setting["batch"], setting["dim_in"], generator=g)
    y = torch.randint(0, setting["classes"], (setting["batch"],), generator=g)
    return b, x, y


def reference_logits(b, x):
    """The straightforward lookup: the full (heads, batch, keys) distance tensor."""
    import torch

    z = torch.einsum("bi,cik->cbk", x, b.projection)  # (C, B, dk)
    dist = torch.cdist(z, b.keys)  # (C, B, K): materialised whole
    idx = dist.argmin(dim=-1)  # (C, B)
    fetched = b.values[torch.arange(b.num_codebooks)[:, None], idx]  # (C, B, V)
    return fetched.mean(dim=0), idx.T


def ours_logits(b, x):
    values, idx, _ = b(x)
    return values.mean(dim=1), idx[:, :, 0]


def projected_fashion_mnist(heads: int, seed: int):
    """``(60000, heads, 14)`` projected standardised pixels and ``(heads, keys)``-free start rows."""
    import numpy as np
    import torch

    from bottlenecks.data.fashion_mnist import load_fashion_mnist
    from bottlenecks.kv import DiscreteKeyValueBottleneck

    x, _ = load_fashion_mnist(split="train")
    x = torch.from_numpy(np.asarray(x, np.float32).reshape(len(x), -1))
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    b = DiscreteKeyValueBottleneck(x.shape[1], heads, 1, 14, seed=seed)
    with torch.no_grad():
        return torch.cat([b.project(x[s:s + 4096]) for s in range(0, len(x), 4096)])


def fit_worker(spec: dict) -> dict:
    import torch

    from bottlenecks.cluster import kmeans

    st = spec["fit"]
    z = projected_fashion_mnist(st["heads"], spec["seed"])
    K = st["keys"]
    g = torch.Generator().manual_seed(spec["seed"] + 1)
    rows = torch.stack([torch.randperm(len(z), generator=g)[:K] for _ in range(st["heads"])])
    init = z[rows, torch.arange(st["heads"])[:, None]]  # (C, K, 14), as fit_keys draws them
    times, cpu, n_iter = [], [], []
    for _ in range(spec["repeats"]):
        t0, c0 = time.perf_counter(), time.process_time()
        if spec["method"] == "loop":  # the first loop_heads heads (time scales with the heads)
            res = [kmeans(z[:, c].contiguous(), K, init=init[c], max_iter=st["iters"], tol=st["tol"])
                   for c in range(spec["loop_heads"])]
            labels = torch.stack([r.labels for r in res], 1)
            n_iter = [r.n_iter for r in res]
        else:
            r = kmeans(z, K, init=init, max_iter=st["iters"], tol=st["tol"])
            labels, n_iter = r.labels, r.info["n_iter_per_codebook"]
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    torch.save({"labels": labels}, spec["out"])
    return {"times_s": times, "cpu_s": cpu, "n_iter": n_iter, "threads": torch.get_num_threads()}


def worker(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F

    if "fit" in spec:
        return fit_worker(spec)

    b, x, y = build(spec["setting"], spec["seed"])
    b.train()
    fn = reference_logits if spec["method"] == "reference" else ours_logits
    if spec["method"] in KERNELS:  # the lookup's kernel pinned (cluster.nearest calls small_d.nearest)
        import functools

        from bottlenecks.cluster import small_d

        small_d.nearest = functools.partial(small_d.nearest, backend=KERNELS[spec["method"]])

    def step():
        b.values.grad = None
        logits, idx = fn(b, x)
        F.cross_entropy(logits, y, label_smoothing=0.1).backward()
        return logits.detach(), idx

    base = rss_kib()  # before the warm-up: buffers a method keeps between steps count as its memory
    reset_peak()
    step()  # warm-up
    times, cpu = [], []
    for _ in range(spec["repeats"]):
        t0, c0 = time.perf_counter(), time.process_time()
        logits, idx = step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = peak_kib()
    torch.save({"logits": logits, "idx": idx, "grad": b.values.grad.detach().clone()}, spec["out"])
    return {"times_s": times, "cpu_s": cpu, "extra_peak_mib": (peak - base) / 1024, "threads": torch.get_num_threads()}


def run(method: str, name: str, setting: dict, args, tmp: Path) -> dict:
    spec = {"method": method, "setting": setting, "seed": args.seed, "repeats": args.repeats,
            "out": str(tmp / f"{name}-{method}.pt".replace(" ", "_"))}
    return run_worker(__file__, spec, tmp / f"{name}-{method}.json".replace(" ", "_"), f"{method} on {name}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--fit-repeats", type=int, default=3)
    p.add_argument("--large-repeats", type=int, default=3, help="repeats of the 256 x 4096 fit")
    p.add_argument("--fits", choices=("all", "small"), default="all", help="'small': 64 x 512 only")
    p.add_argument("--loop-heads", type=int, default=None,
                   help="time the per-head loop on this many heads and scale to all (default: all)")
    p.add_argument("--skip-fit", action="store_true", help="the training step only")
    p.add_argument("--settings", default=None,
                   help="comma-separated prefixes of the step settings to run (default: all; 'paper,real,small')")
    p.add_argument("--kernels", action="store_true",
                   help="also time the step with the lookup's float32 kernel and int8 kernel pinned")
    p.add_argument("--real-iter", type=int, default=20,
                   help="Lloyd iterations of the real setting's key fit (fit_keys' default: 20)")
    p.add_argument("--real-fit-heads", type=int, default=None,
                   help="fit only this many heads of the real setting and repeat them over all heads "
                        "(head c: projection and keys of head c mod this; default: fit every head)")
    p.add_argument("--prepare-real", action="store_true",
                   help="only fit and store the real setting's keys and batch (minutes; not timed)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0

    import tempfile

    import torch

    settings = {"small": SETTINGS["small"]} if args.quick else SETTINGS
    if args.settings:
        wanted = args.settings.split(",")
        settings = {n: s for n, s in settings.items() if any(n.startswith(w) for w in wanted)}
    settings = {n: {**s, "kmeans_iter": args.real_iter, "fit_heads": args.real_fit_heads or s["heads"]}
                if s.get("real") else s for n, s in settings.items()}
    if args.prepare_real:
        for setting in settings.values():
            if setting.get("real"):
                print(prepare_real(setting, args.seed))
        return 0
    methods = list(KERNELS) if args.kernels else ["bottlenecks"]
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, setting in settings.items():
            if setting.get("real"):
                prepare_real(setting, args.seed)
            res = {m: run(m, name, setting, args, Path(tmp)) for m in ["reference", *methods]}
            r = torch.load(res["reference"]["out"])
            ref = res["reference"]
            raw[name] = {"setting": setting, "reference": {k: v for k, v in ref.items() if k != "out"}}
            shape = {k: v for k, v in setting.items() if k != "real"}
            for m in methods:
                ours, a = res[m], torch.load(res[m]["out"])
                same_idx = float((a["idx"] == r["idx"]).float().mean())
                logit_err = float((a["logits"] - r["logits"]).abs().max())
                grad_err = float((a["grad"] - r["grad"]).abs().max())
                speed = min(ref["ms"]) / min(ours["ms"])
                # below 1 MiB the RSS counter is too coarse for a ratio
                mem_cell = (f"**{ref['extra_peak_mib'] / ours['extra_peak_mib']:.1f}x**"
                            if ours["extra_peak_mib"] >= 1 else "n/a (< 1 MiB)")
                cpu = (f"{1e3 * min(ref['cpu_s']):.0f} / {1e3 * min(ours['cpu_s']):.0f}"
                       if "cpu_s" in ref and "cpu_s" in ours else "–")
                rows.append(f"| {name} | {shape} | {m} ({KERNELS[m]}) | "
                            f"{min(ref['ms']):.1f} / {statistics.median(ref['ms']):.1f} | "
                            f"{min(ours['ms']):.1f} / {statistics.median(ours['ms']):.1f} | **{speed:.2f}x** | {cpu} | "
                            f"{ref['extra_peak_mib']:.0f} | {ours['extra_peak_mib']:.0f} | "
                            f"{mem_cell} | "
                            f"{same_idx:.4f} | {logit_err:.1e} | {grad_err:.1e} |")
                raw[name][m] = {**{k: v for k, v in ours.items() if k != "out"}, "kernel": KERNELS[m],
                                "same_indices": same_idx, "max_logit_diff": logit_err, "max_grad_diff": grad_err}
                print(rows[-1], flush=True)
    fit_rows = []
    if not args.quick and not args.skip_fit:
        with tempfile.TemporaryDirectory() as tmp:
            for name, st in FITS.items():
                if args.fits == "small" and st["heads"] > 64:
                    continue
                res = {}
                for method in (("loop", "batched") if st["heads"] <= 64 else ("batched",)):
                    loop_heads = min(st["heads"], args.loop_heads or st["heads"])
                    repeats = args.fit_repeats if st["heads"] <= 64 else args.large_repeats
                    spec = {"fit": st, "method": method, "seed": args.seed, "repeats": repeats,
                            "loop_heads": loop_heads, "out": str(Path(tmp) / f"fit-{method}.pt")}
                    res[method] = run_worker(__file__, spec, Path(tmp) / f"fit-{method}.json", f"{method} fit {name}")
                ours = res["batched"]
                if "loop" in res:
                    h = min(st["heads"], args.loop_heads or st["heads"])
                    same = float((torch.load(res["loop"]["out"])["labels"] ==
                                  torch.load(ours["out"])["labels"][:, :h]).float().mean())
                    loop = res["loop"]
                    scale = st["heads"] / h  # the loop timed on h heads, scaled to all of them
                    loop["ms"] = [t * scale for t in loop["ms"]]
                    loop["cpu_s"] = [t * scale for t in loop.get("cpu_s", [])]
                    loop["timed_heads"] = h
                    loop_cell = f"{min(loop['ms']) / 1e3:.1f} / {statistics.median(loop['ms']) / 1e3:.1f}"
                    speed = f"**{min(loop['ms']) / min(ours['ms']):.1f}x**"
                    same_cell = f"{same:.4f}"
                else:
                    loop_cell, speed, same_cell = "not run (hours)", "–", "–"
                cpu = " / ".join(f"{min(r_['cpu_s']):.1f}" for r_ in res.values() if "cpu_s" in r_) or "–"
                fit_rows.append(f"| {name} | {loop_cell} | {min(ours['ms']) / 1e3:.1f} / "
                                f"{statistics.median(ours['ms']) / 1e3:.1f} | {speed} | {cpu} | {same_cell} | "
                                f"{max(ours['n_iter'])} |")
                raw.setdefault("fit", {})[name] = {
                    "setting": st, **{m: {k: v for k, v in r_.items() if k != "out"} for m, r_ in res.items()}}
                print(fit_rows[-1], flush=True)
    head = [
        "# Discrete key-value bottleneck: training step, ours vs the full-distance reference",
        "",
        f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}; "
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs",
        f"- command: `python benchmarks/dkvb.py {' '.join(argv or sys.argv[1:])}`",
        "- step = projection + lookup + value gather + mean decoder + cross-entropy + backward (no optimiser);"
        f" {args.repeats} steps after a warm-up, each method in a fresh process",
        "- extra peak MiB: peak RSS during the warm-up and timed steps minus RSS before them (after building "
        "the model and the batch), so buffers a method keeps between steps count",
        "",
        "| setting | shape | ours (lookup backend) | reference ms (min / median) | ours ms (min / median) | speed-up | "
        "CPU ms, reference / ours (min) | reference extra peak MiB | ours extra peak MiB | memory ratio | "
        "same key indices | max logit diff | max grad diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    previous = Path(args.out) / "dkvb.md"
    if not fit_rows and args.skip_fit and not args.quick and previous.exists():  # keep the last key-fit table
        text = previous.read_text()
        if "\n## Fitting the keys" in text:
            rows += ["", *text[text.index("\n## Fitting the keys") + 1:].rstrip("\n").split("\n")]
            old = json.loads((Path(args.out) / "dkvb.json").read_text())
            if "fit" in old:
                raw["fit"] = old["fit"]
    if fit_rows:
        rows += [
            "",
            "## Fitting the keys: batched k-means vs one k-means per head",
            "",
            "60,000 Fashion-MNIST training images (standardised pixels) through the bottleneck's random projection "
            "(key dim 14), keys from the same random rows as `fit_keys` draws; seconds, min / median of "
            f"{args.fit_repeats} runs ({args.large_repeats} at 256 x 4096) in one fresh process per method"
            + (f"; the per-head loop timed on its first {args.loop_heads} heads and scaled to all"
               if args.loop_heads else "") + "; CPU s: process time (all threads), less "
            "sensitive to other jobs than wall time; *same labels*: fraction of (row, head) labels equal "
            "between the two.",
            "",
            "| heads x keys | one k-means per head s (min / median) | batched s (min / median) | speed-up | "
            "CPU s, per head / batched (min) | same labels | iterations (most) |",
            "|---|---|---|---|---|---|---|",
            *fit_rows,
        ]
    write_results(args.out, "dkvb-quick" if args.quick else "dkvb", head + rows, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
