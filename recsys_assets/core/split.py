"""Train/test splits of a user x item interaction matrix.

Both splits partition the *stored entries* of the matrix (after duplicates are summed): every
(user, item) pair goes to exactly one side with its value, so ``train + test == X`` and the two share
no pair. Both are reproducible: the same matrix and seed give the same split on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from recsys_assets.core.sparse import canonical_csr

__all__ = ["Split", "SplitError", "per_user_holdout", "random_split"]


class SplitError(ValueError):
    """The matrix or the split parameters cannot give a valid train/test split."""


@dataclass(frozen=True)
class Split:
    """A train/test partition of an interaction matrix.

    Attributes:
        train: users x items CSR, same shape and dtype as the input.
        test: users x items CSR, same shape and dtype; disjoint from ``train``, ``train + test == X``.
        method: ``"per_user_holdout"`` or ``"random"``.
        seed: seed of the random generator that chose the test entries.
        test_fraction: requested fraction of entries held out.
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    method: str
    seed: int
    test_fraction: float


def _canonical_csr(X: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """``X`` as a CSR matrix with sorted indices and no duplicate entries (copied only if needed)."""
    if not sp.issparse(X):
        raise TypeError(f"X must be a scipy sparse matrix, got {type(X).__name__}")
    if X.ndim != 2:
        raise SplitError(f"X must be 2-D (users x items), got shape {X.shape}")
    return canonical_csr(X)


def _check_fraction(test_fraction: float) -> float:
    if not 0.0 < test_fraction < 1.0:
        raise SplitError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    return float(test_fraction)


def _partition(X: sp.csr_matrix, is_test: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split the stored entries of ``X`` by the boolean mask ``is_test`` (one flag per entry)."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))

    def side(mask: np.ndarray) -> sp.csr_matrix:
        indptr = np.zeros(X.shape[0] + 1, dtype=X.indptr.dtype)
        np.cumsum(np.bincount(rows[mask], minlength=X.shape[0]), out=indptr[1:])
        return sp.csr_matrix((X.data[mask], X.indices[mask], indptr), shape=X.shape, dtype=X.dtype)

    return side(~is_test), side(is_test)


@numba.njit(cache=True)
def _holdout_mask(indptr: np.ndarray, keys: np.ndarray, n_test: np.ndarray) -> np.ndarray:
    """Flag, in every row ``u``, the ``n_test[u]`` entries with the smallest random ``keys``."""
    is_test = np.zeros(keys.size, dtype=np.bool_)
    for u in range(indptr.size - 1):
        m = n_test[u]
        if m == 0:
            continue
        start = indptr[u]
        # The m smallest of i.i.d. uniform keys form a uniformly random m-subset of the row.
        order = np.argsort(keys[start : indptr[u + 1]], kind="mergesort")
        for j in range(m):
            is_test[start + order[j]] = True
    return is_test


def per_user_holdout(
    X: sp.spmatrix | sp.sparray, test_fraction: float = 0.2, min_items: int = 5, seed: int = 0
) -> Split:
    """Hold out a fraction of every eligible user's items.

    A user with ``n >= min_items`` stored items sends ``m = clip(floor(test_fraction * n + 0.5), 1, n - 1)``
    of them (rounded half up, at least one, never all) to test, chosen uniformly at random without
    replacement: the entries with the ``m`` smallest of ``n`` uniform keys drawn by
    ``numpy.random.default_rng(seed)`` (one key per stored entry, in CSR order). Users with fewer than
    ``min_items`` items keep everything in train.

    Args:
        X: (n_users, n_items) sparse interactions; duplicates are summed first; any dtype.
        test_fraction: in (0, 1).
        min_items: smallest number of items a user needs to be held out from, ``>= 2``.
        seed: random seed.

    Returns:
        Split with train/test CSR of X's shape and dtype, sorted indices.
    """
    test_fraction = _check_fraction(test_fraction)
    if min_items < 2:
        raise SplitError(f"min_items must be >= 2 so a held-out user keeps a train item, got {min_items}")
    X = _canonical_csr(X)
    counts = np.diff(X.indptr).astype(np.int64)
    n_test = np.clip(np.floor(test_fraction * counts + 0.5), 1, np.maximum(counts - 1, 1)).astype(np.int64)
    n_test[counts < min_items] = 0
    keys = np.random.default_rng(seed).random(X.nnz)
    is_test = _holdout_mask(X.indptr.astype(np.int64), keys, n_test)
    train, test = _partition(X, is_test)
    return Split(train, test, "per_user_holdout", int(seed), test_fraction)


def random_split(X: sp.spmatrix | sp.sparray, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Send each stored entry to test independently with probability ``test_fraction``.

    Same draw as ``implicit.evaluation.train_test_split(X, train_percentage=1 - test_fraction,
    random_state=seed)`` in implicit 0.7.3: one ``numpy.random.default_rng(seed).random()`` value per
    entry in CSR order, entry to test when the value is ``>= 1 - test_fraction``. For a canonical matrix
    (sorted indices, no duplicates) with positive values the split is identical to implicit's. Two
    deliberate differences: a non-canonical input is canonicalised first (so the draw order follows
    sorted indices), and test entries with values <= 0 are kept in test (implicit drops them), so that
    ``train + test == X`` always holds.

    Args:
        X: (n_users, n_items) sparse interactions, any dtype.
        test_fraction: in (0, 1).
        seed: random seed.

    Returns:
        Split with train/test CSR of X's shape and dtype, sorted indices.
    """
    test_fraction = _check_fraction(test_fraction)
    X = _canonical_csr(X)
    draws = np.random.default_rng(seed).random(X.nnz)
    train, test = _partition(X, draws >= 1.0 - test_fraction)
    return Split(train, test, "random", int(seed), test_fraction)
