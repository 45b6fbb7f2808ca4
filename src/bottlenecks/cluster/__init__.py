"""Fast exact k-means and nearest-code search: the engine every bottleneck is fitted with.

Modules: ``search`` (``nearest``: top-k codes in bounded memory), ``exact`` (certified
nearest-centroid assignment with a low-precision candidate search), ``lloyd`` (``kmeans``:
initialisation, pruned Lloyd iterations, distributed), ``estimator`` (the scikit-learn
``KMeans``), ``triton_top2`` (the GPU kernel), ``maintenance`` (EMA updates, dead-code re-seeding
and usage statistics shared by every quantiser).
"""

from .estimator import KMeans
from .exact import assign_exact, choose_precision
from .lloyd import KMeansResult, assign, kmeans, kmeans_plusplus
from .search import nearest

__all__ = ["KMeans", "KMeansResult", "assign", "assign_exact", "choose_precision", "kmeans",
           "kmeans_plusplus", "nearest"]
