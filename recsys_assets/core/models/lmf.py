"""Logistic matrix factorisation (Johnson 2014) as a registered model: settings, numba kernels and fit.

Model. The probability that user ``u`` likes item ``i`` is ``sigma(s_ui)``, ``s_ui = x_u . y_i + b_u +
b_i``. A stored entry ``r_ui`` of the input is a positive observation with confidence ``c_ui = 1 +
alpha r_ui``; unobserved pairs are negatives, of which each half-epoch samples ``neg_prop`` per
positive. The loss of one row (a user, or an item in the item half) is

    L_u = sum_{i in pos(u)} c_ui log(1 + exp(-s_ui)) + sum_{j in neg(u)} log(1 + exp(s_uj))
          + reg / 2 (|x_u|^2 + b_u^2)

with gradient (:func:`lmf_row_gradient`)
``g = -sum_pos c_ui sigma(-s_ui) (y_i, 1) + sum_neg sigma(s_uj) (y_j, 1) + reg (x_u, b_u)``.

Algorithm (Johnson's): alternate a half-epoch over users (items fixed) and one over items (users fixed);
each row takes one AdaGrad step ``theta -= lr g / sqrt(G + 1e-6)``, ``G`` the running sum of ``g^2``
per coordinate. Negatives are drawn uniformly (``negatives = "uniform"``) or by popularity (the other
side of a uniformly drawn stored entry, as ``implicit`` 0.7.3 does), without checking that they are
unobserved (an observed pair is a rare draw in a sparse matrix).

Storage: users ``[x_u, 1, b_u]``, items ``[y_i, b_i, 1]`` (``factors + 2`` columns), so one dot product
is ``s_ui``. The :class:`FactorSet` drops the user-bias column (a constant per user changes no ranking):
users ``[x_u, 1]``, items ``[y_i, b_i]``, with ``user_bias`` and ``item_bias`` kept for reports.

Determinism: a row's step reads only the fixed side and its own row, and its negatives come from a
generator seeded by (seed, epoch, half, row), so a fixed seed gives the same bytes for any thread count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numba
import numpy as np
import scipy.sparse as sp

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model, Progress
from recsys_assets.core.models._sampling import next_below, prefetch, row_state, sigmoid, sigmoid_softplus
from recsys_assets.core.sections import NonNegativeFloat, PositiveFloat, PositiveInt, Section, Seed
from recsys_assets.core.threads import numba_threads

Negatives = Literal["popularity", "uniform"]

# Blocks of rows per half-epoch (dynamic load balance over the threads); a fixed number, so that the
# per-block loss sums, hence the reported loss, do not depend on the thread count either.
_BLOCKS = 256
# Rows of the fixed side are prefetched this many samples ahead.
_AHEAD = 16
_FLOATS_PER_LINE = 16
_ADAGRAD_EPSILON = np.float32(1e-6)


@dataclass(frozen=True)
class LmfSettings(Section):
    """Logistic MF with sampled negatives, alternating AdaGrad steps, user and item biases."""

    TABLE: ClassVar[str] = "lmf"

    # Defaults chosen on HetRec-2k (README "Quality"; bench/ranking_vs_implicit.py): p@10 0.166 on
    # implicit's 80/20 split with regularization 4 (0.6, implicit's default: 0.106), alpha 0 (binary
    # preferences; alpha 0.005 on BM25 weights: 0.136), one popularity-drawn negative per positive.
    factors: PositiveInt = 30
    learning_rate: PositiveFloat = 0.1
    regularization: NonNegativeFloat = 4.0
    # Epochs: one user half and one item half each.
    iterations: PositiveInt = 30
    # Negatives drawn per positive entry of a row, each half-epoch.
    neg_prop: PositiveInt = 1
    # Confidence of a stored entry: 1 + alpha * value (0: every stored entry counts once).
    alpha: NonNegativeFloat = 0.0
    # Distribution of negatives: by number of entries (implicit's) or uniform.
    negatives: Negatives = "popularity"
    seed: Seed = 0


@dataclass
class LmfResult:
    """Factors in training layout (users ``[x, 1, b_u]``, items ``[y, b_i, 1]``) and per-epoch statistics
    of the user half (before its steps): the weighted mean log-loss of positives and negatives together,
    of the positives (weighted by confidence) and of the negatives; seconds per epoch."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    loss: list[float]
    positive_loss: list[float]
    negative_loss: list[float]
    seconds: list[float]


