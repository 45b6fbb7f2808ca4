"""Compare KSG mutual information (``bottlenecks.info.mutual_information``) with scikit-learn and ennemi.

    python benchmarks/mi.py                # full run: n=10,000, d = 1, 5, 20, 3 repeats
    python benchmarks/mi.py --quick        # n=2,000, 2 repeats; writes mi-quick.*
    python benchmarks/mi.py --n 5000 --dims 50 --stem mi-50d   # 50 + 50 dimensions (issue 17)

Data: ``d`` independent pairs ``(x_j, y_j)`` of standard Gaussians with correlation ``rho``
(``y = rho x + sqrt(1 - rho^2) e``), so the true MI is ``-0.5 d log(1 - rho^2)`` nats.

Estimator: KSG estimator 1 (Kraskov et al. 2004), ``k=3``, max-norm in the joint space, strict
``<`` marginal counts. All three implementations compute this same estimator; they differ in
preprocessing and in how neighbours are found (ours, ``algorithm='auto'``: up to 24 joint dimensions a
KD-tree k-NN query in the joint space plus exact marginal counts (sorted values + ``searchsorted`` in 1-D,
KD-tree range counts that count whole nodes at once otherwise); above that exact chunked brute force in torch
(``torch.cdist(p=inf)`` per chunk of rows), O(n^2 d); scikit-learn: ``NearestNeighbors`` + ``KDTree``;
ennemi: ``scipy.spatial.cKDTree``).

* ``bottlenecks``: ``mutual_information(x, y, method='ksg1', k=3)`` (public call; it standardizes
  each column, zero mean and unit (ddof=1) variance).
* ``sklearn`` (d=1 only; it estimates MI between each feature and a 1-D target):
  ``mutual_info_regression(x, y, n_neighbors=3, discrete_features=False, random_state=seed)``.
  It divides by the (ddof=0) std and adds ``1e-10 * max(1, mean|.|)`` Gaussian noise drawn from
  ``RandomState(seed)``; agreement is reported both against ours on the raw data and against
  ours (``standardize=False``) on exactly sklearn's preprocessed data, reproduced here.
  sklearn clips negative estimates to 0 (irrelevant here: the true MI is well above 0).
* ``ennemi``: for d=1 the public ``ennemi.estimate_mi(y, x, k=3, max_threads=1)`` (it rescales to
  zero mean / unit std and adds 1e-10 noise with a fixed seed). Its public API only takes a 1-D
  ``y`` (each column of ``x`` is a separate estimate), so for d>1 the benchmark calls its internal
  estimator ``ennemi._entropy_estimators._estimate_single_mi(x, y, k=3)`` (the function
  ``estimate_mi`` ends in) on data standardized exactly as ours does. ennemi counts marginal
  neighbours with ``<= eps - 1e-12`` instead of ``< eps``; that is the same unless two distances
  differ by less than 1e-12.

Times are wall-clock over the whole call (min and median of ``--repeats`` timed runs after one
warm-up call, which is untimed unless it takes over 1 s, then it is the first timed repeat).
sklearn's and ennemi's tree searches here are single-threaded; ours runs with ``--threads`` torch
threads (default 1, so all are single-threaded; on this shared 2-core machine 2 torch threads were
up to 6x slower than 1 because another process held a core). "speed-up" = peer median / ours
median (> 1: ours faster).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import scipy.special

if __package__ in (None, "") and importlib.util.find_spec("bottlenecks") is None:  # not installed: use src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from bottlenecks.info import estimators  # noqa: E402

RHO = 0.6
K = 3
DIMS = (1, 5, 20)
RESULTS = Path(__file__).resolve().parent / "results"


def make_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = RHO * x + math.sqrt(1 - RHO**2) * rng.standard_normal((n, d))
    return x, y


def true_mi(d: int) -> float:
    return -0.5 * d * math.log(1 - RHO**2)


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    value = fn()  # warm-up: untimed if short; a call over 1 s counts as the first timed repeat
    first = time.perf_counter() - t0
    times = [first] if first > 1.0 else []
    while len(times) < repeats:
        t0 = time.perf_counter()
        v = fn()
        times.append(time.perf_counter() - t0)
        if v != value:
            raise RuntimeError(f"non-deterministic result: {v!r} vs {value!r}")
    return float(value), times


def ours(x, y, standardize=True):
    return estimators.mutual_information(x, y, method="ksg1", k=K, standardize=standardize)


def sklearn_preprocess(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reproduce ``sklearn.feature_selection._mutual_info._estimate_mi``'s scaling + noise (continuous x, y)."""
    rng = np.random.RandomState(seed)
    x = x / x.std(axis=0)
    x = x + 1e-10 * np.maximum(1, np.mean(np.abs(x), axis=0)) * rng.standard_normal(size=x.shape)
    y = y / y.std()
    y = y + 1e-10 * max(1.0, float(np.mean(np.abs(y)))) * rng.standard_normal(size=y.shape[0])
    return x, y


