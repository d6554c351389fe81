"""Tests for the logistic MF model (recsys_assets.core.models.lmf)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.metrics import evaluate_factors, evaluate_popularity
from recsys_assets.core.models import get_model
from recsys_assets.core.models.lmf import LmfSettings, fit, fit_lmf, lmf_row_gradient
from recsys_assets.core.sections import SettingsError
from recsys_assets.core.split import random_split
from recsys_assets.core.synthetic import generate_plays


def row_loss(row, fixed, pos, conf, neg, reg, const_col) -> float:
    """The row loss from its definition (float64): weighted log-loss of the positives, log-loss of the
    negatives, and reg/2 |row|^2 without the constant column."""
    s_pos, s_neg = fixed[pos] @ row, fixed[neg] @ row
    free = np.delete(row, const_col)
    return float(
        np.sum(conf * np.log1p(np.exp(-s_pos))) + np.sum(np.log1p(np.exp(s_neg))) + reg / 2 * free @ free
    )


def planted_matrix(
    n_users: int = 300, n_items: int = 200, groups: int = 4, density: float = 0.3, seed: int = 0
):
    """Users and items in ``groups`` groups; a user likes items of their own group with probability
    ``density`` (values 1..10) and no other item."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, groups, n_users)
    item_group = rng.integers(0, groups, n_items)
    liked = (user_group[:, None] == item_group[None, :]) & (rng.random((n_users, n_items)) < density)
    return sp.csr_matrix(liked * rng.integers(1, 11, (n_users, n_items)).astype(np.float32))


@pytest.mark.parametrize("const_col", [4, 5])
def test_row_gradient_matches_finite_differences(const_col):
    rng = np.random.default_rng(2)
    width, reg = 6, 0.7
    row = rng.normal(size=width)
    row[const_col] = 1.0
    fixed = rng.normal(size=(12, width))
    pos, conf = np.array([0, 3, 7], dtype=np.int32), np.array([1.0, 2.5, 4.0])
    neg = np.array([1, 3, 11, 11, 5], dtype=np.int64)  # repeats and a positive drawn as a negative count too
    grad = np.empty(width)
    pos_loss, neg_loss = lmf_row_gradient(row, fixed, pos, conf, neg, reg, const_col, grad)
    free = np.delete(row, const_col)
    assert pos_loss + neg_loss + reg / 2 * free @ free == pytest.approx(
        row_loss(row, fixed, pos, conf, neg, reg, const_col), rel=1e-12
    )
    eps = 1e-6
    numeric = np.array(
        [
            (
                row_loss(row + eps * e, fixed, pos, conf, neg, reg, const_col)
                - row_loss(row - eps * e, fixed, pos, conf, neg, reg, const_col)
            )
            / (2 * eps)
            for e in np.eye(width)
        ]
    )
    numeric[const_col] = 0.0  # the constant column is not a parameter
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_loss_decreases_on_planted_groups():
    result = fit_lmf(planted_matrix(), factors=8, iterations=20, regularization=0.5, seed=0, threads=1)
    assert len(result.loss) == len(result.positive_loss) == len(result.seconds) == 20
    # An untrained model (scores near 0) has log-loss near log 2 = 0.693.
    assert result.loss[0] > 0.6
    assert result.loss[-1] < 0.6 * result.loss[0]
    assert result.positive_loss[-1] < result.positive_loss[0]
    assert result.negative_loss[-1] < result.negative_loss[0]


def test_beats_popularity_on_synthetic_plays():
    plays = generate_plays(1500, 600, artists_per_user=25.0, seed=0).to_csr()
    split = random_split(plays, test_fraction=0.2, seed=0)
    factors = fit(split.train, LmfSettings(factors=16), threads=2)
    ours = evaluate_factors(
        factors.user_factors, factors.item_factors, split.train, split.test, k=10, threads=2
    )
    popular = evaluate_popularity(split.train, split.test, k=10, threads=2)
    # Margin: three standard errors of popularity's precision (a binomial over k x users list slots).
    p = popular.precision
    margin = 3 * np.sqrt(p * (1 - p) / (10 * popular.n_users))
    assert ours.precision > p + margin, (ours.precision, p, margin)
    assert ours.mpr < popular.mpr


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_fixed_seed_reproduces_the_same_bytes_for_any_thread_count(negatives):
    liked = planted_matrix(seed=3)
    settings = LmfSettings(factors=6, iterations=4, seed=7, negatives=negatives, alpha=0.5)
    a, b, c = (
        fit(liked, settings, threads=1),
        fit(liked, settings, threads=1),
        fit(liked, settings, threads=2),
    )
    for other in (b, c):
        assert a.user_factors.tobytes() == other.user_factors.tobytes()
        assert a.item_factors.tobytes() == other.item_factors.tobytes()
        assert a.loss == other.loss
    d = fit(liked, LmfSettings(factors=6, iterations=4, seed=8, negatives=negatives, alpha=0.5), threads=1)
    assert d.item_factors.tobytes() != a.item_factors.tobytes()


def test_factor_set_layout_and_biases():
    liked = planted_matrix(seed=2)
    liked.data[liked.indptr[5] : liked.indptr[6]] = 0.0  # a user without likes
    liked.eliminate_zeros()
    settings = LmfSettings(factors=6, iterations=3)
    result = fit(liked, settings, threads=2)
    raw = fit_lmf(liked, factors=6, iterations=3, threads=2)
    assert result.model == "lmf"
    assert result.user_factors.shape == (300, 7) and result.item_factors.shape == (200, 7)
    assert np.all(result.user_factors[:, -1] == 1.0)
    np.testing.assert_array_equal(result.item_bias, result.item_factors[:, -1])
    np.testing.assert_array_equal(result.user_bias, raw.user_factors[:, -1])
    assert np.all(raw.item_factors[:, -1] == 1.0)
    assert np.all(result.user_factors[5, :-1] == 0.0) and result.user_bias[5] == 0.0
    # The factor set's dot product is the model's logit less the user's bias.
    logits = raw.user_factors.astype(np.float64) @ raw.item_factors.T.astype(np.float64)
    dots = result.user_factors.astype(np.float64) @ result.item_factors.T.astype(np.float64)
    np.testing.assert_allclose(dots + result.user_bias[:, None], logits, rtol=1e-6, atol=1e-6)
    assert set(result.loss_components) == {"positive_log_loss", "negative_log_loss"}
    assert get_model("lmf").fit is fit


def test_alpha_weights_the_positives():
    liked = planted_matrix(seed=4)
    plain = fit_lmf(liked, factors=4, iterations=1, alpha=0.0, threads=1)
    weighted = fit_lmf(liked, factors=4, iterations=1, alpha=1.0, threads=1)
    # Same draws, same start: the first loss differs only by the confidence weights 1 + value.
    assert plain.negative_loss[0] == weighted.negative_loss[0]
    assert plain.loss[0] != weighted.loss[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("factors", 0),
        ("learning_rate", 0.0),
        ("regularization", -1.0),
        ("iterations", 0),
        ("neg_prop", 0),
        ("neg_prop", 1.5),
        ("alpha", -0.5),
        ("alpha", float("inf")),
        ("negatives", "all"),
        ("seed", 2**31),
    ],
)
def test_bad_settings_are_rejected(key, value):
    with pytest.raises(SettingsError, match=rf"^\[lmf\] {key} = "):
        LmfSettings(**{key: value})


def test_negative_values_are_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        fit_lmf(sp.csr_matrix(np.array([[1.0, -2.0]], dtype=np.float32)), factors=2, iterations=1)
