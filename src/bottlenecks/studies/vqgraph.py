"""The VQGraph reproduction (Yang et al., ICLR 2024): GNN teacher, graph tokenizer and MLP students
(plain, GLNN, VQGraph) on the same splits and seeds, transductive and inductive.

Per seed and setting:
  1. split: per class 20 train / 30 validation / rest test (seeded); inductive: ``inductive_rate``
     of the test nodes leave the graph seen in training (GLNN's protocol);
  2. SAGE teacher (full batch), dropout picked among ``teacher_dropouts`` on validation;
  3. plain MLP (labels only), student dropout picked on validation;
  4. GLNN: MLP distilled from the SAGE teacher's soft labels (+ labels), ``glnn_label_weights`` on validation;
  5. graph tokenizer (SAGE + codebook) trained with CE + feature/structure reconstruction + commitment;
  6. VQGraph: MLP distilled from the tokenizer's soft labels (+ labels, the same ``glnn_label_weights``)
     and soft code assignments, ``(tau, w_code)`` picked among ``vq_grid`` on validation.
Every choice reads the validation split only; test accuracy is read once, at the chosen model's best
validation epoch. The teachers (SAGE, tokenizer) keep the epoch of the lowest validation loss
(``teacher_select``), the students that of the highest validation accuracy (latest on ties). The
students take one full-batch step per epoch, or the reference code's alternating mini-batch passes
(``student_passes``).
Inference time of the students and teachers on the whole graph (CPU) is measured on the first seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..progress import phase
from .base import StudyConfig, StudyResults

__all__ = ["SETTINGS", "VQGraphConfig", "VQGraphResults", "run"]

SETTINGS = ("transductive", "inductive")
METHODS = ("SAGE", "MLP", "GLNN", "tokenizer", "VQGraph")


@dataclass
class VQGraphConfig(StudyConfig):
    dataset: str = "cora"  # cora, citeseer or a path to an .npz graph
    seeds: int = 10
    seed: int = 0  # first seed; seeds seed .. seed + seeds - 1 (split, initialisation, dropout)
    settings: tuple = SETTINGS
    inductive_rate: float = 0.2
    n_train: int = 20
    n_val: int = 30
    conv: str = "sage"
    hidden: int = 128
    teacher_dropouts: tuple = (0.0, 0.5)
    teacher_lr: float = 0.01
    teacher_weight_decay: float = 5e-4
    teacher_select: str = "loss"  # the teachers' epoch: lowest validation loss ('loss') or best accuracy ('acc')
    num_codes: int = 1024
    tokenizer_dropout: float = 0.0
    lamb_feature: float = 1.0
    lamb_structure: float = 1.0
    commitment: float = 0.25
    student_dropouts: tuple | None = None  # None: the reference code's MLP setting for cora/citeseer (else 0.6)
    student_lr: float = 0.01
    # 'joint': one full-batch Adam step per epoch on the weighted sum of the terms; 'alternating': the
    # reference code's three passes of 512-node mini-batches, one term and one step each (fit_mlp's passes)
    student_passes: str = "joint"
    student_weight_decay: float | None = None  # None: as the reference code (cora 5e-3, citeseer 1e-3, else 5e-3)
    glnn_label_weights: tuple = (0.0, 1.0)  # weight of the label CE next to the soft-label KL (weight 1)
    vq_grid: tuple = ((0.1, 0.01), (0.1, 0.1), (0.3, 0.1), (0.3, 1.0))  # (tau, w_code)
    epochs: int = 300
    patience: int = 50
    timing_repeats: int = 7
    view_points: int = 1500  # nodes in the 2-D view of the embeddings (0: none)

    def validate(self) -> None:
        from ..validation import check_choice, check_positive_int

        for name in ("seeds", "n_train", "hidden", "num_codes", "epochs", "patience", "timing_repeats"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.n_val, "n_val", 0)
        check_choice(self.conv, "conv", ("sage", "gcn"))
        check_choice(self.teacher_select, "teacher_select", ("acc", "loss"))
        check_choice(self.student_passes, "student_passes", ("joint", "alternating"))
        if not self.settings or any(s not in SETTINGS for s in self.settings):
            raise ValueError(f"settings: expected a non-empty subset of {SETTINGS}, got {self.settings}")
        if not 0 < self.inductive_rate < 1:
            raise ValueError(f"inductive_rate: expected a share in (0, 1), got {self.inductive_rate}")
        for name in ("teacher_dropouts", "student_dropouts"):
            vals = getattr(self, name)
            if vals is None and name == "student_dropouts":
                continue
            if not vals or any(not 0 <= v < 1 for v in vals):
                raise ValueError(f"{name}: expected one or more dropout rates in [0, 1), got {vals}")
        if not self.glnn_label_weights or any(w < 0 for w in self.glnn_label_weights):
            raise ValueError(f"glnn_label_weights: expected non-negative weights, got {self.glnn_label_weights}")
        if not self.vq_grid or any(len(p) != 2 or p[0] <= 0 or p[1] < 0 for p in self.vq_grid):
            raise ValueError(f"vq_grid: expected (tau > 0, w_code >= 0) pairs, got {self.vq_grid}")
        if not 0 <= self.tokenizer_dropout < 1:
            raise ValueError(f"tokenizer_dropout: expected a rate in [0, 1), got {self.tokenizer_dropout}")
        if min(self.lamb_feature, self.lamb_structure, self.commitment, self.teacher_weight_decay,
               self.student_weight_decay or 0.0) < 0 or self.teacher_lr <= 0 or self.student_lr <= 0:
            raise ValueError("loss weights and weight decays must be >= 0, learning rates > 0")
        if self.view_points < 0:
            raise ValueError(f"view_points: expected >= 0, got {self.view_points}")


@dataclass
class VQGraphResults(StudyResults):
    config: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)  # name, nodes, features, edges, classes
    # setting -> method -> {"test": [...], "val": [...], ("ind": [...], "prod": [...]), "chosen": [...]}
    runs: dict = field(default_factory=dict)
    codebook: list = field(default_factory=list)  # per transductive seed: perplexity, used, replaced
    usage: list = field(default_factory=list)  # first seed: share of nodes per code, sorted descending
    view: dict = field(default_factory=dict)  # first seed: 2-D PCA of tokenizer embeddings, classes, codes
    timing: dict = field(default_factory=dict)  # model -> {min_ms, median_ms, per_node_us}
    seconds: float = 0.0

    def summary(self, setting: str, method: str, key: str = "test") -> tuple[float, float]:
        """(mean, std) in % over seeds."""
        vals = np.asarray(self.runs[setting][method][key], dtype=float) * 100
        return float(vals.mean()), float(vals.std()) if len(vals) > 1 else 0.0


#: the reference code's MLP student settings (train.conf.yaml): dropout, weight decay
STUDENT_DEFAULTS = {"cora": ((0.6,), 5e-3), "citeseer": ((0.1,), 1e-3)}


def student_settings(cfg: VQGraphConfig, name: str) -> tuple[tuple, float]:
    """(dropouts, weight decay) of the MLP students: the config's, else the reference code's per data set."""
    drops, wd = STUDENT_DEFAULTS.get(name, ((0.6,), 5e-3))
    return (tuple(cfg.student_dropouts) if cfg.student_dropouts is not None else drops,
            cfg.student_weight_decay if cfg.student_weight_decay is not None else wd)


def _progress(progress, msg: str) -> None:
    phase(msg, progress)  # bottlenecks.progress: one flushed line on stderr when progress shows anything


class _Graph:
    """Tensors of one (sub)graph: dense and sparse features, edges, sparse adjacency."""

    def __init__(self, g):
        from ..graph.models import sparse_adjacency

        self.x = torch.from_numpy(g.x)
        self.xs = self.x.to_sparse_csr()
        self.edge_index = torch.from_numpy(g.edge_index)
        self.adj = sparse_adjacency(self.edge_index, g.num_nodes)
        self.y = torch.from_numpy(g.labels)


def _best(candidates):
    """The candidate (record, model, choice) with the highest validation accuracy (first on ties),
    and every candidate's (choice, validation accuracy)."""
    best = max(candidates, key=lambda c: c[0]["best_val"])
    return (*best, [[c[2], c[0]["best_val"]] for c in candidates])


