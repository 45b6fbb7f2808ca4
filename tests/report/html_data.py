"""Small, real inputs for the HTML pages, shared by tests/report and tests/browser: the committed
benchmark results (real runs) and code records computed by ``code_records`` on TokFSM sequences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def continual_results() -> dict:
    """The committed Fashion-MNIST run (8 methods, 3 seeds) plus a key-usage entry for 3 heads."""
    res = json.loads((RESULTS / "continual-fashion-mnist.json").read_text())
    g = torch.Generator().manual_seed(0)
    # 3 heads x 5 tasks x 64 keys: each task draws its inputs' keys from its own 8-key range
    usage = torch.zeros(3, 5, 64, dtype=torch.long)
    for t in range(5):
        keys = torch.randint(8 * t, 8 * t + 8, (3, 200), generator=g)
        for h in range(3):
            usage[h, t] = torch.bincount(keys[h], minlength=64)
    res["key_usage"] = {"method": "dkvb", "seed": 0, "heads": [0, 1, 2], "usage": usage.tolist()}
    return res


def info_results() -> dict:
    return json.loads((RESULTS / "info-plane.json").read_text())


def concepts_results(n_samples: int = 6) -> dict:
    """Seed 0 of the committed concept demo, with explanations computed from its weights on
    generated concept-shape images (scores: the true concepts, +-1)."""
    from bottlenecks.data.concept_shapes import make_concept_shapes
    from bottlenecks.report.html_concepts import explanation_record

    res = json.loads((RESULTS / "concepts-demo.json").read_text())["seeds"]["0"]
    W = np.asarray(res["weights"])
    data = make_concept_shapes(n_samples, "test", seed=0, image_size=8)
    res["explanations"] = []
    for i in range(n_samples):
        scores = 2.0 * data.concepts[i] - 1.0
        logits = W @ scores
        k = int(logits.argmax())
        concepts = [{"concept": c, "score": float(s), "contribution": float(W[k, j] * s)}
                    for j, (c, s) in enumerate(zip(res["concept_names"], scores, strict=True))]
        e = {"class": k, "class_name": res["class_names"][k], "proba": float(np.exp(logits[k]) / np.exp(logits).sum()),
             "bias": 0.0, "residual": 0.0, "concepts": concepts}
        res["explanations"].append(explanation_record(e, data.images[i], data.class_names[data.labels[i]],
                                                      data.concepts[i], i))
    return res


def codebook_results() -> tuple[dict, dict]:
    """The committed TokFSM metrics and code records of two 2-head codebooks on 16 TokFSM
    sequences (ids: the state's first digit + noise, so codes are precise for some states)."""
    from bottlenecks.codebook.analysis import code_records
    from bottlenecks.codebook.tokfsm import TokFSM

    metrics = json.loads((RESULTS / "codebook-tokfsm.json").read_text())
    fsm = TokFSM(seed=0)
    g = torch.Generator().manual_seed(0)
    tokens, states = fsm.sample(16, length=16, max_tokens=32, generator=g)
    n, T = tokens.shape
    pos = TokFSM.state_positions(T)
    labels = torch.full((n, T), -1, dtype=torch.long)
    labels[:, pos] = states[:, : len(pos)]
    ids = {}
    for site in ("layers.0.attn_heads", "layers.1.attn_heads"):
        noise = torch.randint(0, 4, (n, T, 2, 1), generator=g)
        ids[site] = (tokens[:, :, None, None] * 4 + noise) % 40
    text = [[("⏎" if t == 10 else str(t)) for t in row] for row in tokens.tolist()]
    codes = {"label_name": "state", "tokens_name": "tokens", "description": "test records",
             "codes": code_records(ids, 40, text, labels=labels, per_codebook=6, per_code=3, min_count=2,
                                   generator=torch.Generator().manual_seed(1))}
    return metrics, codes
