"""Studies: pipelines that train, measure and write a report (the layer between the families
and the command line). Each study module holds one config dataclass (a :class:`StudyConfig`),
one results dataclass (a :class:`StudyResults`) and a ``run(config, out=..., progress=...)``.

- :mod:`~bottlenecks.studies.continual`: class-incremental learning, the key-value bottleneck
  against fine-tuning, replay and joint training (``ContinualConfig``, ``run_experiment``);
- :mod:`~bottlenecks.studies.tokfsm`: codebook features on TokFSM (with ``tokfsm_analysis``);
- :mod:`~bottlenecks.studies.concepts_demo`: the concept-bottleneck pipeline on concept shapes;
- :mod:`~bottlenecks.studies.info_plane`: the 12-bit information plane, tanh vs ReLU;
- :mod:`~bottlenecks.studies.kmeans_demo`: k-means on an image data set, purity, centroids.

Importing this package imports no study: ``from bottlenecks.studies.continual import ...``.
"""

from .base import StudyConfig, StudyResults

__all__ = ["StudyConfig", "StudyResults"]
