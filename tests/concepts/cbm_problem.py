"""Shared by the concept tests: a tiny problem with a known answer (4 binary concepts, Z = C A + noise,
y = 2 c0 + c1)."""

from __future__ import annotations

import numpy as np

NAMES = ["c0", "c1", "c2", "c3"]


def make_problem(n: int, seed: int, noise: float = 0.3, dim: int = 8):
    rng = np.random.default_rng(seed)
    A = np.random.default_rng(123).normal(size=(4, dim)) * 2.0  # fixed concept directions
    C = rng.integers(0, 2, size=(n, 4))
    Z = C @ A + rng.normal(0, noise, size=(n, dim))
    y = 2 * C[:, 0] + C[:, 1]
    return Z, C, y

