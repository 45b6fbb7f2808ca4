"""VQGraph (Yang et al., ICLR 2024): a graph tokenizer gives every node a discrete structure
token; an MLP student distilled from the GNN teacher with soft labels (GLNN) and soft code
assignments (VQGraph) classifies nodes without the graph.

Modules: ``quantizer`` (:class:`CosineQuantizer`: k-means-initialised EMA codebook, dead-code
re-seeding, usage), ``models`` (:class:`GNN`, :class:`GraphTokenizer`, :class:`MLPStudent`; PyTorch
Geometric layers), ``distill`` (soft assignments and the distillation losses), ``training``
(full-batch training loops with early stopping on a validation set).
"""

from .distill import code_distances, distillation_loss, soft_assignments, soft_code_kl, soft_label_kl
from .models import (
    CONVS,
    GNN,
    GraphTokenizer,
    MLPStudent,
    TokenizerOutput,
    feature_reconstruction_loss,
    structure_loss,
)
from .quantizer import CosineQuantizer
from .training import accuracy, fit_gnn, fit_mlp, fit_tokenizer

__all__ = ["CONVS", "GNN", "CosineQuantizer", "GraphTokenizer", "MLPStudent", "TokenizerOutput", "accuracy",
           "code_distances", "distillation_loss", "feature_reconstruction_loss", "fit_gnn", "fit_mlp",
           "fit_tokenizer", "soft_assignments", "soft_code_kl", "soft_label_kl", "structure_loss"]