# ---------------------------------------------------------------------------------------------------
# numba kernels


@numba.njit(cache=True, inline="always")
def _prefetch_row(M, row, w):  # pragma: no cover
    """Prefetch every cache line of ``M[row, :w]`` (points 64 bytes apart, then the last)."""
    for col in range(0, w, _FLOATS_PER_LINE):
        prefetch(M, (row, col))
    prefetch(M, (row, w - 1))


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def lmf_row_gradient(
    row, fixed, pos_cols, pos_conf, neg_cols, reg, const_col, grad, with_loss=True
):  # pragma: no cover
    """Gradient of the row loss ``L_u`` (module docstring) into ``grad``; returns ``(positive part,
    negative part)`` of the loss without the regulariser (float64; zeros unless ``with_loss``).

    ``row``: the row's stored vector (width ``w``), ``fixed``: the other side's matrix (``n x w``),
    ``pos_cols`` / ``pos_conf``: positives and their confidences, ``neg_cols``: the sampled negatives,
    ``const_col``: the column of ``row`` that is the constant 1 (no gradient, no regulariser).
    """
    w = row.shape[0]
    for k in range(w):
        grad[k] = reg * row[k]
    grad[const_col] = 0.0
    pos_loss = 0.0
    for t in range(pos_cols.shape[0]):
        if t + _AHEAD < pos_cols.shape[0]:
            _prefetch_row(fixed, pos_cols[t + _AHEAD], w)
        y = fixed[pos_cols[t]]
        s = row[0] * y[0]
        for k in range(1, w):
            s += row[k] * y[k]
        c = pos_conf[t]
        if with_loss:
            z, sample_loss = sigmoid_softplus(-s)
            pos_loss += c * sample_loss
        else:
            z = sigmoid(-s)
        z = -c * z
        for k in range(w):
            grad[k] += z * y[k]
    neg_loss = 0.0
    for t in range(neg_cols.shape[0]):
        if t + _AHEAD < neg_cols.shape[0]:
            _prefetch_row(fixed, neg_cols[t + _AHEAD], w)
        y = fixed[neg_cols[t]]
        s = row[0] * y[0]
        for k in range(1, w):
            s += row[k] * y[k]
        if with_loss:
            z, sample_loss = sigmoid_softplus(s)
            neg_loss += sample_loss
        else:
            z = sigmoid(s)
        for k in range(w):
            grad[k] += z * y[k]
    grad[const_col] = 0.0
    return pos_loss, neg_loss


