"""Class-incremental streams: a labelled data set cut into tasks of disjoint classes.

The learner sees the tasks one after another as a plain sequence of mini-batches; nothing in the
batches says where a task ends (no task identity, no boundary signal). The runner, which must
evaluate at the end of each task, knows the boundaries from :meth:`ClassIncrementalStream.task_boundaries`.
The i.i.d. reference ("joint" training) draws batches from the same data, shuffled over all tasks.

>>> stream = ClassIncrementalStream(y_train, n_tasks=4, classes_per_task=2, class_order="seeded", seed=0)
>>> stream.tasks                                   # e.g. [[3, 6], [0, 5], [1, 7], [2, 4]]
>>> for t in range(stream.n_tasks):
...     for idx in stream.batches(t, batch_size=32, epochs=5, seed=0):
...         step(x_train[idx], y_train[idx])
...     evaluate(x_test[stream.task_indices(t, y_test)])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..validation import as_tensor, check_positive_int

__all__ = ["ClassIncrementalStream", "as_labels"]

# spawn keys of the independent random streams derived from one seed
_TASK_STREAM, _JOINT_STREAM, _ORDER_STREAM = 0, 1, 2


def as_labels(y, name: str = "y") -> np.ndarray:
    """Integer class labels as a 1-D ``int64`` NumPy array (from NumPy, a list or a tensor on any device)."""
    t = as_tensor(y.detach().cpu() if hasattr(y, "detach") else y, name)
    if t.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D array of class labels, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer class labels, got dtype {t.dtype}; "
                        f"convert them first, e.g. {name}.astype(np.int64)")
    return t.numpy().astype(np.int64, copy=True)


def _rng(seed, *key: int) -> np.random.Generator:
    seed = check_positive_int(seed, "seed", minimum=0)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _split_sizes(n_classes: int, n_tasks: int, classes_per_task) -> list[int]:
    if classes_per_task is None:  # all classes, as evenly as possible (earlier tasks get the extra ones)
        base, extra = divmod(n_classes, n_tasks)
        return [base + (1 if t < extra else 0) for t in range(n_tasks)]
    cpt = check_positive_int(classes_per_task, "classes_per_task")
    if cpt * n_tasks > n_classes:
        raise ValueError(
            f"n_tasks * classes_per_task = {n_tasks} * {cpt} = {n_tasks * cpt} classes are needed but y has "
            f"only {n_classes}; expected n_tasks * classes_per_task <= {n_classes}"
        )
    return [cpt] * n_tasks


class ClassIncrementalStream:
    """Cut the labels ``y`` into ``n_tasks`` tasks of disjoint classes, in a fixed class order.

    y: (n,) integer labels of the training set (any integers; the classes are ``np.unique(y)``).
    n_tasks: number of tasks, at most the number of classes.
    classes_per_task: classes in each task. ``None`` uses every class, split as evenly as possible
        (the first ``n_classes % n_tasks`` tasks get one more). An integer uses the first
        ``n_tasks * classes_per_task`` classes of the order; the remaining classes are left out of
        the stream (see :attr:`unused_classes`).
    class_order: ``None`` (ascending labels), ``'seeded'`` (a permutation drawn from ``seed``) or a
        sequence that is a permutation of the classes of ``y``.
    seed: the seed of ``class_order='seeded'``; the same seed always gives the same order.

    Attributes: ``classes`` (sorted unique labels), ``class_order`` (``(n_classes,) int64``, the
    full order, including unused classes), ``tasks`` (list of lists of ``int``: task ``t``'s
    classes), ``task_of_class`` (``{class: task}`` for the classes in the stream), ``n_tasks``,
    ``n_classes``, ``y`` (a copy of the labels).
    """

    def __init__(self, y, n_tasks: int, classes_per_task: int | None = None,
                 class_order: str | Sequence[int] | None = None, seed: int = 0):
        self.y = as_labels(y, "y")
        if self.y.size == 0:
            raise ValueError("y: expected at least 1 label, got an empty array")
        self.classes = np.unique(self.y)
        self.n_classes = int(self.classes.size)
        self.n_tasks = check_positive_int(n_tasks, "n_tasks")
        if self.n_tasks > self.n_classes:
            raise ValueError(
                f"n_tasks={self.n_tasks} but y has only {self.n_classes} classes; "
                f"expected n_tasks <= {self.n_classes} (every task needs at least one class)"
            )
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.class_order = self._order(class_order)
        sizes = _split_sizes(self.n_classes, self.n_tasks, classes_per_task)
        ends = np.cumsum(sizes)
        self.tasks: list[list[int]] = [
            [int(c) for c in self.class_order[end - size:end]] for size, end in zip(sizes, ends, strict=True)
        ]
        self.task_of_class: dict[int, int] = {c: t for t, classes in enumerate(self.tasks) for c in classes}
        self.unused_classes: list[int] = [int(c) for c in self.class_order[int(ends[-1]):]]
        # task of each training sample (-1: class not in the stream), for fast index look-ups
        self._train_task = self.task_of(self.y)

    def _order(self, class_order) -> np.ndarray:
        if class_order is None:
            return self.classes.copy()
        if isinstance(class_order, str):
            if class_order != "seeded":
                raise ValueError(f"class_order: expected None, 'seeded' or a sequence of classes, got {class_order!r}")
            return _rng(self.seed, _ORDER_STREAM).permutation(self.classes)
        order = as_labels(class_order, "class_order")
        values, counts = np.unique(order, return_counts=True)
        missing = np.setdiff1d(self.classes, order)
        extra = np.setdiff1d(order, self.classes)
        repeated = values[counts > 1]
        if missing.size or extra.size or repeated.size:
            problems = []
            if missing.size:
                problems.append(f"missing {missing.tolist()}")
            if extra.size:
                problems.append(f"not in y {extra.tolist()}")
            if repeated.size:
                problems.append(f"repeated {repeated.tolist()}")
            raise ValueError(
                f"class_order: expected a permutation of the {self.n_classes} classes of y "
                f"{self.classes.tolist()}, got {order.tolist()} ({'; '.join(problems)})"
            )
        return order

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_samples={self.y.size}, n_tasks={self.n_tasks}, "
                f"tasks={self.tasks})")

    def __len__(self) -> int:
        return self.n_tasks

    # ----------------------------------------------------------------- look-ups
    def _check_task(self, t) -> int:
        t = check_positive_int(t, "t", minimum=0)
        if t >= self.n_tasks:
            raise ValueError(f"t: expected a task index in 0..{self.n_tasks - 1}, got {t}")
        return t

    def task_of(self, labels) -> np.ndarray:
        """``(n,) int64`` task of each label; -1 for labels of classes that are not in the stream."""
        labels = as_labels(labels, "labels")
        out = np.full(labels.shape, -1, dtype=np.int64)
        for c, t in self.task_of_class.items():
            out[labels == c] = t
        return out

    def seen_classes(self, t) -> list[int]:
        """Classes of tasks ``0..t`` (in stream order): what a learner has met by the end of task ``t``."""
        t = self._check_task(t)
        return [c for classes in self.tasks[:t + 1] for c in classes]

    @property
    def stream_classes(self) -> list[int]:
        """Classes of all tasks, in stream order."""
        return self.seen_classes(self.n_tasks - 1)

    def task_indices(self, t, labels=None) -> np.ndarray:
        """Ascending ``int64`` indices of the samples of task ``t``'s classes in ``labels``.

        ``labels`` defaults to the training labels ``y``; pass any other label array (e.g. the test
        labels) to select that set's samples of task ``t``'s classes.
        """
        t = self._check_task(t)
        task = self._train_task if labels is None else self.task_of(labels)
        return np.flatnonzero(task == t).astype(np.int64)

    def stream_indices(self, labels=None) -> np.ndarray:
        """Ascending indices of the samples of every class in the stream (all tasks together)."""
        task = self._train_task if labels is None else self.task_of(labels)
        return np.flatnonzero(task >= 0).astype(np.int64)

    # ----------------------------------------------------------------- batches
    @staticmethod
    def _epochs(idx: np.ndarray, batch_size, epochs, rng, drop_last: bool) -> Iterator[np.ndarray]:
        batch_size = check_positive_int(batch_size, "batch_size")  # checked now, not at the first next()
        epochs = check_positive_int(epochs, "epochs")
        n = idx.size
        stop = n - n % batch_size if drop_last else n

        def generate() -> Iterator[np.ndarray]:
            for _ in range(epochs):
                perm = idx[rng.permutation(n)]
                for start in range(0, stop, batch_size):
                    yield perm[start:start + batch_size]

        return generate()

    @staticmethod
    def _count(n: int, batch_size, epochs, drop_last: bool) -> int:
        batch_size = check_positive_int(batch_size, "batch_size")
        epochs = check_positive_int(epochs, "epochs")
        per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        return epochs * per_epoch

    def batches(self, t, batch_size: int, epochs: int = 1, seed: int = 0, *,
                drop_last: bool = False) -> Iterator[np.ndarray]:
        """Mini-batches of task ``t``: ``int64`` index arrays into ``y``, ``epochs`` passes over the task.

        Each epoch is a fresh shuffle of the task's samples, cut into batches of ``batch_size`` (the
        last one smaller unless ``drop_last``). The batches carry no task identity. Deterministic:
        the same ``(seed, t)`` gives the same batches; different tasks use independent shuffles.
        """
        t = self._check_task(t)
        return self._epochs(self.task_indices(t), batch_size, epochs, _rng(seed, _TASK_STREAM, t), drop_last)

    def stream_batches(self, batch_size: int, epochs: int = 1, seed: int = 0, *,
                       drop_last: bool = False) -> Iterator[np.ndarray]:
        """The whole class-incremental stream: :meth:`batches` of task 0, then task 1, ... with no
        boundary marker in between (``epochs`` passes over each task before moving on)."""
        for t in range(self.n_tasks):
            yield from self.batches(t, batch_size, epochs, seed, drop_last=drop_last)

    def joint_batches(self, batch_size: int, epochs: int = 1, seed: int = 0, *,
                      drop_last: bool = False) -> Iterator[np.ndarray]:
        """The i.i.d. reference: ``epochs`` shuffled passes over the data of all tasks together.

        Uses the same samples as the stream (classes left out of the stream stay out) and, without
        ``drop_last``, about the same number of steps as :meth:`stream_batches` with the same
        ``epochs`` — at most ``n_tasks - 1`` fewer, from the smaller last batch of each task.
        """
        return self._epochs(self.stream_indices(), batch_size, epochs, _rng(seed, _JOINT_STREAM), drop_last)

    def n_batches(self, t, batch_size: int, epochs: int = 1, *, drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields for task ``t``."""
        return self._count(self.task_indices(t).size, batch_size, epochs, drop_last)

    def n_joint_batches(self, batch_size: int, epochs: int = 1, *, drop_last: bool = False) -> int:
        """How many batches :meth:`joint_batches` yields."""
        return self._count(self.stream_indices().size, batch_size, epochs, drop_last)

    def task_boundaries(self, batch_size: int, epochs: int = 1, *, drop_last: bool = False) -> list[int]:
        """Cumulative step counts at the end of each task of :meth:`stream_batches`: ``n_tasks`` ints,
        the last one the total number of steps. Task ``t`` covers steps ``[b[t-1], b[t])``."""
        counts = [self.n_batches(t, batch_size, epochs, drop_last=drop_last) for t in range(self.n_tasks)]
        return [int(c) for c in np.cumsum(counts)]
