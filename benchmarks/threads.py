"""One torch thread vs two on the loops the library pins to one thread: the GLM path of the concept
head, a linear concept head (Adam), a DKVB key fit, a tiny TokFSM transformer's training steps.

Writes benchmarks/results/threads.md (+ .json): per workload, seconds with 1 and 2 intra-op
threads (min and median of the repeats, each repeat timing both counts in turn), and the ratio.

    .venv/bin/python benchmarks/threads.py [--repeats 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from bottlenecks.threads import fixed_threads


def _glm_path():
    from bottlenecks.concepts.glm import elastic_net_path

    g = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 12, generator=g, dtype=torch.float64)  # the demo's (n, concepts) scores
    y = (X[:, :4].argmax(1) + 4 * (X[:, 4] > 0)).long()
    return lambda: elastic_net_path(X, y, n_lambdas=10, max_epochs=200, progress=False)


def _linear_head():
    from bottlenecks.concepts.heads import LinearHead

    g = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 12, generator=g, dtype=torch.float64)
    y = X[:, :8].argmax(1)
    return lambda: LinearHead(12, 8, l2=1e-3).fit(X, y)


def _key_fit():
    from bottlenecks.kv import DiscreteKeyValueBottleneck

    x = torch.randn(2000, 64, generator=torch.Generator().manual_seed(0))
    return lambda: DiscreteKeyValueBottleneck(64, 16, 64, 8, dim_value=10, seed=0).fit_keys(x, epochs=2)


def _tokfsm_steps():
    from bottlenecks.codebook.tokfsm import TokFSM
    from bottlenecks.studies.tokfsm import tokfsm_model, train_lm

    fsm = TokFSM(num_states=10, num_successors=2, seed=0)

    def work():
        model = tokfsm_model(seed=0, hidden=32, intermediate=64, layers=1, heads=2, max_tokens=16)
        train_lm(model, fsm, steps=30, batch_size=32, lr=1e-2, length=8, progress=False)
    return work


WORKLOADS = {"GLM path (2000 x 12 scores, 10 lambdas)": _glm_path,
             "linear concept head, Adam (2000 x 12 -> 8)": _linear_head,
             "DKVB key fit (2000 x 64, 16 heads x 64 keys, 2 epochs)": _key_fit,
             "TokFSM tiny transformer, 30 training steps of 32": _tokfsm_steps}


def _unpin_library() -> None:
    """The concept solvers pin themselves to one thread (``small_op_threads``); switch that off here
    so the count set around each timing is the one they run with."""
    import contextlib

    from bottlenecks.concepts import glm, heads

    glm._small_op_threads = lambda numel, limit=0: contextlib.nullcontext()
    heads.small_op_threads = lambda numel, limit=0: contextlib.nullcontext()


def _time(work, threads: int) -> float:
    with fixed_threads(threads):
        t0 = time.perf_counter()
        work()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    _unpin_library()
    rows = {}
    for name, make in WORKLOADS.items():
        work = make()
        work()  # warm-up: imports, allocator
        times = {1: [], 2: []}
        for _ in range(args.repeats):
            for n in (1, 2):
                times[n].append(_time(work, n))
        rows[name] = {str(n): {"min": min(t), "median": statistics.median(t), "all": t} for n, t in times.items()}
        print(name, {n: f"{min(t):.3f} / {statistics.median(t):.3f}" for n, t in times.items()}, flush=True)
    load = os.getloadavg()
    lines = ["# One thread vs two on small-op loops", "",
             "Written by `benchmarks/threads.py`: each workload timed with 1 and 2 torch intra-op threads "
             f"(`bottlenecks.threads.fixed_threads`), {args.repeats} repeats alternating the counts, after one "
             f"warm-up. Machine: {os.cpu_count()} cores shared with other engineers' (niced) jobs; load average "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; python {platform.python_version()}, torch "
             f"{torch.__version__}. Why the library pins these loops to one thread (`threads.small_op_threads`, "
             "the concept heads, the studies) and why the tests run on one (`tests/conftest.py`); the library's own "
             "pinning is switched off for these timings.", "",
             "| workload | 1 thread: min / median s | 2 threads: min / median s | median ratio 2 / 1 |",
             "|---|---|---|---|"]
    for name, r in rows.items():
        one, two = r["1"], r["2"]
        lines.append(f"| {name} | {one['min']:.3f} / {one['median']:.3f} | {two['min']:.3f} / {two['median']:.3f} | "
                     f"{two['median'] / one['median']:.2f}x |")
    out = Path(args.out)
    (out / "threads.md").write_text("\n".join(lines) + "\n")
    (out / "threads.json").write_text(json.dumps({"rows": rows, "load": load}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
