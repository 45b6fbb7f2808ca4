"""Fixtures of the concept tests."""

from __future__ import annotations

import pytest
from cbm_problem import make_problem


@pytest.fixture(scope="session")
def problem():
    return make_problem(400, 0), make_problem(300, 1)
