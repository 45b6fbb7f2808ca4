"""Fixtures shared by the codebook tests."""

from types import SimpleNamespace

import pytest
import torch

from bottlenecks.codebook import wrap_codebook
from bottlenecks.codebook.experiment import tokfsm_model, train_lm
from bottlenecks.codebook.tokfsm import TokFSM


@pytest.fixture(scope="session")
def tiny_tokfsm():
    """A tiny machine (10 states, 2 successors each) learnt by a one-layer model whose attention
    heads go through codebooks, and 300 held-out sequences of 8 states (16 tokens). Trained once
    (on one thread: tiny models train several times faster than on two busy ones); tests must not
    change the model."""
    pytest.importorskip("transformers")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fsm = TokFSM(num_states=10, num_successors=2, seed=0)
        model = tokfsm_model(seed=0, hidden=32, intermediate=64, layers=1, heads=2, max_tokens=16)
        wrap_codebook(model, "attn_heads", num_codes=16, k=1, seed=0)
        train_lm(model, fsm, steps=300, batch_size=64, lr=1e-2, seed=0, length=8, quiet=True)
        model.eval()
    finally:
        torch.set_num_threads(n)
    tokens, states = fsm.sample(300, length=8, max_tokens=16, generator=torch.Generator().manual_seed(9))
    return SimpleNamespace(fsm=fsm, model=model, tokens=tokens, states=states)