def run_dim(n: int, d: int, seed: int, repeats: int, have_ennemi: bool) -> dict:
    x, y = make_data(n, d, seed)
    row: dict = {"n": n, "d": d, "true_mi": true_mi(d), "peers": {}}
    v, t = timed(lambda: ours(x, y), repeats)
    row["ours"] = {"mi": v, "times_s": t}
    if d == 1:
        from sklearn.feature_selection import mutual_info_regression

        def sk():
            return float(mutual_info_regression(x, y[:, 0], n_neighbors=K, discrete_features=False,
                                                random_state=seed)[0])
        sv, st = timed(sk, repeats)
        xp, yp = sklearn_preprocess(x, y[:, 0], seed)
        same = ours(xp, yp, standardize=False)
        row["peers"]["sklearn"] = {"mi": sv, "times_s": st, "abs_diff_raw": abs(sv - v),
                                   "ours_on_peer_preprocessed": same, "abs_diff_same_data": abs(sv - same),
                                   "call": "mutual_info_regression (public)"}
    if have_ennemi:
        import ennemi
        from ennemi import _entropy_estimators as ee

        if d == 1:
            def en():
                return float(np.asarray(ennemi.estimate_mi(y[:, 0], x[:, 0], k=K, max_threads=1)).reshape(-1)[0])
            call = "estimate_mi (public, preprocess=True)"
            # ennemi's preprocessing: (v - mean) / std (ddof=0), then N(0, 1e-10) noise, seed 2718281828
            rng = np.random.default_rng(2_718281828)
            xe = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
            xe = xe + rng.normal(0.0, 1e-10, xe.shape)
            ye = (y[:, 0] - y[:, 0].mean()) / y[:, 0].std()
            ye = ye + rng.normal(0.0, 1e-10, ye.shape)
            same = ours(xe, ye, standardize=False)
        else:
            xs = (x - x.mean(0)) / x.std(0, ddof=1)
            ys = (y - y.mean(0)) / y.std(0, ddof=1)

            def en():
                return float(ee._estimate_single_mi(xs, ys, k=K))
            call = "_estimate_single_mi (internal; public API takes 1-D y only)"
            same = ours(xs, ys, standardize=False)
        ev, et = timed(en, repeats)
        # ennemi's _psi is an asymptotic series (error ~1e-5 at 2); rerun with scipy's digamma, untimed
        psi = ee._psi
        ee._psi = lambda v: scipy.special.digamma(np.asarray(v, dtype=np.float64))
        try:
            exact = en()
        finally:
            ee._psi = psi
        row["peers"]["ennemi"] = {"mi": ev, "times_s": et, "abs_diff_raw": abs(ev - v),
                                  "ours_on_peer_preprocessed": same, "abs_diff_same_data": abs(ev - same),
                                  "mi_exact_digamma": exact, "abs_diff_exact_digamma": abs(exact - same),
                                  "call": call}
    return row


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        name = info.get("Model name", "?").strip()
        cpus = info.get("CPU(s)", "?").strip()
        return f"{name}, {cpus} CPU(s)"
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("bottlenecks", "torch", "numpy", "scipy", "scikit-learn", "ennemi"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["torch_threads"] = torch.get_num_threads()
    return out


def fmt_ms(ts: list[float]) -> str:
    return f"{1e3 * min(ts):.1f} / {1e3 * statistics.median(ts):.1f}"


def to_markdown(meta: dict, rows: list[dict]) -> str:
    lines = [f"# KSG mutual information: bottlenecks vs scikit-learn and ennemi{' (quick)' if meta['quick'] else ''}",
             "",
             f"- date: {meta['date']}",
             f"- machine: {meta['machine']}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
             f"- command: `{meta['command']}`",
             f"- data: d independent Gaussian pairs, rho={RHO}, k={K}, KSG estimator 1, seed {meta['seed']}; "
             f"{meta['repeats']} timed repeats after one warm-up (a warm-up over 1 s counts as a repeat)",
             "- timings are noisy: 2-core machine shared with another job running tests at the same time "
             f"(load average before / after: {meta['load_before']} / {meta['load_after']})",
             "",
             "| n | d | true MI | ours MI | ours ms (min / median) | peer | peer MI | peer ms (min / median) "
             "| \\|diff\\| raw data | \\|diff\\| same preprocessed data | \\|diff\\| same data, exact digamma "
             "| speed-up (peer / ours, median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r["ours"]
        if not r["peers"]:
            lines.append(f"| {r['n']} | {r['d']} | {r['true_mi']:.4f} | {o['mi']:.6f} | {fmt_ms(o['times_s'])} "
                         "| - | - | - | - | - | - | - |")
        for name, p in r["peers"].items():
            ratio = statistics.median(p["times_s"]) / statistics.median(o["times_s"])
            exact = p.get("abs_diff_exact_digamma", p["abs_diff_same_data"])
            lines.append(f"| {r['n']} | {r['d']} | {r['true_mi']:.4f} | {o['mi']:.6f} | {fmt_ms(o['times_s'])} "
                         f"| {name} | {p['mi']:.6f} | {fmt_ms(p['times_s'])} | {p['abs_diff_raw']:.1e} "
                         f"| {p['abs_diff_same_data']:.1e} | {exact:.1e} "
                         f"| {ratio:.2f}x |")
    lines += ["",
              "\"same preprocessed data\": ours (`standardize=False`) run on the peer's own rescaled + 1e-10-noise "
              "data, reproduced here (for ennemi at d>1: both on our per-column standardized data).",
              "ennemi at d>1 is its internal `_estimate_single_mi` (its public `estimate_mi` takes a 1-D y).",
              "Ours ran with `torch_threads` (see versions) torch threads; the peers' searches are single-threaded.",
              "ennemi approximates digamma by an asymptotic series (`ennemi._entropy_estimators._psi`, error about "
              "1.6e-5 at 2); the last \\|diff\\| column reruns ennemi with `scipy.special.digamma` patched in "
              "(untimed), which isolates the neighbour counts. sklearn uses scipy's digamma (column = previous one)."]
    if not meta["have_ennemi"]:
        lines.append("ennemi was not installed, so it was skipped.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="n=2000, 2 repeats; writes mi-quick.*")
    ap.add_argument("--dims", default=",".join(map(str, DIMS)), help="comma list of d (dimensions a side)")
    ap.add_argument("--stem", default=None, help="results file stem (default mi, or mi-quick with --quick)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for ours (default 1, like the peers; 0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n, repeats = args.n, args.repeats
    if args.quick:
        n, repeats = 2000, 2
    have_ennemi = importlib.util.find_spec("ennemi") is not None
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    dims = [int(v) for v in args.dims.split(",") if v.strip()]
    for d in dims:
        t0 = time.perf_counter()
        rows.append(run_dim(n, d, args.seed, repeats, have_ennemi))
        print(f"# d={d} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    meta = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "versions": versions(), "command": shlex.join(["python", "benchmarks/mi.py", *sys.argv[1:]]),
            "seed": args.seed, "n": n, "repeats": repeats, "quick": args.quick, "rho": RHO, "k": K,
            "have_ennemi": have_ennemi, "load_before": load_before,
            "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    md = to_markdown(meta, rows)
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = args.stem or ("mi-quick" if args.quick else "mi")
    (RESULTS / f"{stem}.md").write_text(md)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