def _one_seed(cfg: VQGraphConfig, g, setting: str, seed: int, progress) -> dict:
    """All methods on one split -> {method: {...accuracies, chosen}} plus the tokenizer for analysis."""
    from ..data.graphs import inductive_split, split_per_class
    from ..graph import GNN, GraphTokenizer, MLPStudent, accuracy, fit_gnn, fit_mlp, fit_tokenizer, soft_assignments

    train, val, test = split_per_class(g.labels, cfg.n_train, cfg.n_val, seed=seed)
    full = _Graph(g)
    if setting == "inductive":
        test_tran, test_ind = inductive_split(test, cfg.inductive_rate, seed=seed)
        obs_nodes = np.concatenate([train, val, test_tran])
        obs = _Graph(g.subgraph(obs_nodes))
        n1, n2 = len(train), len(val)
        tr, va, te = (torch.arange(0, n1), torch.arange(n1, n1 + n2), torch.arange(n1 + n2, len(obs_nodes)))
        ind = torch.from_numpy(test_ind)
    else:
        obs = full
        tr, va, te = (torch.from_numpy(a) for a in (train, val, test))
        ind = None
    C, d = g.num_classes, g.num_features
    nodes = torch.arange(len(obs.y))
    kw = dict(epochs=cfg.epochs, patience=cfg.patience)
    out = {}

    def record(name, rec, test_acc, ind_acc=None, chosen=None, grid=None, **extra):
        r = {"val": rec["best_val"], "test": test_acc, "chosen": chosen, "grid": grid, "epoch": rec["best_epoch"],
             **extra}
        if ind is not None:
            r["ind"] = ind_acc
            r["prod"] = (1 - cfg.inductive_rate) * test_acc + cfg.inductive_rate * ind_acc
        out[name] = r

    def student_eval(model):
        with torch.no_grad():
            acc_tr = accuracy(model(obs.xs)[0], obs.y, te)
            acc_ind = accuracy(model(full.x[ind])[0], full.y[ind]) if ind is not None else None
        return acc_tr, acc_ind

    # 2. SAGE teacher
    cands = []
    for dr in cfg.teacher_dropouts:
        torch.manual_seed(seed)
        m = GNN(d, cfg.hidden, C, conv=cfg.conv, dropout=dr)
        cands.append((fit_gnn(m, obs.x, obs.adj, obs.y, tr, va, lr=cfg.teacher_lr,
                              weight_decay=cfg.teacher_weight_decay, select=cfg.teacher_select, **kw), m, dr))
    rec, sage, dr, grid = _best(cands)
    with torch.no_grad():
        t_logits = sage(obs.x, obs.adj)[0]
        t_ind = accuracy(sage(full.x, full.adj)[0][ind], full.y[ind]) if ind is not None else None
    t_probs = t_logits.softmax(-1)
    # confidence: mean top probability of the soft labels (near 1/C: near-uniform targets)
    record("SAGE", rec, accuracy(t_logits, obs.y, te), t_ind, {"dropout": dr}, grid,
           confidence=float(t_probs.max(-1).values.mean()))
    _progress(progress, f"  SAGE {out['SAGE']['test']:.4f} (dropout {dr})")

    student_dropouts, student_wd = student_settings(cfg, g.name)
    skw = dict(lr=cfg.student_lr, weight_decay=student_wd, passes=cfg.student_passes, **kw)
    sx = obs.x if cfg.student_passes == "alternating" else obs.xs  # mini-batches index dense rows
    # 3. plain MLP
    cands = []
    for sd in student_dropouts:
        torch.manual_seed(seed)
        m = MLPStudent(d, cfg.hidden, C, dropout=sd)
        cands.append((fit_mlp(m, sx, obs.y, tr, va, **skw), m, sd))
    rec, m, sd, grid = _best(cands)
    record("MLP", rec, *student_eval(m), {"dropout": sd}, grid)

    # 4. GLNN
    cands = []
    for sd in student_dropouts:
        for wl in cfg.glnn_label_weights:
            torch.manual_seed(seed)
            m = MLPStudent(d, cfg.hidden, C, dropout=sd)
            cands.append((fit_mlp(m, sx, obs.y, tr, va, nodes=nodes, teacher_probs=t_probs, w_label=wl,
                                  w_soft_label=1.0, **skw), m, {"dropout": sd, "w_label": wl}))
    rec, m, ch, grid = _best(cands)
    record("GLNN", rec, *student_eval(m), ch, grid)
    _progress(progress, f"  MLP {out['MLP']['test']:.4f}  GLNN {out['GLNN']['test']:.4f}")

    # 5. graph tokenizer
    torch.manual_seed(seed)
    tok = GraphTokenizer(d, cfg.hidden, C, min(cfg.num_codes, len(obs.y)), conv=cfg.conv,
                         dropout=cfg.tokenizer_dropout, lamb_feature=cfg.lamb_feature,
                         lamb_structure=cfg.lamb_structure, commitment=cfg.commitment, seed=seed)
    rec = fit_tokenizer(tok, obs.x, obs.edge_index, obs.y, tr, va, adj=obs.adj, lr=cfg.teacher_lr,
                        weight_decay=cfg.teacher_weight_decay, select=cfg.teacher_select, **kw)
    tok.quantizer.reset_usage()
    with torch.no_grad():
        t_out = tok(obs.x, obs.edge_index, obs.adj)
        tok_ind = (accuracy(tok(full.x, full.edge_index, full.adj).logits[ind], full.y[ind])
                   if ind is not None else None)
    k_probs = t_out.logits.softmax(-1)
    record("tokenizer", rec, accuracy(t_out.logits, obs.y, te), tok_ind, {"num_codes": tok.quantizer.num_codes},
           confidence=float(k_probs.max(-1).values.mean()))

    # 6. VQGraph student
    cands = []
    for sd in student_dropouts:
        for wl in cfg.glnn_label_weights:
            for tau, wc in cfg.vq_grid:
                r_t = soft_assignments(t_out.embedding, tok.codes, tau)
                torch.manual_seed(seed)
                m = MLPStudent(d, cfg.hidden, C, code_dim=cfg.hidden, dropout=sd)
                cands.append((fit_mlp(m, sx, obs.y, tr, va, nodes=nodes, teacher_probs=k_probs,
                                      teacher_assignments=r_t, codes=tok.codes, w_label=wl, w_soft_label=1.0,
                                      w_code=wc, tau=tau, **skw), m,
                              {"dropout": sd, "w_label": wl, "tau": tau, "w_code": wc}))
    rec, m, ch, grid = _best(cands)
    record("VQGraph", rec, *student_eval(m), ch, grid)
    _progress(progress, f"  tokenizer {out['tokenizer']['test']:.4f}  VQGraph {out['VQGraph']['test']:.4f} {ch}")
    q = tok.quantizer
    code_stats = {"perplexity": q.perplexity(), "used": int((q.counts > 0).sum()), "num_codes": q.num_codes,
                  "replaced": int(q.replaced)}
    models = {"SAGE": sage, "tokenizer": tok, "MLP student": m}
    return {"methods": out, "codebook": code_stats, "models": models, "tokens": t_out, "graph": obs}


