"""Fixtures shared by the whole test suite."""

import socket

import pytest


@pytest.fixture
def free_port() -> int:
    """A free TCP port on the loopback interface, for torch.distributed process groups."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
