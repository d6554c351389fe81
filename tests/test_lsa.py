import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.lsa import LsaError, fit_lsa

EPS32 = float(np.finfo(np.float32).eps)


def _matrix(seed=0):
    return sp.random(60, 40, density=0.2, format="csr", dtype=np.float32, random_state=seed)


def test_matches_dense_svd_and_reconstructs():
    W = _matrix()
    k = 8
    result = fit_lsa(W, factors=k, seed=1)
    U, s, Vt = np.linalg.svd(W.toarray().astype(np.float64), full_matrices=False)
    # ARPACK works in float32 on W^T W (eigenvalues s^2) and stops at float32 precision: each Ritz
    # pair's residual is about eps32 * s_1^2 (times the few roundings of a matrix-vector product, < 10).
    # An eigenvalue then moves by at most that residual, so s_j by residual / (2 s_j); the invariant
    # subspace by residual / (s_k^2 - s_{k+1}^2) (Davis-Kahan), which moves the rank-k reconstruction by
    # at most that angle times 2 s_1.
    residual = 10 * EPS32 * s[0] ** 2
    np.testing.assert_allclose(result.singular_values, s[:k], rtol=residual / (2 * s[k - 1] ** 2))
    angle = residual / (s[k - 1] ** 2 - s[k] ** 2)
    rank_k = (U[:, :k] * s[:k]) @ Vt[:k]
    np.testing.assert_allclose(result.user_factors @ result.item_factors.T, rank_k, atol=2 * s[0] * angle)
    assert result.user_factors.dtype == np.float32 and result.item_factors.shape == (40, k)


def test_deterministic_signs_and_seed():
    a, b = fit_lsa(_matrix(2), factors=5, seed=3), fit_lsa(_matrix(2), factors=5, seed=3)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    top = np.abs(a.item_factors).argmax(axis=0)
    assert np.all(a.item_factors[top, np.arange(5)] > 0)


def test_empty_rows_give_zero_user_factors():
    W = _matrix(4).tolil()
    W[3, :] = 0
    result = fit_lsa(W.tocsr(), factors=4)
    np.testing.assert_allclose(result.user_factors[3], 0, atol=1e-6)


@pytest.mark.parametrize("factors", [0, 40, 100])
def test_bad_factor_count(factors):
    with pytest.raises(LsaError, match="factors"):
        fit_lsa(_matrix(), factors=factors)


def test_rejects_dense_and_empty_input():
    with pytest.raises(LsaError, match="sparse"):
        fit_lsa(np.ones((5, 5)), factors=2)
    with pytest.raises(LsaError, match="empty"):
        fit_lsa(sp.csr_matrix((5, 5), dtype=np.float32), factors=2)
