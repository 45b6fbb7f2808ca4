"""The continual-learning study: class-incremental learning on frozen features, the discrete
key-value bottleneck against naive fine-tuning, replay and their joint (i.i.d.) upper bounds.

>>> cfg = ContinualConfig(dataset="digits", encoder="pixels", methods=("dkvb", "linear"), epochs=1)
>>> results = run(cfg, out="runs/digits")           # metrics.json, report.md, PNGs in out
>>> results.methods["dkvb"]["summary"]["final_accuracy"]["mean"]

On arrays of your own, :func:`run_experiment` runs the learners through the stream and measures
them (no data set loaded, nothing written). The data set dispatch, the per-data-set defaults
(:meth:`ContinualConfig.resolved`) and the standardisation live here, so a library user gets
what ``bottlenecks continual`` does.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..continual.methods import METHODS, fit_until_converged, make_learner
from ..continual.metrics import average_accuracy, backward_transfer, class_balanced_accuracy, forgetting, summarize
from ..continual.streams import ClassIncrementalStream
from ..progress import phase, track
from ..report.html_browse import build_html
from ..validation import InstanceOf, Interval, Options
from .base import StudyConfig, StudyResults, prepare_out, write_json

__all__ = ["ContinualConfig", "ContinualData", "ContinualResults", "load_data", "run", "run_experiment",
           "run_joint", "run_stream", "tune_learning_rates"]

#: classes of the named data sets (checked against ``n_tasks`` before any data is loaded)
KNOWN_CLASSES = {"toy2d": 8, "digits": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}
#: per-data-set defaults of the fields left as None: (others, toy2d). The 2-D toy is tiny (800
#: points), so more epochs, fewer and smaller codebooks and a larger head learning rate.
DEFAULTS = {"n_tasks": (5, 4), "epochs": (5, 20), "num_codebooks": (64, 16), "keys_per_codebook": (512, 64),
            "dim_key": (14, 2), "head_lr": (1e-3, 1e-2)}
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
_POSITIVE_OR_NONE = [Interval(int, 1, None), None]
_LR = Interval(float, 0, None, closed="neither")

KEY_USAGE_HEADS = 16  # heads of the DKVB whose key usage per task report.html shows


def _named(dataset: str) -> str:
    return dataset.strip().lower().replace("_", "-")


DEFAULT_ENCODER = "scattering"  # for image data sets


def _is_features_file(dataset: str) -> bool:
    from ..data.embeddings import EMBEDDING_SUFFIXES

    return Path(dataset).suffix.lower() in EMBEDDING_SUFFIXES


@dataclass
class ContinualConfig(StudyConfig):
    """One continual study. Every method sees exactly the same stream.

    Data: ``dataset`` is ``fashion-mnist`` (digits when its files are absent and no ``data_dir``
    is given), ``digits``, ``toy2d`` (the paper's 2-D toy), ``cifar10`` / ``cifar100``
    (torchvision, under ``data_dir``; ``download`` fetches them), an ``.npz`` / ``.safetensors``
    of embeddings or an image folder; images go through the frozen ``encoder`` (features cached
    in ``cache_dir``; None: ``scattering``) and are standardised with training statistics; an
    ``encoder`` with toy2d or an embeddings file is refused (they are features already). ``keys_from``: fit the
    bottleneck's keys on the unlabelled training inputs of another data set, in the same feature
    space.

    Stream and training: ``n_tasks`` tasks of ``classes_per_task`` classes (None: all classes
    split evenly), ``epochs`` per task (the joint runs train until a held-out 10% of the training data stops
    improving: :func:`run_joint`),
    mini-batches of ``batch_size``; the accuracy curve gets a point every ``eval_every`` steps;
    seeds ``seed, seed + 1, ..., seed + n_seeds - 1``.

    Learners (``continual.methods``): the bottleneck's ``num_codebooks``, ``keys_per_codebook``,
    ``dim_key``, ``topk``, ``key_init`` and SGD ``dkvb_lr``; the Adam ``head_lr`` of ``linear``,
    ``mlp`` and ``replay`` (``linear_lr`` / ``mlp_lr`` / ``replay_lr`` override it per method;
    ``tune_lr`` chooses them on held-out training data), the MLP's ``hidden`` width and the
    replay ``buffer_size``.

    Fields left as None take the per-data-set defaults of :meth:`resolved` (``DEFAULTS``).
    """

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    encoder: str | None = None
    cache_dir: str | None = None
    keys_from: str | None = None
    methods: tuple = ("dkvb", "linear", "mlp")
    joint: bool = True
    n_tasks: int | None = None
    classes_per_task: int | None = None
    class_order: str | list | None = "seeded"
    epochs: int | None = None
    batch_size: int | None = None
    eval_every: int = 50
    seed: int = 0
    n_seeds: int = 1
    num_codebooks: int | None = None
    keys_per_codebook: int | None = None
    dim_key: int | None = None
    topk: int = 1
    key_init: str = "kmeans"
    dkvb_lr: float = 0.3
    head_lr: float | None = None
    linear_lr: float | None = None
    mlp_lr: float | None = None
    replay_lr: float | None = None
    hidden: int = 128
    buffer_size: int = 500
    tune_lr: bool = False

    constraints: ClassVar[dict] = {
        **{name: _POSITIVE_OR_NONE for name in ("n_tasks", "classes_per_task", "epochs", "batch_size",
                                                "num_codebooks", "keys_per_codebook", "dim_key")},
        **{name: Interval(int, 1, None) for name in ("eval_every", "n_seeds", "topk", "hidden", "buffer_size")},
        "seed": Interval(int, 0, None), "key_init": Options(("kmeans", "ema", "random")),
        "dkvb_lr": _LR, **{name: [_LR, None] for name in ("head_lr", "linear_lr", "mlp_lr", "replay_lr")},
        "dataset": InstanceOf(str, "a data set name or a path"),
        **{name: [InstanceOf(str, "a path"), None] for name in ("data_dir", "cache_dir", "keys_from")},
        "encoder": [InstanceOf(str, "an encoder name"), None],
        **{name: InstanceOf(bool) for name in ("download", "joint", "tune_lr")},
    }

    def validate(self) -> None:
        if isinstance(self.methods, str):
            self.methods = tuple(m.strip() for m in self.methods.split(",") if m.strip())
        self.methods = tuple(self.methods)
        if not self.methods:
            raise ValueError("methods: expected at least one of " + ", ".join(METHODS))
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods: unknown method(s) {unknown}; expected some of {list(METHODS)}")
        if not self.dataset.strip():
            raise ValueError(f"dataset: expected a data set name or a path, got {self.dataset!r}")
        if self.encoder is not None and (_named(self.dataset) == "toy2d" or _is_features_file(self.dataset)):
            what = "toy2d is 2-D points" if _named(self.dataset) == "toy2d" else f"{self.dataset} holds features"
            raise ValueError(f"encoder {self.encoder}: {what}, not images; an encoder applies to image data sets "
                             "only (leave it out)")
        n_classes = KNOWN_CLASSES.get(_named(self.dataset))
        if n_classes is not None and self.n_tasks is not None:
            per = self.classes_per_task or 1
            if self.n_tasks * per > n_classes:
                raise ValueError(f"n_tasks: {self.dataset} has {n_classes} classes; expected n_tasks * "
                                 f"classes_per_task <= {n_classes}, got {self.n_tasks} * {per}")
        if _named(self.dataset) == "toy2d" and self.n_tasks is not None and 8 % (self.n_tasks * (
                self.classes_per_task or 8 // self.n_tasks)):
            raise ValueError(f"n_tasks: toy2d has 8 classes (the paper: 4 tasks of 2); expected a number of "
                             f"tasks that divides them (1, 2, 4 or 8) or None for 4, got {self.n_tasks}")

    @property
    def toy(self) -> bool:
        return _named(self.dataset) == "toy2d"

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.n_seeds))

    def resolved(self, n_train: int | None = None) -> ContinualConfig:
        """A copy with every None default filled for this data set (``DEFAULTS``; ``batch_size``:
        256, or 32 for fewer than 10,000 training samples, so small data sets get enough steps)."""
        changes = {name: both[1 if self.toy else 0] for name, both in DEFAULTS.items()
                   if getattr(self, name) is None}
        if self.encoder is None and not self.toy and not _is_features_file(self.dataset):
            changes["encoder"] = DEFAULT_ENCODER
        if self.batch_size is None and n_train is not None:
            changes["batch_size"] = 256 if n_train >= 10_000 else 32
        return self.replace(**changes) if changes else self

    def learner_options(self) -> dict:
        """The options :func:`~bottlenecks.continual.methods.make_learner` takes."""
        opts = {"num_codebooks": self.num_codebooks, "keys_per_codebook": self.keys_per_codebook,
                "dim_key": self.dim_key, "topk": self.topk, "key_init": self.key_init, "dkvb_lr": self.dkvb_lr,
                "head_lr": self.head_lr, "hidden": self.hidden, "buffer_size": self.buffer_size}
        opts.update({f"{m}_lr": getattr(self, f"{m}_lr") for m in ("linear", "mlp", "replay")
                     if getattr(self, f"{m}_lr") is not None})
        return {k: v for k, v in opts.items() if v is not None}


@dataclass
class ContinualResults(StudyResults):
    """What ``metrics.json`` holds: the resolved config, the number of classes, and per method
    (``dkvb``, ``dkvb-joint``, ...) its ``runs`` (one per seed: accuracy matrix ``R``, final and
    average accuracy, forgetting, backward transfer, the accuracy curve, seconds) and their
    ``summary`` (mean ± std over seeds). ``dataset``: the data set's name as loaded (digits when
    Fashion-MNIST fell back to it); ``notes``: what the report says about the data."""

    config: dict
    n_classes: int
    methods: dict
    dataset: str = ""
    notes: list = field(default_factory=list)


@dataclass
class ContinualData:
    """Features (standardised unless toy2d) and labels of one data set, with notes for the report."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    notes: list
    keys_from: torch.Tensor | None = None  # the points the bottleneck's keys are fitted on (None: x_train)


