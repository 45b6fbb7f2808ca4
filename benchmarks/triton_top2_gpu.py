"""Time the Triton top-2 kernel against the plain torch path on a CUDA GPU.

    python benchmarks/triton_top2_gpu.py [--repeat 5] [--warmup 2] [--out FILE.md]

For each (n, d, K) and dtype it runs

* ``triton``: ``top2_triton(x, codes, codes_sqnorm)`` (no n x K matrix), and
* ``torch``: ``torch.addmm(codes_sqnorm, x, codes.T, alpha=-2)`` then ``topk(2)`` (builds the
  n x K score matrix; in the input dtype, so bf16 scores for bf16 inputs),

and prints a markdown table: min / median ms over ``--repeat`` runs after ``--warmup`` runs
(CUDA events), peak memory above the inputs (``torch.cuda.max_memory_allocated``), the fraction of
rows where both pick the same code, and the largest gap between their smallest scores. TF32 is
left off for the torch fp32 GEMM, so both fp32 paths use IEEE products. Exits with a message and
status 0 when CUDA or triton is missing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

SHAPES = [(1_000_000, 128, 1024), (100_000, 64, 8192)]  # (n, d, K)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def torch_top2(x, codes, codes_sqnorm):
    scores = torch.addmm(codes_sqnorm.to(x.dtype), x, codes.T, alpha=-2)
    v, i = scores.topk(2, dim=1, largest=False, sorted=True)
    return v[:, 0].float(), i[:, 0], v[:, 1].float()


def timed(fn, warmup, repeat):
    """(min ms, median ms) of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):  # the first triton call also compiles the kernel
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return min(times), statistics.median(times)


def peak_extra(fn):
    """(outputs, bytes allocated at peak above what was allocated before the call)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    return out, torch.cuda.max_memory_allocated() - base


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = ap.parse_args(argv)

    if not torch.cuda.is_available():
        print("triton_top2_gpu: CUDA is not available; nothing to time (run on a GPU machine).")
        return 0
    try:
        from bottlenecks.cluster.triton_top2 import HAS_TRITON, top2_triton
    except ImportError:  # not installed: use the source tree next to this script
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from bottlenecks.cluster.triton_top2 import HAS_TRITON, top2_triton
    if not HAS_TRITON:
        print("triton_top2_gpu: triton is not installed; nothing to time.")
        return 0

    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    lines = [
        f"GPU: {torch.cuda.get_device_name(dev)}; torch {torch.__version__}; "
        f"{args.repeat} timed runs after {args.warmup} warmup",
        "",
        "| n | d | K | dtype | method | min ms | median ms | peak extra MiB | same i1 "
        "| max abs ds1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for n, d, K in SHAPES:
        for name, dtype in DTYPES.items():
            g = torch.Generator(device=dev).manual_seed(0)
            x = torch.randn(n, d, device=dev, generator=g).to(dtype)
            codes = torch.randn(K, d, device=dev, generator=g).to(dtype)
            codes_sqnorm = codes.float().pow(2).sum(1)
            methods = {
                "triton": lambda x=x, c=codes, s=codes_sqnorm: top2_triton(x, c, s),
                "torch": lambda x=x, c=codes, s=codes_sqnorm: torch_top2(x, c, s),
            }
            results = {}
            for method, fn in methods.items():
                try:
                    t_min, t_med = timed(fn, args.warmup, args.repeat)
                    out, peak = peak_extra(fn)
                    results[method] = (t_min, t_med, peak, out)
                except torch.cuda.OutOfMemoryError:
                    results[method] = None
                torch.cuda.empty_cache()
            ref = results["torch"][3] if results["torch"] else None
            for method, res in results.items():
                if res is None:
                    row = [n, d, K, name, method, "OOM", "", "", "", ""]
                else:
                    t_min, t_med, peak, (s1, i1, _) = res
                    same = ds1 = ""
                    if ref is not None:
                        same = f"{(i1 == ref[1]).float().mean().item():.5f}"
                        ds1 = f"{(s1 - ref[0]).abs().max().item():.3g}"
                    row = [n, d, K, name, method, f"{t_min:.2f}", f"{t_med:.2f}",
                           f"{peak / 2**20:.1f}", same, ds1]
                line = "| " + " | ".join(str(v) for v in row) + " |"
                lines.append(line)
                print(line, flush=True)
            del x, codes, codes_sqnorm, results, ref, methods
            torch.cuda.empty_cache()
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
