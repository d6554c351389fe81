"""Implicit-feedback alternating least squares (Hu, Koren & Volinsky 2008).

Model. ``confidence`` is a users x items sparse matrix holding the confidence ``c_ui > 0`` of every
observed pair; an observed pair has preference ``p_ui = 1``, every unobserved pair has ``c_ui = 1`` and
``p_ui = 0``. ALS minimises

    L(X, Y) = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)

by solving, in turn, every user row given the item factors and every item row given the user factors.
With the other side ``Y`` fixed, row ``u`` solves the normal equations

    (Y^T Y + lambda I + sum_{i in obs(u)} (c_ui - 1) y_i y_i^T) x_u = sum_{i in obs(u)} c_ui y_i

either exactly (Cholesky) or approximately with a few conjugate-gradient steps warm-started from the
row's current factors (Takacs, Pilaszy & Tikk 2011). The CG matrix-vector product never forms the
f x f matrix: it is ``G p + sum_i (c_ui - 1) (y_i . p) y_i`` with ``G = Y^T Y + lambda I`` computed once
per half-step, so one step costs O(f^2 + nnz_u f).

Algorithm, initialisation (uniform [0, 0.01) from ``numpy.random.default_rng(seed)``, users then
items), CG stopping rule and loss normalisation follow ``implicit`` 0.7.3's CPU ALS, so factors and
losses are directly comparable with it. Kernels are numba ``prange`` loops over blocks of rows of
balanced work; every row is computed independently and in a fixed order, so results do not depend on
the thread count.

A fit renumbers users and items by decreasing number of stored entries before solving and returns the
factors in the caller's order: the popular item rows that most stored entries gather then sit together
at the start of the factor matrix (fewer pages and cache lines to keep hot), and rows of similar cost
share a block. Reproducibility: a fixed seed gives the same bytes for any thread count, BLAS library or
process on one machine (the Gram matrix is summed by :func:`~recsys_assets.core.als_kernels.gram_kernel`; see
``als_kernels._CG_CACHE``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp

from recsys_assets.core.als_kernels import (
    GRAM_BLOCK_ROWS,
    UNROLLED_WIDTH,
    cg_rows,
    cg_rows_unrolled,
    cholesky_rows,
    gram_kernel,
    loss_rows,
)
from recsys_assets.core.sparse import canonical_csr
from recsys_assets.core.threads import numba_threads

Solver = Literal["cg", "cholesky"]

# Blocks of rows handed to the thread pool per thread: enough that dynamic scheduling evens out
# skewed rows (Zipf-popular items) and other load on the machine, few enough that the per-block
# scratch allocation is negligible.
_BLOCKS_PER_THREAD = 64
# Fits renumber users and items by decreasing number of stored entries (see ``fit_als``).
_BY_POPULARITY = True


class AlsInputError(ValueError):
    """An input to ALS (matrix, factors or a parameter) is not usable."""


class AlsNumericalError(ArithmeticError):
    """The exact solver met a normal-equation matrix that is not positive definite."""


@dataclass
class AlsResult:
    """Factors of a fitted model and its training curve.

    ``user_factors`` is float32 ``(n_users, factors)``, ``item_factors`` float32 ``(n_items, factors)``;
    a user's score for an item is ``user_factors[u] @ item_factors[i]``. ``loss[k]`` is the training
    loss (:func:`als_loss`) after iteration ``k`` (empty when the loss was not computed) and
    ``seconds[k]`` the wall time of its two half-steps, loss excluded.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# numba kernels: one row of the outer matrix per loop iteration, blocks of rows per prange task.


# ----------------------------------------------------------------------------------------------
# validation and plumbing


def _checked_confidence(confidence: sp.spmatrix) -> sp.csr_matrix:
    """Float32 CSR copy in canonical form (sorted, no duplicates, no stored zeros), validated."""
    if not sp.issparse(confidence):
        raise AlsInputError(
            f"confidence must be a scipy sparse matrix (users x items), got {type(confidence).__name__}"
        )
    if confidence.ndim != 2:
        raise AlsInputError(f"confidence must be 2-D, got shape {confidence.shape}")
    if not (np.issubdtype(confidence.dtype, np.number) and not np.iscomplexobj(confidence.data)):
        raise AlsInputError(f"confidence must hold real numbers, got dtype {confidence.dtype}")
    # A stored zero carries no confidence: treat it as unobserved (c = 1, p = 0).
    matrix = canonical_csr(confidence, dtype=np.float32, copy=True, drop_zeros=True)
    if matrix.nnz and not np.all(np.isfinite(matrix.data)):
        raise AlsInputError("confidence holds NaN or infinite values; clean the weighted matrix first")
    if matrix.nnz and matrix.data.min() < 0:
        raise AlsInputError(
            "confidence must be non-negative (negative feedback is not supported); "
            f"found minimum {matrix.data.min():g}"
        )
    matrix.indptr = matrix.indptr.astype(np.int64, copy=False)
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix


