"""Codebook top-k search: ``cluster.nearest`` (what CodebookLayer uses) vs full similarity + topk.

    python benchmarks/codebook.py            # 16,384 tokens, 10,000 codes, dim 128, k=8
    python benchmarks/codebook.py --quick    # 2,048 tokens, 1,000 codes

The reference is the straightforward search: normalise (cosine), build the whole
``(tokens, codes)`` similarity matrix (640 MB at the issue's sizes), then ``torch.topk``. Ours is
``bottlenecks.cluster.nearest``: scores in chunks of at most 32 MiB, each reduced to its top-k at
once. Each (metric, method) runs in a fresh process (this script with ``--worker``); peak extra
memory is the process's peak RSS during the warm-up and timed calls minus its RSS before them
(VmHWM, reset through ``/proc/self/clear_refs``), so buffers kept between calls count. Time: min
and median over ``--repeats`` calls after one warm-up. Ids are compared as sets per token (ties
may be ordered differently) and in order. Writes ``benchmarks/results/codebook.md`` and ``.json``.
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

SIZES = {"full": dict(tokens=16384, codes=10000, dim=128, k=8), "quick": dict(tokens=2048, codes=1000, dim=128, k=8)}
METRICS = ("cosine", "dot")


def reference(x, codes, k: int, metric: str):
    """Full similarity matrix, then topk: ``(n, d), (K, d) -> (n, k)`` ids."""
    import torch.nn.functional as F

    if metric == "cosine":
        x, codes = F.normalize(x, dim=-1), F.normalize(codes, dim=-1)
    return (x @ codes.t()).topk(k, dim=1).indices


def ours(x, codes, k: int, metric: str):
    from bottlenecks.cluster import nearest  # imported before the memory baseline (worker)

    return nearest(x, codes, k, metric)[1]


def worker(spec: dict) -> dict:
    import torch

    import bottlenecks.cluster  # noqa: F401  (its import must not count as search memory)

    g = torch.Generator().manual_seed(spec["seed"])
    s = spec["size"]
    x = torch.randn(s["tokens"], s["dim"], generator=g)
    codes = torch.randn(s["codes"], s["dim"], generator=g)
    fn = ours if spec["method"] == "ours" else reference
    base = rss_kib()
    reset_peak()
    fn(x, codes, s["k"], spec["metric"])  # warm-up
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        ids = fn(x, codes, s["k"], spec["metric"])
        times.append(time.perf_counter() - t0)
    peak = peak_kib()
    torch.save(ids, spec["out"])
    return {"times_s": times, "extra_peak_mib": (peak - base) / 1024, "threads": torch.get_num_threads()}


def run(method: str, metric: str, size: dict, args, tmp: Path) -> dict:
    spec = {"method": method, "metric": metric, "size": size, "seed": args.seed, "repeats": args.repeats,
            "out": str(tmp / f"{metric}-{method}.pt")}
    return run_worker(__file__, spec, tmp / f"{metric}-{method}.json", f"{method} ({metric})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0

    import tempfile

    import torch

    size = SIZES["quick" if args.quick else "full"]
    rows, raw = [], {"size": size}
    with tempfile.TemporaryDirectory() as tmp:
        for metric in METRICS:
            res = {m: run(m, metric, size, args, Path(tmp)) for m in ("reference", "ours")}
            a, r = torch.load(res["ours"]["out"]), torch.load(res["reference"]["out"])
            same_order = float((a == r).all(1).float().mean())
            same_set = float((a.sort(1).values == r.sort(1).values).all(1).float().mean())
            o, f = res["ours"], res["reference"]
            speed_min = min(f["ms"]) / min(o["ms"])
            speed_med = statistics.median(f["ms"]) / statistics.median(o["ms"])
            mem = f["extra_peak_mib"] / o["extra_peak_mib"] if o["extra_peak_mib"] >= 1 else float("nan")
            rows.append(f"| {metric} | {min(f['ms']):.0f} / {statistics.median(f['ms']):.0f} | "
                        f"{min(o['ms']):.0f} / {statistics.median(o['ms']):.0f} | **{speed_min:.2f}x** "
                        f"({speed_med:.2f}x) | {f['extra_peak_mib']:.0f} | {o['extra_peak_mib']:.0f} | "
                        f"**{mem:.1f}x** | {same_set:.4f} | {same_order:.4f} |")
            raw[metric] = {m: {k: v for k, v in r_.items() if k != "out"} for m, r_ in res.items()}
            raw[metric].update(same_set=same_set, same_order=same_order, speedup_min=speed_min,
                               speedup_median=speed_med, memory_ratio=mem)
            print(rows[-1], flush=True)
    head = [
        "# Codebook top-k search: cluster.nearest vs full similarity + torch.topk",
        "",
        f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}; python "
        f"{platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs (shared with other "
        "jobs: timings are noisy)",
        f"- command: `python benchmarks/codebook.py {' '.join(argv or sys.argv[1:])}`",
        f"- {size['tokens']:,} tokens x {size['codes']:,} codes, dim {size['dim']}, k={size['k']}, float32; "
        f"{args.repeats} calls after a warm-up, each method in a fresh process",
        "- extra peak MiB: peak RSS during the calls minus RSS before them (inputs already built)",
        f"- both compute every score: one {size['tokens']:,} x {size['codes']:,} x {size['dim']} product "
        f"({2 * size['tokens'] * size['codes'] * size['dim'] / 1e9:.0f} GFLOP); chunking avoids writing and "
        "re-reading the full similarity matrix",
        "",
        "| metric | reference ms (min / median) | ours ms (min / median) | speed-up min (median) | "
        "reference extra peak MiB | ours extra peak MiB | memory ratio | same id sets | same id order |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    write_results(args.out, "codebook-quick" if args.quick else "codebook", head + rows, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
