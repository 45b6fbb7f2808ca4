"""bottlenecks: put bottlenecks into neural networks, train them and look inside them.

One engine and four families (``bottlenecks.<family>`` holds each family's full API):

- ``cluster``: exact k-means and nearest-code search (:class:`KMeans`, :func:`kmeans`, :func:`nearest`).
- ``kv``: the discrete key-value bottleneck (:class:`DiscreteKeyValueBottleneck`) and, around it,
  ``continual``: the class-incremental workbench (:func:`run_experiment`).
- ``codebook``: codebook features inside transformers (:class:`CodebookLayer`, :func:`wrap_codebook`, :func:`steer`).
- ``concepts``: concept bottleneck models (:class:`ConceptBottleneckModel`, interventions, global edits).
- ``info``: mutual-information estimators, information planes, IB layers (:func:`mutual_information`).
"""

from .cluster import KMeans, KMeansResult, assign, kmeans, nearest
from .codebook import CodebookLayer, GroupCodebookLayer, bypass_codebooks, record_codes, steer, unwrap, wrap_codebook
from .concepts import ConceptBottleneckModel, intervention_curve
from .continual import ClassIncrementalStream, ContinualConfig, run_experiment
from .info import (
    InfoPlane,
    VariationalIB,
    cauchy_schwarz_ib_loss,
    conditional_mutual_information,
    entropy,
    mutual_information,
)
from .kv import DiscreteKeyValueBottleneck, KeyValueClassifier, train_values

__version__ = "0.1.0"
__all__ = [
    "KMeans", "KMeansResult", "assign", "kmeans", "nearest",
    "DiscreteKeyValueBottleneck", "KeyValueClassifier", "train_values",
    "ClassIncrementalStream", "ContinualConfig", "run_experiment",
    "CodebookLayer", "GroupCodebookLayer", "bypass_codebooks", "record_codes", "steer", "unwrap", "wrap_codebook",
    "ConceptBottleneckModel", "intervention_curve",
    "InfoPlane", "VariationalIB", "cauchy_schwarz_ib_loss", "conditional_mutual_information", "entropy",
    "mutual_information",
    "__version__",
]
