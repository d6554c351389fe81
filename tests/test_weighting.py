import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.weighting import (
    WeightingError,
    bm25_weight,
    confidence_weight,
    idf,
    log_weight,
    tfidf_weight,
    weight_user_items,
)


def _plays(seed=0, shape=(30, 40), density=0.2):
    rng = np.random.default_rng(seed)
    X = sp.random(*shape, density=density, random_state=rng, format="csr", dtype=np.float64)
    X.data = np.ceil(X.data * 50)
    return X.tocsr()


def _dense_bm25(D, k1, b):
    n = D.shape[0]
    df = (D > 0).sum(axis=0)
    idf_ = np.maximum(np.log(n) - np.log1p(df), 0)
    L = D.sum(axis=1)
    norm = (1 - b) + b * L / L.mean()
    out = np.zeros_like(D)
    for i, j in zip(*np.nonzero(D), strict=True):
        out[i, j] = D[i, j] * (k1 + 1) / (D[i, j] + k1 * norm[i]) * idf_[j]
    return out


def test_bm25_matches_dense_reference_and_keeps_pattern():
    X = _plays()
    W = bm25_weight(X, k1=1.2, b=0.75)
    assert W.dtype == np.float32
    np.testing.assert_array_equal(W.indptr, X.indptr)
    np.testing.assert_array_equal(W.indices, X.indices)
    np.testing.assert_allclose(W.toarray(), _dense_bm25(X.toarray(), 1.2, 0.75), rtol=1e-5, atol=1e-6)


def test_bm25_and_tfidf_agree_with_implicit():
    implicit_nn = pytest.importorskip("implicit.nearest_neighbours")
    X = _plays(seed=3)
    ours = bm25_weight(X, k1=100, b=0.8).toarray()
    theirs = implicit_nn.bm25_weight(X.tocoo(), K1=100, B=0.8).toarray()
    np.testing.assert_allclose(ours, np.maximum(theirs, 0), rtol=1e-5, atol=1e-6)
    ours_tfidf = tfidf_weight(X, tf="sqrt").toarray()
    theirs_tfidf = implicit_nn.tfidf_weight(X.tocoo()).toarray()
    np.testing.assert_allclose(ours_tfidf, np.maximum(theirs_tfidf, 0), rtol=1e-5, atol=1e-6)


def test_confidence_linear_and_log():
    X = sp.csr_matrix(np.array([[0, 1, 3], [4, 0, 0]], dtype=np.float64))
    lin = confidence_weight(X, alpha=2.0).toarray()
    np.testing.assert_allclose(lin, [[0, 3, 7], [9, 0, 0]])
    log = confidence_weight(X, alpha=2.0, scale="log", epsilon=0.5).toarray()
    np.testing.assert_allclose(log[0, 2], 1 + 2 * np.log(1 + 3 / 0.5), rtol=1e-6)
    assert log[0, 0] == 0  # unobserved stays unstored


def test_orientation_transposes_document_axis():
    X = _plays(seed=5)
    by_artist = weight_user_items(X, "bm25", "artist_user", k1=10, b=0.5)
    expected = bm25_weight(X.T.tocsr(), k1=10, b=0.5).T.toarray()
    np.testing.assert_allclose(by_artist.toarray(), expected, rtol=1e-6)
    by_user = weight_user_items(X, "bm25", "user_artist", k1=10, b=0.5)
    np.testing.assert_allclose(by_user.toarray(), bm25_weight(X, k1=10, b=0.5).toarray(), rtol=1e-6)
    assert by_artist.shape == X.shape
    assert not np.allclose(by_artist.toarray(), by_user.toarray())


def test_idf_never_negative_for_a_column_in_every_row():
    X = sp.csr_matrix(np.ones((4, 2)))
    assert np.all(idf(X) == 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda X: bm25_weight(X, k1=-1), "k1"),
        (lambda X: bm25_weight(X, b=2), "b must"),
        (lambda X: confidence_weight(X, alpha=-1), "alpha"),
        (lambda X: weight_user_items(X, "nope"), "unknown weighting"),
        (lambda X: weight_user_items(X, "bm25", "sideways"), "orientation"),
        (lambda X: bm25_weight(X.toarray()), "sparse"),
        (lambda X: bm25_weight(-X), "non-negative"),
        (lambda X: log_weight(X, epsilon=0.0), "epsilon"),
        (lambda X: log_weight(X, epsilon=float("nan")), "epsilon"),
    ],
)
def test_bad_parameters_raise(call, message):
    with pytest.raises(WeightingError, match=message):
        call(_plays())


def test_log_weight_is_log_of_one_plus_count_over_epsilon():
    X = sp.csr_matrix(np.array([[0.0, 3.0, 1.0], [8.0, 0.0, 0.0]]))
    W = log_weight(X, epsilon=2.0)
    # log(1 + 3/2), log(1 + 1/2), log(1 + 8/2), by hand
    expected = np.array([[0.0, 0.9162907, 0.4054651], [1.6094379, 0.0, 0.0]])
    np.testing.assert_allclose(W.toarray(), expected, rtol=1e-6)
    assert W.dtype == np.float32
    assert W.nnz == X.nnz


def test_log_scheme_ignores_orientation_and_matches_log_weight():
    X = _plays(seed=3)
    a = weight_user_items(X, "log", "artist_user", epsilon=0.5)
    b = weight_user_items(X, "log", "user_artist", epsilon=0.5)
    np.testing.assert_array_equal(a.toarray(), b.toarray())
    np.testing.assert_array_equal(a.toarray(), log_weight(X, epsilon=0.5).toarray())
