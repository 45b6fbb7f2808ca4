"""Run learners through a class-incremental stream (and its i.i.d. twin) and measure them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .methods import METHODS, make_learner
from .metrics import average_accuracy, backward_transfer, class_balanced_accuracy, forgetting, summarize
from .streams import ClassIncrementalStream


@dataclass
class ContinualConfig:
    """What one experiment runs. Every method sees exactly the same stream."""

    n_tasks: int = 5
    classes_per_task: int | None = None  # default: all classes split evenly
    class_order: str | list = "seeded"
    epochs: int = 5  # per task in the stream; the joint run makes as many passes over all data
    batch_size: int = 256
    methods: tuple = ("dkvb", "linear", "mlp")
    joint: bool = True  # also train each method i.i.d. on all data (its upper bound)
    seeds: tuple = (0,)
    eval_every: int = 50  # steps between points of the accuracy curve
    options: dict = field(default_factory=dict)  # per-method options, see methods.make_learner

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; expected some of {list(METHODS)}")
        if not self.seeds:
            raise ValueError("seeds: expected at least one seed")


def _accuracy_on(learner, x, y, classes) -> float:
    mask = np.isin(y.numpy(), np.asarray(classes))
    if not mask.any():
        return float("nan")
    idx = torch.from_numpy(np.nonzero(mask)[0])
    return class_balanced_accuracy(y[idx].numpy(), learner.predict(x[idx]).numpy(), classes)


class _Curve:
    """Trains a learner on batches of indices and records the class-balanced test accuracy over
    all classes every ``eval_every`` steps (the accuracy curve)."""

    def __init__(self, learner, x_te, y_te, classes, eval_every: int):
        self.learner, self.x_te, self.y_te, self.classes, self.every = learner, x_te, y_te, classes, eval_every
        self.step, self.steps, self.accuracy = 0, [], []

    def _record(self) -> float:
        acc = _accuracy_on(self.learner, self.x_te, self.y_te, self.classes)
        self.steps.append(self.step)
        self.accuracy.append(acc)
        return acc

    def train(self, batches, x, y) -> None:
        for idx in batches:
            idx = torch.as_tensor(idx)
            self.learner.fit_batch(x[idx], y[idx])
            self.step += 1
            if self.step % self.every == 0:
                self._record()

    def close(self) -> float:
        """The accuracy now, recorded unless this step already was."""
        if self.steps and self.steps[-1] == self.step:
            return self.accuracy[-1]
        return self._record()

    def as_dict(self) -> dict:
        return {"steps": self.steps, "accuracy": self.accuracy}


def run_stream(learner, data, stream: ClassIncrementalStream, cfg: ContinualConfig, seed: int,
               on_task_end=None, shared: dict | None = None) -> dict:
    """Train through the tasks in order; after each task, the accuracy on every task's test
    classes (the accuracy matrix row); every ``eval_every`` steps, the class-balanced accuracy
    over all test classes (the curve). ``on_task_end(t, learner)`` is called after each task."""
    x_tr, y_tr, x_te, y_te = data
    all_classes = sorted(set(int(c) for task in stream.tasks for c in task))
    T = len(stream.tasks)
    R = np.full((T, T), np.nan)
    curve = _Curve(learner, x_te, y_te, all_classes, cfg.eval_every)
    boundaries = []
    learner.prepare(x_tr, shared)
    for t in range(T):
        curve.train(stream.batches(t, cfg.batch_size, cfg.epochs, seed=seed), x_tr, y_tr)
        boundaries.append(curve.step)
        curve.close()  # every task's end is on the curve
        if on_task_end is not None:
            on_task_end(t, learner)
        for j in range(T):
            R[t, j] = _accuracy_on(learner, x_te, y_te, stream.tasks[j])
    final = _accuracy_on(learner, x_te, y_te, all_classes)
    return {"R": R.tolist(), "final_accuracy": final, "average_accuracy": average_accuracy(R),
            "forgetting": forgetting(R), "backward_transfer": backward_transfer(R),
            "curve": curve.as_dict(), "task_boundaries": boundaries}


def run_joint(learner, data, stream: ClassIncrementalStream, cfg: ContinualConfig, seed: int,
              shared: dict | None = None) -> dict:
    """The same learner trained i.i.d. on all tasks' data for the same number of passes."""
    x_tr, y_tr, x_te, y_te = data
    all_classes = sorted(set(int(c) for task in stream.tasks for c in task))
    learner.prepare(x_tr, shared)
    curve = _Curve(learner, x_te, y_te, all_classes, cfg.eval_every)
    curve.train(stream.joint_batches(cfg.batch_size, cfg.epochs, seed=seed), x_tr, y_tr)
    final = curve.close()
    return {"final_accuracy": final, "curve": curve.as_dict()}


