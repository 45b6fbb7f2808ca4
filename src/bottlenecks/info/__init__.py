"""Information-theoretic tools: entropy, mutual-information and conditional-MI estimators (k-NN, mixed,
plug-in, Gaussian, pairwise noisy-layer bounds, neural lower bounds, compress-then-estimate), the
information plane (its 12-bit study: :mod:`bottlenecks.studies.info_plane`), IB metrics, and
information-bottleneck layers and losses (variational IB, Cauchy-Schwarz IB)."""

from .bounds import pairwise_information_bounds
from .compress import AutoEncoder, cca_compress, compress, compressed_mutual_information
from .estimators import Estimate, conditional_mutual_information, entropy, mutual_information
from .layers import VariationalIB, cauchy_schwarz_ib_loss, silverman_bandwidth
from .metrics import degree_of_ib, ib_generalization_correlation, rate_distortion
from .neural import Critic, DivergenceError, NeuralMIResult, neural_mutual_information
from .plane import InfoPlane, binned_information

__all__ = ["AutoEncoder", "Critic", "DivergenceError", "Estimate", "InfoPlane", "NeuralMIResult",
           "VariationalIB", "binned_information", "cauchy_schwarz_ib_loss", "cca_compress", "compress",
           "compressed_mutual_information", "conditional_mutual_information", "degree_of_ib", "entropy",
           "ib_generalization_correlation", "mutual_information", "neural_mutual_information",
           "pairwise_information_bounds", "rate_distortion", "silverman_bandwidth"]
