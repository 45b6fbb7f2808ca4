"""Fixtures shared by the whole test suite."""

import socket

import pytest
import torch


@pytest.fixture
def free_port() -> int:
    """A free TCP port on the loopback interface, for torch.distributed process groups."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_thread():
    """Tiny models train several times faster on one thread than on two busy ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