def _time(fn, repeats: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"min_ms": 1e3 * min(times), "median_ms": 1e3 * float(np.median(times))}


def time_inference(models: dict, graph, repeats: int = 7, nodes: int = 50, seed: int = 0) -> dict:
    """CPU inference time (threads as set by the caller) -> model -> {min_ms, median_ms, per_node_us,
    single_node_ms}. Whole graph: teachers on features + graph (sparse adjacency), the MLP student
    on dense features alone; ``per_node_us`` = whole-graph min / nodes. Single node (GLNN's latency
    setting): for ``nodes`` random nodes one at a time, a teacher gathers the node's 2-hop
    neighbourhood (``k_hop_subgraph``) and runs on it, the student reads the node's features;
    median over the nodes."""
    from torch_geometric.utils import k_hop_subgraph

    n = len(graph.y)
    picks = np.random.default_rng(seed).permutation(n)[:nodes].tolist()
    out = {}
    with torch.inference_mode():
        for name, m in models.items():
            m.eval()
            if name == "SAGE":
                fn = lambda m=m: m(graph.x, graph.adj)  # noqa: E731
            elif name == "tokenizer":
                fn = lambda m=m: m(graph.x, graph.edge_index, graph.adj)  # noqa: E731
            else:
                fn = lambda m=m: m(graph.x)  # noqa: E731
            t = _time(fn, repeats)
            t["per_node_us"] = 1e3 * t["min_ms"] / n
            single = []
            for i in picks:
                t0 = time.perf_counter()
                if name in ("SAGE", "tokenizer"):
                    sub, ei, mapping, _ = k_hop_subgraph(i, 2, graph.edge_index, relabel_nodes=True, num_nodes=n)
                    res = m(graph.x[sub], ei)
                    (res[0] if name == "SAGE" else res.logits)[mapping]
                else:
                    m(graph.x[i:i + 1])
                single.append(time.perf_counter() - t0)
            t["single_node_ms"] = 1e3 * float(np.median(single))
            out[name] = t
    return out


