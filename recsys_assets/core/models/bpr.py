"""Bayesian personalised ranking (Rendle, Freudenthaler, Gantner & Schmidt-Thieme 2009) as a registered
model: settings, numba SGD kernel and fit.

Model. User ``u`` prefers a liked item ``i`` to an item ``j`` it has not liked with probability
``sigma(x_uij)``, ``x_uij = x_u . (y_i - y_j) + b_i - b_j``. One SGD step on a sampled triple
``(u, i, j)`` descends the per-sample loss

    l(u, i, j) = -log sigma(x_uij) + reg / 2 (|x_u|^2 + |y_i|^2 + b_i^2 + |y_j|^2 + b_j^2)

(:func:`bpr_sample_update`). The item bias is stored as the last item column against a user column
of ones, so ``x_u . y_i`` over ``factors + 1`` columns is the model's score (as ``implicit`` does).
Only the stored pattern of the input matters: any stored value means "liked".

Sampling: an epoch draws ``nnz`` triples (bootstrap sampling, as ``implicit`` 0.7.3's CPU BPR); the
pair ``(u, i)`` is a uniformly drawn stored entry, the negative ``j`` a uniform item (``negatives =
"uniform"``, the default: p@10 0.187 against 0.147 on HetRec-2k) or the item of another uniformly
drawn entry (``"popularity"``, implicit's choice). With ``verify_negative`` a negative the user has
liked is redrawn (up to 32 times, then the triple is skipped; implicit skips at once).

Parallelism: the epoch's draws are cut into 256 blocks, each with its own generator state from
``numpy.random.default_rng(seed)``; threads run blocks and update shared factors without locks
(Hogwild, Niu et al. 2011, as implicit does). With one thread blocks run in order, so a fixed seed
gives the same bytes; with more threads the interleaving of updates varies from run to run.
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
from recsys_assets.core.models._sampling import next_below, prefetch, row_contains, sigmoid_softplus
from recsys_assets.core.sections import NonNegativeFloat, PositiveFloat, PositiveInt, Section, Seed
from recsys_assets.core.threads import numba_threads

Negatives = Literal["popularity", "uniform"]

# Blocks of draws per epoch: a fixed number, so the draws do not depend on the thread count.
_BLOCKS = 256
# Draws of a negative before a triple whose negatives are all liked is skipped (verify_negative).
_MAX_TRIES = 32
# Factor rows are prefetched this many triples ahead of their update (and the ids naming them twice that).
_AHEAD = 8
_FLOATS_PER_LINE = _INTS_PER_LINE = 16


@dataclass(frozen=True)
class BprSettings(Section):
    """BPR by Hogwild SGD over sampled (user, liked item, negative item) triples."""

    TABLE: ClassVar[str] = "bpr"

    # Defaults chosen on HetRec-2k (README "Quality"; bench/ranking_vs_implicit.py): p@10 0.187 on
    # implicit's 80/20 split with uniform negatives and learning rate 0.05 (implicit's popularity
    # negatives and 0.01: 0.147; uniform at 0.01 learns little more than item popularity: 0.078).
    factors: PositiveInt = 100
    learning_rate: PositiveFloat = 0.05
    regularization: NonNegativeFloat = 0.01
    # Epochs; one epoch draws as many triples as the matrix stores entries.
    iterations: PositiveInt = 100
    # Redraw negatives the user has liked.
    verify_negative: bool = True
    # Distribution of negative items: uniform, or by number of listeners (implicit's).
    negatives: Negatives = "uniform"
    seed: Seed = 0


@dataclass
class BprResult:
    """Factors (``user_factors[:, -1] == 1``, ``item_factors[:, -1]`` = item bias) and per-epoch
    statistics of the triples drawn: mean BPR log-loss, fraction ranked right before the step, fraction
    skipped, seconds."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    loss: list[float]
    correct: list[float]
    skipped: list[float]
    seconds: list[float]


# ---------------------------------------------------------------------------------------------------
# numba kernels


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def bpr_sample_update(x, yi, yj, f, lr, reg):  # pragma: no cover
    """One SGD step on triple (u, i, j) in place: ``theta -= lr * grad l(u, i, j)`` (module docstring).

    ``x``, ``yi``, ``yj``: rows of width ``f + 1`` (``x[f] == 1`` stays; ``y[f]`` is the item bias).
    Every gradient component is taken at the values before the step. Returns the score ``x_uij`` and
    the log-loss ``-log sigma(x_uij)`` before the step. float32 rows compute in float32, float64 rows in float64.
    """
    score = x[0] * (yi[0] - yj[0])
    for k in range(1, f + 1):
        score += x[k] * (yi[k] - yj[k])
    # -d l / d x_uij = sigma(-x_uij)
    z, loss = sigmoid_softplus(-score)
    for k in range(f):
        xk, ik, jk = x[k], yi[k], yj[k]
        x[k] = xk + lr * (z * (ik - jk) - reg * xk)
        yi[k] = ik + lr * (z * xk - reg * ik)
        yj[k] = jk + lr * (-z * xk - reg * jk)
    yi[f] += lr * (z - reg * yi[f])
    yj[f] += lr * (-z - reg * yj[f])
    return score, loss


