"""The numba kernels of the ranking metrics (see :mod:`recsys_assets.core.metrics` for the definitions
and the orchestration): folding score tiles into per-user top-k heaps and above/tied counts, merging the
test items, and the per-user metric sums.
"""

from __future__ import annotations

import numba
import numpy as np

from recsys_assets.core.heap import sift_down, sort_best_first, worse

# Scores are validated finite, so NaN-free maths may be assumed; -inf marks excluded items, so "ninf"
# must stay off.
_FASTMATH = {"nnan", "nsz", "arcp", "contract", "reassoc"}
# Scores per counting chunk: small enough to stay in L1 across one pass per test score.
_CHUNK = 512


@numba.njit(cache=True, inline="always")
def _mask(row: np.ndarray, j0: int, j1: int, indices: np.ndarray, cursor: int, end: int) -> int:
    """Set the row's entries for the sorted ``indices[cursor:end]`` inside [j0, j1) to -inf.

    Returns the advanced cursor (first index >= j1), so successive item tiles walk the row once.
    """
    while cursor < end and indices[cursor] < j1:
        row[indices[cursor] - j0] = -np.inf
        cursor += 1
    return cursor


@numba.njit(cache=True, fastmath=_FASTMATH)
def _any_above(chunk: np.ndarray, t: float) -> bool:
    """Whether any score in ``chunk`` is strictly above ``t``.

    Kernels here loop over whole slices (``range(x.size)``) and count in float32: LLVM vectorises that,
    not ranges with a variable start (numba's negative-index check blocks it), nor a running maximum.
    """
    n = np.float32(0.0)
    for c in range(chunk.size):
        n += np.float32(1.0) if chunk[c] > t else np.float32(0.0)
    return n > 0


@numba.njit(cache=True, fastmath=_FASTMATH)
def _twice_above(chunk: np.ndarray, t: float) -> float:
    """``2 * #{s > t} + #{s == t}`` over ``chunk`` (the tie-half rule, doubled to stay integral).

    Counted in float32 lanes, which vectorise best here and are exact below 2**24 (a chunk is far smaller).
    """
    acc = np.float32(0.0)
    for c in range(chunk.size):
        s = chunk[c]
        acc += np.float32(1.0) if s > t else np.float32(0.0)
        acc += np.float32(1.0) if s >= t else np.float32(0.0)
    return acc


@numba.njit(cache=True, fastmath=_FASTMATH)
def _fold_row(
    row: np.ndarray,
    j0: int,
    hs: np.ndarray,
    hi: np.ndarray,
    ts: np.ndarray,
    tp: np.ndarray,
    twice_neg: np.ndarray,
) -> None:
    """Fold a masked score row for items [j0, j0 + len(row)) into one user's heap and counts, in one pass.

    The row is walked in L1-sized chunks. Heap: a vectorised "anything above the root (the current k-th
    best)?" check per chunk guards the scalar scan; candidates enter only when strictly
    better, and items arrive in increasing index order, so equal scores keep the lower index. Counts:
    ``ts`` holds the user's test scores ascending and ``tp`` their test-entry positions; one vectorised
    pass per test score adds ``2 * #{s > t} + #{s == t}`` to ``twice_neg``, stopping at the first test
    score that nothing in the chunk reaches.
    """
    w = row.size
    k = hs.size
    threshold = hs[0]
    for c0 in range(0, w, _CHUNK):
        chunk = row[c0 : min(c0 + _CHUNK, w)]
        if _any_above(chunk, threshold):
            for c in range(chunk.size):
                s = chunk[c]
                if s > threshold:
                    hs[0] = s
                    hi[0] = j0 + c0 + c
                    sift_down(hs, hi, k)
                    threshold = hs[0]
        for i in range(ts.size):
            twice = _twice_above(chunk, ts[i])
            if twice == 0:
                break  # nothing reaches this test score, so nothing reaches the higher ones either
            twice_neg[tp[i]] += np.int64(twice)