def _view(tokens, labels, points: int, seed: int) -> dict:
    """2-D PCA of the tokenizer's unit node embeddings (a seeded subset of nodes), with classes and codes."""
    emb = tokens.embedding.detach().double()
    n = emb.shape[0]
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:min(points, n)])
    e = emb[idx] - emb[idx].mean(0)
    _, _, v = torch.linalg.svd(e, full_matrices=False)
    xy = (e @ v[:2].T).numpy()
    codes = tokens.ids[idx].numpy()
    return {"xy": np.round(xy, 4).tolist(), "label": labels[idx].tolist(), "code": codes.tolist()}


def run(config: VQGraphConfig, out=None, progress=True) -> VQGraphResults:
    """Run the study; write ``results.json`` (and the report) to ``out`` if given."""
    from ..data.graphs import load_graph

    t_start = time.perf_counter()
    g = load_graph(config.dataset)
    res = VQGraphResults(config=config.to_dict(),
                         dataset={"name": g.name, "nodes": g.num_nodes, "features": g.num_features,
                                  "edges": g.num_edges, "classes": g.num_classes})
    drops, wd = student_settings(config, g.name)
    res.dataset["student"] = {"dropouts": list(drops), "weight_decay": wd}
    _progress(progress, f"vqgraph: {g!r}, seeds {config.seed}..{config.seed + config.seeds - 1}, "
                        f"settings {', '.join(config.settings)}")
    for setting in config.settings:
        res.runs[setting] = {}
        for i in range(config.seeds):
            seed = config.seed + i
            _progress(progress, f"[{setting}] seed {seed}")
            one = _one_seed(config, g, setting, seed, progress)
            for name, r in one["methods"].items():
                slot = res.runs[setting].setdefault(name, {})
                for k, v in r.items():
                    slot.setdefault(k, []).append(v)
            if setting == "transductive":
                res.codebook.append(one["codebook"])
                if i == 0:
                    u = one["models"]["tokenizer"].quantizer.usage().numpy()
                    res.usage = np.round(np.sort(u)[::-1], 6).tolist()
                    if config.view_points:
                        res.view = _view(one["tokens"], one["graph"].y.numpy(), config.view_points, seed)
                    res.timing = time_inference(one["models"], one["graph"], config.timing_repeats, seed=seed)
            res.seconds = time.perf_counter() - t_start
            if out is not None:  # partial results as they finish
                res.to_json(Path(out) / "results.json")
    res.seconds = time.perf_counter() - t_start
    if out is not None:
        from ..report.graph_report import write_vqgraph_report

        write_vqgraph_report(res, out)
        from ..report.html_browse import build_html

        build_html(out)  # report.html: the run's numbers, figures and report in one page
    return res
