"""Studies: pipelines that train, measure and write a report (the layer between the families
and the command line). Each study module holds one config dataclass (a :class:`StudyConfig`),
one results dataclass (a :class:`StudyResults`) and a ``run(config, ...)`` function.

Importing this package imports no study: ``from bottlenecks.studies.continual import ...``.
"""

from .base import StudyConfig, StudyResults

__all__ = ["StudyConfig", "StudyResults"]