@numba.njit(cache=True)
def _sort_by_score(q: np.ndarray, p0: int, p1: int, order: np.ndarray, ts: np.ndarray) -> None:
    """Write the test positions p0..p1-1 into ``order[p0:p1]`` by ascending score ``q``, and those
    scores, ascending, into ``ts[p0:p1]``."""
    order[p0:p1] = p0 + np.argsort(q[p0:p1])
    for p in range(p0, p1):
        ts[p] = q[order[p]]


@numba.njit(cache=True, parallel=True)
def order_by_score(users: np.ndarray, te_ptr: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per evaluated user, their test positions by ascending score and those scores (other users'
    slots stay 0)."""
    order = np.zeros(q.size, dtype=np.int64)
    ts = np.zeros(q.size, dtype=np.float32)
    for e in numba.prange(users.size):
        _sort_by_score(q, te_ptr[users[e]], te_ptr[users[e] + 1], order, ts)
    return order, ts


@numba.njit(cache=True, parallel=True)
def fold_factor_tiles(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    users: np.ndarray,
    tr_ptr: np.ndarray,
    tr_idx: np.ndarray,
    te_ptr: np.ndarray,
    te_idx: np.ndarray,
    order: np.ndarray,
    ts: np.ndarray,
    block_size: int,
    item_block_size: int,
    top_s: np.ndarray,
    top_i: np.ndarray,
    twice_neg: np.ndarray,
    first_block: int,
    end_block: int,
) -> None:
    """Score tiles ``user_factors[users] @ item_factors.T`` by BLAS, one thread per user block, and fold;
    blocks ``first_block .. end_block - 1`` of ``block_size`` evaluated users (a caller following the
    work runs consecutive ranges; every block is computed the same either way)."""
    n_eval = users.size
    n_items, n_factors = item_factors.shape
    for b in numba.prange(first_block, end_block):
        e0 = b * block_size
        m = min(block_size, n_eval - e0)
        ub = np.empty((m, n_factors), dtype=np.float32)
        tr_cur = np.empty(m, dtype=np.int64)
        te_cur = np.empty(m, dtype=np.int64)
        for r in range(m):
            u = users[e0 + r]
            ub[r] = user_factors[u]
            tr_cur[r] = tr_ptr[u]
            te_cur[r] = te_ptr[u]
        buffer = np.empty(m * item_block_size, dtype=np.float32)
        for j0 in range(0, n_items, item_block_size):
            j1 = min(j0 + item_block_size, n_items)
            tile = buffer[: m * (j1 - j0)].reshape((m, j1 - j0))
            np.dot(ub, item_factors[j0:j1].T, tile)
            for r in range(m):
                e = e0 + r
                u = users[e]
                row = tile[r]
                tr_cur[r] = _mask(row, j0, j1, tr_idx, tr_cur[r], tr_ptr[u + 1])
                te_cur[r] = _mask(row, j0, j1, te_idx, te_cur[r], te_ptr[u + 1])
                p0 = te_ptr[u]
                p1 = te_ptr[u + 1]
                _fold_row(row, j0, top_s[e], top_i[e], ts[p0:p1], order[p0:p1], twice_neg)


@numba.njit(cache=True, parallel=True)
def fold_score_rows(
    scores: np.ndarray,
    e0: int,
    users: np.ndarray,
    tr_ptr: np.ndarray,
    tr_idx: np.ndarray,
    te_ptr: np.ndarray,
    te_idx: np.ndarray,
    q: np.ndarray,
    order: np.ndarray,
    ts: np.ndarray,
    top_s: np.ndarray,
    top_i: np.ndarray,
    twice_neg: np.ndarray,
) -> None:
    """Fold full score rows (evaluated users ``e0 + r``) into heaps and counts; rows are overwritten."""
    n_items = scores.shape[1]
    for r in numba.prange(scores.shape[0]):
        e = e0 + r
        u = users[e]
        row = scores[r]
        for p in range(te_ptr[u], te_ptr[u + 1]):
            q[p] = row[te_idx[p]]
        _mask(row, 0, n_items, tr_idx, tr_ptr[u], tr_ptr[u + 1])
        _mask(row, 0, n_items, te_idx, te_ptr[u], te_ptr[u + 1])
        p0 = te_ptr[u]
        p1 = te_ptr[u + 1]
        _sort_by_score(q, p0, p1, order, ts)
        _fold_row(row, 0, top_s[e], top_i[e], ts[p0:p1], order[p0:p1], twice_neg)


@numba.njit(cache=True, parallel=True)
def popularity_fold(
    pop: np.ndarray,
    by_rank: np.ndarray,
    n_greater: np.ndarray,
    n_equal: np.ndarray,
    users: np.ndarray,
    tr_ptr: np.ndarray,
    tr_idx: np.ndarray,
    te_ptr: np.ndarray,
    te_idx: np.ndarray,
    top_i: np.ndarray,
    twice_neg: np.ndarray,
) -> None:
    """Top-k lists and ``2 * above + tied`` counts of every evaluated user for one shared score row.

    ``by_rank`` lists the items best first (score descending, then index ascending: the heap's order), so
    a user's top-k is the first k items of it that are not in their train row. The count of a test item
    with score ``c`` is the global ``2 * n_greater[c] + n_equal[c]`` minus the same count over the user's
    own train and test items (the only non-candidates), found by binary search in their sorted scores.
    """
    k = top_i.shape[1]
    for e in numba.prange(users.size):
        u = users[e]
        a0 = tr_ptr[u]
        a1 = tr_ptr[u + 1]
        filled = 0
        for r in range(by_rank.size):
            if filled == k:
                break
            item = by_rank[r]
            j = a0 + np.searchsorted(tr_idx[a0:a1], item)
            if j < a1 and tr_idx[j] == item:
                continue
            top_i[e, filled] = item
            filled += 1
        b0 = te_ptr[u]
        b1 = te_ptr[u + 1]
        own = np.empty((a1 - a0) + (b1 - b0), dtype=pop.dtype)
        for j in range(a0, a1):
            own[j - a0] = pop[tr_idx[j]]
        for j in range(b0, b1):
            own[(a1 - a0) + j - b0] = pop[te_idx[j]]
        own.sort()
        for p in range(b0, b1):
            c = pop[te_idx[p]]
            lo = np.searchsorted(own, c, side="left")
            hi = np.searchsorted(own, c, side="right")
            greater = n_greater[p] - (own.size - hi)
            equal = n_equal[p] - (hi - lo)
            twice_neg[p] = 2 * greater + equal


@numba.njit(cache=True, parallel=True)
def test_scores(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    users: np.ndarray,
    te_ptr: np.ndarray,
    te_idx: np.ndarray,
) -> np.ndarray:
    """Score of every test entry, ``q[p] = user_factors[u] . item_factors[te_idx[p]]`` (float32)."""
    q = np.empty(te_idx.size, dtype=np.float32)
    for e in numba.prange(users.size):
        u = users[e]
        for p in range(te_ptr[u], te_ptr[u + 1]):
            q[p] = np.dot(user_factors[u], item_factors[te_idx[p]])
    return q


@numba.njit(cache=True, parallel=True)
def finish_heaps(
    users: np.ndarray,
    te_ptr: np.ndarray,
    te_idx: np.ndarray,
    q: np.ndarray,
    top_s: np.ndarray,
    top_i: np.ndarray,
) -> None:
    """Merge each user's test items into their heap, then sort every heap best-first (in place)."""
    k = top_s.shape[1]
    for e in numba.prange(users.size):
        u = users[e]
        hs = top_s[e]
        hi = top_i[e]
        for p in range(te_ptr[u], te_ptr[u + 1]):
            if worse(hs[0], hi[0], q[p], te_idx[p]):
                hs[0] = q[p]
                hi[0] = te_idx[p]
                sift_down(hs, hi, k)
        sort_best_first(hs, hi)


@numba.njit(cache=True, parallel=True)
def list_metrics(
    recommended: np.ndarray, users: np.ndarray, te_ptr: np.ndarray, te_idx: np.ndarray, k: int, n_items: int
) -> np.ndarray:
    """Per evaluated user: hits, AP, NDCG and implicit's limited AUC of the first ``k`` list entries.

    Returns (n_eval, 4) float64 columns: hits, ap / min(k, P), ndcg, auc_at_k.
    """
    out = np.zeros((users.size, 4))
    discount = 1.0 / np.log2(np.arange(2, k + 2).astype(np.float64))
    for e in numba.prange(users.size):
        u = users[e]
        test = te_idx[te_ptr[u] : te_ptr[u + 1]]
        n_pos = test.size
        n_neg = n_items - n_pos
        hits = 0.0
        misses = 0.0
        ap = 0.0
        dcg = 0.0
        auc = 0.0
        for i in range(k):
            item = recommended[e, i]
            j = np.searchsorted(test, item)
            if item >= 0 and j < n_pos and test[j] == item:
                hits += 1.0
                ap += hits / (i + 1)
                dcg += discount[i]
            else:
                misses += 1.0
                auc += hits
        # implicit 0.7.3: positives below the list are credited as if ranked mid-way among the negatives.
        auc += (hits + n_pos) / 2.0 * (n_neg - misses)
        cutoff = min(k, n_pos)
        out[e, 0] = hits
        out[e, 1] = ap / cutoff
        out[e, 2] = dcg / discount[:cutoff].sum()
        out[e, 3] = auc / (n_pos * n_neg) if n_neg > 0 else np.nan
    return out


@numba.njit(cache=True, parallel=True)
def rank_metrics(
    users: np.ndarray,
    tr_ptr: np.ndarray,
    te_ptr: np.ndarray,
    q: np.ndarray,
    twice_neg: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user full AUC (NaN without negatives) and per-test-entry percentile rank (NaN if N_u = 1)."""
    auc = np.full(users.size, np.nan)
    rank = np.full(q.size, np.nan)
    for e in numba.prange(users.size):
        u = users[e]
        p0 = te_ptr[u]
        p1 = te_ptr[u + 1]
        n_pos = p1 - p0
        n_cand = n_items - (tr_ptr[u + 1] - tr_ptr[u])
        n_neg = n_cand - n_pos
        neg_sum = 0.0
        for p in range(p0, p1):
            neg = 0.5 * twice_neg[p]  # exact: twice_neg is an integer below 2**53
            neg_sum += neg
            pos = 0.0
            for p2 in range(p0, p1):
                if p2 != p:
                    if q[p2] > q[p]:
                        pos += 1.0
                    elif q[p2] == q[p]:
                        pos += 0.5
            if n_cand > 1:
                rank[p] = (neg + pos) / (n_cand - 1)
        if n_neg > 0:
            auc[e] = 1.0 - neg_sum / (n_pos * n_neg)
    return auc, rank


@numba.njit(cache=True, parallel=True)
def overlap(tr_ptr: np.ndarray, tr_idx: np.ndarray, te_ptr: np.ndarray, te_idx: np.ndarray) -> int:
    """Number of (user, item) pairs stored in both train and test (rows have sorted indices)."""
    total = 0
    for u in numba.prange(tr_ptr.size - 1):
        a = tr_ptr[u]
        b = te_ptr[u]
        while a < tr_ptr[u + 1] and b < te_ptr[u + 1]:
            if tr_idx[a] < te_idx[b]:
                a += 1
            elif tr_idx[a] > te_idx[b]:
                b += 1
            else:
                total += 1
                a += 1
                b += 1
    return total


@numba.njit(cache=True, parallel=True)
def random_block(users: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 scores from a counter-based hash of (seed, user, item) (splitmix64)."""
    out = np.empty((users.size, n_items), dtype=np.float32)
    for r in numba.prange(users.size):
        base = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(users[r]) * np.uint64(n_items)
        for j in range(n_items):
            z = base + np.uint64(j) * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            # Top 24 bits: every value is exactly representable in float32.
            out[r, j] = np.float32(z >> np.uint64(40)) * np.float32(1.0 / 16777216.0)
    return out
