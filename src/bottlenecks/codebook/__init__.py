"""Codebook features (Tamkin, Taufeeque & Goodman, 2023): top-k codebooks inside any torch
transformer, by hooks; code statistics, analysis and steering; the TokFSM data.

Modules: ``layer`` (CodebookLayer, GroupCodebookLayer), ``wrap`` (wrap_codebook, unwrap,
record_codes, steer), ``analysis`` (precision/recall of codes, the neuron baseline), ``tokfsm``
(the data). The TokFSM study (training, metrics, report) is :mod:`bottlenecks.studies.tokfsm`.
"""

from .analysis import best_codes, code_label_counts, neuron_precision_at_recall, precision_recall
from .layer import CodebookLayer, GroupCodebookLayer
from .tokfsm import TokFSM
from .wrap import (
    SITES,
    CodebookWrap,
    bypass_codebooks,
    codebook_loss,
    codebook_sites,
    record_codes,
    steer,
    unwrap,
    wrap_codebook,
)

__all__ = ["SITES", "CodebookLayer", "CodebookWrap", "GroupCodebookLayer", "TokFSM", "best_codes",
           "bypass_codebooks",
           "code_label_counts", "codebook_loss", "codebook_sites", "neuron_precision_at_recall",
           "precision_recall", "record_codes", "steer", "unwrap", "wrap_codebook"]
