"""Artist arithmetic, ALS fold-in of a new listener and Hu-Koren-Volinsky explanations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.als import fit_als, solve_rows
from recsys_assets.core.foldin import (
    FoldInError,
    compose,
    explain_als,
    fold_in_als,
    like,
    likes_row,
    nearest_by_cosine,
    parse_like,
)

NAMES = ["Radiohead", "Daft Punk", "Coldplay", "Muse", "Björk", "Jay-Z", "Florence + the Machine"]
FACTORS = np.array(
    [
        [3.0, 0.0, 4.0],  # |.| = 5
        [0.0, 2.0, 0.0],
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 0.5],
        [6.0, 8.0, 0.0],  # |.| = 10
        [1.0, -1.0, 0.0],
        [0.0, 1.0, 1.0],
    ],
    dtype=np.float32,
)


def resolve(name: str) -> int:
    if name not in NAMES:
        raise KeyError(f"no artist named {name!r}")
    return NAMES.index(name)


@pytest.mark.parametrize(
    ("expression", "terms"),
    [
        ("Radiohead + Daft Punk - Coldplay", [(1.0, "Radiohead"), (1.0, "Daft Punk"), (-1.0, "Coldplay")]),
        ("0.5*Muse + Björk", [(0.5, "Muse"), (1.0, "Björk")]),
        ("-2 * Jay-Z", [(-2.0, "Jay-Z")]),
        ('"Florence + the Machine" - 1e-1*Muse', [(1.0, "Florence + the Machine"), (-0.1, "Muse")]),
        ("  Muse  ", [(1.0, "Muse")]),
    ],
)
def test_parse_like(expression, terms):
    assert parse_like(expression) == terms


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ("Muse + ", "no artist name"),
        ("Muse + - Björk", "no artist before"),
        ('"Muse + Björk', "unclosed"),
    ],
)
def test_parse_like_errors(expression, message):
    with pytest.raises(FoldInError, match=message):
        parse_like(expression)


def test_like_vector_and_neighbours_match_a_hand_computation():
    vector, ids = compose(parse_like("0.5*Radiohead + Björk - Muse"), resolve, FACTORS)
    # 0.5 * (3,0,4)/5 + (6,8,0)/10 - (0,0,0.5)/0.5 = (0.3 + 0.6, 0.8, 0.4 - 1)
    np.testing.assert_allclose(vector, [0.9, 0.8, -0.6], rtol=1e-7)
    assert ids == [0, 4, 3]
    got = like("0.5*Radiohead + Björk - Muse", resolve, FACTORS, n=10)
    # cosines with (0.9, 0.8, -0.6) / sqrt(1.81), by hand, for the artists not in the query
    norm = np.sqrt(0.81 + 0.64 + 0.36)
    expected = {
        1: 0.8 / norm,
        2: (0.9 + 0.8 - 0.6) / np.sqrt(3) / norm,
        5: (0.9 - 0.8) / np.sqrt(2) / norm,
        6: (0.8 - 0.6) / np.sqrt(2) / norm,
    }
    assert [i for i, _ in got] == sorted(expected, key=lambda i: -expected[i])
    for i, score in got:
        assert score == pytest.approx(expected[i], rel=1e-6)


def test_like_errors_name_the_problem():
    with pytest.raises(FoldInError, match="no artist named 'Nobody'"):
        like("Muse + Nobody", resolve, FACTORS)
    with pytest.raises(FoldInError, match="cancel"):
        like("Muse - Muse", resolve, FACTORS)


def test_nearest_by_cosine_breaks_ties_by_index():
    items = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert [i for i, _ in nearest_by_cosine(np.array([1.0, 0.0]), items, n=2)] == [0, 1]


def _tiny(seed=0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((40, 25)) < 0.25) * rng.integers(1, 20, (40, 25))
    dense[:, 0] += 1  # every user has at least one item
    return sp.csr_matrix(dense.astype(np.float32))


def _reference_user(row_values: np.ndarray, Y: np.ndarray, alpha: float, lam: float) -> np.ndarray:
    """The ALS user step in float64 numpy, dense over all items (c = 1, p = 0 where unobserved)."""
    Y = Y.astype(np.float64)
    c = np.where(row_values > 0, alpha * row_values, 1.0)
    p = (row_values > 0).astype(np.float64)
    A = Y.T @ (c[:, None] * Y) + lam * np.eye(Y.shape[1])
    return np.linalg.solve(A, Y.T @ (c * p))


def test_fold_in_equals_the_als_user_step_and_a_float64_reference():
    X = _tiny()
    alpha, lam = 2.0, 0.5
    model = fit_als((X * alpha).tocsr(), factors=6, regularization=lam, iterations=10, seed=0, threads=1)
    Y = model.item_factors
    step = solve_rows((X * alpha).tocsr(), Y, np.zeros((X.shape[0], 6)), lam, solver="cholesky", threads=1)
    for u in (0, 7, 39):
        folded = fold_in_als(X[u], Y, alpha, lam)
        np.testing.assert_array_equal(folded, step[u])
        # float32 output of a float64 solve: agreement to a few float32 ulps of the vector's size
        reference = _reference_user(X[u].toarray().ravel(), Y, alpha, lam)
        np.testing.assert_allclose(folded, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def test_fold_in_matches_a_converged_full_refit():
    """A user folded in against the item factors of a fit that includes them gets (nearly) their fitted
    vector: at convergence the fit's user factors are the user step on its own item factors."""
    X = _tiny(seed=1)
    alpha, lam = 5.0, 1.0
    model = fit_als(
        (X * alpha).tocsr(),
        factors=4,
        regularization=lam,
        iterations=200,
        solver="cholesky",
        seed=0,
        threads=1,
    )
    for u in (3, 11, 20):
        folded = fold_in_als(X[u], model.item_factors, alpha, lam)
        np.testing.assert_allclose(folded, model.user_factors[u], rtol=0, atol=1e-3)
        scores = model.item_factors @ folded
        fitted = model.item_factors @ model.user_factors[u]
        assert np.argsort(-scores)[:5].tolist() == np.argsort(-fitted)[:5].tolist()


