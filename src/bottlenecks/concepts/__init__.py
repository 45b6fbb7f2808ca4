"""Concept bottleneck models on fixed embeddings: concept sources, selection, heads,
interventions and global edits, one API for every variant.

>>> cbm = ConceptBottleneckModel(concepts=names, scorer="cav", head="glm").fit(Z, y, concept_data=(Zc, Cc))
>>> cbm.intervene(Z_test, "striped", C_test)          # (n, K) after setting a concept to its true value
>>> cbm.edit("tinted background"); cbm.undo()          # global edit and its exact undo
>>> intervention_curve(cbm, Z_test, y_test, C_test, policy="uncertain")

Modules: ``sources`` (label probes, CAVs, text scores), ``glm`` (GLM-SAGA elastic-net path),
``heads`` (linear, GLM, LaBo, Sparse-CBM, PCBM-h residual), ``energy`` (energy-based CBM),
``selection`` (LaBo submodular selection, Label-free CBM filters), ``text`` (concept text
embeddings), ``model`` (:class:`ConceptBottleneckModel`), ``interventions``, ``edits``. The demo
study is :mod:`bottlenecks.studies.concepts_demo`.
"""

from .edits import apply_edit
from .energy import EnergyCBM
from .glm import elastic_net_path, glm_saga, lambda_max, select_lambda
from .heads import GLMHead, LaBoHead, LinearHead, ResidualHead, SparseGumbelHead, make_head
from .interventions import intervention_curve, intervention_order, masked_predictor
from .model import ConceptBottleneckModel
from .selection import labelfree_filter, run_concept_selection, submodular_select
from .sources import CAVScorer, LabelScorer, TextScorer, text_scorer
from .text import default_text_encoder, embed_concepts

__all__ = [
    "EnergyCBM",
    "default_text_encoder",
    "embed_concepts",
    "labelfree_filter",
    "masked_predictor",
    "run_concept_selection",
    "submodular_select",
    "CAVScorer",
    "ConceptBottleneckModel",
    "GLMHead",
    "LaBoHead",
    "LabelScorer",
    "LinearHead",
    "ResidualHead",
    "SparseGumbelHead",
    "TextScorer",
    "apply_edit",
    "elastic_net_path",
    "glm_saga",
    "intervention_curve",
    "intervention_order",
    "lambda_max",
    "make_head",
    "select_lambda",
    "text_scorer",
]