def tune_learning_rates(x_train, y_train, cfg: ContinualConfig, grid=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                        val_fraction: float = 0.1, seed: int = 0) -> dict:
    """Each baseline's learning rate chosen for i.i.d. training, as is fair to them: joint training
    for ``cfg.epochs`` passes on the training data less a held-out ``val_fraction``, scored by
    class-balanced validation accuracy. Returns ``{method: {"best": lr, "scores": {lr: acc}}}``
    for the ``linear``, ``mlp`` and ``replay`` methods of ``cfg``; the test data is never used."""
    x = torch.as_tensor(x_train, dtype=torch.float32)
    y = torch.as_tensor(y_train, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    n_val = max(1, int(val_fraction * len(x)))
    val, tr = order[:n_val], order[n_val:]
    data = (x[tr], y[tr], x[val], y[val])
    n_classes = int(y.max()) + 1
    out = {}
    for method in [m for m in cfg.methods if m in ("linear", "mlp", "replay")]:
        scores = {}
        for lr in grid:
            stream = ClassIncrementalStream(y[tr].numpy(), cfg.n_tasks, cfg.classes_per_task,
                                            class_order=cfg.class_order, seed=seed)
            learner = make_learner(method, x.shape[1], n_classes, seed=seed, **{**cfg.options, f"{method}_lr": lr})
            scores[lr] = run_joint(learner, data, stream, cfg, seed)["final_accuracy"]
        out[method] = {"best": max(scores, key=scores.get), "scores": scores}
    return out


def run_experiment(x_train, y_train, x_test, y_test, cfg: ContinualConfig, progress: bool = True,
                   on_task_end=None) -> dict:
    """Every method (and its joint twin) for every seed -> ``{"config", "methods": {name: {"runs":
    [per seed], "summary": mean ± std}}}``. ``on_task_end(method, seed, t, learner)`` is called
    after each task of each stream run."""
    cfg.validate()
    x_tr, x_te = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(x_test, dtype=torch.float32)
    y_tr, y_te = torch.as_tensor(y_train, dtype=torch.long), torch.as_tensor(y_test, dtype=torch.long)
    data = (x_tr, y_tr, x_te, y_te)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    variants = (False, True) if cfg.joint else (False,)
    jobs = [(m, joint, seed) for seed in cfg.seeds for m in cfg.methods for joint in variants]
    bar = jobs
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(jobs, desc="continual", disable=None)
    results: dict = {}
    shared: dict = {}  # fitted keys, reused by the joint run of the same seed
    for method, joint, seed in bar:
        if progress and hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{method}{' joint' if joint else ''} seed {seed}")
        stream = ClassIncrementalStream(y_tr.numpy(), cfg.n_tasks, cfg.classes_per_task,
                                        class_order=cfg.class_order, seed=seed)
        torch.manual_seed(seed)
        learner = make_learner(method, x_tr.shape[1], n_classes, seed=seed, **cfg.options)
        t0 = time.perf_counter()
        if joint:
            run = run_joint(learner, data, stream, cfg, seed, shared)
        else:
            hook = None if on_task_end is None else (lambda t, lr, m=method, s=seed: on_task_end(m, s, t, lr))
            run = run_stream(learner, data, stream, cfg, seed, on_task_end=hook, shared=shared)
        run["seconds"] = time.perf_counter() - t0
        run["seed"] = seed
        run["class_order"] = [int(c) for c in stream.class_order]
        results.setdefault(f"{method}-joint" if joint else method, {"runs": []})["runs"].append(run)
    for res in results.values():
        keys = [k for k in ("final_accuracy", "average_accuracy", "forgetting", "backward_transfer", "seconds")
                if k in res["runs"][0]]
        res["summary"] = summarize([{k: r[k] for k in keys} for r in res["runs"]])
    cfg_dict = asdict(cfg)
    cfg_dict["options"] = {k: v for k, v in cfg.options.items() if not isinstance(v, torch.Tensor)}
    return {"config": cfg_dict, "n_classes": n_classes, "methods": results}