def test_explain_contributions_sum_to_the_predicted_score():
    X = _tiny(seed=2)
    alpha, lam = 3.0, 0.7
    model = fit_als((X * alpha).tocsr(), factors=5, regularization=lam, iterations=10, seed=0, threads=1)
    Y = model.item_factors
    row = X[5]
    x64 = _reference_user(row.toarray().ravel(), Y, alpha, lam)
    folded = fold_in_als(row, Y, alpha, lam)
    for item in (1, 12, 24):
        explanation = explain_als(row, item, Y, alpha, lam)
        assert {j for j, _ in explanation.contributions} == set(row.indices.tolist())
        total = sum(c for _, c in explanation.contributions)
        assert total == pytest.approx(explanation.score, rel=1e-12)
        assert explanation.score == pytest.approx(float(Y[item].astype(np.float64) @ x64), rel=1e-9)
        assert explanation.score == pytest.approx(float(Y[item] @ folded), rel=1e-4, abs=1e-6)
        values = [c for _, c in explanation.contributions]
        assert values == sorted(values, reverse=True)


def test_likes_row_uses_each_artists_median_value():
    W = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [3.0, 2.0, 0.0], [5.0, 0.0, 0.0]], dtype=np.float32))
    row = likes_row(W, [1, 0, 2])
    # medians: column 0 of (1, 3, 5) = 3; column 1 = 2; column 2 unplayed -> median of all values (1,2,3,5)
    np.testing.assert_allclose(row.toarray(), [[3.0, 2.0, 2.5]])
    with pytest.raises(FoldInError, match="empty"):
        likes_row(W, [])
    with pytest.raises(FoldInError, match="outside"):
        likes_row(W, [3])
    with pytest.raises(FoldInError, match="no known artist"):
        fold_in_als(sp.csr_matrix((1, 3)), np.ones((3, 2), dtype=np.float32), 1.0, 1.0)


def test_the_als_model_exposes_fold_in():
    from recsys_assets.core.models import get_model

    model = get_model("als")
    X = _tiny(seed=3)
    settings = model.settings(factors=4, iterations=3)
    factors = model.fit(X, settings, threads=1)
    got = model.fold_in(X[2], factors, settings)
    np.testing.assert_array_equal(
        got, fold_in_als(X[2], factors.item_factors, settings.alpha, settings.regularization)
    )
