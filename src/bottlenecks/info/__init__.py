"""Information-theoretic tools: entropy and mutual-information estimators (k-NN, plug-in, Gaussian)."""

from .estimators import entropy, mutual_information

__all__ = ["entropy", "mutual_information"]
