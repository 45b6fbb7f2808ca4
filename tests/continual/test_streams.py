"""Class-incremental streams: disjoint tasks, no class leaks, order by seed, batches, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bottlenecks.continual import ClassIncrementalStream


def labels(n_classes=8, per_class=10, seed=0):
    y = np.repeat(np.arange(n_classes), per_class)
    return np.random.default_rng(seed).permutation(y)


def test_tasks_are_disjoint_and_cover_the_classes():
    y = labels()
    stream = ClassIncrementalStream(y, n_tasks=4, classes_per_task=2)
    assert stream.tasks == [[0, 1], [2, 3], [4, 5], [6, 7]]  # default order: ascending labels
    assert stream.class_order.tolist() == list(range(8))
    assert stream.task_of_class == {c: c // 2 for c in range(8)}
    assert stream.stream_classes == list(range(8)) and stream.unused_classes == []
    assert stream.seen_classes(1) == [0, 1, 2, 3]
    seen = []
    for t in range(4):
        idx = stream.task_indices(t)
        assert idx.dtype == np.int64 and (np.diff(idx) > 0).all()
        assert set(y[idx].tolist()) == set(stream.tasks[t])  # no class leaks into another task
        assert idx.size == 20
        seen.append(idx)
    all_idx = np.concatenate(seen)
    assert np.unique(all_idx).size == all_idx.size == y.size  # disjoint and complete


def test_task_indices_on_other_labels_and_tensors():
    stream = ClassIncrementalStream(torch.tensor(labels()), n_tasks=4)
    y_test = np.array([7, 0, 1, 6, 3, 9])  # 9 is not in the stream
    assert stream.task_indices(3, y_test).tolist() == [0, 3]
    assert stream.task_indices(0, torch.tensor(y_test)).tolist() == [1, 2]
    assert stream.task_of(y_test).tolist() == [3, 0, 0, 3, 1, -1]
    assert stream.stream_indices(y_test).tolist() == [0, 1, 2, 3, 4]


def test_seeded_order_is_deterministic_and_depends_on_the_seed():
    y = labels(n_classes=10)
    orders = [ClassIncrementalStream(y, 5, class_order="seeded", seed=s).class_order.tolist() for s in (0, 0, 1)]
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]
    assert sorted(orders[0]) == list(range(10)) and orders[0] != list(range(10))
    stream = ClassIncrementalStream(y, 5, class_order="seeded", seed=0)
    assert [c for task in stream.tasks for c in task] == orders[0]


def test_given_order_and_leftover_classes():
    y = labels()
    stream = ClassIncrementalStream(y, n_tasks=3, classes_per_task=2, class_order=[7, 6, 5, 4, 3, 2, 1, 0])
    assert stream.tasks == [[7, 6], [5, 4], [3, 2]]
    assert stream.unused_classes == [1, 0]
    assert 0 not in stream.task_of_class
    assert set(y[stream.stream_indices()].tolist()) == {2, 3, 4, 5, 6, 7}


def test_uneven_split_without_classes_per_task():
    stream = ClassIncrementalStream(labels(n_classes=7), n_tasks=3)
    assert stream.tasks == [[0, 1, 2], [3, 4], [5, 6]]


def test_batches_cover_each_task_once_per_epoch_and_are_deterministic():
    y = labels()
    stream = ClassIncrementalStream(y, n_tasks=4)
    batches = list(stream.batches(1, batch_size=6, epochs=3, seed=5))
    assert len(batches) == stream.n_batches(1, 6, 3) == 3 * 4  # 20 samples -> 6, 6, 6, 2 per epoch
    assert [b.size for b in batches[:4]] == [6, 6, 6, 2]
    for e in range(3):
        epoch = np.concatenate(batches[4 * e:4 * e + 4])
        assert np.array_equal(np.sort(epoch), stream.task_indices(1))
    assert set(y[np.concatenate(batches)].tolist()) == {2, 3}
    again = list(stream.batches(1, batch_size=6, epochs=3, seed=5))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = np.concatenate(list(stream.batches(1, batch_size=6, epochs=3, seed=6)))
    assert not np.array_equal(np.concatenate(batches), other)
    first, second = np.concatenate(batches[:4]), np.concatenate(batches[4:8])
    assert not np.array_equal(first, second)  # reshuffled every epoch
    dropped = list(stream.batches(1, batch_size=6, epochs=1, drop_last=True))
    assert [b.size for b in dropped] == [6, 6, 6] == [6] * stream.n_batches(1, 6, drop_last=True)


def test_stream_batches_follow_the_tasks_in_order_and_boundaries():
    y = labels()
    stream = ClassIncrementalStream(y, n_tasks=4, class_order="seeded", seed=3)
    bounds = stream.task_boundaries(batch_size=8, epochs=2)
    assert bounds == [6, 12, 18, 24]  # 20 samples per task -> 3 batches per epoch
    batches = list(stream.stream_batches(batch_size=8, epochs=2, seed=0))
    assert len(batches) == bounds[-1]
    starts = [0, *bounds[:-1]]
    for t, (a, b) in enumerate(zip(starts, bounds, strict=True)):
        assert set(y[np.concatenate(batches[a:b])].tolist()) == set(stream.tasks[t])


def test_joint_batches_are_iid_over_all_tasks():
    y = labels()
    stream = ClassIncrementalStream(y, n_tasks=3, classes_per_task=2)  # classes 6, 7 left out
    batches = list(stream.joint_batches(batch_size=10, epochs=2, seed=0))
    assert len(batches) == stream.n_joint_batches(10, 2) == 2 * 6
    epoch = np.concatenate(batches[:6])
    assert np.array_equal(np.sort(epoch), stream.stream_indices())
    assert len({frozenset(y[b].tolist()) for b in batches}) > 1
    assert len(set(y[batches[0]].tolist())) > 2  # mixed across tasks, unlike a task's batches


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_tasks": 9}, "n_tasks=9 but y has only 8 classes"),
        ({"n_tasks": 4, "classes_per_task": 3}, "4 \\* 3 = 12 classes are needed"),
        ({"n_tasks": 2, "class_order": [0, 1, 2]}, "missing \\[3, 4, 5, 6, 7\\]"),
        ({"n_tasks": 2, "class_order": [0, 1, 2, 3, 4, 5, 6, 6]}, "repeated \\[6\\]"),
        ({"n_tasks": 2, "class_order": [0, 1, 2, 3, 4, 5, 6, 8]}, "not in y \\[8\\]"),
        ({"n_tasks": 2, "class_order": "random"}, "'seeded'"),
        ({"n_tasks": 0}, "n_tasks"),
    ],
)
def test_invalid_streams_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassIncrementalStream(labels(), **kwargs)


def test_invalid_arguments():
    stream = ClassIncrementalStream(labels(), 4)
    with pytest.raises(ValueError, match="0..3"):
        stream.task_indices(4)
    with pytest.raises(ValueError, match="batch_size"):
        stream.batches(0, batch_size=0)
    with pytest.raises(TypeError, match="integer class labels"):
        ClassIncrementalStream(np.array([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="1-D"):
        ClassIncrementalStream(np.zeros((2, 2), dtype=np.int64), 1)
    with pytest.raises(ValueError, match="at least 1 label"):
        ClassIncrementalStream(np.zeros(0, dtype=np.int64), 1)