def _checked_factors(name: str, factors: np.ndarray, rows: int, width: int | None) -> np.ndarray:
    """C-contiguous float32 copy of a factor matrix with ``rows`` rows (and ``width`` columns)."""
    array = np.asarray(factors)
    if array.ndim != 2 or array.shape[0] != rows or (width is not None and array.shape[1] != width):
        expected = f"({rows}, {width if width is not None else 'factors'})"
        raise AlsInputError(f"{name} must have shape {expected}, got {array.shape}")
    if array.shape[1] < 1:
        raise AlsInputError(f"{name} needs at least one column")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise AlsInputError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise AlsInputError(f"{name} holds NaN or infinite values")
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _checked_regularization(regularization: float) -> float:
    if not np.isfinite(regularization) or regularization < 0:
        raise AlsInputError(f"regularization must be a finite number >= 0, got {regularization!r}")
    return float(regularization)


def _checked_solver(solver: str, cg_steps: int) -> None:
    if solver not in ("cg", "cholesky"):
        raise AlsInputError(f"solver must be 'cg' or 'cholesky', got {solver!r}")
    if isinstance(cg_steps, bool) or not isinstance(cg_steps, int | np.integer) or cg_steps < 1:
        raise AlsInputError(f"cg_steps must be an integer >= 1, got {cg_steps!r}")


def _row_blocks(indptr: np.ndarray, factors: int, n_threads: int) -> np.ndarray:
    """Boundaries of contiguous row blocks of about equal work, int64 of length ``n_blocks + 1``.

    A row costs about ``nnz_row * 4 f`` flops per CG pass plus ``f^2`` for the Gram product, so its
    weight is ``nnz_row + f / 4``.
    """
    n_rows = indptr.shape[0] - 1
    n_blocks = max(1, min(n_rows, n_threads * _BLOCKS_PER_THREAD))
    work = np.diff(indptr).astype(np.float64) + factors / 4.0
    cumulative = np.cumsum(work)
    targets = cumulative[-1] * np.arange(1, n_blocks) / n_blocks if n_rows else np.empty(0)
    inner = np.searchsorted(cumulative, targets, side="left") + 1
    bounds = np.concatenate(([0], inner, [n_rows])).astype(np.int64)
    return np.unique(bounds)


