"""Accuracy suite for the mutual-information estimators: distributions with known MI.

    nice -n 10 python benchmarks/mi_suite.py              # n = 5,000, all distributions -> results/mi-suite.*
    python benchmarks/mi_suite.py --quick                 # n = 1,000, a few distributions -> mi-suite-quick.*

In the spirit of Czyż et al., "Beyond Normal: On the Evaluation of Mutual Information Estimators"
(NeurIPS 2023): Gaussians of several dimensions and correlation structures, sparse interactions,
multivariate Student-t, monotone maps (asinh, half-cube ``x |x|^(1/2)``, the normal CDF) of those,
and Gaussian mixtures. Ground truth:

- Gaussian: ``0.5 (log det S_xx + log det S_yy - log det S)`` (closed form).
- Student-t with ``nu`` degrees of freedom and dispersion ``S``: the Gaussian term plus the closed-form
  term of the shared scale (Arellano-Valle, Contreras-Reyes & Genton 2013), checked here against a
  Monte-Carlo average of the exact log-density ratio (``--check-truth``).
- Monotone maps applied per column are invertible, so they leave the truth unchanged.
- Mixtures: Monte-Carlo average of ``log p(x, y) - log p(x) - log p(y)`` over 400,000 draws with the
  exact mixture densities (the standard error is in the JSON).

Regimes, and the estimator the README recommends for each (fixed before this suite was run):

- ``low-dim`` (at most 5 dimensions a side), any shape: KSG1 (``mutual_information`` default).
- ``high-dim gaussian``: ``method='gaussian'`` (the CCA closed form) on the raw data.
- ``high-dim non-gaussian`` (monotone maps / heavy tails, dependence in a few directions):
  ``compressed_mutual_information`` (CCA to 4 dimensions a side, then KSG1).

Every estimator runs at its defaults on the same draw (seed ``--seed``); neural estimators report
the held-out bound. Targets (issue 17): each neural estimator without NaN and with a held-out
estimate >= 0 wherever the truth is >= 0.1; the recommended estimator within a factor 1.5 of the
truth on >= 80% of the distributions (the control with truth 0 is excluded from both counts).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import importlib.util
import json
import math
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import special, stats

if __package__ in (None, "") and importlib.util.find_spec("bottlenecks") is None:  # not installed: use src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from bottlenecks import info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RECOMMENDED = {"low-dim": "ksg1", "high-dim gaussian": "gaussian", "high-dim non-gaussian": "cca4+ksg1"}
NEURAL = ("infonce", "nwj", "mine")


# ---------------------------------------------------------------------------------------------
# covariance structures
# ---------------------------------------------------------------------------------------------

def pairs_cov(dx: int, dy: int, rhos) -> np.ndarray:
    """Unit variances; ``x_i`` and ``y_i`` correlated with ``rhos[i]`` (the rest independent)."""
    s = np.eye(dx + dy)
    for i, r in enumerate(rhos):
        s[i, dx + i] = s[dx + i, i] = r
    return s


def dense_cov(dx: int, dy: int, c: float) -> np.ndarray:
    """Every pair of the ``dx + dy`` variables correlated with ``c`` (one shared factor)."""
    d = dx + dy
    return c * np.ones((d, d)) + (1 - c) * np.eye(d)


def lowrank_cov(dx: int, dy: int, seed: int = 7) -> np.ndarray:
    """One latent ``z`` shared by both sides: ``x = a z + e``, ``y = b z + e'`` with unit variances."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.4, 0.8, dx + dy)
    s = np.outer(load, load)
    np.fill_diagonal(s, 1.0)
    return s


def gaussian_truth(s: np.ndarray, dx: int) -> float:
    ld = np.linalg.slogdet
    return 0.5 * (ld(s[:dx, :dx])[1] + ld(s[dx:, dx:])[1] - ld(s)[1])


def t_truth(s: np.ndarray, dx: int, nu: float) -> float:
    """MI of a multivariate t (dispersion ``s``, ``nu`` degrees of freedom) split after ``dx`` columns."""
    dy = s.shape[0] - dx
    lg, dg = special.gammaln, special.digamma
    extra = (lg(nu / 2) + lg((nu + dx + dy) / 2) - lg((nu + dx) / 2) - lg((nu + dy) / 2)
             + (nu + dx) / 2 * dg((nu + dx) / 2) + (nu + dy) / 2 * dg((nu + dy) / 2)
             - nu / 2 * dg(nu / 2) - (nu + dx + dy) / 2 * dg((nu + dx + dy) / 2))
    return gaussian_truth(s, dx) + float(extra)


