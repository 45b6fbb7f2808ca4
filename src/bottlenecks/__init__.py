"""bottlenecks: put bottlenecks into neural networks, train them and look inside them.

One engine and four families (``bottlenecks.<family>`` holds each family's full API):

- ``cluster``: exact k-means and nearest-code search (:class:`KMeans`, :func:`kmeans`, :func:`nearest`).
- ``kv``: the discrete key-value bottleneck (:class:`DiscreteKeyValueBottleneck`); ``continual``:
  class-incremental streams, learners and metrics around it.
- ``codebook``: codebook features inside transformers (:class:`CodebookLayer`, :func:`wrap_codebook`, :func:`steer`).
- ``concepts``: concept bottleneck models (:class:`ConceptBottleneckModel`, interventions, global edits).
- ``info``: mutual-information estimators, information planes, IB layers (:func:`mutual_information`).

The studies (train -> measure -> report pipelines) are in ``bottlenecks.studies``; the continual
one's ``ContinualConfig`` and ``run_experiment`` are importable from here too.

Names are imported on first use, so ``import bottlenecks.kv`` loads the key-value family and its
engine only (not scikit-learn, SciPy or the data sets).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "cluster": ("KMeans", "KMeansResult", "assign", "kmeans", "nearest"),
    "kv": ("DiscreteKeyValueBottleneck", "KeyValueClassifier", "train_values"),
    "continual": ("ClassIncrementalStream",),
    "studies.continual": ("ContinualConfig", "run_experiment"),
    "codebook": ("CodebookLayer", "GroupCodebookLayer", "bypass_codebooks", "record_codes", "steer", "unwrap",
                 "wrap_codebook"),
    "concepts": ("ConceptBottleneckModel", "intervention_curve"),
    "info": ("InfoPlane", "VariationalIB", "cauchy_schwarz_ib_loss", "conditional_mutual_information", "entropy",
             "mutual_information"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_WHERE])
