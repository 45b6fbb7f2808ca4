"""Continual-learning metrics on the accuracy matrix, and mean ± std over seeds.

The accuracy matrix ``R`` of a run over ``T`` tasks is ``(T, T)``: ``R[i, j]`` is the accuracy on
the test samples of task ``j``'s classes after training on tasks ``0..i`` (zero-based). In the
class-incremental setting the model predicts among all classes (no task identity at test time),
so ``R[i, j]`` for a task not yet seen (``j > i``) is usually 0. Entries above the diagonal may be
left NaN (not evaluated); the metrics below never need them.

With ``T`` tasks (formulas zero-based)::

    average accuracy              A   = 1/T   sum_j R[T-1, j]
    average incremental accuracy  AIA = 1/T   sum_i ( 1/(i+1) sum_{j<=i} R[i, j] )
    forgetting                    F   = 1/(T-1) sum_{j<T-1} ( max_{i<T-1} R[i, j] - R[T-1, j] )
    backward transfer             BWT = 1/(T-1) sum_{j<T-1} ( R[T-1, j] - R[j, j] )

References: D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual Learning",
NeurIPS 2017 (ACC, BWT); A. Chaudhry, P. K. Dokania, T. Ajanthan and P. H. S. Torr, "Riemannian
Walk for Incremental Learning: Understanding Forgetting and Intransigence", ECCV 2018 (average
accuracy, forgetting); S.-A. Rebuffi, A. Kolesnikov, G. Sperl and C. H. Lampert, "iCaRL:
Incremental Classifier and Representation Learning", CVPR 2017 (average incremental accuracy).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ..validation import check_positive_int
from .streams import as_labels

__all__ = [
    "AccuracyMatrix",
    "accuracy_matrix",
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


# --------------------------------------------------------------------------- checks
def _matrix(R, name: str = "R") -> np.ndarray:
    try:
        R = np.array(R.detach().cpu().double().numpy() if hasattr(R, "detach") else R, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a square (T, T) matrix of accuracies, got {type(R).__name__} "
                        f"({err})") from None
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"{name}: expected a square (T, T) accuracy matrix with T >= 1, got shape {R.shape}")
    if np.isinf(R).any():
        raise ValueError(f"{name}: expected finite accuracies (NaN allowed above the diagonal), got infinity")
    lower = np.tril(np.ones(R.shape, dtype=bool))
    if np.isnan(R[lower]).any():
        rows, cols = np.nonzero(np.isnan(R) & lower)
        where = ", ".join(f"R[{i}, {j}]" for i, j in zip(rows[:5].tolist(), cols[:5].tolist(), strict=True))
        raise ValueError(
            f"{name}: entries on or below the diagonal must be recorded, but {where}"
            f"{' ...' if rows.size > 5 else ''} {'is' if rows.size == 1 else 'are'} NaN; "
            "evaluate every seen task after each task"
        )
    return R


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = as_labels(y_true, "y_true"), as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred: expected the same length, got {y_true.size} and {y_pred.size}")
    return y_true, y_pred


# --------------------------------------------------------------------------- accuracies
def class_balanced_accuracy(y_true, y_pred, classes=None) -> float:
    """Mean over ``classes`` of the per-class recall: ``1/|C| sum_{c in C} mean(y_pred[y_true == c] == c)``.

    ``classes`` defaults to the classes present in ``y_true``; samples of other classes are
    ignored. Every class asked for must have at least one sample in ``y_true``. Predictions may
    be any class (a sample of class c predicted as a class outside ``classes`` counts as wrong).
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    classes = np.unique(y_true) if classes is None else np.unique(as_labels(classes, "classes"))
    if classes.size == 0:
        raise ValueError("classes: expected at least one class, got none (is y_true empty?)")
    absent = np.setdiff1d(classes, y_true)
    if absent.size:
        raise ValueError(f"classes {absent.tolist()} have no samples in y_true; expected every class in "
                         "`classes` to appear in y_true")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def task_accuracies(y_true, y_pred, tasks: Sequence[Sequence[int]], balanced: bool = False) -> np.ndarray:
    """``(T,) float64``: accuracy on the samples of each task's classes (``tasks[j]`` lists task j's classes).

    Plain accuracy over the task's samples, or with ``balanced=True`` the class-balanced accuracy
    over the task's classes. The prediction is over all classes (class-incremental): a sample of
    task j predicted as a class of another task is wrong. A task without test samples gives NaN.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    out = np.full(len(tasks), np.nan)
    for j, classes in enumerate(tasks):
        classes = as_labels(list(classes), f"tasks[{j}]") if len(classes) else np.zeros(0, np.int64)
        mask = np.isin(y_true, classes)
        if not mask.any():
            continue
        if balanced:
            out[j] = class_balanced_accuracy(y_true[mask], y_pred[mask], np.unique(y_true[mask]))
        else:
            out[j] = float(np.mean(y_pred[mask] == y_true[mask]))
    return out


def accuracy_matrix(y_true, predictions: Sequence, tasks: Sequence[Sequence[int]],
                    balanced: bool = False) -> np.ndarray:
    """Build ``R: (T, T) float64`` from the test predictions made after each task.

    y_true: (n,) test labels. predictions: ``T`` arrays ``(n,)``, ``predictions[i]`` made after
    training on task ``i``. ``R[i, j]`` = :func:`task_accuracies` of ``predictions[i]`` on task ``j``
    (the whole matrix is filled, including tasks not yet seen).
    """
    if len(predictions) != len(tasks):
        raise ValueError(f"predictions: expected one prediction array per task ({len(tasks)}), "
                         f"got {len(predictions)}")
    return np.stack([task_accuracies(y_true, p, tasks, balanced) for p in predictions])


class AccuracyMatrix:
    """The accuracy matrix of one run, filled in as training goes: ``R[i, j]`` starts NaN.

    >>> acc = AccuracyMatrix(4)
    >>> acc.record(0, 0, 0.98)                                  # one entry
    >>> acc.record_predictions(1, y_test, y_pred, stream.tasks) # a whole row after task 1
    >>> acc.R, acc.metrics()
    """

    def __init__(self, n_tasks: int):
        self.n_tasks = check_positive_int(n_tasks, "n_tasks")
        self._R = np.full((self.n_tasks, self.n_tasks), np.nan)

    def __repr__(self) -> str:
        filled = int((~np.isnan(self._R)).sum())
        return f"{type(self).__name__}(n_tasks={self.n_tasks}, recorded={filled}/{self._R.size})"

    def _index(self, value, name: str) -> int:
        value = check_positive_int(value, name, minimum=0)
        if value >= self.n_tasks:
            raise ValueError(f"{name}: expected a task index in 0..{self.n_tasks - 1}, got {value}")
        return value

    def record(self, after_task: int, task: int, acc: float) -> None:
        """Set ``R[after_task, task] = acc`` (a finite number; recording twice overwrites)."""
        i, j = self._index(after_task, "after_task"), self._index(task, "task")
        if isinstance(acc, bool) or not isinstance(acc, numbers.Real) or not math.isfinite(acc):
            raise ValueError(f"acc: expected a finite number, got {acc!r}")
        self._R[i, j] = float(acc)

    def record_predictions(self, after_task: int, y_true, y_pred, tasks: Sequence[Sequence[int]],
                           balanced: bool = False) -> np.ndarray:
        """Record row ``after_task`` from test predictions (see :func:`task_accuracies`); returns the row."""
        i = self._index(after_task, "after_task")
        if len(tasks) != self.n_tasks:
            raise ValueError(f"tasks: expected {self.n_tasks} tasks, got {len(tasks)}")
        row = task_accuracies(y_true, y_pred, tasks, balanced)
        self._R[i] = row
        return row

    @property
    def R(self) -> np.ndarray:
        """A copy of the ``(T, T)`` matrix (NaN where nothing was recorded)."""
        return self._R.copy()

    def is_complete(self) -> bool:
        """True when every entry on or below the diagonal has been recorded."""
        return not np.isnan(self._R[np.tril_indices(self.n_tasks)]).any()

    def metrics(self, task_sizes=None) -> dict[str, float]:
        """:func:`continual_metrics` of the matrix (needs :meth:`is_complete`)."""
        return continual_metrics(self._R, task_sizes)


# --------------------------------------------------------------------------- metrics of R
def average_accuracy(R) -> float:
    """Average accuracy after the last task, ``A = 1/T sum_j R[T-1, j]`` — the mean of the last row.

    Lopez-Paz & Ranzato (2017) "ACC"; Chaudhry et al. (2018) "A_T". Every task weighs the same.
    """
    R = _matrix(R)
    return float(R[-1].mean())


def final_accuracy(R, task_sizes=None) -> float:
    """Accuracy on all the stream's test data after the last task, from the last row of ``R``:
    ``sum_j w_j R[T-1, j] / sum_j w_j`` with weights ``w = task_sizes``.

    ``task_sizes=None`` weighs tasks equally (then this equals :func:`average_accuracy`). With
    ``task_sizes`` = the number of classes per task and ``R`` holding class-balanced task accuracies
    (``balanced=True``), it is the class-balanced accuracy over every class of the stream; with
    ``task_sizes`` = the number of test samples per task and plain task accuracies, it is the plain
    accuracy over all test samples.
    """
    R = _matrix(R)
    if task_sizes is None:
        return float(R[-1].mean())
    w = np.asarray(task_sizes, dtype=np.float64)
    if w.shape != (R.shape[0],) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"task_sizes: expected {R.shape[0]} finite weights >= 0 with a positive sum, "
                         f"got {np.asarray(task_sizes).tolist()}")
    return float(np.dot(w, R[-1]) / w.sum())


def average_incremental_accuracy(R) -> float:
    """Average incremental accuracy (Rebuffi et al., 2017, iCaRL): the accuracy on the tasks seen so
    far, averaged over the end of every task: ``1/T sum_i ( 1/(i+1) sum_{j<=i} R[i, j] )``.

    Tasks weigh the same within a row (iCaRL weighs classes; equal for equal-size tasks).
    """
    R = _matrix(R)
    return float(np.mean([R[i, :i + 1].mean() for i in range(R.shape[0])]))


def forgetting(R) -> float:
    """Average forgetting (Chaudhry et al., 2018): how far each earlier task fell from its best.

    ``F = 1/(T-1) sum_{j<T-1} ( max_{i<T-1} R[i, j] - R[T-1, j] )``. Entries above the diagonal
    (accuracy on a task before training on it) enter the max only if recorded (NaN is skipped).
    Higher is worse; NaN when ``T == 1``.
    """
    R = _matrix(R)
    T = R.shape[0]
    if T == 1:
        return math.nan
    best = np.nanmax(R[:T - 1, :T - 1], axis=0)  # the diagonal is always there
    return float(np.mean(best - R[T - 1, :T - 1]))


def backward_transfer(R) -> float:
    """Backward transfer (Lopez-Paz & Ranzato, 2017, GEM): the change in accuracy on each earlier
    task between just after learning it and the end, ``BWT = 1/(T-1) sum_{j<T-1} ( R[T-1, j] - R[j, j] )``.

    Negative values are forgetting. NaN when ``T == 1``.
    """
    R = _matrix(R)
    T = R.shape[0]
    if T == 1:
        return math.nan
    return float(np.mean(R[T - 1, :T - 1] - np.diag(R)[:T - 1]))


def continual_metrics(R, task_sizes=None) -> dict[str, float]:
    """All the metrics of ``R`` in one dict: ``average_accuracy``, ``final_accuracy`` (with
    ``task_sizes``), ``average_incremental_accuracy``, ``forgetting``, ``backward_transfer``."""
    R = _matrix(R)
    return {
        "average_accuracy": average_accuracy(R),
        "final_accuracy": final_accuracy(R, task_sizes),
        "average_incremental_accuracy": average_incremental_accuracy(R),
        "forgetting": forgetting(R),
        "backward_transfer": backward_transfer(R),
    }


# --------------------------------------------------------------------------- over seeds
def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def summarize(runs: Sequence[Mapping], ddof: int = 1) -> dict:
    """Mean ± std over seeds of per-seed result dicts with the same keys.

    Numbers give ``{"mean": float, "std": float, "n": int}``; arrays, lists and tensors of one shape
    (an accuracy matrix, a curve) give element-wise ``{"mean": ndarray, "std": ndarray, "n": int}``;
    strings and other values that are equal in every run (a method name) are passed through
    unchanged. ``std`` is the sample standard deviation (``ddof=1``) — 0 for a single run. NaN in
    any run makes the mean NaN.
    """
    if isinstance(runs, Mapping) or not isinstance(runs, Sequence) or len(runs) == 0:
        raise ValueError(f"runs: expected a non-empty list of per-seed dicts, got {type(runs).__name__}")
    for s, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise TypeError(f"runs[{s}]: expected a dict of results, got {type(run).__name__}")
    keys = list(runs[0])
    for s, run in enumerate(runs[1:], start=1):
        if set(run) != set(keys):
            missing, extra = sorted(set(keys) - set(run), key=str), sorted(set(run) - set(keys), key=str)
            raise ValueError(f"runs[{s}]: expected the keys of runs[0]; missing {missing}, extra {extra}")
    n = len(runs)
    out: dict = {}
    for key in keys:
        values = [run[key] for run in runs]
        if all(_is_number(v) for v in values):
            arr = np.asarray(values, dtype=np.float64)
        elif all(isinstance(v, (np.ndarray, list, tuple)) or hasattr(v, "detach") for v in values):
            try:
                arr = np.stack([np.asarray(v.detach().cpu().double().numpy() if hasattr(v, "detach") else v,
                                           dtype=np.float64)
                                for v in values])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{key!r}: expected numeric arrays of one shape in every run ({err})") from err
        else:
            if any(v != values[0] for v in values[1:]):
                raise ValueError(f"{key!r}: expected numbers, arrays, or a value equal in every run, "
                                 f"got {values!r:.200}")
            out[key] = values[0]
            continue
        mean = arr.mean(axis=0)
        std = arr.std(axis=0, ddof=ddof) if n > ddof else np.zeros_like(mean)
        if arr.ndim == 1:
            mean, std = float(mean), float(std)
        out[key] = {"mean": mean, "std": std, "n": n}
    return out


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``'0.912 ± 0.013'``: a summary entry as text for tables."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