def t_truth_mc(s: np.ndarray, dx: int, nu: float, m: int = 200_000, seed: int = 12345) -> tuple[float, float]:
    z = sample_t(s, nu, m, np.random.default_rng(seed))
    joint = stats.multivariate_t(shape=s, df=nu).logpdf(z)
    px = stats.multivariate_t(shape=s[:dx, :dx], df=nu).logpdf(z[:, :dx])
    py = stats.multivariate_t(shape=s[dx:, dx:], df=nu).logpdf(z[:, dx:])
    v = joint - px - py
    return float(v.mean()), float(v.std() / math.sqrt(m))


def sample_gauss(s: np.ndarray, n: int, rng) -> np.ndarray:
    return rng.standard_normal((n, s.shape[0])) @ np.linalg.cholesky(s).T


def sample_t(s: np.ndarray, nu: float, n: int, rng) -> np.ndarray:
    z = sample_gauss(s, n, rng)
    return z * np.sqrt(nu / rng.chisquare(nu, n))[:, None]


# ---------------------------------------------------------------------------------------------
# mixtures (truth by Monte Carlo on the exact densities)
# ---------------------------------------------------------------------------------------------

@dataclass
class Mixture:
    weights: np.ndarray   # (c,)
    means: np.ndarray     # (c, d)
    covs: np.ndarray      # (c, d, d)

    def sample(self, n: int, rng) -> np.ndarray:
        comp = rng.choice(len(self.weights), size=n, p=self.weights)
        out = np.empty((n, self.means.shape[1]))
        for c in range(len(self.weights)):
            idx = np.nonzero(comp == c)[0]
            out[idx] = rng.multivariate_normal(self.means[c], self.covs[c], size=len(idx))
        return out

    def logpdf(self, z: np.ndarray, cols: slice) -> np.ndarray:
        parts = [math.log(w) + stats.multivariate_normal(m[cols], c[cols, cols]).logpdf(z[:, cols])
                 for w, m, c in zip(self.weights, self.means, self.covs, strict=True)]
        return special.logsumexp(np.stack(parts, 0), axis=0)

    def truth(self, dx: int, m: int = 400_000, seed: int = 12345) -> tuple[float, float]:
        z = self.sample(m, np.random.default_rng(seed))
        d = self.means.shape[1]
        v = self.logpdf(z, slice(0, d)) - self.logpdf(z, slice(0, dx)) - self.logpdf(z, slice(dx, d))
        return float(v.mean()), float(v.std() / math.sqrt(m))


def x_mixture() -> Mixture:
    """Two equally likely 2-D Gaussians with correlations +0.9 and -0.9: an X, linear correlation 0."""
    covs = np.stack([[[1, r], [r, 1]] for r in (0.9, -0.9)]).astype(float)
    return Mixture(np.array([0.5, 0.5]), np.zeros((2, 2)), covs)