@numba.njit(cache=True, fastmath=True, error_model="numpy", parallel=True)
def _lmf_half(
    indptr,
    indices,
    conf,
    rows,
    fixed,
    accum,
    lr,
    reg,
    neg_prop,
    const_col,
    popularity,
    fixed_entries,
    seed,
    epoch,
    half,
    block_starts,
    stats,
):  # pragma: no cover
    """One AdaGrad step on every non-empty row of ``rows`` (the other side ``fixed``); rows run in blocks
    of ``block_starts``; ``stats[block]`` gets (weighted positive loss, negative loss, sum of confidences,
    negatives drawn). ``fixed_entries``: the column ids of the stored entries, drawn from for
    popularity-weighted negatives."""
    w = rows.shape[1]
    n_fixed = fixed.shape[0]
    n_entries = fixed_entries.shape[0]
    for b in numba.prange(block_starts.shape[0] - 1):
        first, last = block_starts[b], block_starts[b + 1]
        longest = 0
        for r in range(first, last):
            longest = max(longest, indptr[r + 1] - indptr[r])
        neg = np.empty(longest * neg_prop, np.int64)
        grad = np.empty(w, rows.dtype)
        pos_sum, neg_sum, conf_sum, drawn = 0.0, 0.0, 0.0, 0
        for r in range(first, last):
            start, end = indptr[r], indptr[r + 1]
            if start == end:
                continue
            n_neg = (end - start) * neg_prop
            state = row_state(seed, epoch, half, r)
            for t in range(n_neg):
                if popularity:
                    state, e = next_below(state, n_entries)
                    neg[t] = fixed_entries[e]
                else:
                    state, j = next_below(state, n_fixed)
                    neg[t] = j
            row = rows[r]
            p, q = lmf_row_gradient(
                row, fixed, indices[start:end], conf[start:end], neg[:n_neg], reg, const_col, grad, half == 0
            )
            for k in range(w):
                if k != const_col:
                    g = grad[k]
                    accum[r, k] += g * g
                    row[k] -= lr * g / np.sqrt(accum[r, k] + _ADAGRAD_EPSILON)
            pos_sum += p
            neg_sum += q
            for t in range(start, end):
                conf_sum += conf[t]
            drawn += n_neg
        stats[b, 0] = pos_sum
        stats[b, 1] = neg_sum
        stats[b, 2] = conf_sum
        stats[b, 3] = drawn


# ---------------------------------------------------------------------------------------------------
# Fit


def _confidence(matrix: sp.spmatrix, alpha: float) -> sp.csr_matrix:
    """``1 + alpha * matrix`` on the stored entries, as canonical float32 CSR."""
    if not sp.issparse(matrix) or matrix.ndim != 2:
        raise ValueError(f"logistic MF needs a 2-d sparse users x items matrix, got {type(matrix).__name__}")
    conf = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    conf.sum_duplicates()
    conf.eliminate_zeros()
    conf.sort_indices()
    if conf.nnz == 0:
        raise ValueError("logistic MF needs at least one stored (user, item) pair; the matrix is empty")
    if not np.isfinite(conf.data).all() or conf.data.min() < 0:
        raise ValueError(
            "logistic MF needs finite, non-negative matrix values (confidence = 1 + alpha * value)"
        )
    if max(conf.shape) >= 2**31:
        raise ValueError(f"matrix too large for logistic MF's sampler: shape {conf.shape}")
    conf.data = np.float32(1.0) + np.float32(alpha) * conf.data
    return conf


def _blocks(indptr: np.ndarray, n_blocks: int) -> np.ndarray:
    """Row boundaries of ``n_blocks`` blocks with about equal numbers of entries."""
    targets = np.linspace(0, indptr[-1], n_blocks + 1)
    starts = np.searchsorted(indptr, targets, side="left")
    starts[0], starts[-1] = 0, len(indptr) - 1
    return np.unique(starts).astype(np.int64)