@numba.njit(cache=True, inline="always")
def _prefetch_row(M, row, f):  # pragma: no cover
    """Prefetch every cache line of ``M[row, :f + 1]`` (points 64 bytes apart, then the last)."""
    for col in range(0, f + 1, _FLOATS_PER_LINE):
        prefetch(M, (row, col))
    prefetch(M, (row, f))


@numba.njit(cache=True, fastmath=True, error_model="numpy", parallel=True)
def _bpr_epoch(
    indptr, indices, users_of, X, Y, lr, reg, verify, uniform, states, bounds, stats
):  # pragma: no cover
    """One epoch: block ``b`` draws ``bounds[b+1] - bounds[b]`` triples from generator ``states[b]``;
    ``stats[b]`` gets (sum of log-losses, triples ranked right, triples skipped).

    A triple's memory is fetched in two stages ahead of its update, so that the latency of the
    scattered reads overlaps the updates in between: ``2 * _AHEAD`` steps ahead its entry (and its
    negative) are drawn and the cache lines naming its user and items prefetched; ``_AHEAD`` steps
    ahead those are read and the factor rows (and the user's row of entries, for verification)
    prefetched. A negative redrawn by verification is read at once.
    """
    f = X.shape[1] - 1
    nnz = indices.shape[0]
    n_items = Y.shape[0]
    ring_size = 2 * _AHEAD
    for b in numba.prange(bounds.shape[0] - 1):
        state = states[b]
        count = bounds[b + 1] - bounds[b]
        # Per slot: the entry (user, liked item), the negative (item, or entry naming it), u, i, j.
        ring = np.empty((ring_size, 5), np.int64)
        loss, correct, skipped = 0.0, 0, 0
        for t in range(-ring_size, count):
            # Stage 1 for triple t + 2 * _AHEAD: draw, prefetch the lines that name its rows.
            ahead = t + ring_size
            if ahead < count:
                slot = ahead % ring_size
                state, entry = next_below(state, nnz)
                state, negative = next_below(state, n_items if uniform else nnz)
                ring[slot, 0], ring[slot, 1] = entry, negative
                prefetch(users_of, entry)
                prefetch(indices, entry)
                if uniform:
                    _prefetch_row(Y, negative, f)
                else:
                    prefetch(indices, negative)
            # Stage 2 for triple t + _AHEAD: read its ids, prefetch its rows.
            ahead = t + _AHEAD
            if 0 <= ahead < count:
                slot = ahead % ring_size
                entry, negative = ring[slot, 0], ring[slot, 1]
                u, i = users_of[entry], indices[entry]
                j = negative if uniform else indices[negative]
                ring[slot, 2], ring[slot, 3], ring[slot, 4] = u, i, j
                _prefetch_row(X, u, f)
                _prefetch_row(Y, i, f)
                if not uniform:
                    _prefetch_row(Y, j, f)
                if verify:
                    # the row pointer and the entries around the drawn one, which a search reads
                    prefetch(indptr, u)
                    prefetch(indices, max(entry - _INTS_PER_LINE, 0))
                    prefetch(indices, min(entry + _INTS_PER_LINE, nnz - 1))
            if t < 0:
                continue
            slot = t % ring_size
            u, i, j = ring[slot, 2], ring[slot, 3], ring[slot, 4]
            if verify:
                tries = 1
                liked = row_contains(indptr, indices, u, j)
                while liked and tries < _MAX_TRIES:
                    if uniform:
                        state, j = next_below(state, n_items)
                    else:
                        state, negative = next_below(state, nnz)
                        j = indices[negative]
                    liked = row_contains(indptr, indices, u, j)
                    tries += 1
                if liked:
                    skipped += 1
                    continue
            score, sample_loss = bpr_sample_update(X[u], Y[i], Y[j], f, lr, reg)
            loss += sample_loss
            correct += score > 0
        stats[b, 0] = loss
        stats[b, 1] = correct
        stats[b, 2] = skipped


# ---------------------------------------------------------------------------------------------------
# Fit


def _liked(matrix: sp.spmatrix) -> sp.csr_matrix:
    """The stored pattern of ``matrix`` as canonical CSR (sorted, no duplicates, no explicit zeros)."""
    if not sp.issparse(matrix) or matrix.ndim != 2:
        raise ValueError(f"BPR needs a 2-d sparse users x items matrix, got {type(matrix).__name__}")
    liked = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    liked.sum_duplicates()
    liked.eliminate_zeros()
    liked.sort_indices()
    if liked.nnz == 0:
        raise ValueError("BPR needs at least one stored (user, item) pair; the matrix is empty")
    if max(liked.shape) >= 2**31 or liked.nnz >= 2**32:
        raise ValueError(f"matrix too large for BPR's sampler: shape {liked.shape}, {liked.nnz} entries")
    return liked