def cluster_mixture(dx: int, dy: int, c: int, sigma: float, seed: int) -> Mixture:
    """``c`` equally likely clusters; the cluster sets both sides' means (x and y share the label)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((c, dx + dy)) * 1.5
    covs = np.stack([np.eye(dx + dy) * sigma**2] * c)
    return Mixture(np.full(c, 1.0 / c), means, covs)


# ---------------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------------

def halfcube(v: np.ndarray) -> np.ndarray:
    return v * np.sqrt(np.abs(v))


@dataclass
class Distribution:
    name: str
    regime: str
    family: str
    dx: int
    dy: int
    draw: object          # (n, rng) -> (n, dx + dy)
    truth_fn: object      # () -> (truth, standard error or 0.0, how)
    check: object = None  # () -> (Monte-Carlo truth, standard error), for closed forms worth checking

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        z = self.draw(n, np.random.default_rng(seed))
        return z[:, :self.dx], z[:, self.dx:]


def gauss(name, regime, s, dx, transform=None, family="gaussian"):
    tr = transform or (lambda v: v)
    return Distribution(name, regime, family, dx, s.shape[0] - dx, lambda n, rng: tr(sample_gauss(s, n, rng)),
                        lambda: (gaussian_truth(s, dx), 0.0, "closed form"))


def student(name, regime, s, dx, nu, transform=None, family="student-t"):
    tr = transform or (lambda v: v)
    return Distribution(name, regime, family, dx, s.shape[0] - dx, lambda n, rng: tr(sample_t(s, nu, n, rng)),
                        lambda: (t_truth(s, dx, nu), 0.0, "closed form"), lambda: t_truth_mc(s, dx, nu))


def mixture(name, regime, mix: Mixture, dx):
    return Distribution(name, regime, "mixture", dx, mix.means.shape[1] - dx, mix.sample,
                        lambda: (*mix.truth(dx), "Monte Carlo, 400k draws"))


def suite() -> list[Distribution]:
    lo, hg, hn = "low-dim", "high-dim gaussian", "high-dim non-gaussian"
    ncdf = stats.norm.cdf
    return [
        gauss("gauss 1x1 rho=0.5", lo, pairs_cov(1, 1, [0.5]), 1),
        gauss("gauss 1x1 rho=0.9", lo, pairs_cov(1, 1, [0.9]), 1),
        gauss("gauss 2x2 dense c=0.5", lo, dense_cov(2, 2, 0.5), 2),
        gauss("gauss 3x3 sparse (2 pairs, 0.8)", lo, pairs_cov(3, 3, [0.8, 0.8]), 3),
        gauss("gauss 5x5 pairs rho=0.6", lo, pairs_cov(5, 5, [0.6] * 5), 5),
        gauss("gauss 5x5 low-rank", lo, lowrank_cov(5, 5), 5),
        student("t(nu=2) 1x1 rho=0.5", lo, pairs_cov(1, 1, [0.5]), 1, 2),
        student("t(nu=3) 1x1 rho=0 (shared scale)", lo, pairs_cov(1, 1, [0.0]), 1, 3),
        student("t(nu=5) 2x2 pairs rho=0.6", lo, pairs_cov(2, 2, [0.6, 0.6]), 2, 5),
        student("t(nu=3) 5x5 pairs rho=0.6", lo, pairs_cov(5, 5, [0.6] * 5), 5, 3),
        student("asinh t(nu=1) 1x1 rho=0.5", lo, pairs_cov(1, 1, [0.5]), 1, 1, np.arcsinh, "transformed"),
        student("asinh t(nu=2) 2x2 pairs rho=0.6", lo, pairs_cov(2, 2, [0.6, 0.6]), 2, 2, np.arcsinh, "transformed"),
        gauss("half-cube gauss 3x3 sparse (2 pairs, 0.8)", lo, pairs_cov(3, 3, [0.8, 0.8]), 3, halfcube,
              "transformed"),
        gauss("normal-cdf gauss 5x5 pairs rho=0.6", lo, pairs_cov(5, 5, [0.6] * 5), 5, ncdf, "transformed"),
        mixture("mixture X (rho +-0.9) 1x1", lo, x_mixture(), 1),
        mixture("mixture 4 clusters 2x2", lo, cluster_mixture(2, 2, 4, 0.7, seed=3), 2),
        mixture("mixture 3 clusters 5x5", lo, cluster_mixture(5, 5, 3, 1.0, seed=4), 5),
        gauss("gauss 10x10 pairs rho=0.5", hg, pairs_cov(10, 10, [0.5] * 10), 10),
        gauss("gauss 25x25 dense c=0.5", hg, dense_cov(25, 25, 0.5), 25),
        gauss("gauss 25x25 sparse (2 pairs, 0.8)", hg, pairs_cov(25, 25, [0.8, 0.8]), 25),
        gauss("gauss 50x50 sparse (2 pairs, 0.8)", hg, pairs_cov(50, 50, [0.8, 0.8]), 50),
        gauss("gauss 50x50 pairs rho=0.3", hg, pairs_cov(50, 50, [0.3] * 50), 50),
        gauss("half-cube gauss 25x25 sparse (2 pairs, 0.8)", hn, pairs_cov(25, 25, [0.8, 0.8]), 25, halfcube,
              "transformed"),
        gauss("half-cube gauss 50x50 sparse (2 pairs, 0.8)", hn, pairs_cov(50, 50, [0.8, 0.8]), 50, halfcube,
              "transformed"),
        gauss("asinh-of-cube gauss 25x25 sparse (3 pairs, 0.7)", hn, pairs_cov(25, 25, [0.7] * 3), 25,
              lambda v: np.arcsinh(v**3), "transformed"),
        gauss("control: independent 5x5", "control", np.eye(10), 5),
    ]


ESTIMATORS = {
    "ksg1": lambda x, y, seed: info.mutual_information(x, y),
    "gaussian": lambda x, y, seed: info.mutual_information(x, y, method="gaussian"),
    "cca4+ksg1": lambda x, y, seed: info.compressed_mutual_information(x, y),
    "pca4+ksg1": lambda x, y, seed: info.compressed_mutual_information(x, y, compressor="pca"),
    **{m: functools.partial(lambda x, y, seed, method: info.neural_mutual_information(x, y, method=method, seed=seed),
                            method=m) for m in NEURAL},
}


def run_one(name: str, x, y, seed: int) -> dict:
    t0 = time.perf_counter()
    try:
        out = ESTIMATORS[name](x, y, seed)
    except Exception as err:  # recorded, not hidden: a raised error is a failed estimate
        return {"estimate": None, "error": f"{type(err).__name__}: {err}"[:300], "seconds": time.perf_counter() - t0,
                "trace": traceback.format_exc(limit=2)[-300:]}
    row = {"seconds": time.perf_counter() - t0}
    if name in NEURAL:
        row.update(estimate=out.estimate, train_estimate=out.train_estimate, epochs_run=out.epochs_run,
                   best_epoch=out.best_epoch, restarts=out.restarts, lr=out.lr)
    else:
        row["estimate"] = float(out)
    return row


def within(est, truth, factor=1.5) -> bool:
    return est is not None and math.isfinite(est) and truth / factor <= est <= truth * factor


def summarise(rows: list[dict]) -> dict:
    scored = [r for r in rows if r["regime"] != "control"]
    out = {"n_distributions": len(scored)}
    rec_hits = [within(r["results"].get(RECOMMENDED[r["regime"]], {}).get("estimate"), r["truth"]) for r in scored]
    out["recommended_within_1.5"] = [int(sum(rec_hits)), len(scored)]
    for name in ESTIMATORS:
        hits = [within(r["results"].get(name, {}).get("estimate"), r["truth"]) for r in scored
                if name in r["results"]]
        out[f"{name}_within_1.5"] = [int(sum(hits)), len(hits)]
    for m in NEURAL:
        vals = [r["results"][m] for r in rows if m in r["results"]]
        nan = sum(1 for v in vals if v.get("estimate") is None or not math.isfinite(v["estimate"]))
        pos = [r for r in scored if m in r["results"] and r["truth"] >= 0.1]
        ok = sum(1 for r in pos if (e := r["results"][m].get("estimate")) is not None and math.isfinite(e) and e >= 0)
        out[f"{m}_no_nan"] = [len(vals) - nan, len(vals)]
        out[f"{m}_nonnegative_where_truth_ge_0.1"] = [ok, len(pos)]
    return out


def fmt(v, truth=None) -> str:
    if v is None:
        return "error"
    s = f"{v:.3f}"
    if truth and truth > 0:
        s += f" ({v / truth:.2f})"
    return s


def write(rows, meta, path: Path) -> None:
    summary = summarise(rows)
    path.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    names = list(ESTIMATORS)
    lines = [f"# Mutual-information estimators on distributions with known MI ({meta['n']:,} samples)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k not in ("n",)]
    lines += ["", "Each cell: estimate in nats (estimate / truth). **Bold**: the estimator the README recommends for "
              "the row's regime; ✓ when it is within a factor 1.5 of the truth. Neural estimators: held-out bound at "
              "their defaults (early stopping on a validation split).", "",
              "| distribution | regime | truth | " + " | ".join(names) + " | recommended within 1.5 |",
              "|---|---|---|" + "---|" * len(names) + "---|"]
    for r in rows:
        cells = []
        rec = RECOMMENDED.get(r["regime"])
        for name in names:
            res = r["results"].get(name)
            c = "-" if res is None else fmt(res.get("estimate"), r["truth"])
            cells.append(f"**{c}**" if name == rec else c)
        ok = "" if rec is None else ("✓" if within(r["results"].get(rec, {}).get("estimate"), r["truth"]) else "✗")
        truth = f"{r['truth']:.3f}" + (f" ± {r['truth_se']:.3f}" if r["truth_se"] else "")
        lines.append(f"| {r['name']} | {r['regime']} | {truth} | " + " | ".join(cells) + f" | {ok} |")
    s = summary
    hit, of = s["recommended_within_1.5"]
    lines += ["", "## Targets", "",
              f"- recommended estimator within a factor 1.5 of the truth: {hit} of {of} "
              f"({100 * hit / max(1, of):.0f}%; target >= 80%)"]
    for m in NEURAL:
        a, b = s[f"{m}_no_nan"], s[f"{m}_nonnegative_where_truth_ge_0.1"]
        lines.append(f"- {m}: finite estimate on {a[0]} of {a[1]}; held-out estimate >= 0 on {b[0]} of {b[1]} "
                     "distributions with truth >= 0.1 (target: all)")
    lines += ["", "Within a factor 1.5, per estimator (all regimes): " + ", ".join(
        f"{name} {s[f'{name}_within_1.5'][0]}/{s[f'{name}_within_1.5'][1]}" for name in names), "",
        "Seconds per estimate (this run; machine shared with other jobs, so only a rough guide): " + ", ".join(
            f"{name} median {np.median([r['results'][name]['seconds'] for r in rows if name in r['results']]):.1f}"
            for name in names if any(name in r["results"] for r in rows))]
    errors = [(r["name"], name, res["error"]) for r in rows for name, res in r["results"].items() if "error" in res]
    if errors:
        lines += ["", "Errors raised (counted as failures):", ""] + [f"- {a} / {b}: {e}" for a, b, e in errors]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="n=1,000 on every fourth distribution")
    p.add_argument("--only", default="", help="run distributions whose name contains this text")
    p.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma list of " + ", ".join(ESTIMATORS))
    p.add_argument("--check-truth", action="store_true", help="also check the Student-t closed forms by Monte Carlo")
    p.add_argument("--out", default=None, help="output path stem (default results/mi-suite[-quick])")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = [e.strip() for e in args.estimators.split(",") if e.strip()]
    unknown = sorted(set(names) - set(ESTIMATORS))
    if unknown:
        p.error(f"--estimators: unknown {unknown}; expected names from {list(ESTIMATORS)}")
    dists = suite()
    n = 1000 if args.quick else args.n
    if args.quick:
        dists = dists[::4]
    if args.only:
        dists = [d for d in dists if args.only in d.name]
    out = Path(args.out) if args.out else RESULTS / ("mi-suite-quick" if args.quick else "mi-suite")
    meta = {"n": n, "seed": args.seed, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python benchmarks/mi_suite.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
            "versions": f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}",
            "recommended": RECOMMENDED}
    rows = []
    for d in dists:
        truth, se, how = d.truth_fn()
        x, y = d.sample(n, args.seed)
        row = {"name": d.name, "regime": d.regime, "family": d.family, "dx": d.dx, "dy": d.dy, "truth": truth,
               "truth_se": se, "truth_method": how, "results": {}}
        if args.check_truth and d.check is not None:
            row["truth_mc"], row["truth_mc_se"] = d.check()
            print(f"{d.name:48s} truth {truth:.4f}, Monte Carlo {row['truth_mc']:.4f} +- {row['truth_mc_se']:.4f}")
        for name in names:
            row["results"][name] = run_one(name, x, y, args.seed)
            res = row["results"][name]
            print(f"{d.name:48s} {name:10s} truth {truth:7.3f}  est {fmt(res.get('estimate'), truth):>16s}  "
                  f"{res['seconds']:6.1f}s" + (f"  {res['error']}" if "error" in res else ""), flush=True)
        rows.append(row)
        write(rows, meta, out)  # partial results survive an interrupted run
    print(json.dumps(summarise(rows), indent=1))


if __name__ == "__main__":
    main()