# ------------------------------------------------------------------------------- running learners
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
    over all test classes (the curve). ``on_task_end(t, learner)`` is called after each task.
    ``cfg`` must be resolved (:meth:`ContinualConfig.resolved`)."""
    x_tr, y_tr, x_te, y_te = data
    all_classes = sorted(set(int(c) for task in stream.tasks for c in task))
    T = len(stream.tasks)
    R = np.full((T, T), np.nan)
    boundaries = []
    learner.prepare(x_tr, shared)
    x_fit = learner.frozen_inputs(x_tr)  # e.g. the DKVB's key indices: looked up once, not once per pass
    x_te = learner.eval_inputs(x_te)  # e.g. the DKVB's nearest keys of each test row, for every evaluation
    curve = _Curve(learner, x_te, y_te, all_classes, cfg.eval_every)
    for t in range(T):
        curve.train(stream.batches(t, cfg.batch_size, cfg.epochs, seed=seed), x_fit, y_tr)
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
              shared: dict | None = None, *, val_fraction: float = 0.1, max_epochs: int = 100,
              patience: int = 3) -> dict:
    """The same learner trained i.i.d. on all tasks' data until it has converged: epochs until its
    class-balanced accuracy on a held-out ``val_fraction`` of the training data (stratified, drawn
    from ``seed``) has not improved for ``patience`` epochs (at most ``max_epochs``), keeping the
    best epoch (:func:`~bottlenecks.continual.methods.fit_until_converged`). An upper bound cut at
    the stream's budget of passes would flatter the stream's methods."""
    from ..data import stratified_split

    x_tr, y_tr, x_te, y_te = data
    all_classes = sorted(set(int(c) for task in stream.tasks for c in task))
    learner.prepare(x_tr, shared)
    curve = _Curve(learner, learner.eval_inputs(x_te), y_te, all_classes, cfg.eval_every)
    tr, val = (torch.from_numpy(i) for i in stratified_split(y_tr.numpy(), val_fraction, seed=seed))

    def on_step(idx, loss):
        curve.step += 1
        if curve.step % curve.every == 0:
            curve._record()

    x_fit = learner.frozen_inputs(x_tr[tr])
    res = fit_until_converged(learner, x_fit, y_tr[tr], learner.eval_inputs(x_tr[val]), y_tr[val],
                              batch_size=cfg.batch_size, max_epochs=max_epochs, patience=patience, seed=seed,
                              on_step=on_step)
    if curve.steps and curve.steps[-1] == curve.step:  # the best epoch was restored: record it instead
        curve.steps.pop()
        curve.accuracy.pop()
    final = curve._record()
    return {"final_accuracy": final, "curve": curve.as_dict(), "epochs": res["epochs"],
            "best_epoch": res["best_epoch"]}


def _learner(method: str, dim: int, n_classes: int, seed: int, cfg: ContinualConfig, keys_from=None, **override):
    options = {**cfg.learner_options(), **override}
    if method == "dkvb" and keys_from is not None:
        options["keys_from"] = keys_from
    return make_learner(method, dim, n_classes, seed=seed, **options)


def tune_learning_rates(x_train, y_train, cfg: ContinualConfig, grid=LR_GRID, val_fraction: float = 0.1,
                        seed: int = 0) -> dict:
    """Each baseline's learning rate chosen for i.i.d. training, as is fair to them: joint training
    for ``cfg.epochs`` passes on the training data less a held-out ``val_fraction``, scored by
    class-balanced validation accuracy. Returns ``{method: {"best": lr, "scores": {lr: acc}}}``
    for the ``linear``, ``mlp`` and ``replay`` methods of ``cfg``; the test data is never used."""
    x = torch.as_tensor(x_train, dtype=torch.float32)
    y = torch.as_tensor(y_train, dtype=torch.long)
    cfg = cfg.resolved(len(x))
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
            learner = _learner(method, x.shape[1], n_classes, seed, cfg, **{f"{method}_lr": lr})
            scores[lr] = run_joint(learner, data, stream, cfg, seed)["final_accuracy"]
        out[method] = {"best": max(scores, key=scores.get), "scores": scores}
    return out


def run_experiment(x_train, y_train, x_test, y_test, cfg: ContinualConfig, progress: bool | None = None,
                   on_task_end=None, keys_from=None, on_run_end=None) -> dict:
    """Every method (and its joint twin) for every seed on arrays of your own ->
    ``{"config", "n_classes", "methods": {name: {"runs": [per seed], "summary": mean ± std}}}``.

    ``on_task_end(method, seed, t, learner)`` is called after each task of each stream run;
    ``on_run_end(partial_results)`` after each method / seed (to save partial results).
    ``keys_from``: ``(m, d)`` points the bottleneck's keys are fitted on (default: ``x_train``)."""
    x_tr, x_te = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(x_test, dtype=torch.float32)
    y_tr, y_te = torch.as_tensor(y_train, dtype=torch.long), torch.as_tensor(y_test, dtype=torch.long)
    cfg = cfg.resolved(len(x_tr))
    data = (x_tr, y_tr, x_te, y_te)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    variants = (False, True) if cfg.joint else (False,)
    jobs = [(m, joint, seed) for seed in cfg.seeds for m in cfg.methods for joint in variants]
    results: dict = {}
    shared: dict = {}  # fitted keys, reused by the joint run of the same seed
    bar = track(jobs, "continual", progress=progress)
    for method, joint, seed in bar:
        bar.set_postfix_str(f"{method}{' joint' if joint else ''} seed {seed}")
        stream = ClassIncrementalStream(y_tr.numpy(), cfg.n_tasks, cfg.classes_per_task,
                                        class_order=cfg.class_order, seed=seed)
        learner = _learner(method, x_tr.shape[1], n_classes, seed, cfg, keys_from=keys_from)
        t0 = time.perf_counter()
        if joint:
            run_ = run_joint(learner, data, stream, cfg, seed, shared)
        else:
            hook = None if on_task_end is None else (lambda t, lr, m=method, s=seed: on_task_end(m, s, t, lr))
            run_ = run_stream(learner, data, stream, cfg, seed, on_task_end=hook, shared=shared)
        run_["seconds"] = time.perf_counter() - t0
        run_["seed"] = seed
        run_["class_order"] = [int(c) for c in stream.class_order]
        results.setdefault(f"{method}-joint" if joint else method, {"runs": []})["runs"].append(run_)
        if on_run_end is not None:
            on_run_end(_summarised(cfg, n_classes, results))
    return _summarised(cfg, n_classes, results)


