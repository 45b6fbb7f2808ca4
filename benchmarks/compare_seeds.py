"""Run ``bottlenecks compare`` one process per seed (all with the same, already chosen learning rates)
and merge them into one report: on a shared CPU, seeds in parallel finish sooner than in sequence.

    python benchmarks/compare_seeds.py run --dataset fashion-mnist --seed 1 --lr-json lrs.json --out DIR
    python benchmarks/compare_seeds.py merge DIR/seed-*.json --out benchmarks/results --name compare-fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bottlenecks.report.compare_report import write_report
from bottlenecks.studies.compare import CompareConfig, CompareResults, merge_results, run


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", default="fashion-mnist")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--tasks", type=int, default=5)
    r.add_argument("--split-seed", type=int, default=0, help="the data split's seed, the same for every process")
    r.add_argument("--lr-json", required=True, help="{head: {'best': lr, 'scores': {...}}} from the tuning")
    r.add_argument("--out", required=True)
    m = sub.add_parser("merge")
    m.add_argument("parts", nargs="+")
    m.add_argument("--out", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--command", default=None)
    m.add_argument("--note", action="append", default=[], help="a line for the report's list (repeatable)")
    m.add_argument("--caveat", action="append", default=[],
                   help="a line for the report's 'what the numbers do not show' (repeatable)")
    args = p.parse_args(argv)
    if args.cmd == "run":
        lrs = json.loads(Path(args.lr_json).read_text())
        cfg = CompareConfig(dataset=args.dataset, seed=args.seed, seeds=1, n_tasks=args.tasks, learning_rates=lrs,
                            split_seed=args.split_seed)
        res = run(cfg, progress=True)
        res.to_json(Path(args.out) / f"seed-{args.seed}.json")
        return 0
    merged = merge_results([CompareResults.from_json(Path(x)) for x in args.parts])
    print(write_report(merged, args.out, stem=args.name, command=args.command or " ".join(sys.argv),
                       notes=args.note, caveats=args.caveat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
