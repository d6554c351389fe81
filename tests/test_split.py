import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.split import SplitError, per_user_holdout, random_split


def _plays(n_users=80, n_items=50, density=0.2, seed=0, dtype=np.float32):
    X = sp.random(n_users, n_items, density=density, random_state=seed, format="csr", dtype=np.float64)
    X.data = np.ceil(X.data * 30)
    return X.astype(dtype)


def _assert_partition(X, split):
    train, test = split.train, split.test
    assert train.shape == test.shape == X.shape
    assert train.dtype == test.dtype == X.dtype
    assert isinstance(train, sp.csr_matrix) and isinstance(test, sp.csr_matrix)
    # Same pairs with the same values, and no pair on both sides.
    assert (train + test != X).nnz == 0
    assert train.nnz + test.nnz == X.nnz
    assert train.multiply(test).nnz == 0


def test_per_user_holdout_counts_and_partition():
    X = _plays()
    split = per_user_holdout(X, test_fraction=0.3, min_items=6, seed=3)
    _assert_partition(X, split)
    n = np.diff(X.indptr)
    expected = np.where(n >= 6, np.clip(np.floor(0.3 * n + 0.5), 1, n - 1), 0)
    np.testing.assert_array_equal(np.diff(split.test.indptr), expected)
    assert (split.method, split.seed, split.test_fraction) == ("per_user_holdout", 3, 0.3)


def test_per_user_holdout_reproducible_and_seed_dependent():
    X = _plays(seed=1)
    a = per_user_holdout(X, seed=5)
    b = per_user_holdout(X.copy(), seed=5)
    c = per_user_holdout(X, seed=6)
    assert (a.test != b.test).nnz == 0
    assert (a.test != c.test).nnz > 0


def test_per_user_holdout_is_uniform_within_a_user():
    # One user with 10 items, 3 held out: over many seeds each item is held out ~30% of the time.
    X = sp.csr_matrix(np.arange(1, 11, dtype=np.float64)[None, :])
    freq = np.zeros(10)
    for seed in range(2000):
        freq += per_user_holdout(X, 0.3, min_items=2, seed=seed).test.toarray()[0] > 0
    np.testing.assert_allclose(freq / 2000, 0.3, atol=0.04)  # binomial sd ~0.01


def test_per_user_holdout_keeps_small_users_and_one_train_item():
    X = sp.csr_matrix(np.array([[1, 2, 0, 0], [1, 1, 1, 0], [3, 0, 0, 0]], dtype=np.int64))
    split = per_user_holdout(X, test_fraction=0.9, min_items=2, seed=0)
    _assert_partition(X, split)
    # 0.9 * 2 rounds to 2 and 0.9 * 3 to 3, but a user always keeps one train item.
    np.testing.assert_array_equal(np.diff(split.test.indptr), [1, 2, 0])
    np.testing.assert_array_equal(np.diff(split.train.indptr), [1, 1, 1])


def test_duplicates_are_summed_not_split():
    X = sp.coo_matrix((np.array([1.0, 2.0, 4.0]), (np.array([0, 0, 0]), np.array([1, 1, 2]))), shape=(1, 3))
    for split in (per_user_holdout(X, 0.5, min_items=2, seed=0), random_split(X, 0.5, seed=0)):
        _assert_partition(X.tocsr(), split)
        assert split.train.nnz + split.test.nnz == 2


def test_random_split_fraction_and_partition():
    X = _plays(n_users=400, n_items=300, density=0.05, seed=2)
    split = random_split(X, test_fraction=0.2, seed=9)
    _assert_partition(X, split)
    assert split.test.nnz / X.nnz == pytest.approx(0.2, abs=0.02)
    assert split.method == "random"


@pytest.mark.parametrize("fraction", [0.2, 0.35])
def test_random_split_identical_to_implicit(fraction):
    evaluation = pytest.importorskip("implicit.evaluation")
    X = _plays(n_users=300, n_items=200, density=0.05, seed=4)
    ours = random_split(X, test_fraction=fraction, seed=11)
    train, test = evaluation.train_test_split(X, train_percentage=1.0 - fraction, random_state=11)
    assert (ours.train != train).nnz == 0
    assert (ours.test != test).nnz == 0
    assert ours.train.nnz == train.nnz and ours.test.nnz == test.nnz


def test_bad_arguments_raise():
    X = _plays()
    with pytest.raises(SplitError, match="test_fraction"):
        per_user_holdout(X, test_fraction=1.0)
    with pytest.raises(SplitError, match="test_fraction"):
        random_split(X, test_fraction=0.0)
    with pytest.raises(SplitError, match="min_items"):
        per_user_holdout(X, min_items=1)
    with pytest.raises(TypeError, match="sparse"):
        random_split(X.toarray())
