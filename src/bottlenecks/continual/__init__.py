"""Continual learning, the library: class-incremental streams without task boundaries, learners
(the key-value bottleneck, naive fine-tuning, replay), and the metrics of the accuracy matrix
(average accuracy, forgetting, backward transfer) with mean ± std over seeds.

The study that runs them on a data set and writes a report is :mod:`bottlenecks.studies.continual`
(``ContinualConfig``, ``run_experiment``, ``run``)."""

from .methods import (
    METHODS,
    DKVBLearner,
    HeadLearner,
    Learner,
    ReplayLearner,
    VIBLearner,
    VQLearner,
    fit_until_converged,
    make_learner,
)
from .metrics import (
    AccuracyMatrix,
    accuracy_matrix,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    class_balanced_accuracy,
    continual_metrics,
    final_accuracy,
    forgetting,
    format_mean_std,
    summarize,
    task_accuracies,
)
from .streams import ClassIncrementalStream, as_labels

__all__ = [
    "METHODS",
    "AccuracyMatrix",
    "DKVBLearner",
    "HeadLearner",
    "Learner",
    "ReplayLearner",
    "VIBLearner",
    "VQLearner",
    "fit_until_converged",
    "make_learner",
    "ClassIncrementalStream",
    "accuracy_matrix",
    "as_labels",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "class_balanced_accuracy",
    "continual_metrics",
    "final_accuracy",
    "forgetting",
    "format_mean_std",
    "summarize",
    "task_accuracies",
]