def _gram(fixed: np.ndarray, regularization: float, dtype: type) -> np.ndarray:
    """``fixed^T fixed + regularization * I`` in ``dtype``, the same bits for any thread count or BLAS.

    Accumulated in float64 by :func:`gram_kernel`; the float32 result is the float64 sum rounded once.
    Call inside ``numba_threads``.
    """
    n_blocks = max(1, -(-fixed.shape[0] // GRAM_BLOCK_ROWS))
    gram = np.empty((fixed.shape[1], fixed.shape[1]), dtype=np.float64)
    with numba.parallel_chunksize(1):
        gram_kernel(fixed, GRAM_BLOCK_ROWS, np.zeros((n_blocks,) + gram.shape), gram)
    gram[np.diag_indices_from(gram)] += regularization
    return np.ascontiguousarray(gram, dtype=dtype)


def _solve_in_place(
    matrix: sp.csr_matrix,
    fixed: np.ndarray,
    current: np.ndarray,
    regularization: float,
    solver: str,
    cg_steps: int,
    n_threads: int,
    blocks: np.ndarray,
) -> None:
    """One half-step on validated inputs; overwrites ``current``. Call inside ``numba_threads``."""
    if solver == "cg":
        gram = _gram(fixed, regularization, np.float32)
        kernel = cg_rows_unrolled if fixed.shape[1] == UNROLLED_WIDTH else cg_rows
        with numba.parallel_chunksize(1):
            kernel(matrix.indptr, matrix.indices, matrix.data, fixed, gram, current, cg_steps, blocks)
        return
    gram = _gram(fixed, regularization, np.float64)
    failed = np.zeros(current.shape[0], dtype=np.bool_)
    with numba.parallel_chunksize(1):
        cholesky_rows(matrix.indptr, matrix.indices, matrix.data, fixed, gram, current, blocks, failed)
    if failed.any():
        row = int(np.flatnonzero(failed)[0])
        raise AlsNumericalError(
            f"the normal equations of row {row} are not positive definite "
            f"({int(failed.sum())} rows failed); use regularization > 0"
        )


def _popularity_orders(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(users by decreasing stored entries, items by decreasing stored entries), ties by index."""
    user_counts = np.diff(matrix.indptr)
    item_counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
    return np.argsort(-user_counts, kind="stable"), np.argsort(-item_counts, kind="stable")


def _permuted(matrix: sp.csr_matrix, user_order: np.ndarray, item_order: np.ndarray) -> sp.csr_matrix:
    """``matrix[user_order][:, item_order]`` in canonical CSR form (int64 indptr, int32 indices)."""
    rows = matrix[user_order]
    new_index = np.empty_like(item_order)
    new_index[item_order] = np.arange(item_order.shape[0])
    rows.indices = new_index[rows.indices].astype(np.int32)
    rows.has_sorted_indices = False
    rows.sort_indices()
    rows.indptr = rows.indptr.astype(np.int64, copy=False)
    return rows


def _loss(
    matrix: sp.csr_matrix,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    regularization: float,
    blocks: np.ndarray,
) -> float:
    """Loss on validated inputs (see :func:`als_loss`). Call inside ``numba_threads``."""
    # float64: the loss is a reference figure (compared with implicit's to 1e-5 and across runs); a
    # float32 Gram would carry up to n_items * eps32 relative error into the unobserved-pairs term.
    gram = _gram(item_factors, 0.0, np.float64)
    per_row = np.empty(matrix.shape[0], dtype=np.float64)
    with numba.parallel_chunksize(1):
        loss_rows(
            matrix.indptr, matrix.indices, matrix.data, user_factors, item_factors, gram, blocks, per_row
        )
    norms = np.square(user_factors, dtype=np.float64).sum() + np.square(item_factors, dtype=np.float64).sum()
    n_users, n_items = matrix.shape
    total_confidence = float(matrix.data.sum(dtype=np.float64)) + n_users * n_items - matrix.nnz
    return float((per_row.sum() + regularization * norms) / total_confidence)


# ----------------------------------------------------------------------------------------------
# public API


def solve_rows(
    confidence: sp.csr_matrix,
    fixed: np.ndarray,
    current: np.ndarray,
    regularization: float,
    solver: str = "cg",
    cg_steps: int = 3,
    threads: int | None = None,
) -> np.ndarray:
    """One ALS half-step: new factors for every row of ``confidence`` given the ``fixed`` side.

    ``confidence`` is rows x cols (users x items to solve users, its transpose to solve items),
    ``fixed`` float ``(cols, f)``, ``current`` float ``(rows, f)`` the rows' present factors. Row ``u``
    solves ``(F^T F + lambda I + sum_i (c_ui - 1) f_i f_i^T) x_u = sum_i c_ui f_i`` over its stored
    columns ``i``: exactly with ``solver="cholesky"`` (float64 normal equations), or with ``cg_steps``
    conjugate-gradient steps started from ``current[u]`` with ``solver="cg"``. Rows without stored
    values get zero vectors. Returns a new float32 ``(rows, f)`` array; ``current`` is not modified.
    Use it to fold in new users: ``solve_rows(their_rows, item_factors, zeros, lambda, "cholesky")``.
    """
    matrix = _checked_confidence(confidence)
    fixed32 = _checked_factors("fixed", fixed, matrix.shape[1], None)
    out = _checked_factors("current", current, matrix.shape[0], fixed32.shape[1])
    regularization = _checked_regularization(regularization)
    _checked_solver(solver, cg_steps)
    with numba_threads(threads) as n_threads:
        blocks = _row_blocks(matrix.indptr, fixed32.shape[1], n_threads)
        _solve_in_place(matrix, fixed32, out, regularization, solver, int(cg_steps), n_threads, blocks)
    return out


def als_loss(
    confidence: sp.csr_matrix,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    regularization: float,
    threads: int | None = None,
) -> float:
    """Training loss of factors on a confidence matrix, normalised like ``implicit``'s ``calculate_loss``.

    ``(sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|_F^2 + |Y|_F^2)) / sum_{u,i} c_ui``, where the
    sums run over all ``n_users * n_items`` pairs (unobserved pairs: ``c = 1``, ``p = 0``), so the
    denominator is ``sum of stored confidences + n_users * n_items - nnz``. ``confidence`` is users x
    items, ``user_factors`` ``(n_users, f)``, ``item_factors`` ``(n_items, f)``; accumulated in float64.
    """
    matrix = _checked_confidence(confidence)
    users = _checked_factors("user_factors", user_factors, matrix.shape[0], None)
    items = _checked_factors("item_factors", item_factors, matrix.shape[1], users.shape[1])
    regularization = _checked_regularization(regularization)
    with numba_threads(threads) as n_threads:
        blocks = _row_blocks(matrix.indptr, users.shape[1], n_threads)
        return _loss(matrix, users, items, regularization, blocks)


def fit_als(
    confidence: sp.csr_matrix,
    factors: int = 64,
    regularization: float = 0.01,
    iterations: int = 15,
    solver: Solver = "cg",
    cg_steps: int = 3,
    seed: int = 0,
    threads: int | None = None,
    user_factors: np.ndarray | None = None,
    item_factors: np.ndarray | None = None,
    compute_loss: bool = True,
    callback: Callable[[int, float | None, float], None] | None = None,
) -> AlsResult:
    """Fit implicit-feedback ALS factors to a users x items confidence matrix.

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2)`` (module docstring) by
    ``iterations`` rounds of: solve all users given the items, then all items given the users
    (:func:`solve_rows`). Factors start from ``user_factors`` / ``item_factors`` when given (copied,
    warm start), else uniform in ``[0, 0.01)`` drawn by ``numpy.random.default_rng(seed)``, users then
    items, float32, the same draw as ``implicit`` with ``random_state=seed``. Stored zeros count as
    unobserved. After each iteration ``callback(iteration, loss_or_None, seconds)`` is called.
    ``threads`` sizes the numba pool (BLAS stays on one thread inside); results do not depend on it.
    """
    matrix = _checked_confidence(confidence)
    if isinstance(factors, bool) or not isinstance(factors, int | np.integer) or factors < 1:
        raise AlsInputError(f"factors must be an integer >= 1, got {factors!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < 0:
        raise AlsInputError(f"iterations must be an integer >= 0, got {iterations!r}")
    regularization = _checked_regularization(regularization)
    _checked_solver(solver, cg_steps)
    n_users, n_items = matrix.shape

    rng = np.random.default_rng(seed)
    if user_factors is None:
        users = rng.random((n_users, factors), dtype=np.float32) * np.float32(0.01)
    else:
        users = _checked_factors("user_factors", user_factors, n_users, factors)
    if item_factors is None:
        items = rng.random((n_items, factors), dtype=np.float32) * np.float32(0.01)
    else:
        items = _checked_factors("item_factors", item_factors, n_items, factors)

    # Solve in popularity order (module docstring): permute in, un-permute the factors out.
    user_order, item_order = _popularity_orders(matrix) if _BY_POPULARITY else (None, None)
    if user_order is not None:
        matrix = _permuted(matrix, user_order, item_order)
        users, items = users[user_order], items[item_order]
    transposed = matrix.T.tocsr()
    transposed.indptr = transposed.indptr.astype(np.int64, copy=False)
    transposed.indices = transposed.indices.astype(np.int32, copy=False)

    result = AlsResult(user_factors=users, item_factors=items)
    with numba_threads(threads) as n_threads:
        user_blocks = _row_blocks(matrix.indptr, factors, n_threads)
        item_blocks = _row_blocks(transposed.indptr, factors, n_threads)
        for iteration in range(iterations):
            start = time.perf_counter()
            _solve_in_place(matrix, items, users, regularization, solver, cg_steps, n_threads, user_blocks)
            _solve_in_place(
                transposed, users, items, regularization, solver, cg_steps, n_threads, item_blocks
            )
            seconds = time.perf_counter() - start
            loss = _loss(matrix, users, items, regularization, user_blocks) if compute_loss else None
            result.seconds.append(seconds)
            if loss is not None:
                result.loss.append(loss)
            if callback is not None:
                callback(iteration, loss, seconds)
    if user_order is not None:
        result.user_factors = np.empty_like(users)
        result.user_factors[user_order] = users
        result.item_factors = np.empty_like(items)
        result.item_factors[item_order] = items
    return result
