"""Time exact Lloyd k-means (``bottlenecks.cluster.kmeans``) against scikit-learn and faiss-cpu.

    python benchmarks/kmeans.py                 # full run: 4 shapes, 2 and 1 threads, 10 iterations, 3 repeats
    python benchmarks/kmeans.py --quick         # tiny shapes, seconds; writes kmeans-quick.*
    python benchmarks/kmeans.py --merge a/kmeans.json b/kmeans-1thread.json ...   # one report from several runs

Every method starts from the same initial centres (``k`` distinct rows of the data, chosen with
``np.random.default_rng(seed).choice(n, k, replace=False)``) and runs at most ``--iters`` Lloyd
iterations with no tolerance-based early stop (``tol=0``):

* ``bottlenecks``: ``kmeans(x, k, init=c0, max_iter=iters, tol=0.0, prune=True)``;
* ``bottlenecks-noprune``: the same with ``prune=False`` (a full search every iteration);
* ``sklearn``: ``KMeans(algorithm='lloyd', init=c0, n_init=1, max_iter=iters, tol=0.0)``;
* ``faiss``: ``faiss.Kmeans(niter=iters, max_points_per_centroid=n // k + 1)`` trained with
  ``init_centroids=c0`` (so it trains on all points instead of subsampling), then one
  ``index.search(x, 1)`` for the final labels.

The timed region is the whole public call, so it holds the same work for every method: ``iters``
assignment + update steps and one final assignment of the rows to the final centres (bottlenecks
and scikit-learn do that re-assignment inside the call; for faiss the ``index.search`` is timed
with ``train``; faiss's train-only time is in the JSON). It also holds each library's own input
checks and set-up. bottlenecks and scikit-learn stop early, without the final re-assignment, when
no label changes (strict convergence); faiss never stops early. ms/iteration is the timed total
divided by the iterations actually run.

Each method runs in a fresh process (this script with ``--worker``) that loads the data from a
``.npy`` file, imports only its own library, resets the peak-RSS counter (``/proc/self/clear_refs``)
and reads it (``VmHWM``) after all repeats: "extra peak" is that peak minus the RSS just before the
first call; "total peak" is the peak itself.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

if __package__ in (None, "") and importlib.util.find_spec("bottlenecks") is None:  # not installed: use src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# (n, d, k); (60k, 784, 10) is `make demo-kmeans`'s shape (Fashion-MNIST's size, small k, large d)
SHAPES = [(200_000, 64, 256), (1_000_000, 128, 1024), (100_000, 64, 8192), (60_000, 784, 10)]
QUICK_SHAPES = [(20_000, 32, 64), (20_000, 32, 512)]
METHODS = ("bottlenecks", "bottlenecks-noprune", "sklearn", "faiss")
PEERS = ("sklearn", "faiss")
OURS = "bottlenecks"
CENTER_BOX = (-10.0, 10.0)
_CHUNK = 1 << 16


# ---------------------------------------------------------------- helpers

def parse_count(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
    return int(float(s[:-1] if mult != 1 else s) * mult)


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """``'200kx64x256,1Mx128x1024'`` -> ``[(200000, 64, 256), (1000000, 128, 1024)]``."""
    shapes = []
    for part in text.split(","):
        fields = part.strip().lower().split("x")
        if len(fields) != 3:
            raise argparse.ArgumentTypeError(f"shape {part!r}: expected NxDxK, e.g. 200kx64x256")
        n, d, k = (parse_count(f) for f in fields)
        if not (n > 0 and d > 0 and 0 < k <= n):
            raise argparse.ArgumentTypeError(f"shape {part!r}: expected n, d, k > 0 and k <= n")
        shapes.append((n, d, k))
    return shapes


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def shape_label(shape) -> str:
    n, d, k = shape
    return f"n={human(n)} d={d} k={k}"


def make_data(kind: str, n: int, d: int, k: int, seed: int, cluster_std: float):
    """float32 C-contiguous data ``(n, d)`` and the initial centres ``(k, d)`` (rows of the data)."""
    if kind == "blobs":
        from sklearn.datasets import make_blobs

        x, _ = make_blobs(n_samples=n, n_features=d, centers=max(2, k // 4), cluster_std=cluster_std,
                          center_box=CENTER_BOX, random_state=seed)
        x = np.ascontiguousarray(x, dtype=np.float32)
    elif kind == "gaussian":
        x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    else:
        raise ValueError(f"data: expected 'blobs' or 'gaussian', got {kind!r}")
    idx = np.random.default_rng(seed).choice(n, k, replace=False)
    return x, np.ascontiguousarray(x[idx])


def sq_error(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of the rows to their assigned centres, in float64."""
    c = centroids.astype(np.float64)
    total = 0.0
    for s in range(0, len(x), _CHUNK):
        diff = x[s:s + _CHUNK].astype(np.float64) - c[labels[s:s + _CHUNK]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count()
    return f"{model}, nproc={ncpu}"


# ---------------------------------------------------------------- worker (one method, fresh process)

def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_kib() -> int:
    """This process's peak RSS since the last reset: VmHWM. (Not ``ru_maxrss``: a child made by
    fork + exec inherits the parent's RSS at fork time as its ``ru_maxrss`` floor.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    """Reset the peak RSS (VmHWM, which ru_maxrss reads) to the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _runner(method: str, x: np.ndarray, c0: np.ndarray, iters: int, seed: int):
    """A no-argument callable doing one timed fit; returns (seconds, result dict), and thread info."""
    n, d = x.shape
    k = c0.shape[0]
    if method.startswith("bottlenecks"):
        import torch

        from bottlenecks.cluster import _numba, kmeans

        _numba.load()  # the library's compiled kernels are loaded, as faiss's are, before measuring
        xt, ct = torch.from_numpy(x), torch.from_numpy(c0)
        prune = method == "bottlenecks"

        def fit():
            t0 = time.perf_counter()
            r = kmeans(xt, k, init=ct, max_iter=iters, tol=0.0, prune=prune, seed=seed)
            dt = time.perf_counter() - t0
            info = r.info
            return dt, {"labels": r.labels.numpy(), "centroids": r.centroids.numpy(), "n_iter": r.n_iter,
                        "reported_inertia": r.inertia, "precision": info.get("precision", "?"),
                        "extra": {"pruned_fraction": info.get("pruned_fraction"),
                                  "undecided_rows": info.get("undecided_rows"),
                                  "fallback_to_float32": info.get("fallback_to_float32"),
                                  "relocated_empty": info.get("relocated", 0)}}

        return fit, {"torch_threads": torch.get_num_threads()}
    if method == "sklearn":
        from sklearn.cluster import KMeans
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        def fit():
            km = KMeans(n_clusters=k, init=c0, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd",
                        random_state=seed)
            t0 = time.perf_counter()
            km.fit(x)
            dt = time.perf_counter() - t0
            return dt, {"labels": np.asarray(km.labels_, dtype=np.int64), "centroids": km.cluster_centers_,
                        "n_iter": int(km.n_iter_), "reported_inertia": float(km.inertia_),
                        "precision": str(km.cluster_centers_.dtype), "extra": {}}

        return fit, {"openmp_threads": _openmp_effective_n_threads()}
    if method == "faiss":
        import faiss

        def fit():
            km = faiss.Kmeans(d, k, niter=iters, seed=seed, max_points_per_centroid=n // k + 1,
                              min_points_per_centroid=1, verbose=False, spherical=False, update_index=True)
            t0 = time.perf_counter()
            km.train(x, init_centroids=c0)
            t1 = time.perf_counter()
            dist, idx = km.index.search(x, 1)
            t2 = time.perf_counter()
            stats = km.iteration_stats
            return t2 - t0, {"labels": idx[:, 0].astype(np.int64), "centroids": km.centroids,
                             "n_iter": len(stats), "reported_inertia": float(dist.astype(np.float64).sum()),
                             "precision": "float32",
                             "extra": {"train_s": t1 - t0, "search_s": t2 - t1,
                                       "split_empty": int(sum(s["nsplit"] for s in stats))}}

        return fit, {"omp_threads": faiss.omp_get_max_threads()}
    raise ValueError(f"unknown method {method!r}")


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    x = np.load(spec["x"])
    c0 = np.load(spec["c0"])
    fit, threads = _runner(spec["method"], x, c0, spec["iters"], spec["seed"])
    gc.collect()
    base_kib = _rss_kib()
    reset = _reset_peak()
    times, res = [], None
    for _ in range(spec["repeats"]):
        res = None
        gc.collect()
        dt, res = fit()
        times.append(dt)
    peak_kib = _peak_kib()
    labels = res.pop("labels")
    centroids = np.ascontiguousarray(res.pop("centroids"), dtype=np.float32)
    np.save(spec["labels_out"], labels)
    np.save(spec["centroids_out"], centroids)
    res.update(times_s=times, threads=threads, base_rss_mib=base_kib / 1024, peak_rss_mib=peak_kib / 1024,
               extra_peak_mib=(peak_kib - base_kib) / 1024, peak_reset=reset,
               inertia=sq_error(x, centroids, labels))
    Path(spec["result_out"]).write_text(json.dumps(res))
    return 0


# ---------------------------------------------------------------- driver

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def blas_env() -> tuple[dict, str]:
    """Environment for the workers, and a note on it. faiss-cpu's wheel bundles an old OpenBLAS
    that may not recognise a new CPU and falls back to generic kernels (seen here: 'Prescott',
    ~4x slower); peers get the same care as our code, so every worker is told the core type that
    numpy's newer OpenBLAS detects on this machine (``OPENBLAS_CORETYPE``)."""
    env = dict(os.environ)
    try:
        from threadpoolctl import threadpool_info

        archs = {Path(i["filepath"]).name: i.get("architecture") for i in threadpool_info()
                 if i.get("internal_api") == "openblas"}
    except Exception:  # threadpoolctl missing or odd: leave the environment alone
        return env, "OpenBLAS core type: not inspected"
    numpy_arch = next((a for name, a in archs.items() if "scipy_openblas" in name and a), None)
    if numpy_arch and "OPENBLAS_CORETYPE" not in env:
        env["OPENBLAS_CORETYPE"] = numpy_arch
    detected = ", ".join(f"{name}: {a}" for name, a in archs.items())
    return env, (f"OpenBLAS core types detected without override: {detected}; workers run with "
                 f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}")


def run_worker(method, shape_dir: Path, args, threads: int) -> dict:
    """One method in a fresh process limited to ``threads`` threads (every pool: OpenMP, MKL, OpenBLAS,
    numba)."""
    run = f"{method}-t{threads}"
    spec = {"method": method, "x": str(shape_dir / "x.npy"), "c0": str(shape_dir / "c0.npy"),
            "iters": args.iters, "repeats": args.repeats, "seed": args.seed,
            "labels_out": str(shape_dir / f"{run}-labels.npy"),
            "centroids_out": str(shape_dir / f"{run}-centroids.npy"),
            "result_out": str(shape_dir / f"{run}-result.json")}
    spec_path = shape_dir / f"{run}-spec.json"
    spec_path.write_text(json.dumps(spec))
    env = blas_env()[0]
    env.update({v: str(threads) for v in THREAD_VARS})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not Path(spec["result_out"]).exists():
        tail = (proc.stderr or proc.stdout or "(no output)").strip().splitlines()
        return {"error": f"worker exited with {proc.returncode}: {tail[-1].replace('|', '/')}",
                "stderr_tail": tail[-20:]}
    out = json.loads(Path(spec["result_out"]).read_text())
    out["labels_path"], out["centroids_path"] = spec["labels_out"], spec["centroids_out"]
    ms = [1000 * t / max(1, out["n_iter"]) for t in out["times_s"]]
    out["ms_per_iter"] = ms
    out["ms_min"], out["ms_median"] = min(ms), statistics.median(ms)
    return out


def compare(x: np.ndarray, results: dict) -> None:
    """Label agreement with ours, inertia relative to ours, and whether each method's labels are the
    exact (float64-decided) nearest of its own returned centres."""
    import torch

    from bottlenecks.cluster import assign

    ours = results.get(OURS)
    ours_labels = np.load(ours["labels_path"]) if ours and "error" not in ours else None
    for r in results.values():
        if "error" in r:
            continue
        labels = np.load(r["labels_path"])
        centroids = np.load(r["centroids_path"])
        exact, _ = assign(torch.from_numpy(x), torch.from_numpy(centroids))
        r["exact_own_fraction"] = float((exact.numpy() == labels).mean())
        if ours_labels is not None:
            r["agree_with_ours"] = float((labels == ours_labels).mean())
            r["inertia_rel_diff"] = (r["inertia"] - ours["inertia"]) / ours["inertia"]


def fmt_agree(v) -> str:
    if v is None:
        return "n/a"
    return "identical" if v == 1.0 else f"{v:.6f}"


def fastest_peer(results: dict) -> float | None:
    peer_best = [results[p]["ms_min"] for p in PEERS if p in results and "error" not in results[p]]
    return min(peer_best) if peer_best else None


def table_rows(all_results: dict, methods) -> list[list[str]]:
    rows = []
    for label, results in all_results.items():
        shape, threads = label.rsplit(", ", 1)
        peer = fastest_peer(results)
        faiss = results.get("faiss", {}).get("ms_min")
        for m in methods:
            r = results.get(m)
            if r is None:
                continue
            if "error" in r:
                rows.append([shape, threads, m, "error", "", "", "", "", "", "", "", "", "", "", r["error"][:120]])
                continue
            ratio = f"{r['ms_min'] / peer:.2f}" if peer else "n/a"
            vs_faiss = f"{r['ms_min'] / faiss:.2f}" if faiss else "n/a"
            rel = r.get("inertia_rel_diff")
            rows.append([shape, threads, m, r["precision"], str(r["n_iter"]), f"{r['ms_min']:.2f}",
                         f"{r['ms_median']:.2f}", ratio, vs_faiss, f"{r['extra_peak_mib']:.0f}",
                         f"{r['peak_rss_mib']:.0f}",
                         fmt_agree(r.get("agree_with_ours")), fmt_agree(r.get("exact_own_fraction")),
                         f"{r['inertia']:.6e}", "n/a" if rel is None else f"{rel:+.2e}"])
    return rows


HEADER = ["shape", "threads", "method", "precision", "iters run", "ms/iter min", "ms/iter median", "x fastest peer",
          "x faiss", "extra peak MiB", "total peak MiB", "labels = ours", "labels = exact(own centres)", "inertia",
          "inertia vs ours"]


def markdown(rows) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def threads_note(all_results) -> str:
    seen: dict = {}
    for results in all_results.values():
        for m, r in results.items():
            if "threads" in r and r["threads"] not in seen.setdefault(m, []):
                seen[m].append(r["threads"])
    return ", ".join(f"{m}: {' / '.join(map(str, t))}" for m, t in seen.items())


#: issue 15's speed targets: (n, d, k) -> the largest ms/iter ratio to the fastest peer at 2 threads
SPEED_TARGETS = {(1_000_000, 128, 1024): 0.5, (100_000, 64, 8192): 0.5, (200_000, 64, 256): 1.0,
                 (60_000, 784, 10): 1.0}


def targets(all_results: dict, shapes) -> str:
    """Issue 15's targets, each with its measured value: speed at 2 threads vs the fastest peer, at 1
    thread vs faiss, extra peak memory <= 2x faiss's, and defaults (prune) no slower than prune=False."""
    lines = ["| target | shape | measured | met |", "|---|---|---|---|"]

    def row(what, label, value, ok):
        lines.append(f"| {what} | {label} | {value} | {'yes' if ok else '**no**'} |")

    for shape in shapes:
        label = shape_label(shape)
        for run_label, results in all_results.items():
            if not run_label.startswith(label + ", "):
                continue
            threads = int(run_label.rsplit(", ", 1)[1])
            ours, faiss, noprune = results.get(OURS), results.get("faiss"), results.get("bottlenecks-noprune")
            if not ours or "error" in ours:
                continue
            peer = fastest_peer(results)
            if threads == 2 and peer and tuple(shape) in SPEED_TARGETS:
                goal = SPEED_TARGETS[tuple(shape)]
                ratio = ours["ms_min"] / peer
                row(f"ms/iter <= {goal}x fastest peer, 2 threads", label, f"{ratio:.2f}x", ratio <= goal)
            if threads == 1 and faiss and "error" not in faiss:
                ratio = ours["ms_min"] / faiss["ms_min"]
                row("ms/iter <= 1.0x faiss, 1 thread", label, f"{ratio:.2f}x", ratio <= 1.0)
            if faiss and "error" not in faiss:
                ok = ours["extra_peak_mib"] <= 2 * max(faiss["extra_peak_mib"], 0)
                row(f"extra peak <= 2x faiss's, {threads} thread(s)", label,
                    f"{ours['extra_peak_mib']:.0f} vs {faiss['extra_peak_mib']:.0f} MiB", ok)
            if noprune and "error" not in noprune:
                ratio = ours["ms_min"] / noprune["ms_min"]
                row(f"default no slower than prune=False, {threads} thread(s)", label, f"{ratio:.2f}x", ratio <= 1.0)
    return "\n".join(lines)


def header(args, argv) -> str:
    data = (f"`make_blobs(centers=max(2, k // 4), cluster_std={args.cluster_std}, center_box={CENTER_BOX}, "
            f"random_state={args.seed})`" if args.data == "blobs" else f"standard normal (seed {args.seed})")
    cmd = "python benchmarks/kmeans.py" + (" " + shlex.join(argv) if argv else "")
    return "\n".join([
        "# k-means: bottlenecks vs scikit-learn vs faiss-cpu" + (" (quick)" if args.quick else ""),
        "",
        f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {machine()}; python {platform.python_version()}",
        f"- versions: torch {version('torch')}, scikit-learn {version('scikit-learn')}, "
        f"faiss-cpu {version('faiss-cpu')}, numpy {version('numpy')}, bottlenecks {version('bottlenecks')}",
        f"- command: `{cmd}`",
        f"- data: float32, {data}; initial centres: k distinct rows "
        f"`np.random.default_rng({args.seed}).choice(n, k, replace=False)`, the same for every method",
        f"- {args.iters} Lloyd iterations at most (tol=0), {args.repeats} repeats per method, each method in a "
        "fresh process; ms/iter = timed call / iterations run (min and median over repeats)",
        f"- {blas_env()[1]}",
    ])


NOTES = """\
Notes

- The timed region is the whole public call: `kmeans(...)`, `KMeans.fit(x)`, and `faiss.Kmeans.train(x,
  init_centroids=c0)` + `index.search(x, 1)`. Each holds `iters run` assignment + update steps plus one final
  assignment to the final centres (skipped by bottlenecks and scikit-learn on strict convergence, i.e. when no
  label changed), and its own input checks and set-up (bottlenecks: finiteness check, data mean, a one-off
  precision calibration cached per process, so the first repeat is slower; scikit-learn: input validation and
  centring a copy of the data). faiss never stops early and trains on all points (`max_points_per_centroid =
  n // k + 1`). faiss's train-only time is in the JSON.
- `x fastest peer`: min ms/iter divided by the smaller min ms/iter of sklearn and faiss (below 1 = faster).
- `precision`: bottlenecks' search precision (`info['precision']`; labels are decided exactly in float64
  whatever it is); scikit-learn and faiss compute float32 GEMM distances and keep float32 centres, so their
  labels can differ from exact Lloyd at near-ties, and one differing label changes the following centres.
- `labels = ours`: fraction of rows whose final label equals bottlenecks' (prune=True). `labels = exact(own
  centres)`: fraction of a method's labels that are the exact nearest (decided in float64 by
  `bottlenecks.cluster.exact`) of the float32 centres that method returned; below 1 means float32 rounding
  picked another centre at a near-tie. `inertia`: sum of squared distances in float64 from each method's labels
  and returned centres; `inertia vs ours`: relative difference (negative = lower than ours).
- Empty clusters: bottlenecks and scikit-learn re-seed them with the farthest points; faiss splits a large cluster
  instead (counts in the JSON). With a different fix-up the trajectories, and labels, diverge.
- Memory: peak RSS of the worker process during the repeats (peak counter reset after loading the data and
  importing the library) minus the RSS before the first call; libraries' thread pools and caches count.
"""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="tiny shapes, --iters 3, --repeats 2; writes kmeans-quick.* instead of kmeans.*")
    ap.add_argument("--shapes", type=parse_shapes, default=None,
                    help="comma-separated NxDxK, e.g. 200kx64x256,1Mx128x1024 (default: the three issue shapes)")
    ap.add_argument("--iters", type=int, default=None, help="Lloyd iterations (default 10; 3 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 3; 2 with --quick)")
    ap.add_argument("--threads", default="2,1",
                    help="comma-separated thread counts, each a separate run of every method (default 2,1)")
    ap.add_argument("--data", choices=("blobs", "gaussian"), default="blobs")
    ap.add_argument("--cluster-std", type=float, default=4.0, help="make_blobs cluster_std (blobs data)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="write one report (kmeans.md/.json/.png in --out) from the JSON files of several runs "
                         "(e.g. one per shape and thread count, each short enough for a quiet machine); "
                         "nothing is measured")
    ap.add_argument("--note", default="", help="a paragraph on the run conditions, printed under the header")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.merge:
        return merge(args, argv)

    args.shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
    args.iters = args.iters or (3 if args.quick else 10)
    args.repeats = args.repeats or (2 if args.quick else 3)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        ap.error(f"--methods: unknown {bad}; expected a comma-separated subset of {','.join(METHODS)}")
    if args.iters < 1 or args.repeats < 1:
        ap.error("--iters and --repeats must be >= 1")
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--threads: expected comma-separated positive integers, got {args.threads!r}")
    if not args.threads or min(args.threads) < 1:
        ap.error(f"--threads: expected comma-separated positive integers, got {args.threads!r}")
    stem = ("kmeans" + ("-quick" if args.quick else "") + ("" if args.data == "blobs" else f"-{args.data}")
            + ("" if args.threads in ([2, 1], [2]) else "-" + "-".join(map(str, args.threads)) + "thread"))

    all_results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="kmeans-bench-") as tmp:
        for shape in args.shapes:
            n, d, k = shape
            label = shape_label(shape)
            shape_dir = Path(tmp) / f"{n}x{d}x{k}"
            shape_dir.mkdir()
            x, c0 = make_data(args.data, n, d, k, args.seed, args.cluster_std)
            np.save(shape_dir / "x.npy", x)
            np.save(shape_dir / "c0.npy", c0)
            del c0
            for threads in args.threads:
                results = {}
                run_label = f"{label}, {threads}"
                for m in methods:
                    t0 = time.perf_counter()
                    print(f"[{run_label} threads] {m} ...", end=" ", file=sys.stderr, flush=True)
                    results[m] = run_worker(m, shape_dir, args, threads)
                    r = results[m]
                    msg = r["error"] if "error" in r else f"{r['ms_min']:.2f} ms/iter min, {r['n_iter']} iters"
                    print(f"{msg} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
                compare(x, results)
                for r in results.values():
                    r.pop("labels_path", None), r.pop("centroids_path", None)
                all_results[run_label] = results
            del x

    meta = {"command": argv, "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(), "data": args.data, "cluster_std": args.cluster_std, "center_box": CENTER_BOX,
            "seed": args.seed, "iters": args.iters, "repeats": args.repeats, "threads": threads_note(all_results),
            "versions": {p: version(p) for p in ("torch", "scikit-learn", "faiss-cpu", "numpy", "bottlenecks")}}
    write_report(args, all_results, methods, meta, stem, header(args, argv))
    return 0


def write_report(args, all_results: dict, methods, meta: dict, stem: str, head: str) -> None:
    """kmeans.md / .png / .json in ``args.out`` from measured results."""
    rows = table_rows(all_results, methods)
    table = markdown(rows)
    print(table, flush=True)
    threads = threads_note(all_results)
    note = f"\n\n**Run conditions.** {args.note}" if args.note else ""
    args.out.mkdir(parents=True, exist_ok=True)
    md_path, png_path, json_path = (args.out / f"{stem}.{ext}" for ext in ("md", "png", "json"))
    md_path.write_text(f"{head}\n- threads: {threads}{note}\n\n{table}\n\n![ms per iteration]({png_path.name})\n\n"
                       f"Targets (issue 15; ratios of min ms/iter)\n\n{targets(all_results, args.shapes)}\n\n{NOTES}")
    chart = {label: {m: (r["ms_min"] if "error" not in r else None) for m, r in res.items()}
             for label, res in all_results.items()}
    try:
        from bottlenecks.report.plots import save_bar_chart

        save_bar_chart(chart, png_path, ylabel=f"ms per iteration (min of {args.repeats})",
                       title=f"k-means, {args.iters} Lloyd iterations, float32 {args.data}", log=True)
    except ValueError as err:  # e.g. every method failed
        print(f"chart not written: {err}", file=sys.stderr)
    json_path.write_text(json.dumps({"meta": meta, "results": all_results}, indent=1))
    print(f"wrote {md_path}, {png_path}, {json_path}", file=sys.stderr)


def merge(args, argv) -> int:
    """One report from the JSON files of several runs (same data, seed, iterations and repeats,
    checked), in the order given; each run's own command and date are listed in the header."""
    runs = [json.loads(path.read_text()) for path in args.merge]
    first = runs[0]["meta"]
    for path, run in zip(args.merge, runs, strict=True):
        for key in ("data", "cluster_std", "seed", "iters", "repeats"):
            if run["meta"][key] != first[key]:
                raise SystemExit(f"--merge: {path} has {key}={run['meta'][key]!r}, {args.merge[0]} has "
                                 f"{first[key]!r}; expected runs of one protocol")
    all_results: dict[str, dict] = {}
    for run in runs:  # a shape's methods may come from several runs (then "labels = ours" is n/a across them)
        for label, results in run["results"].items():
            all_results.setdefault(label, {}).update(results)
    methods = list(dict.fromkeys(m for res in all_results.values() for m in res))
    args.data, args.cluster_std, args.seed = first["data"], first["cluster_std"], first["seed"]
    args.iters, args.repeats, args.quick = first["iters"], first["repeats"], False
    shapes = []
    for label in all_results:
        shape = next((s for s in SHAPES + QUICK_SHAPES if shape_label(s) == label.rsplit(", ", 1)[0]), None)
        if shape is None:  # a shape given with --shapes: read it back from its label
            n, d, k = (f.split("=")[1] for f in label.rsplit(", ", 1)[0].split())
            shape = (parse_count(n), int(d), int(k))
        if shape not in shapes:
            shapes.append(shape)
    args.shapes = shapes
    head = header(args, argv).split("\n")
    head = [line for line in head if not line.startswith("- command:") and not line.startswith("- date:")]
    runs_note = "\n".join(f"  - `python benchmarks/kmeans.py {shlex.join(run['meta']['command'])}` "
                          f"({run['meta']['date']}): {', '.join(run['results'])}" for run in runs)
    head.insert(2, f"- merged from {len(runs)} runs (each method in a fresh process, as always):\n{runs_note}")
    meta = dict(first, command=argv, date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                merged_from=[run["meta"] for run in runs], threads=threads_note(all_results))
    write_report(args, all_results, methods, meta, "kmeans", "\n".join(head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
