"""Continual learning: class-incremental streams without task boundaries, learners (the key-value
bottleneck, naive fine-tuning, replay), the runner, and the metrics of the accuracy matrix
(average accuracy, forgetting, backward transfer) with mean ± std over seeds."""

from .methods import METHODS, DKVBLearner, HeadLearner, Learner, ReplayLearner, make_learner
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
from .runner import ContinualConfig, run_experiment, run_joint, run_stream, tune_learning_rates
from .streams import ClassIncrementalStream, as_labels

__all__ = [
    "METHODS",
    "AccuracyMatrix",
    "ContinualConfig",
    "DKVBLearner",
    "HeadLearner",
    "Learner",
    "ReplayLearner",
    "make_learner",
    "run_experiment",
    "run_joint",
    "run_stream",
    "tune_learning_rates",
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
