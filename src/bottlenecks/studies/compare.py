"""The cross-bottleneck comparison: every head on the same frozen features, the same data and the
same class-incremental stream, trained and seeded the same way.

Heads (:data:`HEADS`): the discrete key-value bottleneck (``dkvb``, :mod:`bottlenecks.kv`), a
vector-quantised top-k codebook head (``vq``, :mod:`bottlenecks.codebook.head`), a variational
IB head (``vib``, :mod:`bottlenecks.info.heads`), a concept bottleneck head where the data has
concepts (``cbm``, :mod:`bottlenecks.concepts.head`), linear and MLP probes (``linear``, ``mlp``)
and experience replay (``replay``) as the continual baseline.

Protocol (fixed before any head is run):

1. The training data is split into a training part and a stratified validation part
   (``val_fraction``); the test set is never used to choose anything.
2. Learning rates: each head trains i.i.d. on (at most ``tune_samples`` of) the training part for
   every rate of its grid (Adam: ``lr_grid``; the DKVB's SGD on its values: ``dkvb_lr_grid``),
   with early stopping on the validation part; the rate with the best validation accuracy is
   used for every seed, i.i.d. and stream alike.
3. Every training run, i.i.d. or one task of the stream, goes on epoch by epoch until the
   validation accuracy (on the validation samples of the classes being trained) has not improved
   for ``patience`` epochs (at least ``min_epochs``, at most ``max_epochs``), and keeps its best epoch
   (:func:`bottlenecks.continual.methods.fit_until_converged`).
4. The stream: ``n_tasks`` tasks of disjoint classes in a seeded order; after each task, the
   class-balanced accuracy on every task's test classes (the accuracy matrix ``R``); final
   accuracy, forgetting and BWT from :mod:`bottlenecks.continual.metrics`.

Measures (see :func:`information`): ``I(X;Z)`` and ``I(Z;Y)`` from the pairwise-distance
estimator of :mod:`bottlenecks.info.bounds` on the representation each head's decoder reads,
for discrete heads the code usage, dead fraction and plug-in ``H(Z)``, the fraction of trained
parameters one step changes, training and inference time, and for the concept head the concept
accuracy and the gain from intervening with the true concepts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..continual.methods import DKVBLearner, Learner, fit_until_converged, make_learner
from ..continual.metrics import class_balanced_accuracy, continual_metrics, summarize, task_accuracies
from ..continual.streams import ClassIncrementalStream
from .base import StudyConfig, StudyResults

__all__ = ["HEADS", "DATASETS", "CompareConfig", "CompareResults", "CBMLearner", "information", "load_data",
           "merge_results", "run"]

HEADS = ("dkvb", "vq", "vib", "cbm", "linear", "mlp", "replay")
DISCRETE = ("dkvb", "vq")
DATASETS = ("fashion-mnist", "digits", "concept-shapes")


@dataclass
class CompareConfig(StudyConfig):
    """What one comparison runs (``bottlenecks compare``)."""

    dataset: str = "fashion-mnist"  # fashion-mnist, digits, concept-shapes or an .npz / .safetensors file
    heads: tuple | None = None  # None: every head the data supports (cbm only where there are concepts)
    seed: int = 0
    seeds: int = 1  # seeds seed, seed + 1, ...: mean +- std
    # seeds the data: validation split, information subsample, tuning subsample, generated data (None: seed);
    # fix it to run seeds as separate processes on the same split
    split_seed: int | None = None
    n_tasks: int = 5
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 2
    min_epochs: int = 5
    val_fraction: float = 0.1
    lr_grid: tuple = (3e-4, 1e-3, 3e-3)
    dkvb_lr_grid: tuple = (0.1, 0.3, 1.0)
    tune_samples: int = 10_000
    beta: float = 1e-3  # the VIB head's KL weight
    num_codebooks: int = 64  # DKVB
    keys_per_codebook: int = 512
    codes: int = 256  # VQ head: codebook size, codes per sample, code dimension
    codes_k: int = 8
    code_dim: int = 64
    hidden: int = 128  # MLP and VIB encoder width
    buffer_size: int = 500
    n_info: int = 1000  # test samples the information estimates use
    noise_var: float = 0.1  # of the pairwise estimator, relative to the representation's total variance
    n_train: int | None = None  # a stratified subsample of the training set (None: all of it)
    concept_shapes_train: int = 6000
    concept_shapes_test: int = 2000
    encoder: str = "scattering"
    data_dir: str | None = None
    cache_dir: str | None = None
    param_probe_every: int = 10  # steps between measurements of the parameters a step changes
    # processes that run heads side by side (one thread each; the numbers do not change): on a machine
    # with n free cores, n; 1: every head in this process
    workers: int = 1
    # {head: {"best": lr, "scores": {lr: validation accuracy}}} from an earlier tuning by the same protocol
    # (step 2) to skip it, e.g. when seeds run as separate processes; None: tune here
    learning_rates: dict | None = None

    @property
    def data_seed(self) -> int:
        """The seed of everything about the data (``split_seed``, else ``seed``)."""
        return self.seed if self.split_seed is None else self.split_seed

    def validate(self) -> None:
        if self.heads is not None:
            if isinstance(self.heads, str) or not len(self.heads):
                raise ValueError(f"heads: expected a non-empty list of heads from {list(HEADS)}, got {self.heads!r}")
            unknown = [h for h in self.heads if h not in HEADS]
            if unknown:
                raise ValueError(f"heads: unknown head(s) {unknown}; expected some of {list(HEADS)}")
        for name in ("seeds", "n_tasks", "batch_size", "max_epochs", "patience", "tune_samples", "n_info",
                     "min_epochs", "num_codebooks", "keys_per_codebook", "codes", "codes_k", "code_dim", "hidden",
                     "buffer_size", "param_probe_every", "concept_shapes_train", "concept_shapes_test", "workers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
        for name in ("seed", "split_seed"):
            v = getattr(self, name)
            if (v is not None or name == "seed") and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{name}: expected an integer >= 0, got {v!r}")
        if self.n_tasks < 2:
            raise ValueError(f"n_tasks: expected at least 2 tasks (forgetting needs two), got {self.n_tasks}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction: expected a fraction in (0, 0.5), got {self.val_fraction!r}")
        for name in ("lr_grid", "dkvb_lr_grid"):
            grid = getattr(self, name)
            if not len(grid) or any(not (isinstance(v, (int, float)) and v > 0) for v in grid):
                raise ValueError(f"{name}: expected a non-empty list of learning rates > 0, got {grid!r}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta: expected a finite number >= 0, got {self.beta!r}")
        if not (isinstance(self.noise_var, (int, float)) and self.noise_var > 0):
            raise ValueError(f"noise_var: expected a number > 0, got {self.noise_var!r}")
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train < 10):
            raise ValueError(f"n_train: expected None or an integer >= 10, got {self.n_train!r}")
        if self.learning_rates is not None:
            if not isinstance(self.learning_rates, dict) or any(
                    not isinstance(v, dict) or "best" not in v for v in self.learning_rates.values()):
                raise ValueError("learning_rates: expected None or {head: {'best': lr, 'scores': {...}}}, got "
                                 f"{self.learning_rates!r:.200}")
        if self.codes_k > self.codes:
            raise ValueError(f"codes_k={self.codes_k} is larger than codes={self.codes}; expected codes_k <= codes")


@dataclass
class CompareResults(StudyResults):
    """Everything one comparison measured (a JSON round trip).

    ``runs[head]``: one dict per seed (see :func:`_run_head`); ``summary[head][metric]``: mean,
    std and n over seeds; ``learning_rates[head]``: the chosen rate and every rate's validation
    accuracy; ``data``: what the heads were trained on."""

    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    learning_rates: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------- data
@dataclass
class _Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    notes: list
    c_train: torch.Tensor | None = None
    c_test: torch.Tensor | None = None
    concept_names: list | None = None

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _image_features(cfg: CompareConfig, progress) -> _Data:
    from ..data import load_image_dataset
    from ..encoders import FeatureCache, get_encoder

    train = load_image_dataset(cfg.dataset, data_dir=cfg.data_dir, split="train")
    test = load_image_dataset(train.name, data_dir=cfg.data_dir, split="test")
    encoder = get_encoder(cfg.encoder)
    cache = FeatureCache(cfg.cache_dir)
    feats = [cache.get_or_compute(encoder, ds.images, dataset_id=train.name, split=ds.split, progress=False)
             for ds in (train, test)]
    note = (f"{train.name}: {len(train)} train / {len(test)} test images, {train.n_classes} classes, encoder "
            f"`{encoder.name}` {encoder.config} -> {feats[0].shape[1]} features (cached on disk)")
    return _Data(feats[0], torch.as_tensor(train.labels), feats[1], torch.as_tensor(test.labels), train.name, [note])


def _concept_shapes(cfg: CompareConfig, progress) -> _Data:
    from ..data import make_concept_shapes
    from ..encoders import FeatureCache, get_encoder

    # the data is drawn from cfg.data_seed once: every seed of the comparison sees the same images
    sets = {s: make_concept_shapes(n, s, seed=cfg.data_seed)
            for s, n in (("train", cfg.concept_shapes_train), ("test", cfg.concept_shapes_test))}
    # the scattering encoder takes grey images: each colour channel on its own, concatenated
    encoder = get_encoder("scattering", J=2, L=8, max_order=1)
    cache = FeatureCache(cfg.cache_dir)
    feats = {}
    for s, d in sets.items():
        n, c, h, w = d.images.shape
        flat = torch.from_numpy(d.images).reshape(n * c, h, w)
        feats[s] = cache.get_or_compute(encoder, flat, dataset_id=f"concept-shapes-seed{cfg.data_seed}", split=s,
                                        progress=False).reshape(n, -1)
    tr, te = sets["train"], sets["test"]
    note = (f"concept-shapes (seed {cfg.data_seed}): {len(tr)} train / {len(te)} test images, {len(tr.class_names)} "
            f"classes, {len(tr.concept_names)} concepts (one spurious: {tr.spurious_concept!r}), scattering "
            f"J=2 L=8 first order per colour channel -> {feats['train'].shape[1]} features")
    return _Data(feats["train"], torch.as_tensor(tr.labels), feats["test"], torch.as_tensor(te.labels),
                 "concept-shapes", [note], torch.as_tensor(tr.concepts), torch.as_tensor(te.concepts),
                 list(tr.concept_names))


def _embeddings(cfg: CompareConfig) -> _Data:
    from ..data import load_embeddings

    emb = load_embeddings(cfg.dataset, seed=cfg.data_seed)
    note = (f"embeddings {emb.source}: {len(emb.x_train)} train / {len(emb.x_test)} test rows, {emb.dim} "
            f"features, {emb.n_classes} classes")
    return _Data(torch.as_tensor(emb.x_train), torch.as_tensor(emb.y_train), torch.as_tensor(emb.x_test),
                 torch.as_tensor(emb.y_test), emb.name, [note])


def load_data(cfg: CompareConfig, progress=None) -> _Data:
    """The data set of ``cfg`` as standardised features (training statistics), with concepts where
    the data has them. Raises ``ValueError`` naming the data set and the choices."""
    from ..data import EMBEDDING_SUFFIXES

    name = cfg.dataset.strip().lower().replace("_", "-")
    path = Path(cfg.dataset).expanduser()
    if name == "concept-shapes":
        data = _concept_shapes(cfg, progress)
    elif name in ("fashion-mnist", "digits"):
        data = _image_features(cfg, progress)
    elif path.suffix.lower() in EMBEDDING_SUFFIXES or path.is_file():
        data = _embeddings(cfg)
    else:
        raise ValueError(f"dataset {cfg.dataset!r}: not a known data set nor an embeddings file; expected one of "
                         f"{list(DATASETS)} or a path to an .npz / .safetensors file of embeddings")
    x_tr, x_te = data.x_train.float(), data.x_test.float()
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    data.x_train, data.x_test = (x_tr - mean) / std, (x_te - mean) / std
    data.y_train, data.y_test = data.y_train.long(), data.y_test.long()
    if cfg.n_train is not None and cfg.n_train < len(data.x_train):
        from ..data import stratified_split

        keep, _ = stratified_split(data.y_train.numpy(), 1 - cfg.n_train / len(data.x_train), seed=cfg.data_seed)
        keep = torch.from_numpy(keep)
        data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
        if data.c_train is not None:
            data.c_train = data.c_train[keep]
        data.notes.append(f"a stratified subsample of {len(keep)} training samples (n_train={cfg.n_train})")
    return data


def heads_for(cfg: CompareConfig, data: _Data) -> tuple:
    """The heads to run: ``cfg.heads``, or every head the data supports. Concepts asked of data
    without them are a ``ValueError``."""
    if cfg.heads is None:
        return tuple(h for h in HEADS if h != "cbm" or data.c_train is not None)
    if "cbm" in cfg.heads and data.c_train is None:
        raise ValueError(f"head 'cbm' needs concept labels, but data set {data.name!r} has none; use "
                         f"--dataset concept-shapes, or drop cbm (heads without concepts: "
                         f"{[h for h in HEADS if h != 'cbm']})")
    return tuple(cfg.heads)


# --------------------------------------------------------------------------- the concept head's learner
class CBMLearner(Learner):
    """The joint concept bottleneck head (:class:`~bottlenecks.concepts.head.ConceptBottleneckHead`)
    trained with Adam on ``CE + BCE(concepts)``; ``fit_batch(x, y, c=concepts)``."""

    name = "cbm"

    def __init__(self, dim: int, n_concepts: int, n_classes: int, lr: float = 1e-3, seed: int = 0):
        from ..concepts.head import ConceptBottleneckHead

        self.model = ConceptBottleneckHead(dim, n_concepts, n_classes, seed=seed)
        self.lr = lr
        self.opt = torch.optim.Adam(self.parameters(), lr=lr)

    def logits(self, x):
        return self.model(x)[0]

    def _represent(self, x):
        return torch.sigmoid(self.model(x)[1])  # the concept probabilities

    def fit_batch(self, x, y, c=None) -> float:
        if c is None:
            raise ValueError("the concept head trains on concept labels: fit_batch(x, y, c=concepts)")
        logits, c_logits = self.model(x)
        loss = self.model.loss(logits, c_logits, y, c)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


# --------------------------------------------------------------------------- the DKVB on its frozen lookups
class FrozenLookupDKVB(DKVBLearner):
    """The workbench's DKVB learner (:class:`~bottlenecks.continual.methods.DKVBLearner`: the same
    bottleneck, SGD on its values, clipping and label smoothing) that also reads what its frozen half
    computes once per seed: its projection and keys are fixed after :meth:`prepare`, so the key a
    training sample selects never changes, and neither does the projection of a held-out sample.

    Inputs by kind: key indices ``(batch, C, topk)`` (training: :meth:`DKVBLearner.fit_batch` takes
    them), projected features ``(batch, C, dim_key)`` (evaluation: the keys never trained are masked as
    the bottleneck masks them, so the lookup is done each time) or the features ``(batch, dim_in)``
    themselves (the bottleneck's own path). Every kind gives the numbers of the features' path; the
    test suite checks it against :class:`DKVBLearner`."""

    def _values(self, z: torch.Tensor) -> torch.Tensor:
        b = self.bottleneck
        return b.fetch(b.lookup(z, masked=not self.model.training and b.mask_untrained))

    def logits(self, x):
        return self._values(x).mean(dim=1) if x.dim() == 3 else super().logits(x)

    def _represent(self, x):
        return self._values(x).flatten(1) if x.dim() == 3 else super()._represent(x)

    def codes(self, x, batch_size: int = 2048):
        if x.dim() != 3:
            return super().codes(x, batch_size)
        return self._batched(lambda b: self.bottleneck.lookup(b).flatten(1), x, batch_size)

    @torch.no_grad()
    def view(self, data: _Data, shared: dict | None = None) -> _View:
        """The frozen lookups of ``data`` (after :meth:`prepare`): every training row's key indices,
        every training and test row's projection; kept in ``shared`` for the other runs of this seed."""
        b = self.bottleneck
        key = ("dkvb-view", tuple(b.keys.shape), b.seed, b.key_init)
        if shared is not None and key in shared:
            return shared[key]

        def project(x):  # in the blocks fit_keys projects in
            return torch.cat([b.project(x[s:s + 256]) for s in range(0, len(x), 256)])

        z_train = project(data.x_train)
        codes = torch.cat([b.lookup(z_train[s:s + 8192]) for s in range(0, len(z_train), 8192)])
        out = _View(codes, z_train, project(data.x_test))
        if shared is not None:
            shared[key] = out
        return out


@dataclass
class _View:
    """What a head reads: for training rows (``train``), for held-out rows of the training set
    (``held_out``, indexed like it) and for the test set."""

    train: torch.Tensor
    held_out: torch.Tensor
    test: torch.Tensor


def _view(learner: Learner, data: _Data, shared: dict) -> _View:
    if isinstance(learner, FrozenLookupDKVB):
        return learner.view(data, shared)
    return _View(data.x_train, data.x_train, data.x_test)


def _make(head: str, data: _Data, cfg: CompareConfig, seed: int, lr: float) -> Learner:
    dim = data.x_train.shape[1]
    if head == "cbm":
        return CBMLearner(dim, data.c_train.shape[1], data.n_classes, lr=lr, seed=seed)
    torch.manual_seed(seed)  # the workbench's probes draw their init from the global generator
    if head == "dkvb":  # make_learner's DKVB with the options it reads
        return FrozenLookupDKVB(dim, data.n_classes, num_codebooks=cfg.num_codebooks,
                                keys_per_codebook=cfg.keys_per_codebook, lr=lr, seed=seed)
    options = {"num_codebooks": cfg.num_codebooks, "keys_per_codebook": cfg.keys_per_codebook,
               "hidden": cfg.hidden, "buffer_size": cfg.buffer_size, "replay_hidden": None,
               "vq": {"num_codes": cfg.codes, "k": cfg.codes_k, "dim": cfg.code_dim},
               "vib": {"beta": cfg.beta, "hidden": cfg.hidden},
               ("dkvb_lr" if head == "dkvb" else f"{head}_lr"): lr}
    return make_learner(head, dim, data.n_classes, seed=seed, **options)


# --------------------------------------------------------------------------- measures
class _Measured:
    """A learner seen through its training steps: seconds spent in ``fit_batch`` and, every
    ``every`` steps, the fraction of trained scalars the step changed."""

    def __init__(self, learner: Learner, every: int):
        self.learner, self.every = learner, every
        self.seconds, self.steps, self.changed = 0.0, 0, []

    def fit_batch(self, x, y, **kw):
        probe = self.steps % self.every == 0
        if probe:
            before = [p.detach().clone() for p in self.learner.parameters()]
        t0 = time.perf_counter()
        loss = self.learner.fit_batch(x, y, **kw)
        self.seconds += time.perf_counter() - t0
        if probe:
            after = self.learner.parameters()
            n = sum(p.numel() for p in after)
            moved = sum(int((a.detach() != b).sum()) for a, b in zip(after, before, strict=True))
            self.changed.append(moved / max(n, 1))
        self.steps += 1
        return loss

    def predict(self, x):
        return self.learner.predict(x)

    def state(self):
        return self.learner.state()

    def load_state(self, state):
        self.learner.load_state(state)


def information(z: torch.Tensor, y: torch.Tensor, noise_var: float) -> dict:
    """``I(X;Z)`` bounds and ``I(Z;Y)`` estimates in bits for a representation ``z: (n, d)`` of the
    ``n`` test inputs with labels ``y: (n,)``, from :func:`bottlenecks.info.pairwise_information_bounds`
    (Kolchinsky & Tracey 2017) on ``Z + N(0, noise_var)`` after scaling ``z`` to unit total variance.

    Why this estimator: a deterministic head on continuous inputs has infinite ``I(X;Z)``, so every
    finite value is one of a noisy (or binned) version; the noisy-layer model gives the same
    quantity for continuous and discrete heads alike, at any dimension, with a *bound* interval on
    ``I(X;Z)`` (``[i_xz_lower, i_xz_upper]``: Bhattacharyya and KL mixture bounds) and two
    estimates of ``I(Z;Y)`` whose spread we report as its interval. Scaling to unit total variance
    makes the noise comparable across heads whose representations differ in size and scale. Both
    are capped at ``log2 n``."""
    from ..info import pairwise_information_bounds

    z = z.double()
    z = z - z.mean(0)
    total = float(z.pow(2).sum(1).mean())
    if total > 0:
        z = z / math.sqrt(total)
    b = pairwise_information_bounds(z, noise_var, y=y, units="bits")
    lo, hi = sorted((b["i_ty_bd"], b["i_ty_kl"]))
    return {"i_xz_lower": b["i_xt_lower"], "i_xz_upper": b["i_xt_upper"], "i_zy_low": lo, "i_zy_high": hi}


def _discrete_measures(head: str, learner: Learner, x: torch.Tensor) -> dict:
    """Code usage of a discrete head on ``x``: dead fraction and perplexity from the family's own
    counters, plug-in ``H(Z)`` (bits) of the whole code and of each codebook."""
    from ..cluster.maintenance import code_hits, dead_fraction
    from ..info import entropy

    codes = learner.codes(x)
    if head == "dkvb":
        b = learner.bottleneck  # key_usage(x) from the codes already looked up
        counts = code_hits(codes.view(len(codes), b.num_codebooks, b.topk), b.keys_per_codebook)
        dead = float(dead_fraction(counts).float().mean())  # as key_usage reports it
        counts = counts.double()
        per_book = [entropy(codes[:, c], method="plugin", units="bits") for c in range(codes.shape[1])]
    else:
        layer = learner.model.codebook
        layer.reset_stats()
        learner._batched(lambda b: learner.model.quantise(b)[1], x, 2048)  # counts the selections
        dead = float(layer.dead_fraction().mean())
        counts = layer.counts.double()
        per_book = [entropy(codes.reshape(-1), method="plugin", units="bits")]
    p = counts / counts.sum(1, keepdim=True).clamp_min(1)
    perplexity = float(torch.exp(-(p * p.clamp_min(1e-300).log()).sum(1)).mean())
    return {"dead_fraction": float(dead), "perplexity": perplexity,
            "h_z_bits": entropy(codes, method="plugin", units="bits"),
            "h_z_codebook_bits": float(np.mean(per_book)), "h_z_cap_bits": math.log2(len(x))}


def _concept_measures(learner: CBMLearner, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> dict:
    """Concept accuracy (mean over concepts of thresholded accuracy) and the accuracy gained by
    setting every concept to its true value (class-balanced)."""
    learner.model.eval()
    with torch.no_grad():
        logits, c_logits = learner.model(x)
        intervened = learner.model.intervene(x, range(c.shape[1]), c.float())
    learner.model.train()
    acc = class_balanced_accuracy(y.numpy(), logits.argmax(1).numpy())
    acc_int = class_balanced_accuracy(y.numpy(), intervened.argmax(1).numpy())
    return {"concept_accuracy": float(((c_logits > 0).long() == c).float().mean()),
            "intervention_gain": acc_int - acc}


# --------------------------------------------------------------------------- protocol
def _split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from ..data import stratified_split

    tr, val = stratified_split(y.numpy(), fraction, seed=seed)
    return torch.from_numpy(tr), torch.from_numpy(val)


def _extra(data: _Data, head: str, idx: torch.Tensor) -> dict | None:
    return {"c": data.c_train[idx]} if head == "cbm" else None


def tune_learning_rates(data: _Data, heads, cfg: CompareConfig, tr, val, shared: dict, progress) -> dict:
    """Step 2 of the protocol: each head's rate, by i.i.d. validation accuracy with early stopping."""
    g = torch.Generator().manual_seed(cfg.data_seed)
    sub = tr[torch.randperm(len(tr), generator=g)[:cfg.tune_samples]]
    out = {}
    for head in heads:
        grid = cfg.dkvb_lr_grid if head == "dkvb" else cfg.lr_grid
        scores = {}
        for lr in grid:
            learner = _make(head, data, cfg, cfg.data_seed, lr)
            learner.prepare(data.x_train, shared)
            x = _view(learner, data, shared)
            res = fit_until_converged(learner, x.train[sub], data.y_train[sub], x.held_out[val], data.y_train[val],
                                      batch_size=cfg.batch_size, max_epochs=cfg.max_epochs,
                                      patience=cfg.patience, min_epochs=cfg.min_epochs, seed=cfg.data_seed,
                                      extra=_extra(data, head, sub))
            scores[str(lr)] = res["val_accuracy"]
        best = max(grid, key=lambda lr: scores[str(lr)])
        out[head] = {"best": float(best), "scores": scores}
        _say(progress, f"  lr {head}: {best:g} (validation accuracy " +
             ", ".join(f"{k}: {100 * v:.1f}%" for k, v in scores.items()) + ")")
    return out


def _iid(head, data, cfg, seed, lr, tr, val, shared, info_idx) -> dict:
    learner = _make(head, data, cfg, seed, lr)
    learner.prepare(data.x_train, shared)
    x = _view(learner, data, shared)
    m = _Measured(learner, cfg.param_probe_every)
    res = fit_until_converged(m, x.train[tr], data.y_train[tr], x.held_out[val], data.y_train[val],
                              batch_size=cfg.batch_size, max_epochs=cfg.max_epochs, patience=cfg.patience,
                              min_epochs=cfg.min_epochs,
                              seed=seed, extra=_extra(data, head, tr))
    t0 = time.perf_counter()
    pred = learner.predict(data.x_test)  # timed from the features, whatever the training read
    infer = time.perf_counter() - t0
    out = {"iid_accuracy": class_balanced_accuracy(data.y_test.numpy(), pred.numpy()),
           "iid_epochs": res["epochs"], "iid_train_seconds": m.seconds,
           "inference_ms_per_1k": 1000 * infer / len(data.x_test) * 1000,
           "n_params": sum(p.numel() for p in learner.parameters())}
    x_info, y_info = x.test[info_idx], data.y_test[info_idx]
    out.update(information(learner.represent(x_info), y_info, cfg.noise_var))
    if head in DISCRETE:
        out.update(_discrete_measures(head, learner, x.test))
    if head == "cbm":
        out.update(_concept_measures(learner, data.x_test, data.y_test, data.c_test))
    if head == "vib":
        learner.model.eval()
        with torch.no_grad():
            kl = learner.model(x_info)[1]
        learner.model.train()
        out["vib_rate_bits"] = float(kl.mean()) / math.log(2)  # the variational upper bound on I(X;Z)
    return out


def _stream(head, data, cfg, seed, lr, tr, val, shared, info_idx) -> dict:
    y_tr = data.y_train[tr]
    stream = ClassIncrementalStream(y_tr.numpy(), cfg.n_tasks, class_order="seeded", seed=seed)
    learner = _make(head, data, cfg, seed, lr)
    learner.prepare(data.x_train, shared)
    x = _view(learner, data, shared)
    m = _Measured(learner, cfg.param_probe_every)
    T = len(stream.tasks)
    R = np.full((T, T), np.nan)
    epochs, trajectory = [], []
    y_val = data.y_train[val]
    x_info, y_info = x.test[info_idx], data.y_test[info_idx]
    for t, classes in enumerate(stream.tasks):
        idx = tr[torch.from_numpy(np.isin(y_tr.numpy(), classes))]
        vidx = val[torch.from_numpy(np.isin(y_val.numpy(), classes))]
        res = fit_until_converged(m, x.train[idx], data.y_train[idx], x.held_out[vidx], data.y_train[vidx],
                                  batch_size=cfg.batch_size, max_epochs=cfg.max_epochs, patience=cfg.patience,
                                  min_epochs=cfg.min_epochs, seed=seed + 1000 * (t + 1),
                                  extra=_extra(data, head, idx))
        epochs.append(res["epochs"])
        pred = learner.predict(x.test).numpy()
        R[t] = task_accuracies(data.y_test.numpy(), pred, stream.tasks, balanced=True)
        trajectory.append({"task": t, **information(learner.represent(x_info), y_info, cfg.noise_var)})
    metrics = continual_metrics(R, task_sizes=[len(c) for c in stream.tasks])
    out = {"final_accuracy": metrics["final_accuracy"], "average_accuracy": metrics["average_accuracy"],
           "forgetting": metrics["forgetting"], "backward_transfer": metrics["backward_transfer"],
           "R": R.tolist(), "tasks": [[int(c) for c in task] for task in stream.tasks], "task_epochs": epochs,
           "stream_train_seconds": m.seconds, "changed_fraction": float(np.mean(m.changed)),
           "trajectory": trajectory}
    if head in DISCRETE:
        out["stream_dead_fraction"] = _discrete_measures(head, learner, x.test)["dead_fraction"]
    if head == "cbm":
        out.update({f"stream_{k}": v for k, v in
                    _concept_measures(learner, data.x_test, data.y_test, data.c_test).items()})
    return out


def _say(progress, text: str) -> None:
    if progress:
        print(text, flush=True)


def _head(head: str, data: _Data, cfg: CompareConfig, tr, val, info_idx, progress) -> tuple[dict, list]:
    """One head's part of the comparison: its learning rate (step 2 of the protocol, unless given),
    then its i.i.d. and stream runs for every seed. Returns ``(rate, runs)``. A head's numbers
    depend on nothing another head does, so heads may run in any order or process."""
    shared: dict = {}  # the DKVB's keys and lookups of the tuning's seed, reused by that seed's runs
    if cfg.learning_rates is None:
        rate = tune_learning_rates(data, [head], cfg, tr, val, shared, progress)[head]
    else:
        rate = cfg.learning_rates[head]
    runs = []
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        lr, t0 = rate["best"], time.perf_counter()
        here = shared if seed == cfg.data_seed else {}
        r = {"seed": seed, "lr": lr}
        r.update(_iid(head, data, cfg, seed, lr, tr, val, here, info_idx))
        r.update(_stream(head, data, cfg, seed, lr, tr, val, here, info_idx))
        r["seconds"] = time.perf_counter() - t0
        runs.append(r)
        _say(progress, f"  seed {seed} {head}: i.i.d. {100 * r['iid_accuracy']:.1f}%, stream "
                       f"{100 * r['final_accuracy']:.1f}%, forgetting {100 * r['forgetting']:.1f} "
                       f"({r['seconds']:.0f} s)")
    return rate, runs


# the work of the run in progress, for the forked workers (they inherit it, nothing is pickled)
_WORK: tuple | None = None
# the slowest heads first, so that the last one to start is a short one
_COST_ORDER = ("dkvb", "vib", "replay", "vq", "mlp", "cbm", "linear")


def _forked_head(head: str):
    torch.set_num_threads(1)
    return _head(head, *_WORK)


def _in_workers(work: tuple, heads) -> dict:
    """``{head: _head(head, *work)}`` from ``cfg.workers`` forked processes of one thread each (the
    numbers are those of one process: each head's run is the same wherever it runs). Where fork is not
    available, an empty dict: the caller runs the heads itself."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _WORK
    if "fork" not in multiprocessing.get_all_start_methods():
        return {}
    order = sorted(heads, key=lambda h: _COST_ORDER.index(h) if h in _COST_ORDER else len(_COST_ORDER))
    _WORK = work
    try:
        with ProcessPoolExecutor(min(work[1].workers, len(heads)), mp_context=multiprocessing.get_context("fork")) \
                as pool:
            futures = {h: pool.submit(_forked_head, h) for h in order}
            return {h: f.result() for h, f in futures.items()}
    finally:
        _WORK = None


NUMERIC = ("iid_accuracy", "final_accuracy", "average_accuracy", "forgetting", "backward_transfer",
           "changed_fraction", "iid_train_seconds", "stream_train_seconds", "inference_ms_per_1k",
           "i_xz_lower", "i_xz_upper", "i_zy_low", "i_zy_high", "dead_fraction", "stream_dead_fraction",
           "perplexity", "h_z_bits", "h_z_codebook_bits", "concept_accuracy", "intervention_gain",
           "stream_concept_accuracy", "stream_intervention_gain", "vib_rate_bits", "iid_epochs", "n_params")


def run(config: CompareConfig, out=None, progress: bool = True, *, stem: str = "report",
        command: str | None = None) -> CompareResults:
    """Run the comparison of ``config``; with ``out``, write ``<stem>.json``, ``<stem>.md`` and the
    PNGs there (through :mod:`bottlenecks.report.compare_report`; ``command`` is quoted in the report).
    Returns the :class:`CompareResults`."""
    if isinstance(config, dict):
        config = CompareConfig.from_dict(config)
    t_start = time.perf_counter()
    with _threads(1):  # one thread: the same seed gives the same numbers whatever the caller's setting
        data = load_data(config, progress)
        heads = heads_for(config, data)
        tr, val = _split(data.y_train, config.val_fraction, config.data_seed)
        g = torch.Generator().manual_seed(config.data_seed)
        info_idx = torch.randperm(len(data.x_test), generator=g)[:config.n_info]
        _say(progress, f"compare: {data.name}, {len(tr)} train / {len(val)} validation / {len(data.x_test)} test, "
                       f"{data.x_train.shape[1]} features, {data.n_classes} classes; heads {', '.join(heads)}; "
                       f"seeds {config.seed}..{config.seed + config.seeds - 1}")
        if config.learning_rates is not None:
            missing = [h for h in heads if h not in config.learning_rates]
            if missing:
                raise ValueError(f"learning_rates: no rate for head(s) {missing}; give one per head run, or None "
                                 "to tune them")
        work = (data, config, tr, val, info_idx, progress)
        done = _in_workers(work, heads) if config.workers > 1 and len(heads) > 1 else {}
        done = {h: done[h] if h in done else _head(h, *work) for h in heads}  # HEADS order, either way
        lrs = {h: done[h][0] for h in heads}
        runs = {h: done[h][1] for h in heads}
    summary = {h: summarize([{k: r[k] for k in NUMERIC if k in r} for r in rs]) for h, rs in runs.items()}
    data_info = {"name": data.name, "n_train": len(tr), "n_val": len(val), "n_test": len(data.x_test),
                 "dim": int(data.x_train.shape[1]), "n_classes": data.n_classes, "notes": data.notes,
                 "concepts": data.concept_names, "n_info": len(info_idx)}
    results = CompareResults(config=config.to_dict(), data=data_info, learning_rates=lrs, runs=runs,
                             summary=summary, seconds=time.perf_counter() - t_start)
    if out is not None:
        from ..report.compare_report import write_report

        write_report(results, out, stem=stem, command=command)
        if stem == "report":
            from ..report.html_browse import build_html

            build_html(out)  # report.html: the table, the figures and the numbers in one page
    return results


def merge_results(parts: list) -> CompareResults:
    """One :class:`CompareResults` from runs of the same config on different seeds (e.g. one process
    per seed, all given the same ``learning_rates``): runs concatenated in seed order, the summary
    recomputed, times summed. Configs must agree except for ``seed`` and ``seeds``."""
    parts = sorted(parts, key=lambda r: r.config["seed"])
    base = {k: v for k, v in parts[0].config.items() if k not in ("seed", "seeds")}
    for p in parts[1:]:
        other = {k: v for k, v in p.config.items() if k not in ("seed", "seeds")}
        if other != base:
            diff = sorted(k for k in base if base[k] != other.get(k))
            raise ValueError(f"merge_results: the runs differ in {diff}; expected the same config but for the seed")
        if p.learning_rates != parts[0].learning_rates:
            raise ValueError("merge_results: the runs used different learning rates; expected the same")
    runs = {h: [r for p in parts for r in p.runs[h]] for h in parts[0].runs}
    seeds = [r["seed"] for r in runs[next(iter(runs))]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"merge_results: seed(s) repeated: {seeds}")
    summary = {h: summarize([{k: r[k] for k in NUMERIC if k in r} for r in rs]) for h, rs in runs.items()}
    config = {**parts[0].config, "seed": min(seeds), "seeds": len(seeds)}
    return CompareResults(config=config, data=parts[0].data, learning_rates=parts[0].learning_rates, runs=runs,
                          summary=summary, seconds=sum(p.seconds for p in parts))


class _threads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)