def initial_factors(
    liked: sp.csr_matrix, factors: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """implicit's start: uniform ``[-0.5, 0.5) / factors`` (users, then items), zero rows for users and
    items without entries, the users' bias column 1."""
    n_users, n_items = liked.shape
    X = (rng.random((n_users, factors + 1), dtype=np.float32) - np.float32(0.5)) / np.float32(factors)
    Y = (rng.random((n_items, factors + 1), dtype=np.float32) - np.float32(0.5)) / np.float32(factors)
    X[np.diff(liked.indptr) == 0] = 0.0
    Y[np.bincount(liked.indices, minlength=n_items) == 0] = 0.0
    X[:, factors] = 1.0
    return X, Y


def fit_bpr(
    matrix: sp.spmatrix,
    *,
    factors: int = 100,
    learning_rate: float = 0.05,
    regularization: float = 0.01,
    iterations: int = 100,
    verify_negative: bool = True,
    negatives: Negatives = "uniform",
    seed: int = 0,
    threads: int | None = None,
    callback: Callable[[int, float, float, float], None] | None = None,
) -> BprResult:
    """BPR on the stored pattern of ``matrix`` (users x items). ``callback(epoch, loss, correct,
    seconds)`` after each epoch (``epoch`` from 0). See the module docstring for the model."""
    if negatives not in ("popularity", "uniform"):
        raise ValueError(f"negatives must be 'popularity' or 'uniform', got {negatives!r}")
    liked = _liked(matrix)
    rng = np.random.default_rng(seed)
    X, Y = initial_factors(liked, factors, rng)
    indptr = liked.indptr.astype(np.int64)
    indices = liked.indices.astype(np.int32)
    users_of = np.repeat(np.arange(liked.shape[0], dtype=np.int32), np.diff(indptr))
    n_blocks = min(_BLOCKS, liked.nnz)
    bounds = np.linspace(0, liked.nnz, n_blocks + 1).astype(np.int64)
    stats = np.zeros((n_blocks, 3))
    lr, reg = np.float32(learning_rate), np.float32(regularization)
    result = BprResult(X, Y, [], [], [], [])
    # Chunks of one block: threads take blocks as they finish, so a thread the OS pauses on a busy
    # machine does not hold the epoch up (static halves would).
    with numba_threads(threads), numba.parallel_chunksize(1):
        for epoch in range(iterations):
            start = time.perf_counter()
            states = rng.integers(0, 2**64, size=n_blocks, dtype=np.uint64)
            _bpr_epoch(
                indptr,
                indices,
                users_of,
                X,
                Y,
                lr,
                reg,
                verify_negative,
                negatives == "uniform",
                states,
                bounds,
                stats,
            )
            seconds = time.perf_counter() - start
            loss_sum, correct, skipped = stats.sum(axis=0)
            drawn = max(liked.nnz - skipped, 1.0)
            result.loss.append(float(loss_sum / drawn))
            result.correct.append(float(correct / drawn))
            result.skipped.append(float(skipped / liked.nnz))
            result.seconds.append(seconds)
            if callback is not None:
                callback(epoch, result.loss[-1], result.correct[-1], seconds)
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ArithmeticError(
            f"BPR diverged (non-finite factors): lower [bpr] learning_rate (now {learning_rate})"
        )
    return result


def fit(
    matrix: sp.csr_matrix, settings: BprSettings, *, threads: int, progress: Progress | None = None
) -> FactorSet:
    """BPR on the stored pattern of the weighted matrix."""

    def callback(epoch: int, loss: float, _correct: float, seconds: float) -> None:
        if progress is not None:
            progress(epoch + 1, settings.iterations, loss, seconds)

    result = fit_bpr(
        matrix,
        factors=settings.factors,
        learning_rate=settings.learning_rate,
        regularization=settings.regularization,
        iterations=settings.iterations,
        verify_negative=settings.verify_negative,
        negatives=settings.negatives,
        seed=settings.seed,
        threads=threads,
        callback=callback,
    )
    return FactorSet(
        model="bpr",
        user_factors=result.user_factors,
        item_factors=result.item_factors,
        item_bias=result.item_factors[:, -1].copy(),
        loss=result.loss,
        seconds=result.seconds,
        loss_components={"correct_fraction": result.correct, "skipped_fraction": result.skipped},
    )


MODEL = Model(
    name="bpr",
    description="BPR (Rendle et al. 2009): pairwise ranking loss, Hogwild SGD over sampled "
    "(user, liked, negative) triples, item biases.",
    settings=BprSettings,
    fit=fit,
    kinds=("numba",),
)
