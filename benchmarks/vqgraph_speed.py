"""CPU inference time of VQGraph's MLP student against its GNN teachers, written to
benchmarks/results/vqgraph-speed.md (+ .json).

    flock /work/bench.lock .venv/bin/python benchmarks/vqgraph_speed.py [--repeats 10] [--threads 1]

Inference cost depends on the architecture, not on the trained weights, so the models are built
with the study's sizes (hidden 128, 1024 codes; the tokenizer's codes initialised by k-means on its
untrained embeddings). Whole graph: SAGE and the tokenizer read features + the sparse adjacency,
the student reads the same dense features (and, in one more row, the sparse bag of words). One
node: the teachers gather the node's 2-hop neighbourhood first (GLNN's latency setting), the
student reads one feature row. Target (issue 16): student >= 10x faster than the teacher on the
whole graph.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from bottlenecks.data.graphs import load_graph
from bottlenecks.graph import GNN, GraphTokenizer, MLPStudent
from bottlenecks.studies.vqgraph import _Graph, _time, time_inference


def measure(name: str, repeats: int) -> dict:
    g = load_graph(name)
    graph = _Graph(g)
    torch.manual_seed(0)
    models = {"SAGE": GNN(g.num_features, 128, g.num_classes),
              "tokenizer": GraphTokenizer(g.num_features, 128, g.num_classes, 1024, seed=0),
              "MLP student": MLPStudent(g.num_features, 128, g.num_classes, code_dim=128)}
    models["tokenizer"].train()
    with torch.no_grad():
        models["tokenizer"](graph.x, graph.edge_index, graph.adj)  # k-means init of the codes
    out = time_inference(models, graph, repeats)
    with torch.inference_mode():
        st = models["MLP student"].eval()
        t = _time(lambda: st(graph.xs), repeats)
    t["per_node_us"] = 1e3 * t["min_ms"] / g.num_nodes
    out["MLP student (sparse features)"] = t
    return {"nodes": g.num_nodes, "features": g.num_features, "timing": out}


def table(res: dict) -> str:
    lines = ["| data set | model | whole graph min ms | median ms | per node µs | SAGE time / this (min) "
             "| one node (2-hop) median ms | SAGE time / this |", "|---|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        t = r["timing"]
        sage = t["SAGE"]
        for m, v in t.items():
            ratio = sage["min_ms"] / v["min_ms"]
            one = v.get("single_node_ms")
            one_s, r1 = (f"{one:.3f}", f"{sage['single_node_ms'] / one:.1f}x") if one is not None else ("–", "–")
            lines.append(f"| {name} | {m} | {v['min_ms']:.2f} | {v['median_ms']:.2f} | {v['per_node_us']:.2f} | "
                         f"{ratio:.1f}x | {one_s} | {r1} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {name: measure(name, args.repeats) for name in ("cora", "citeseer")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ratios = {n: r["timing"]["SAGE"]["min_ms"] / r["timing"]["MLP student"]["min_ms"] for n, r in res.items()}
    sparse = {n: r["timing"]["SAGE"]["min_ms"] / r["timing"]["MLP student (sparse features)"]["min_ms"]
              for n, r in res.items()}
    single = {n: r["timing"]["SAGE"]["single_node_ms"] / r["timing"]["MLP student"]["single_node_ms"]
              for n, r in res.items()}
    text = "\n".join([
        "# VQGraph inference speed: MLP student vs GNN teachers (CPU)", "",
        f"`benchmarks/vqgraph_speed.py`, {args.threads} thread(s), {args.repeats} repeats after a warm-up "
        f"(min and median), torch {torch.__version__}, {platform.processor() or platform.machine()}; the "
        "machine's 2 cores were shared with other engineers' niced jobs (run under `flock /work/bench.lock`). "
        "Teacher / student ratios come from the same run.", "",
        table(res), "",
        "Target: student >= 10x faster than the SAGE teacher on the whole graph. Same dense features as "
        "the teacher: " + ", ".join(f"{n} {v:.1f}x ({'met' if v >= 10 else 'not met'})" for n, v in ratios.items())
        + ". Student on the sparse bag of words (the teacher's PyG layers take dense features only): "
        + ", ".join(f"{n} {v:.1f}x" for n, v in sparse.items())
        + ". One node with its 2-hop neighbourhood: " + ", ".join(f"{n} {v:.1f}x" for n, v in single.items())
        + ". On the whole graph the student's first layer is as large as one of the two linear maps of SAGE's "
        "first layer, so with dense features the student can be only a few times faster; the paper's large "
        "speed-ups count the teacher's neighbourhood fetching (the one-node rows).", ""])
    (out / "vqgraph-speed.md").write_text(text)
    (out / "vqgraph-speed.json").write_text(json.dumps({"threads": args.threads, "repeats": args.repeats,
                                                        "results": res}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
