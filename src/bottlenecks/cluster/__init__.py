"""Fast exact k-means and nearest-code search: the engine every bottleneck is fitted with.

Modules: ``search`` (``nearest``: top-k codes in bounded memory), ``exact`` (certified
nearest-centroid assignment with a low-precision candidate search), ``lloyd`` (``kmeans``:
initialisation, pruned Lloyd iterations, distributed), ``estimator`` (the scikit-learn
``KMeans``), ``triton_top2`` (the GPU kernel), ``maintenance`` (EMA updates, dead-code re-seeding
and usage statistics shared by every quantiser).
"""

from .exact import assign_exact, choose_precision
from .lloyd import KMeansResult, assign, kmeans, kmeans_plusplus
from .search import nearest

__all__ = ["KMeans", "KMeansResult", "assign", "assign_exact", "choose_precision", "kmeans",
           "kmeans_plusplus", "nearest"]


def __getattr__(name: str):
    # the scikit-learn estimator is imported on first use: ``import bottlenecks.kv`` (which fits
    # keys with ``kmeans``) must not pay for scikit-learn and SciPy
    if name == "KMeans":
        from .estimator import KMeans

        return KMeans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