def _summarised(cfg: ContinualConfig, n_classes: int, results: dict) -> dict:
    for res in results.values():
        keys = [k for k in ("final_accuracy", "average_accuracy", "forgetting", "backward_transfer", "seconds")
                if k in res["runs"][0]]
        res["summary"] = summarize([{k: r[k] for k in keys} for r in res["runs"]])
    return {"config": cfg.to_dict(), "n_classes": n_classes, "methods": results}


# ------------------------------------------------------------------------------- data
def _load_features(cfg: ContinualConfig, dataset: str, progress) -> tuple:
    """-> (x_train, y_train, x_test, y_test, name, notes) of one data set, unstandardised."""
    notes: list[str] = []
    if _named(dataset) == "toy2d":
        from ..data.toy2d import make_toy2d

        x_tr, y_tr = make_toy2d(seed=cfg.seed)
        x_te, y_te = make_toy2d(seed=cfg.seed, split="test")
        return x_tr, y_tr, x_te, y_te, "toy2d", notes
    from ..data import DATASETS, EMBEDDING_SUFFIXES, load_embeddings

    path = Path(dataset).expanduser()
    named = _named(dataset) in DATASETS
    if path.suffix.lower() in EMBEDDING_SUFFIXES or (path.is_file() and not named):
        try:
            emb = load_embeddings(path, seed=cfg.seed)
        except (ValueError, TypeError, FileNotFoundError) as err:
            where = "" if str(err).startswith(str(path)) else f"dataset {dataset}: "
            raise type(err)(f"{where}{err}") from None
        notes.append(f"- data: embeddings {emb.source} ({len(emb.x_train)} train / {len(emb.x_test)} test rows, "
                     f"{emb.dim} features, {emb.n_classes} classes)")
        return emb.x_train, emb.y_train, emb.x_test, emb.y_test, emb.name, notes
    from ..encoders import FeatureCache, get_encoder

    cifar = not named and dataset.strip().lower().replace("-", "").replace("_", "") in ("cifar10", "cifar100")
    folder = not named and not cifar and path.is_dir()
    if not (named or cifar or folder) and ("/" in dataset or "\\" in dataset):
        raise FileNotFoundError(f"dataset {dataset}: no such file or folder")
    # grey (n, H, W) for the encoders made for grey images; RGB (n, 3, H, W) for pretrained models
    encoder_name = cfg.encoder or DEFAULT_ENCODER
    grayscale = encoder_name in ("pixels", "scattering")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if cifar:
                from ..data import load_cifar

                train, test = load_cifar(dataset, root=cfg.data_dir, download=cfg.download, grayscale=grayscale)
                dataset_id = train.name
            elif folder:
                from ..data import load_image_folder

                train, test = load_image_folder(path, grayscale=grayscale, seed=cfg.seed)
                dataset_id = f"folder:{path.resolve()}"
            else:
                from ..data import load_image_dataset

                # an explicit data_dir is an explicit request: no falling back to digits without it
                fallback = cfg.data_dir is None
                train = load_image_dataset(dataset, data_dir=cfg.data_dir, split="train", fallback=fallback)
                test = load_image_dataset(train.name, data_dir=cfg.data_dir, split="test", fallback=fallback)
                dataset_id = train.name
        except ValueError as err:
            extra = ("; or cifar10, cifar100, toy2d, an .npz / .safetensors file of embeddings or an image folder"
                     if "unknown image data set" in str(err) else "")
            raise ValueError(f"{err}{extra}") from None
    for w in caught:
        warnings.warn(str(w.message), type(w.message) if isinstance(w.message, Warning) else UserWarning,
                      stacklevel=2)
        notes.append(f"- note: {w.message}")
    try:
        encoder = get_encoder(encoder_name)
    except (ValueError, ImportError) as err:
        raise ValueError(f"encoder {encoder_name}: {err}") from None
    cache = FeatureCache(cfg.cache_dir)
    feats = [cache.get_or_compute(encoder, ds.images, dataset_id=dataset_id, split=ds.split,
                                  progress=progress).numpy() for ds in (train, test)]
    source = f" from {path.resolve()}" if folder else ""
    notes.append(f"- data: {train.name}{source} ({len(train)} train / {len(test)} test images, "
                 f"{train.n_classes} classes), encoder `{encoder.name}` {encoder.config} -> {feats[0].shape[1]} "
                 "features (standardised)")
    return feats[0], train.labels, feats[1], test.labels, train.name, notes


