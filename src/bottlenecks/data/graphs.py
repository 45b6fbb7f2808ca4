"""Graphs for node classification: Cora and Citeseer (shipped, CPF ``.npz`` layout), any graph a
user has (a file, arrays, or a PyTorch Geometric ``Data``), and a generated contextual stochastic
block model (CSBM) for tests.

Preprocessing follows the CPF / GLNN / VQGraph protocol: symmetrise the adjacency, drop
self-loops, keep the largest connected component. Splits: per class ``n_train`` training and
``n_val`` validation nodes drawn with a seeded generator, the rest for testing
(:func:`split_per_class`); the inductive setting hides a seeded share of the test nodes from the
graph seen in training (:func:`inductive_split`).

>>> g = load_graph("cora")                      # 2,485 nodes x 1,433 features, 7 classes
>>> train, val, test = split_per_class(g.labels, seed=0)     # 20 / 30 per class, rest
>>> test_tran, test_ind = inductive_split(test, rate=0.2, seed=0)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["GRAPH_DATASETS", "GraphData", "graph_from_arrays", "graph_from_pyg", "inductive_split",
           "load_graph", "make_csbm", "split_per_class"]

_DIR = Path(__file__).with_name("graph_files")
#: shipped data sets -> sha256 of the file (see graph_files/README.md for the source)
GRAPH_DATASETS = {
    "cora": "068e22d90c3849b4057dfb05851741428992af058efcd4e7ebb4186f3d581de2",
    "citeseer": "280278b21b434c047922e8389518861416fb3ad39389c27865ff0e6bbb0aaab7",
}
_CPF_KEYS = ("adj_data", "adj_indices", "adj_indptr", "adj_shape",
             "attr_data", "attr_indices", "attr_indptr", "attr_shape", "labels")


@dataclass
class GraphData:
    """A node-classification graph after preprocessing.

    ``x: (n, d)`` float32 features, ``edge_index: (2, E)`` int64 with both directions of every
    undirected edge and no self-loops, ``labels: (n,)`` int64 in ``0..num_classes-1``.
    """

    name: str
    x: np.ndarray
    edge_index: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_edges(self) -> int:
        """Undirected edges (each stored twice in ``edge_index``)."""
        return int(self.edge_index.shape[1]) // 2

    def subgraph(self, nodes) -> GraphData:
        """The graph induced on ``nodes`` (renumbered ``0..len(nodes)-1`` in the given order)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        new = np.full(self.num_nodes, -1, dtype=np.int64)
        new[nodes] = np.arange(len(nodes))
        src, dst = new[self.edge_index[0]], new[self.edge_index[1]]
        keep = (src >= 0) & (dst >= 0)
        return GraphData(self.name, self.x[nodes], np.stack([src[keep], dst[keep]]), self.labels[nodes],
                         list(self.class_names))

    def __repr__(self) -> str:
        return (f"GraphData({self.name!r}, nodes={self.num_nodes}, features={self.num_features}, "
                f"edges={self.num_edges}, classes={self.num_classes})")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _symmetric_adjacency(edge_index: np.ndarray, n: int) -> sp.csr_matrix:
    """Binary symmetric adjacency without self-loops."""
    src, dst = edge_index
    a = sp.coo_matrix((np.ones(len(src), dtype=np.float32), (src, dst)), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float32).tolil()
    a.setdiag(0)
    a = a.tocsr()
    a.eliminate_zeros()
    return a


def _finish(name, x, adj: sp.csr_matrix, labels, class_names, largest_component: bool) -> GraphData:
    n = adj.shape[0]
    if largest_component:
        _, comp = connected_components(adj, directed=False)
        keep = np.flatnonzero(comp == np.bincount(comp).argmax())
        adj, x, labels = adj[keep][:, keep], x[keep], labels[keep]
    else:
        isolated = np.flatnonzero(np.asarray(adj.sum(1)).ravel() == 0)
        if len(isolated):
            raise ValueError(f"{name}: {len(isolated)} of {n} nodes are isolated (no edge), e.g. node(s) "
                             f"{isolated[:5].tolist()}; a GNN sees only their own features. Drop them or "
                             "pass largest_component=True to keep the largest connected component")
    coo = adj.tocoo()
    edge_index = np.stack([coo.row, coo.col]).astype(np.int64)
    order = np.lexsort((edge_index[1], edge_index[0]))
    return GraphData(name, np.ascontiguousarray(x, dtype=np.float32), edge_index[:, order],
                     labels.astype(np.int64), list(class_names))


