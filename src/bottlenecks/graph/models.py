"""The networks of VQGraph: a GNN teacher, the graph tokenizer (a GNN whose node embeddings go
through a codebook) and the MLP student. GNN layers are PyTorch Geometric's (``SAGEConv``,
``GCNConv``).

    GNN            x, edge_index -> conv1 -> relu -> dropout -> h (n, hidden) -> conv2 -> logits (n, C)
    GraphTokenizer x, edge_index -> conv1 -> relu -> dropout -> h -> codebook -> q (n, hidden)
                   q -> conv2 -> logits;  q -> decoder -> x_hat (n, d);  q -> decoder -> e (n, hidden)
                   losses: commitment, feature reconstruction (x vs x_hat), structure (A vs sigmoid(e e^T))
    MLPStudent     x -> linear -> relu -> dropout -> hidden -> linear -> logits (n, C)
                                                          -> linear -> code embedding (n, hidden)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpointable
from ..validation import check_choice, check_positive_int
from .quantizer import CosineQuantizer

__all__ = ["CONVS", "GNN", "GraphTokenizer", "MLPStudent", "TokenizerOutput", "feature_reconstruction_loss",
           "sparse_adjacency", "structure_loss"]

CONVS = ("sage", "gcn")


def _conv(kind: str, d_in: int, d_out: int) -> nn.Module:
    from torch_geometric.nn import GCNConv, SAGEConv

    check_choice(kind, "conv", CONVS)
    return SAGEConv(d_in, d_out, aggr="mean") if kind == "sage" else GCNConv(d_in, d_out, cached=False)


class GNN(nn.Module, Checkpointable):
    """Two-layer GNN classifier: ``(x: (n, d), edge_index: (2, E)) -> (logits (n, C), h (n, hidden))``.

    ``edge_index`` may also be a sparse adjacency (``torch_geometric.utils.to_torch_csr_tensor`` of
    the flipped edge index, :func:`sparse_adjacency`): PyG then aggregates with one sparse GEMM.
    """

    def __init__(self, in_dim: int, hidden: int, num_classes: int, *, conv: str = "sage", dropout: float = 0.0):
        super().__init__()
        self.in_dim, self.hidden = check_positive_int(in_dim, "in_dim"), check_positive_int(hidden, "hidden")
        self.num_classes, self.conv_kind, self.dropout = check_positive_int(num_classes, "num_classes"), conv, dropout
        self.conv1, self.conv2 = _conv(conv, in_dim, hidden), _conv(conv, hidden, num_classes)

    def reset_parameters(self) -> None:
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def extra_repr(self) -> str:
        return f"conv={self.conv_kind}, dropout={self.dropout}"

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "hidden": self.hidden, "num_classes": self.num_classes,
                "conv": self.conv_kind, "dropout": self.dropout}

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.dropout(F.relu(self.conv1(x, edge_index)), self.dropout, self.training)
        return self.conv2(h, edge_index), h


@dataclass
class TokenizerOutput:
    """What :meth:`GraphTokenizer.forward` returns (``n`` nodes, ``K`` codes)."""

    logits: torch.Tensor  # (n, C)
    embedding: torch.Tensor  # (n, hidden) unit node embeddings before the codebook
    ids: torch.Tensor  # (n,) code of every node: its structure token
    losses: dict  # name -> scalar: commitment, feature, structure


def sparse_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``(2, E) -> (n, n)`` CSR matrix with row ``i`` holding the neighbours whose messages node ``i``
    receives (PyG's ``adj_t``), for the fast path of the convolutions."""
    from torch_geometric.utils import to_torch_csr_tensor

    return to_torch_csr_tensor(edge_index.flip(0), size=(num_nodes, num_nodes))


