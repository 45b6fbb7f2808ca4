"""Fast exact k-means and nearest-code search: the engine every bottleneck is fitted with."""

from .assign import assign_exact, choose_precision
from .estimator import KMeans
from .kmeans import KMeansResult, assign, kmeans, kmeans_plusplus, lloyd
from .search import nearest

__all__ = ["KMeans", "KMeansResult", "assign", "assign_exact", "choose_precision", "kmeans",
           "kmeans_plusplus", "lloyd", "nearest"]