def _check_data_dir(cfg: ContinualConfig) -> None:
    from ..data import DATASETS

    if _named(cfg.dataset) in DATASETS and cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise FileNotFoundError(f"data_dir {cfg.data_dir} does not exist; give the folder holding the data set's "
                                "files (for Fashion-MNIST: apt-get install dataset-fashion-mnist)")


def load_data(cfg: ContinualConfig, progress: bool | None = None) -> ContinualData:
    """The config's data set as features: toy2d as it is (with uniform points of the unit square
    to fit the keys on, as the paper), every other data set standardised with its training
    statistics (the same inputs for every method); ``keys_from`` encoded in the same space."""
    _check_data_dir(cfg)
    x_tr, y_tr, x_te, y_te, name, notes = _load_features(cfg, cfg.dataset, progress)
    x_tr, x_te = np.asarray(x_tr, np.float32), np.asarray(x_te, np.float32)
    keys = None
    if name == "toy2d":
        from ..data.toy2d import uniform_unit_square

        keys = torch.as_tensor(uniform_unit_square(4096, seed=cfg.seed))
        n_tasks = cfg.resolved().n_tasks
        notes.append(f"- toy2d: 8 Gaussian classes (std 0.035) in the unit square, {n_tasks} tasks of "
                     f"{8 // n_tasks} classes; DKVB keys fitted on uniform points of the unit square")
    else:
        mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
        if cfg.keys_from:
            x_keys, *_rest, keys_name, _keys_notes = _load_features(cfg, cfg.keys_from, progress)
            x_keys = np.asarray(x_keys, np.float32)
            if x_keys.shape[1] != x_tr.shape[1]:
                raise ValueError(f"keys_from {cfg.keys_from} gives {x_keys.shape[1]} features, but the training "
                                 f"data has {x_tr.shape[1]}; expected the same encoder's feature space")
            keys = torch.as_tensor((x_keys - mean) / std)
            notes.append(f"- DKVB keys fitted on the unlabelled training inputs of {keys_name} "
                         f"({len(x_keys)} rows), not on the stream's")
    return ContinualData(x_tr, np.asarray(y_tr), x_te, np.asarray(y_te), name, notes, keys)


