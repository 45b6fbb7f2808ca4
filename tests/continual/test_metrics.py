"""Continual-learning metrics on a hand-made accuracy matrix, accuracies and the seed summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bottlenecks.continual import (
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

# R[i, j]: accuracy on task j after training on task i. Task 0 improves a little while task 1
# is learnt (0.90 -> 0.95), so forgetting (from the best) and BWT (from just after) differ.
R = np.array([
    [0.90, 0.00, 0.00],
    [0.95, 0.80, 0.00],
    [0.30, 0.50, 0.70],
])


def test_metrics_on_a_hand_made_matrix():
    # average accuracy: last row (0.30 + 0.50 + 0.70) / 3 = 1.50 / 3 = 0.50
    assert average_accuracy(R) == pytest.approx(0.50)
    # incremental: row 0 -> 0.90; row 1 -> (0.95 + 0.80) / 2 = 0.875; row 2 -> 0.50;
    # (0.90 + 0.875 + 0.50) / 3 = 2.275 / 3 = 0.758333...
    assert average_incremental_accuracy(R) == pytest.approx(2.275 / 3)
    # forgetting: task 0: max(0.90, 0.95) - 0.30 = 0.65; task 1: max(0.00, 0.80) - 0.50 = 0.30;
    # (0.65 + 0.30) / 2 = 0.475
    assert forgetting(R) == pytest.approx(0.475)
    # BWT: task 0: 0.30 - 0.90 = -0.60; task 1: 0.50 - 0.80 = -0.30; (-0.60 - 0.30) / 2 = -0.45
    assert backward_transfer(R) == pytest.approx(-0.45)
    # final accuracy with equal weights is the average accuracy; weighted by task sizes 1, 1, 2:
    # (0.30 + 0.50 + 2 * 0.70) / 4 = 2.20 / 4 = 0.55
    assert final_accuracy(R) == pytest.approx(0.50)
    assert final_accuracy(R, task_sizes=[1, 1, 2]) == pytest.approx(0.55)
    assert continual_metrics(R) == pytest.approx({
        "average_accuracy": 0.50, "final_accuracy": 0.50, "average_incremental_accuracy": 2.275 / 3,
        "forgetting": 0.475, "backward_transfer": -0.45,
    })


def test_upper_triangle_may_be_missing():
    r = R.copy()
    r[np.triu_indices(3, k=1)] = np.nan
    assert continual_metrics(r) == pytest.approx(continual_metrics(R))
    assert forgetting(torch.tensor(r)) == pytest.approx(0.475)  # tensors are accepted


def test_no_forgetting_and_single_task():
    perfect = np.tril(np.ones((4, 4)))
    assert forgetting(perfect) == 0.0 and backward_transfer(perfect) == 0.0
    assert average_accuracy(perfect) == 1.0 == average_incremental_accuracy(perfect)
    one = np.array([[0.7]])
    assert average_accuracy(one) == pytest.approx(0.7)
    assert math.isnan(forgetting(one)) and math.isnan(backward_transfer(one))


@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.zeros((2, 3)), "square"),
        (np.zeros(3), "square"),
        (np.array([[0.5, 0.0], [np.nan, 0.5]]), "R\\[1, 0\\] is NaN"),
        (np.array([[np.inf]]), "infinity"),
    ],
)
def test_bad_matrices(matrix, match):
    with pytest.raises(ValueError, match=match):
        average_accuracy(matrix)


def test_class_balanced_accuracy():
    y_true = np.array([0, 0, 0, 0, 1])
    y_pred = np.array([0, 0, 0, 0, 0])
    # plain accuracy 4/5 = 0.8; balanced: class 0 recall 1, class 1 recall 0 -> 0.5
    assert class_balanced_accuracy(y_true, y_pred) == pytest.approx(0.5)
    assert class_balanced_accuracy(y_true, y_pred, classes=[0]) == pytest.approx(1.0)
    assert class_balanced_accuracy(torch.tensor(y_true), torch.tensor(y_pred)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no samples"):
        class_balanced_accuracy(y_true, y_pred, classes=[0, 2])
    with pytest.raises(ValueError, match="same length"):
        class_balanced_accuracy(y_true, y_pred[:3])


def test_task_accuracies_and_accuracy_matrix():
    tasks = [[0, 1], [2, 3]]
    y_test = np.array([0, 0, 1, 2, 3, 3])
    after_0 = np.array([0, 0, 0, 1, 1, 0])  # task 0: 2 of 3 right; balanced (1 + 0) / 2; task 1: 0
    after_1 = np.array([2, 0, 1, 2, 3, 2])  # task 0: 2 of 3 right; task 1: 2 of 3; balanced (1 + 0.5) / 2
    assert task_accuracies(y_test, after_0, tasks) == pytest.approx([2 / 3, 0.0])
    assert task_accuracies(y_test, after_0, tasks, balanced=True) == pytest.approx([0.5, 0.0])
    R2 = accuracy_matrix(y_test, [after_0, after_1], tasks)
    assert R2 == pytest.approx(np.array([[2 / 3, 0.0], [2 / 3, 2 / 3]]))
    assert accuracy_matrix(y_test, [after_0, after_1], tasks, balanced=True)[1] == pytest.approx([0.75, 0.75])
    assert np.isnan(task_accuracies(y_test, after_0, [[0], [9]])[1])  # no test samples of class 9
    with pytest.raises(ValueError, match="one prediction array per task"):
        accuracy_matrix(y_test, [after_0], tasks)

    acc = AccuracyMatrix(2)
    assert not acc.is_complete()
    acc.record_predictions(0, y_test, after_0, tasks)
    acc.record(1, 0, 2 / 3)
    with pytest.raises(ValueError, match="R\\[1, 1\\] is NaN"):
        acc.metrics()
    acc.record(1, 1, 2 / 3)
    assert acc.is_complete()
    assert acc.R == pytest.approx(R2)
    assert acc.metrics()["backward_transfer"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="0..1"):
        acc.record(2, 0, 0.5)
    with pytest.raises(ValueError, match="finite"):
        acc.record(0, 0, float("nan"))


def test_summarize_mean_and_std_over_seeds():
    runs = [
        {"method": "dkvb", "average_accuracy": 1.0, "R": np.array([[1.0, 0.0], [0.5, 1.0]])},
        {"method": "dkvb", "average_accuracy": 3.0, "R": np.array([[1.0, 0.0], [0.7, 0.8]])},
    ]
    out = summarize(runs)
    assert out["method"] == "dkvb"
    # mean (1 + 3) / 2 = 2; sample std sqrt(((1-2)^2 + (3-2)^2) / 1) = sqrt(2)
    assert out["average_accuracy"] == pytest.approx({"mean": 2.0, "std": math.sqrt(2.0), "n": 2})
    assert out["R"]["mean"] == pytest.approx(np.array([[1.0, 0.0], [0.6, 0.9]]))
    assert out["R"]["std"][1] == pytest.approx([math.sqrt(0.02), math.sqrt(0.02)])
    assert summarize(runs[:1])["average_accuracy"] == {"mean": 1.0, "std": 0.0, "n": 1}
    assert format_mean_std(0.91234, 0.0126) == "0.912 ± 0.013"
    with pytest.raises(ValueError, match="missing \\['R'\\]"):
        summarize([runs[0], {"method": "dkvb", "average_accuracy": 2.0}])
    with pytest.raises(ValueError, match="'method'"):
        summarize([runs[0], {**runs[1], "method": "mlp"}])
    with pytest.raises(ValueError, match="non-empty list"):
        summarize([])
