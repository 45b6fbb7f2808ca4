"""Codebook features (Tamkin, Taufeeque & Goodman, 2023): top-k codebooks inside any torch
transformer, by hooks; code statistics, analysis and steering; the TokFSM reproduction."""

from .layer import CodebookLayer, GroupCodebookLayer
from .tokfsm import TokFSM
from .wrap import SITES, CodebookWrap, codebook_loss, codebook_sites, record_codes, steer, unwrap, wrap_codebook

__all__ = ["SITES", "CodebookLayer", "CodebookWrap", "GroupCodebookLayer", "TokFSM", "codebook_loss",
           "codebook_sites", "record_codes", "steer", "unwrap", "wrap_codebook"]
