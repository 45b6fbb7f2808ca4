"""Information-theoretic tools: entropy and mutual-information estimators (k-NN, plug-in, Gaussian),
the information plane, and information-bottleneck layers and losses (variational IB, Cauchy-Schwarz IB)."""

from .estimators import entropy, mutual_information
from .layers import VariationalIB, cauchy_schwarz_ib_loss, silverman_bandwidth
from .plane import InfoPlane, binned_information

__all__ = ["InfoPlane", "VariationalIB", "binned_information", "cauchy_schwarz_ib_loss", "entropy",
           "mutual_information", "silverman_bandwidth"]
