import numpy as np
import pytest
import sklearn.cluster
from sklearn.utils.estimator_checks import parametrize_with_checks

from bottlenecks import KMeans

# scikit-learn's own KMeans declares this check an expected failure: k-means++ draws depend on the
# weights' layout, so weight 2 is not the same random stream as a repeated row.
EXPECTED_FAILED = {"check_sample_weight_equivalence_on_dense_data":
                   "sample_weight is not equivalent to removing/repeating samples "
                   "(k-means++ draws differ; scikit-learn's KMeans lists the same expected failure)"}


@parametrize_with_checks([KMeans(n_clusters=3, random_state=0)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def blobs(n=600, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=5, size=(6, d))
    return (centers[rng.integers(0, 6, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_matches_sklearn_lloyd_from_same_init():
    X = blobs()
    init = X[:6].copy()
    ours = KMeans(6, init=init, max_iter=50, tol=0).fit(X)
    ref = sklearn.cluster.KMeans(6, init=init, n_init=1, max_iter=50, tol=0, algorithm="lloyd").fit(X)
    assert np.array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-5)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=1e-5)


def test_predict_with_wrong_feature_count_is_a_clear_error():
    km = KMeans(3, random_state=0).fit(blobs())
    with pytest.raises(ValueError, match="5 features"):
        km.predict(np.zeros((4, 3), dtype=np.float32))


def test_fewer_distinct_points_than_clusters_warns():
    X = np.repeat(np.eye(2, dtype=np.float32), 10, axis=0)
    with pytest.warns(Warning, match="distinct clusters"):
        KMeans(4, random_state=0).fit(X)


def test_input_is_not_modified():
    X = blobs().astype(np.float64)
    before = X.copy()
    KMeans(4, random_state=0).fit(X)
    assert np.array_equal(X, before)


def test_partial_fit_streams_to_a_good_solution():
    X = blobs(n=3000)
    full = KMeans(6, random_state=0, n_init=3).fit(X)
    stream = KMeans(6, random_state=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        for batch in np.array_split(X[rng.permutation(len(X))], 15):
            stream.partial_fit(batch)
    assert stream.cluster_centers_.shape == (6, 5)
    assert -stream.score(X) <= 1.1 * full.inertia_


def test_partial_fit_first_batch_must_hold_k_samples():
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        KMeans(3).partial_fit(np.zeros((2, 4)))