# ------------------------------------------------------------------------------- the study
def _decision_regions(cfg: ContinualConfig, data: ContinualData, regions: dict, out: Path) -> dict:
    from ..report.continual_plots import plot_decision_regions

    stream = ClassIncrementalStream(data.y_train, cfg.n_tasks, cfg.classes_per_task, class_order="seeded",
                                    seed=cfg.seeds[0])
    points = [(data.x_train[stream.task_indices(t)], data.y_train[stream.task_indices(t)])
              for t in range(cfg.n_tasks)]
    caption = f"Decision regions after each task (seed {cfg.seeds[0]}; points: that task's training data)"
    return {caption: plot_decision_regions(regions, (0.0, 1.0, 0.0, 1.0), points, out / "decision_regions.png")}


def run(config: ContinualConfig, out=None, progress: bool | None = True, command: str | None = None,
        data: ContinualData | None = None) -> ContinualResults:
    """Load the data, run every method (and its joint twin) for every seed, write ``metrics.json``,
    ``report.md`` and PNGs into ``out`` (default ``runs/continual-<data set>``); return the
    results. ``metrics.json`` is rewritten after each method / seed, so an interrupted run keeps
    what finished. ``command``: the command line, quoted in the report. ``data``: already loaded
    features (skips :func:`load_data`)."""
    from ..report.continual_report import write_report

    t0 = time.perf_counter()
    if out is not None:
        out = prepare_out(out, create=False)  # checked now; metrics.json creates it
    if data is None:
        phase(f"continual: loading {config.dataset}", progress)
        data = load_data(config, progress)
    cfg = config.resolved(len(data.x_train))
    notes = list(data.notes)
    if cfg.tune_lr:
        phase("continual: tuning the baselines' learning rates", progress, t0)
        tuned = tune_learning_rates(data.x_train, data.y_train, cfg, seed=cfg.seed)
        for method, res in tuned.items():
            cfg = cfg.replace(**{f"{method}_lr": res["best"]})
            scores = ", ".join(f"{lr:g}: {100 * acc:.1f}%" for lr, acc in res["scores"].items())
            notes.append(f"- {method}: Adam lr {res['best']:g}, chosen for i.i.d. training on a held-out 10% of "
                         f"the training data (validation accuracy {scores})")
    else:
        for method in (m for m in cfg.methods if m in ("linear", "mlp", "replay")):
            notes.append(f"- {method}: Adam lr {cfg.head_lr:g} (not tuned here; `tune_lr=True` / `--tune-lr` tunes it)")
    out = Path(out if out is not None else f"runs/continual-{data.name}")
    phase(f"continual: {data.name}, {len(data.x_train)} train / {len(data.x_test)} test, "
          f"{data.x_train.shape[1]} features, {cfg.n_tasks} tasks, methods {', '.join(cfg.methods)}"
          f"{' (+ joint)' if cfg.joint else ''}, seeds {list(cfg.seeds)}", progress, t0)
    regions: dict = {}
    key_counts: list = []  # the first seed's DKVB key selections so far, after each task (report.html)
    grid_t = None
    if data.name == "toy2d":
        grid = np.stack(np.meshgrid(np.linspace(0, 1, 120), np.linspace(0, 1, 120)), -1).reshape(-1, 2)
        grid_t = torch.as_tensor(grid, dtype=torch.float32)

    def hook(method, seed, t, learner):
        if seed != cfg.seeds[0]:
            return
        if grid_t is not None and method in ("dkvb", "linear", "mlp"):
            regions.setdefault(method, []).append(learner.predict(grid_t).numpy().reshape(120, 120))
        if method == "dkvb":
            key_counts.append(learner.bottleneck.value_usage[:KEY_USAGE_HEADS].cpu().clone())
    raw = run_experiment(data.x_train, data.y_train, data.x_test, data.y_test, cfg, progress=progress,
                         on_task_end=hook, keys_from=data.keys_from,
                         on_run_end=lambda partial: write_json(dict(partial, notes=notes), out / "metrics.json"))
    extra = _decision_regions(cfg, data, regions, out) if regions else {}
    if command:
        notes.append(f"- command: `{command}`; total time {time.perf_counter() - t0:.0f} s")
    results = ContinualResults(dataset=data.name, notes=notes, **raw)
    write_report(results.to_dict(), out, title=f"Class-incremental {data.name}", notes=notes, extra_images=extra)
    if key_counts:  # selections are cumulative: each task's are the difference
        counts = torch.stack(key_counts)
        per_task = torch.diff(counts, dim=0, prepend=torch.zeros_like(counts[:1]))
        write_json({"method": "dkvb", "seed": cfg.seeds[0], "heads": list(range(per_task.shape[1])),
                    "usage": per_task.transpose(0, 1).tolist()}, out / "key_usage.json")
    build_html(out)  # report.html: curves, matrices, key usage per head
    return results