def fit_lmf(
    matrix: sp.spmatrix,
    *,
    factors: int = 30,
    learning_rate: float = 0.1,
    regularization: float = 4.0,
    iterations: int = 30,
    neg_prop: int = 1,
    alpha: float = 0.0,
    negatives: Negatives = "popularity",
    seed: int = 0,
    threads: int | None = None,
    callback: Callable[[int, float, float], None] | None = None,
) -> LmfResult:
    """Logistic MF of ``matrix`` (users x items, non-negative values). ``callback(epoch, loss,
    seconds)`` after each epoch (``epoch`` from 0). See the module docstring for the model."""
    if negatives not in ("popularity", "uniform"):
        raise ValueError(f"negatives must be 'popularity' or 'uniform', got {negatives!r}")
    user_items = _confidence(matrix, alpha)
    item_users = user_items.T.tocsr()
    item_users.sort_indices()
    n_users, n_items = user_items.shape
    rng = np.random.default_rng(seed)
    scale = np.float32(1.0 / np.sqrt(factors))
    U = rng.standard_normal((n_users, factors + 2), dtype=np.float32) * scale
    V = rng.standard_normal((n_items, factors + 2), dtype=np.float32) * scale
    U[np.diff(user_items.indptr) == 0] = 0.0
    V[np.diff(item_users.indptr) == 0] = 0.0
    U[:, factors] = 1.0
    U[:, factors + 1] = 0.0
    V[:, factors] = 0.0
    V[:, factors + 1] = 1.0
    U_accum = np.zeros_like(U)
    V_accum = np.zeros_like(V)
    seed_u64 = np.uint64(rng.integers(0, 2**63))
    lr, reg = np.float32(learning_rate), np.float32(regularization)
    sides = []
    for csr in (user_items, item_users):
        indptr, indices = csr.indptr.astype(np.int64), csr.indices.astype(np.int32)
        sides.append((indptr, indices, csr.data))
    result = LmfResult(U, V, [], [], [], [])
    layout = [_blocks(side[0], _BLOCKS) for side in sides]
    # Chunks of one block: threads take blocks as they finish (dynamic balance on a busy machine).
    with numba_threads(threads), numba.parallel_chunksize(1):
        for epoch in range(iterations):
            start = time.perf_counter()
            halves = ((U, V, U_accum, factors), (V, U, V_accum, factors + 1))
            user_stats = None
            for half, (rows, fixed, accum, const_col) in enumerate(halves):
                indptr, indices, conf = sides[half]
                # Popularity-weighted negatives: the column ids of this orientation's entries.
                fixed_entries = indices
                block_starts = layout[half]
                stats = np.zeros((len(block_starts) - 1, 4))
                _lmf_half(
                    indptr,
                    indices,
                    conf,
                    rows,
                    fixed,
                    accum,
                    lr,
                    reg,
                    neg_prop,
                    const_col,
                    negatives == "popularity",
                    fixed_entries,
                    seed_u64,
                    epoch,
                    half,
                    block_starts,
                    stats,
                )
                if half == 0:
                    user_stats = stats.sum(axis=0)
            seconds = time.perf_counter() - start
            pos, neg, conf_sum, drawn = user_stats
            result.loss.append(float((pos + neg) / (conf_sum + drawn)))
            result.positive_loss.append(float(pos / conf_sum))
            result.negative_loss.append(float(neg / max(drawn, 1.0)))
            result.seconds.append(seconds)
            if callback is not None:
                callback(epoch, result.loss[-1], seconds)
    if not (np.isfinite(U).all() and np.isfinite(V).all()):
        raise ArithmeticError(
            f"logistic MF diverged (non-finite factors): lower [lmf] learning_rate (now {learning_rate})"
        )
    return result


def fit(
    matrix: sp.csr_matrix, settings: LmfSettings, *, threads: int, progress: Progress | None = None
) -> FactorSet:
    """Logistic MF of the weighted matrix (confidence ``1 + alpha * value``)."""

    def callback(epoch: int, loss: float, seconds: float) -> None:
        if progress is not None:
            progress(epoch + 1, settings.iterations, loss, seconds)

    result = fit_lmf(
        matrix,
        factors=settings.factors,
        learning_rate=settings.learning_rate,
        regularization=settings.regularization,
        iterations=settings.iterations,
        neg_prop=settings.neg_prop,
        alpha=settings.alpha,
        negatives=settings.negatives,
        seed=settings.seed,
        threads=threads,
        callback=callback,
    )
    f = settings.factors
    U, V = result.user_factors, result.item_factors
    return FactorSet(
        model="lmf",
        user_factors=np.ascontiguousarray(U[:, : f + 1]),
        item_factors=np.ascontiguousarray(V[:, : f + 1]),
        user_bias=U[:, f + 1].copy(),
        item_bias=V[:, f].copy(),
        loss=result.loss,
        seconds=result.seconds,
        loss_components={
            "positive_log_loss": result.positive_loss,
            "negative_log_loss": result.negative_loss,
        },
    )


MODEL = Model(
    name="lmf",
    description="Logistic MF (Johnson 2014): logistic loss on confidence-weighted preferences with sampled "
    "negatives, alternating AdaGrad steps, user and item biases.",
    settings=LmfSettings,
    fit=fit,
    kinds=("numba",),
)
