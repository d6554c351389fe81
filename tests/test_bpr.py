"""Tests for the BPR model (recsys_assets.core.models.bpr)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.metrics import evaluate_factors, evaluate_popularity
from recsys_assets.core.models import get_model
from recsys_assets.core.models.bpr import BprSettings, bpr_sample_update, fit, fit_bpr
from recsys_assets.core.sections import SettingsError
from recsys_assets.core.split import random_split
from recsys_assets.core.synthetic import generate_plays


def sample_loss(x: np.ndarray, yi: np.ndarray, yj: np.ndarray, reg: float) -> float:
    """The per-sample loss from its definition: -log sigma(x . (yi - yj)) + reg/2 (|x[:f]|^2 + |yi|^2 + |yj|^2)
    (x[f] == 1 is the constant bias column and carries no regulariser)."""
    score = float(np.dot(x, yi - yj))
    return float(np.log1p(np.exp(-score)) + reg / 2 * (np.sum(x[:-1] ** 2) + np.sum(yi**2) + np.sum(yj**2)))


def planted_matrix(
    n_users: int = 300, n_items: int = 200, groups: int = 4, density: float = 0.3, seed: int = 0
):
    """Users and items in ``groups`` groups; a user likes items of their own group with probability
    ``density`` and no other item."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, groups, n_users)
    item_group = rng.integers(0, groups, n_items)
    liked = (user_group[:, None] == item_group[None, :]) & (rng.random((n_users, n_items)) < density)
    return sp.csr_matrix(liked.astype(np.float32))


def test_sample_update_is_a_gradient_step_on_the_sample_loss():
    rng = np.random.default_rng(1)
    f, lr, reg = 5, 1e-3, 0.03
    x, yi, yj = (rng.normal(size=f + 1) for _ in range(3))
    x[f] = 1.0
    params = np.concatenate([x[:f], yi, yj])

    def loss_of(p: np.ndarray) -> float:
        return sample_loss(np.append(p[:f], 1.0), p[f : 2 * f + 1], p[2 * f + 1 :], reg)

    eps = 1e-6
    numeric = np.array(
        [(loss_of(params + eps * e) - loss_of(params - eps * e)) / (2 * eps) for e in np.eye(params.size)]
    )
    new_x, new_yi, new_yj = x.copy(), yi.copy(), yj.copy()
    score, loss = bpr_sample_update(new_x, new_yi, new_yj, f, lr, reg)
    step = (params - np.concatenate([new_x[:f], new_yi, new_yj])) / lr
    assert score == pytest.approx(np.dot(x, yi - yj), rel=1e-12)
    assert loss == pytest.approx(sample_loss(x, yi, yj, 0.0), rel=1e-12)
    assert new_x[f] == 1.0
    np.testing.assert_allclose(step, numeric, rtol=1e-6, atol=1e-8)


def test_loss_decreases_and_ranking_improves_on_planted_groups():
    liked = planted_matrix()
    result = fit_bpr(liked, factors=8, learning_rate=0.05, iterations=15, seed=0, threads=1)
    assert len(result.loss) == len(result.correct) == len(result.seconds) == 15
    # log 2 = 0.693 is the loss of an untrained model; the planted groups make most pairs separable.
    assert result.loss[0] > 0.6
    assert result.loss[-1] < 0.5 * result.loss[0]
    assert result.correct[-1] > 0.85
    assert all(b <= a + 0.01 for a, b in zip(result.loss, result.loss[1:], strict=False))


def test_verify_negative_redraws_liked_negatives():
    # Every user likes all items but one: a triple is skipped only when 32 uniform draws all miss the
    # user's one unliked item, probability (29/30)^32 = 0.338.
    n = 30
    liked = sp.csr_matrix(np.ones((n, n), dtype=np.float32) - np.eye(n, dtype=np.float32))
    verified = fit_bpr(liked, factors=4, iterations=4, seed=0, threads=1, verify_negative=True)
    unverified = fit_bpr(liked, factors=4, iterations=4, seed=0, threads=1, verify_negative=False)
    expected = (1 - 1 / n) ** 32
    # 4 epochs x 870 triples: 4 standard errors of the mean of 3480 Bernoulli draws is 0.032.
    assert np.mean(verified.skipped) == pytest.approx(expected, abs=0.032)
    assert unverified.skipped == [0.0] * 4


def test_beats_popularity_on_synthetic_plays():
    plays = generate_plays(1500, 600, artists_per_user=25.0, seed=0).to_csr()
    split = random_split(plays, test_fraction=0.2, seed=0)
    factors = fit(split.train, BprSettings(factors=32, iterations=40), threads=2)
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
def test_fixed_seed_one_thread_reproduces_the_same_bytes(negatives):
    liked = planted_matrix(seed=3)
    settings = BprSettings(factors=6, iterations=4, seed=7, negatives=negatives)
    a, b = fit(liked, settings, threads=1), fit(liked, settings, threads=1)
    assert a.user_factors.tobytes() == b.user_factors.tobytes()
    assert a.item_factors.tobytes() == b.item_factors.tobytes()
    assert a.loss == b.loss
    c = fit(liked, BprSettings(factors=6, iterations=4, seed=8, negatives=negatives), threads=1)
    assert c.item_factors.tobytes() != a.item_factors.tobytes()


def test_factor_set_layout():
    liked = planted_matrix(seed=2)
    liked.data[liked.indptr[5] : liked.indptr[6]] = 0.0  # a user without likes
    liked.eliminate_zeros()
    result = fit(liked, BprSettings(factors=6, iterations=2), threads=2)
    assert result.model == "bpr"
    assert result.user_factors.shape == (300, 7) and result.item_factors.shape == (200, 7)
    assert result.user_factors.dtype == result.item_factors.dtype == np.float32
    assert np.all(result.user_factors[:, -1] == 1.0)
    np.testing.assert_array_equal(result.item_bias, result.item_factors[:, -1])
    assert np.all(result.user_factors[5, :-1] == 0.0)
    assert set(result.loss_components) == {"correct_fraction", "skipped_fraction"}
    assert get_model("bpr").fit is fit


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("factors", 0),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("regularization", -0.1),
        ("iterations", 0),
        ("verify_negative", 1),
        ("negatives", "random"),
        ("seed", -1),
    ],
)
def test_bad_settings_are_rejected(key, value):
    with pytest.raises(SettingsError, match=rf"^\[bpr\] {key} = "):
        BprSettings(**{key: value})


def test_empty_matrix_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        fit_bpr(sp.csr_matrix((4, 5), dtype=np.float32), factors=2, iterations=1)
