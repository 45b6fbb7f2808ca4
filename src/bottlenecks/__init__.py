"""bottlenecks: put bottlenecks into neural networks, train them and look inside them."""

from .cluster import KMeans, KMeansResult, assign, kmeans, nearest

__version__ = "0.1.0"
__all__ = ["KMeans", "KMeansResult", "assign", "kmeans", "nearest", "__version__"]
