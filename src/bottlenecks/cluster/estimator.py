"""scikit-learn estimator around the torch k-means engine."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .lloyd import assign, init_centroids, kmeans, make_generator, weighted_sums

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class KMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Exact k-means (Lloyd) on CPU or CUDA, a drop-in for ``sklearn.cluster.KMeans``.

    Parameters
    ----------
    n_clusters : int, default 8
    init : 'k-means++' | 'random' | array (n_clusters, n_features) | callable, default 'k-means++'
        — a callable is called as ``init(X, n_clusters, random_state)`` (a NumPy array and a
        ``np.random.RandomState``) and returns the initial centres, as in scikit-learn.
    n_init : int or 'auto', default 'auto' — restarts; the lowest inertia wins. 'auto': 1 for
        'k-means++' or an array, 10 for 'random' or a callable (scikit-learn's rule).
    max_iter : int, default 300
    tol : float, default 1e-4 — relative to the mean feature variance, as in scikit-learn.
    random_state : int, RandomState or None
    device : str or None — 'cpu', 'cuda', ...; None: cpu.
    dtype : None | 'float32' | 'float64', default None — the dtype the data is held in and the
        centres come back in; None keeps float32 and float64 input as it is (others become
        float64), as scikit-learn does. The search may use less and still decide every label
        exactly; see ``precision``.
    precision : 'auto' | 'float32' | 'bfloat16' | 'float16' — the dtype of the candidate search;
        'auto' measures which is fastest here.
    prune : bool or 'always', default True — Hamerly/Yinyang bounds skip rows whose centre cannot
        have changed, for as long as that measures faster than searching every row; 'always'
        keeps them regardless.
    max_memory : int or None — cap in bytes on the working buffers of one assignment pass
        (default 256 MiB).
    distributed : bool — fit inside the current ``torch.distributed`` group, each rank passing its
        own shard; every rank ends with the same centres.
    verbose : bool or int — print one line per iteration (labels changed, centre shift, time)
        and why the fit stopped.

    Attributes
    ----------
    cluster_centers_ : ndarray (n_clusters, n_features)
    labels_ : ndarray (n_samples,)
    inertia_ : float
    n_iter_ : int
    n_features_in_ : int
    fit_info_ : dict — precision used, rows searched / undecided, fraction pruned per iteration.
    """

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300, tol=1e-4,
                 random_state=None, device=None, dtype=None, precision="auto", prune=True,
                 max_memory=None, distributed=False, verbose=False):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.precision = precision
        self.prune = prune
        self.max_memory = max_memory
        self.distributed = distributed
        self.verbose = verbose

    # ------------------------------------------------------------ helpers
    def _torch_dtype(self, X):
        if self.dtype is None:
            return torch.float32 if X.dtype == np.float32 else torch.float64
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype: expected None, 'float32' or 'float64', got {self.dtype!r}")
        return _DTYPES[self.dtype]

    def _validate(self, X, reset: bool):
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], order="C",
                          accept_sparse=False, copy=False)
        X = np.ascontiguousarray(X)
        if not X.flags.writeable:  # torch cannot wrap read-only memory (e.g. a memmap)
            X = X.copy()
        if not reset and hasattr(self, "cluster_centers_") and self.dtype is None:
            dtype = torch.float32 if self.cluster_centers_.dtype == np.float32 else torch.float64
        else:
            dtype = self._torch_dtype(X)
        return torch.from_numpy(X).to(device=self.device or "cpu", dtype=dtype)

    def _seed(self):
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(np.iinfo(np.int32).max))
        if rs is None:
            return int(np.random.randint(np.iinfo(np.int32).max))
        return int(rs)

    def _weights(self, sample_weight, n):
        if sample_weight is None:
            return None
        w = _check_sample_weight(sample_weight, np.empty((n, 0)), dtype=np.float64, ensure_non_negative=True)
        if not w.sum() > 0:
            raise ValueError("Sample weights must contain at least one non-zero number; got all zeros")
        return torch.from_numpy(w).to(self.device or "cpu")

    def _check_params(self, n_samples):
        if not isinstance(self.n_clusters, (int, np.integer)) or isinstance(self.n_clusters, bool) \
                or self.n_clusters < 1:
            raise ValueError(f"n_clusters: expected an integer >= 1, got {self.n_clusters!r}")
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}: "
                             "ask for fewer clusters or give more samples")

    def _n_init(self):
        if isinstance(self.n_init, str):
            if self.n_init != "auto":
                raise ValueError(f"n_init: expected a positive integer or 'auto', got {self.n_init!r}")
            return 10 if (isinstance(self.init, str) and self.init == "random") or callable(self.init) else 1
        return self.n_init

    def _init_value(self, rng: np.random.RandomState | None = None):
        """The init as :func:`kmeans` takes it: a callable is wrapped to get NumPy data and a
        ``RandomState`` (seeded from the fit's generator, so restarts differ) as in scikit-learn."""
        init = self.init
        if isinstance(init, str) or init is None:
            return init
        if callable(init):
            def call(x, k, g):
                state = np.random.RandomState(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
                return np.asarray(init(x.cpu().numpy(), k, state), dtype=np.float64)
            return call
        return np.asarray(init)

    # ------------------------------------------------------------ estimator API
    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of ``X: (n_samples, n_features)``; returns ``self``."""
        x = self._validate(X, reset=True)
        self._check_params(x.shape[0])
        w = self._weights(sample_weight, x.shape[0])
        res = kmeans(x, int(self.n_clusters), init=self._init_value(), n_init=self._n_init(),
                     max_iter=self.max_iter, tol=self.tol, seed=self._seed(), sample_weight=w,
                     prune=self.prune if isinstance(self.prune, str) else bool(self.prune),
                     precision=self.precision, max_memory=self.max_memory,
                     distributed=self.distributed, verbose=bool(self.verbose))
        self._set_state(res.centroids, res.labels, res.inertia, res.n_iter, res.info)
        # a later partial_fit continues from here, each centre weighted by what it already holds
        self._centers64 = res.centroids.double()
        self._counts = torch.bincount(res.labels, weights=w, minlength=self.n_clusters).double()
        self.n_steps_ = 0
        distinct = len(np.unique(self.labels_))
        if distinct < self.n_clusters and not self.distributed:
            warnings.warn(f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                          f"({self.n_clusters}). Possibly due to duplicate points in X.",
                          ConvergenceWarning, stacklevel=2)
        return self

    def _set_state(self, centroids, labels, inertia, n_iter, info):
        self.cluster_centers_ = centroids.detach().cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.fit_info_ = info
        self._n_threads = torch.get_num_threads()

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centres with one mini-batch (streaming k-means): each centre is the running
        (weighted) mean of every point ever assigned to it. The first batch initialises the
        centres and must hold at least ``n_clusters`` samples."""
        first = not hasattr(self, "_centers64")
        x = self._validate(X, reset=first)
        w = self._weights(sample_weight, x.shape[0])
        if first:
            self._check_params(x.shape[0])
            self._rng = make_generator(self._seed())
            c0 = init_centroids(x, int(self.n_clusters), self._init_value(), self._rng, w)
            self._centers64 = c0
            self._counts = torch.zeros(self.n_clusters, dtype=torch.float64, device=x.device)
            self.n_steps_ = 0
        labels, sq = assign(x, self._centers64.to(x.dtype), precision=self.precision,
                            max_memory=self.max_memory)
        sums, batch_counts = weighted_sums(x, labels, w, self.n_clusters)
        total = self._counts + batch_counts
        hit = batch_counts > 0
        self._centers64[hit] = (self._centers64[hit] * self._counts[hit, None] + sums[hit]) / total[hit, None]
        self._counts = total
        self.n_steps_ += 1
        inertia = float((sq * w).sum() if w is not None else sq.sum())
        self._set_state(self._centers64.to(x.dtype), labels, inertia, self.n_steps_,
                        {"partial_fit": True})
        return self

    def _fitted_centers(self, x):
        check_is_fitted(self, "cluster_centers_")
        return torch.from_numpy(np.ascontiguousarray(self.cluster_centers_)).to(device=x.device, dtype=x.dtype)

    def predict(self, X):
        """Index of the nearest centre of each sample: ``(n_samples,)``."""
        check_is_fitted(self, "cluster_centers_")
        x = self._validate(X, reset=False)
        labels, _ = assign(x, self._fitted_centers(x), precision=self.precision, max_memory=self.max_memory)
        return labels.cpu().numpy()

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Euclidean distances to every centre: ``(n_samples, n_features) -> (n_samples, n_clusters)``."""
        check_is_fitted(self, "cluster_centers_")
        x = self._validate(X, reset=False)
        c = self._fitted_centers(x).double()
        out = torch.cdist(x.double(), c, compute_mode="donot_use_mm_for_euclid_dist")
        return out.cpu().numpy()

    def fit_transform(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of ``X`` against the fitted centres."""
        check_is_fitted(self, "cluster_centers_")
        x = self._validate(X, reset=False)
        _, sq = assign(x, self._fitted_centers(x), precision=self.precision, max_memory=self.max_memory)
        w = self._weights(sample_weight, x.shape[0])
        return -float((sq * w).sum() if w is not None else sq.sum())

    @property
    def _n_features_out(self):
        return self.cluster_centers_.shape[0]
