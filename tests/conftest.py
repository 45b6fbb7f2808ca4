"""Fixtures shared by the whole test suite.

Every test runs on one torch thread unless it asks for more: the tests are many small ops, which
run slower on two busy threads than on one (benchmarks/results/threads.md).
``BOTTLENECKS_TEST_THREADS=N`` sets another count for a whole run.
"""

import os
import socket
from types import SimpleNamespace

import pytest
import torch

TEST_THREADS = int(os.environ.get("BOTTLENECKS_TEST_THREADS", "1"))


def pytest_configure(config):
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def _pinned_threads():
    """Each test starts on ``TEST_THREADS`` threads whatever the one before it set."""
    torch.set_num_threads(TEST_THREADS)
    yield


@pytest.fixture
def free_port() -> int:
    """A free TCP port on the loopback interface, for torch.distributed process groups."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_thread():
    """One torch thread for this test, whatever ``BOTTLENECKS_TEST_THREADS`` says."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_tokfsm():
    """A tiny machine (10 states, 2 successors each) learnt by a one-layer model whose attention
    heads go through codebooks, and 300 held-out sequences of 8 states (16 tokens). Trained once
    on one thread; tests must not change the model."""
    pytest.importorskip("transformers")
    from bottlenecks.codebook import wrap_codebook
    from bottlenecks.codebook.tokfsm import TokFSM
    from bottlenecks.studies.tokfsm import tokfsm_model, train_lm
    from bottlenecks.threads import fixed_threads

    with fixed_threads(1):
        fsm = TokFSM(num_states=10, num_successors=2, seed=0)
        model = tokfsm_model(seed=0, hidden=32, intermediate=64, layers=1, heads=2, max_tokens=16)
        wrap_codebook(model, "attn_heads", num_codes=16, k=1, seed=0)
        train_lm(model, fsm, steps=300, batch_size=64, lr=1e-2, seed=0, length=8, progress=False)
        model.eval()
    tokens, states = fsm.sample(300, length=8, max_tokens=16, generator=torch.Generator().manual_seed(9))
    return SimpleNamespace(fsm=fsm, model=model, tokens=tokens, states=states)