def feature_reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Scaled cosine error ``mean (1 - cos(x_i, x_hat_i))^gamma`` (VQGraph's feature term)."""
    return (1 - F.cosine_similarity(x, x_hat, dim=-1)).clamp_min(0).pow(gamma).mean()


def structure_loss(e: torch.Tensor, edge_index: torch.Tensor, *, negatives: int = 1, edges: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Adjacency reconstruction ``|A - sigmoid(e e^T)|^2`` on the edges (``edges`` of them drawn at
    random if given) and ``negatives`` random node pairs per edge, each half weighted equally (a
    sampled estimate: the dense n x n matrix costs O(n^2))."""
    src, dst = edge_index
    if edges is not None and edges < src.shape[0]:
        pick = torch.randint(0, src.shape[0], (edges,), generator=generator).to(src.device)
        src, dst = src[pick], dst[pick]
    m = src.shape[0] * negatives
    ns = torch.randint(0, e.shape[0], (m,), generator=generator).to(e.device)
    nd = torch.randint(0, e.shape[0], (m,), generator=generator).to(e.device)
    pos = torch.sigmoid((e[src] * e[dst]).sum(-1))
    neg = torch.sigmoid((e[ns] * e[nd]).sum(-1))
    return 0.5 * ((1 - pos).pow(2).mean() + neg.pow(2).mean())


class GraphTokenizer(nn.Module, Checkpointable):
    """VQGraph's graph tokenizer: a two-layer GNN whose first-layer node embeddings are vector-
    quantised into ``num_codes`` codes; the codes feed the second layer (classification) and two
    decoders (node features, graph structure). ``(x: (n, d), edge_index: (2, E)) -> TokenizerOutput``.

    The total training loss is ``CE + out.losses['commitment'] + lamb_feature * feature +
    lamb_structure * structure`` (:meth:`loss`). Each training step reconstructs the features of
    ``recon_nodes`` random nodes and ``recon_edges`` random edges (with as many random non-edges per
    edge as ``negatives``); ``None``: all of them.
    """

    def __init__(self, in_dim: int, hidden: int, num_classes: int, num_codes: int, *, conv: str = "sage",
                 dropout: float = 0.0, lamb_feature: float = 1.0, lamb_structure: float = 1.0,
                 commitment: float = 0.25, decay: float = 0.8, negatives: int = 1, recon_nodes: int | None = 512,
                 recon_edges: int | None = 2048, seed: int = 0):
        super().__init__()
        self.in_dim, self.hidden = check_positive_int(in_dim, "in_dim"), check_positive_int(hidden, "hidden")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.conv_kind, self.dropout = conv, float(dropout)
        self.lamb_feature, self.lamb_structure, self.negatives = float(lamb_feature), float(lamb_structure), negatives
        self.recon_nodes, self.recon_edges = recon_nodes, recon_edges
        self.conv1, self.conv2 = _conv(conv, in_dim, hidden), _conv(conv, hidden, num_classes)
        self.quantizer = CosineQuantizer(num_codes, hidden, decay=decay, commitment=commitment, seed=seed)
        self.feature_decoder = nn.Linear(hidden, in_dim)
        self.structure_decoder = nn.Linear(hidden, hidden)
        self._generator = torch.Generator().manual_seed(seed)
        self._config = {"in_dim": in_dim, "hidden": hidden, "num_classes": num_classes, "num_codes": num_codes,
                        "conv": conv, "dropout": float(dropout), "lamb_feature": float(lamb_feature),
                        "lamb_structure": float(lamb_structure), "commitment": float(commitment),
                        "decay": float(decay), "negatives": negatives, "recon_nodes": recon_nodes,
                        "recon_edges": recon_edges, "seed": seed}

    def config(self) -> dict:
        return dict(self._config)

    def _checkpoint_extra(self) -> tuple[dict, dict]:
        # both generators (reconstruction sampling, dead-code re-seeding): training goes on identically
        return {}, {"generator": self._generator.get_state(),
                    "quantizer_generator": self.quantizer._generator.get_state()}

    def _restore_extra(self, state: dict, tensors: dict) -> None:
        if "generator" in tensors:
            self._generator.set_state(tensors["generator"])
        if "quantizer_generator" in tensors:
            self.quantizer._generator.set_state(tensors["quantizer_generator"])

    def reset_parameters(self) -> None:
        for m in (self.conv1, self.conv2, self.quantizer, self.feature_decoder, self.structure_decoder):
            m.reset_parameters()

    def extra_repr(self) -> str:
        return (f"conv={self.conv_kind}, dropout={self.dropout}, lamb_feature={self.lamb_feature}, "
                f"lamb_structure={self.lamb_structure}")

    @property
    def codes(self) -> torch.Tensor:
        """The codebook ``(K, hidden)``, unit rows."""
        return self.quantizer.codes

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Unit node embeddings before the codebook, ``(n, hidden)``."""
        h = F.dropout(F.relu(self.conv1(x, edge_index)), self.dropout, self.training)
        return F.normalize(h, dim=-1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, adj: torch.Tensor | None = None) -> TokenizerOutput:
        """``adj``: the same graph as a sparse adjacency (:func:`sparse_adjacency`) for the convolutions'
        fast path; the structure loss always reads the edge list."""
        graph = edge_index if adj is None else adj
        u = self.embed(x, graph)
        q, ids, commit = self.quantizer(u)
        losses = {"commitment": commit}
        if self.training:
            rows = (torch.randint(0, x.shape[0], (self.recon_nodes,), generator=self._generator).to(x.device)
                    if self.recon_nodes is not None and self.recon_nodes < x.shape[0] else slice(None))
            losses["feature"] = feature_reconstruction_loss(x[rows], self.feature_decoder(q[rows]))
            losses["structure"] = structure_loss(self.structure_decoder(q), edge_index, negatives=self.negatives,
                                                 edges=self.recon_edges, generator=self._generator)
        return TokenizerOutput(self.conv2(q, graph), u, ids, losses)

    def loss(self, out: TokenizerOutput) -> torch.Tensor:
        """The tokenizer's own terms (add the classification loss on labelled nodes)."""
        total = out.losses["commitment"]
        if "feature" in out.losses:
            total = total + self.lamb_feature * out.losses["feature"] + self.lamb_structure * out.losses["structure"]
        return total


class MLPStudent(nn.Module, Checkpointable):
    """Two-layer MLP on node features alone: ``x: (n, d) -> (logits (n, C), code embedding (n, code_dim))``;
    ``x`` dense or a torch sparse matrix.

    The code head (``code_dim > 0``) maps the hidden layer into the tokenizer's code space so the
    student's soft code assignments can be matched to the teacher's; it is unused at inference.
    """

    def __init__(self, in_dim: int, hidden: int, num_classes: int, *, code_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.in_dim, self.hidden = check_positive_int(in_dim, "in_dim"), check_positive_int(hidden, "hidden")
        self.num_classes, self.dropout = check_positive_int(num_classes, "num_classes"), float(dropout)
        self.code_dim = int(code_dim)
        self.fc1, self.fc2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, num_classes)
        self.code_head = nn.Linear(hidden, code_dim) if code_dim > 0 else None

    def reset_parameters(self) -> None:
        for m in (self.fc1, self.fc2, self.code_head):
            if m is not None:
                m.reset_parameters()

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, code_dim={self.code_dim}"

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "hidden": self.hidden, "num_classes": self.num_classes,
                "code_dim": self.code_dim, "dropout": self.dropout}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # sparse bag-of-words features (CSR/COO) take a sparse GEMM: the same numbers, a fraction of the work
        h = self.fc1(x) if x.layout == torch.strided else torch.sparse.mm(x, self.fc1.weight.T) + self.fc1.bias
        h = F.dropout(F.relu(h), self.dropout, self.training)
        return self.fc2(h), (self.code_head(h) if self.code_head is not None else None)
