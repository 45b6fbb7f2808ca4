import numpy as np
import pytest

from bottlenecks.data import graphs
from bottlenecks.data.graphs import (
    graph_from_arrays,
    inductive_split,
    load_graph,
    make_csbm,
    split_per_class,
)


def _symmetric_no_loops(g):
    pairs = set(map(tuple, g.edge_index.T.tolist()))
    assert all((b, a) in pairs for a, b in pairs)
    assert not any(a == b for a, b in pairs)


@pytest.mark.parametrize("name, nodes, features, classes", [("cora", 2485, 1433, 7), ("citeseer", 2110, 3703, 6)])
def test_shipped_graphs_follow_the_protocol(name, nodes, features, classes):
    g = load_graph(name)
    assert (g.num_nodes, g.num_features, g.num_classes) == (nodes, features, classes)
    _symmetric_no_loops(g)
    # largest connected component: every node has an edge, labels cover every class
    assert np.bincount(g.edge_index[0], minlength=nodes).min() >= 1
    assert set(np.unique(g.labels)) == set(range(classes))


def test_damaged_file_is_refused(tmp_path, monkeypatch):
    src = graphs._DIR / "cora.npz"
    bad = tmp_path / "cora.npz"
    data = bytearray(src.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(graphs, "_DIR", tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        load_graph("cora")


def test_split_is_reproducible_and_per_class():
    g = make_csbm(n_per_class=60, n_classes=3, seed=1)
    a = split_per_class(g.labels, 5, 10, seed=3)
    b = split_per_class(g.labels, 5, 10, seed=3)
    c = split_per_class(g.labels, 5, 10, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    train, val, test = a
    assert np.bincount(g.labels[train]).tolist() == [5, 5, 5]
    assert np.bincount(g.labels[val]).tolist() == [10, 10, 10]
    assert len(set(train) | set(val) | set(test)) == g.num_nodes == len(train) + len(val) + len(test)


def test_inductive_split_hides_a_share_of_test():
    test = np.arange(100, 200)
    tran, ind = inductive_split(test, 0.2, seed=0)
    assert len(ind) == 20 and len(tran) == 80 and not set(tran) & set(ind)
    assert np.array_equal(ind, inductive_split(test, 0.2, seed=0)[1])


def test_subgraph_keeps_only_inner_edges():
    g = make_csbm(n_per_class=20, n_classes=2, seed=0)
    keep = np.arange(0, 30)
    s = g.subgraph(keep)
    assert s.num_nodes == 30 and s.edge_index.max() < 30
    inner = [(a, b) for a, b in g.edge_index.T.tolist() if a < 30 and b < 30]
    assert s.edge_index.shape[1] == len(inner)


def test_csbm_is_reproducible_and_homophilous():
    a, b = make_csbm(seed=5), make_csbm(seed=5)
    assert np.array_equal(a.edge_index, b.edge_index) and np.array_equal(a.x, b.x)
    same = (a.labels[a.edge_index[0]] == a.labels[a.edge_index[1]]).mean()
    assert same > 0.7


def test_user_file_round_trip(tmp_path):
    g = make_csbm(n_per_class=20, n_classes=3, seed=0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=g.x, edge_index=g.edge_index, y=g.labels)
    h = load_graph(path)
    assert h.name == "mine" and np.array_equal(h.edge_index, g.edge_index) and np.allclose(h.x, g.x)


def test_from_pyg():
    torch = pytest.importorskip("torch")
    data_mod = pytest.importorskip("torch_geometric.data")
    g = make_csbm(n_per_class=10, n_classes=2, seed=0)
    d = data_mod.Data(x=torch.from_numpy(g.x), edge_index=torch.from_numpy(g.edge_index),
                      y=torch.from_numpy(g.labels))
    h = graphs.graph_from_pyg(d)
    assert h.num_nodes == g.num_nodes and np.array_equal(h.edge_index, g.edge_index)
    with pytest.raises(ValueError, match="no y"):
        graphs.graph_from_pyg(data_mod.Data(x=d.x, edge_index=d.edge_index))


# ---------------------------------------------------------------- bad input

def test_missing_arrays_are_named(tmp_path):
    path = tmp_path / "g.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"missing array\(s\) \['edge_index'\]"):
        load_graph(path)
    cpf = tmp_path / "cpf.npz"
    np.savez(cpf, adj_data=np.ones(1), adj_indices=np.zeros(1, int), adj_indptr=np.array([0, 1]),
             adj_shape=np.array([1, 1]))
    with pytest.raises(ValueError, match="attr_data"):
        load_graph(cpf)


def test_labels_out_of_range():
    x, ei = np.zeros((3, 2)), np.array([[0, 1, 2], [1, 2, 0]])
    with pytest.raises(ValueError, match="labels out of range.*0..1.*5"):
        graph_from_arrays(x, ei, np.array([0, 1, 5]), class_names=["a", "b"])
    with pytest.raises(ValueError, match="labels out of range"):
        graph_from_arrays(x, ei, np.array([0, -1, 1]))


def test_isolated_nodes_are_an_error_unless_the_largest_component_is_kept():
    x, ei, y = np.zeros((4, 2)), np.array([[0, 1], [1, 2]]), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"1 of 4 nodes are isolated.*\[3\]"):
        graph_from_arrays(x, ei, y)
    assert graph_from_arrays(x, ei, y, largest_component=True).num_nodes == 3


def test_too_few_nodes_per_class():
    labels = np.array([0] * 60 + [1] * 12)
    with pytest.raises(ValueError, match=r"classes \[1\] have only \[12\].*at least 51"):
        split_per_class(labels, 20, 30)


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cora"):
        load_graph("pubmed")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_graph(tmp_path / "absent.npz")