def _check_labels(name, labels, num_classes) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name}: labels: expected a 1-D array of class indices, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: labels: expected integer class indices, got dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(f"{name}: labels out of range: expected 0..{num_classes - 1} ({num_classes} classes), "
                         f"got value(s) {sorted(set(bad.tolist()))[:5]}")
    return labels.astype(np.int64)


def graph_from_arrays(x, edge_index, labels, *, class_names=None, name: str = "graph",
                      largest_component: bool = False) -> GraphData:
    """A graph from ``x: (n, d)``, ``edge_index: (2, E)`` (any direction; symmetrised, self-loops
    dropped) and ``labels: (n,)``. Isolated nodes are an error unless ``largest_component``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name}: x: expected node features of shape (n, d) with n > 0, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: x: features contain NaN or inf")
    n = x.shape[0]
    edge_index = np.asarray(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{name}: edge_index: expected shape (2, E), got {edge_index.shape}")
    if not np.issubdtype(edge_index.dtype, np.integer):
        raise ValueError(f"{name}: edge_index: expected integer node indices, got dtype {edge_index.dtype}")
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        raise ValueError(f"{name}: edge_index: node indices must lie in 0..{n - 1}, got "
                         f"{int(edge_index.min())}..{int(edge_index.max())}")
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name}: labels: expected shape ({n},) (one per node), got {labels.shape}")
    if class_names is None:
        k = int(labels.max()) + 1 if len(labels) and np.issubdtype(labels.dtype, np.integer) else 0
        class_names = [str(i) for i in range(max(k, 0))]
    labels = _check_labels(name, labels, len(class_names))
    return _finish(name, x, _symmetric_adjacency(edge_index.astype(np.int64), n), labels, class_names,
                   largest_component)


def graph_from_pyg(data, *, name: str = "graph", largest_component: bool = False) -> GraphData:
    """A graph from a PyTorch Geometric ``Data`` with ``x``, ``edge_index`` and ``y``."""
    missing = [k for k in ("x", "edge_index", "y") if getattr(data, k, None) is None]
    if missing:
        raise ValueError(f"{name}: the Data object has no {', '.join(missing)}; expected x, edge_index and y")
    return graph_from_arrays(data.x.detach().cpu().numpy(), data.edge_index.detach().cpu().numpy(),
                             data.y.detach().cpu().numpy().reshape(-1), name=name,
                             largest_component=largest_component)


def _load_cpf(path: Path, name: str) -> GraphData:
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in _CPF_KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; a CPF graph file holds {list(_CPF_KEYS)} "
                             f"(and optional class_names), found {sorted(f.files)}")
        adj = sp.csr_matrix((f["adj_data"], f["adj_indices"], f["adj_indptr"]), shape=tuple(f["adj_shape"]))
        x = sp.csr_matrix((f["attr_data"], f["attr_indices"], f["attr_indptr"]),
                          shape=tuple(f["attr_shape"])).toarray()
        labels = f["labels"]
        class_names = [str(c) for c in f["class_names"]] if "class_names" in f.files else None
    if adj.shape[0] != adj.shape[1] or adj.shape[0] != x.shape[0] or labels.shape != (x.shape[0],):
        raise ValueError(f"{path}: inconsistent sizes: adjacency {adj.shape}, attributes {x.shape}, "
                         f"labels {labels.shape}; expected (n, n), (n, d), (n,)")
    if class_names is None:
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    labels = _check_labels(str(path), labels, len(class_names))
    coo = adj.tocoo()
    return _finish(name, x, _symmetric_adjacency(np.stack([coo.row, coo.col]), adj.shape[0]), labels,
                   class_names, largest_component=True)


def load_graph(name_or_path, *, largest_component: bool = True) -> GraphData:
    """``'cora'`` or ``'citeseer'`` (shipped; sha256 checked) or a path to an ``.npz`` file: either
    the CPF layout (``adj_*``, ``attr_*``, ``labels``; largest connected component kept, as the
    protocol does) or plain arrays ``x``, ``edge_index``, ``y`` (and optional ``class_names``)."""
    key = str(name_or_path).lower()
    if key in GRAPH_DATASETS:
        path = _DIR / f"{key}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the shipped {key} file is missing from the installation")
        digest = _sha256(path)
        if digest != GRAPH_DATASETS[key]:
            raise ValueError(f"{path}: sha256 {digest} does not match the expected {GRAPH_DATASETS[key]}; "
                             "the file is damaged")
        return _load_cpf(path, key)
    path = Path(name_or_path)
    if path.suffix != ".npz":
        raise ValueError(f"dataset: expected one of {sorted(GRAPH_DATASETS)} or a path to an .npz file, "
                         f"got {str(name_or_path)!r}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with np.load(path, allow_pickle=False) as f:
        files = set(f.files)
        if "adj_indptr" in files or "attr_indptr" in files:
            cpf = True
        else:
            cpf = False
            missing = [k for k in ("x", "edge_index", "y") if k not in files]
            if missing:
                raise ValueError(f"{path}: missing array(s) {missing}; expected x, edge_index, y "
                                 f"(or the CPF layout {list(_CPF_KEYS)}), found {sorted(files)}")
            arrays = {k: f[k] for k in ("x", "edge_index", "y")}
            names = [str(c) for c in f["class_names"]] if "class_names" in files else None
    if cpf:
        return _load_cpf(path, path.stem)
    return graph_from_arrays(arrays["x"], arrays["edge_index"], arrays["y"], class_names=names, name=path.stem,
                             largest_component=largest_component)


def split_per_class(labels, n_train: int = 20, n_val: int = 30, *, seed: int = 0):
    """Per class ``n_train`` training and ``n_val`` validation nodes drawn with
    ``numpy.random.default_rng(seed)``; the rest (at least one node per class) is the test set.
    -> ``(train, val, test)`` sorted int64 index arrays."""
    labels = np.asarray(labels)
    if n_train < 1 or n_val < 0:
        raise ValueError(f"split: expected n_train >= 1 and n_val >= 0, got {n_train} and {n_val}")
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    counts = np.bincount(labels, minlength=int(labels.max()) + 1)
    short = [(c, int(k)) for c, k in enumerate(counts) if k < n_train + n_val + 1]
    if short:
        raise ValueError(f"split: classes {[c for c, _ in short]} have only {[k for _, k in short]} node(s); "
                         f"{n_train} train + {n_val} validation per class needs at least {n_train + n_val + 1} "
                         "each (one left for testing)")
    for c in range(len(counts)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:n_train])
        val.append(idx[n_train:n_train + n_val])
        test.append(idx[n_train + n_val:])
    return tuple(np.sort(np.concatenate(s)).astype(np.int64) for s in (train, val, test))


def inductive_split(test, rate: float = 0.2, *, seed: int = 0):
    """Hide ``rate`` of the test nodes from the training graph (GLNN / VQGraph's inductive setting).
    -> ``(test_tran, test_ind)``: test nodes that stay in the observed graph, and the held-out ones."""
    if not 0 < rate < 1:
        raise ValueError(f"rate: expected a share in (0, 1), got {rate}")
    test = np.asarray(test, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(test))
    n_ind = int(round(rate * len(test)))
    if n_ind == 0 or n_ind == len(test):
        raise ValueError(f"rate {rate} of {len(test)} test nodes leaves an empty part")
    return np.sort(test[perm[n_ind:]]), np.sort(test[perm[:n_ind]])


def make_csbm(n_per_class: int = 60, n_classes: int = 3, n_features: int = 16, *, p_in: float = 0.1,
              p_out: float = 0.01, mu: float = 1.0, seed: int = 0) -> GraphData:
    """A contextual stochastic block model: edges within a class with probability ``p_in``,
    across with ``p_out``; features ``N(mu * m_c, I)`` around a random unit mean per class.
    Isolated nodes are linked to a random same-class node so every node has an edge."""
    rng = np.random.default_rng(seed)
    n = n_per_class * n_classes
    labels = np.repeat(np.arange(n_classes), n_per_class)
    means = rng.standard_normal((n_classes, n_features))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    x = mu * means[labels] + rng.standard_normal((n, n_features))
    prob = np.where(labels[:, None] == labels[None, :], p_in, p_out)
    upper = np.triu(rng.random((n, n)) < prob, 1)
    src, dst = np.nonzero(upper)
    deg = np.bincount(np.concatenate([src, dst]), minlength=n)
    extra = []
    for i in np.flatnonzero(deg == 0):
        mates = np.flatnonzero((labels == labels[i]) & (np.arange(n) != i))
        extra.append((i, rng.choice(mates)))
    if extra:
        e = np.array(extra).T
        src, dst = np.concatenate([src, e[0]]), np.concatenate([dst, e[1]])
    return graph_from_arrays(x, np.stack([src, dst]), labels, class_names=[f"c{c}" for c in range(n_classes)],
                             name="csbm")
