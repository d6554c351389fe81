"""Duplicate-artist candidates: pairs that look alike in factor space but (almost) never share a listener.

The "Arcade Fire" / "The Arcade Fire" effect: one act under two names. Each listener tends to use one
name, so the two names share far fewer listeners than two genuinely similar artists of their audience
sizes would, while what else their listeners play makes them neighbours in factor space.

Method, for item factors ``Y`` and a binary users x items listening matrix:

1. candidates: every item's top-``k`` cosine neighbours (exact, or from an ANN index), as unordered pairs;
2. for each pair ``(a, b)`` with listener sets ``A``, ``B`` over ``n`` users:
   ``shared = |A ∩ B|``, Jaccard ``|A ∩ B| / |A ∪ B|``, and the independence baseline ``|A| |B| / n``;
3. calibration: neighbours share more listeners than independence predicts, by a "lift"
   ``shared / (|A| |B| / n)`` that grows with factor similarity. The candidates are cut into (up to 20)
   equal-count bins of factor similarity and the median lift of each bin is the typical lift ``L`` there;
   the expected overlap of a pair is ``lambda = L(bin) |A| |B| / n``;
4. score: how surprising so small an overlap is, ``-log P(X <= shared)`` for ``X ~ Poisson(lambda)``
   (natural log; equal to ``lambda`` when ``shared = 0``), i.e. large when two well-listened, similar
   artists should share many listeners and share none.

Pairs are kept when factor similarity ``>= min_factor_similarity``, Jaccard ``<= max_listener_overlap``
and both artists have ``>= min_listeners`` listeners (with few listeners no overlap is ever surprising).

Memory: the work is blocked, each block using at most a quarter of ``memory_budget_bytes`` (and at most
64 MB, beyond which blocks are no faster), so the step fits the budget beside what it cannot block and
the caller's own data. What cannot be blocked is
O(candidate pairs), about 40 bytes per pair (ids, factor similarity, overlap, lift, bin) for at most
``n_items * k`` pairs (1.4 GB for 300K artists x 120 neighbours), plus the neighbour lists (4 bytes per
item and neighbour) and the listener pattern (about 12 bytes per play). Everything per pair that is
wider (two gathered factor rows, the float64 statistics) is computed a block of pairs at a time, so the
results do not depend on the budget.

Limits: this needs factors whose neighbourhoods reach the alias. When the only thing two names have in
common is their audience's taste at large (e.g. a genre), the alias is one neighbour among the whole
genre, and ``k`` must be of the order of the genre's size.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, issparse
from scipy.stats import poisson

from recsys_assets.core.ann import AnnIndex
from recsys_assets.core.slices import ProgressFn, report_in_steps, run_sliced
from recsys_assets.core.threads import numba_threads
from recsys_assets.core.topk import cosine_topk, normalize_rows

__all__ = ["DEFAULT_MEMORY_BUDGET", "alias_candidates", "shared_counts"]

# Working memory for the blocked parts when the caller gives no budget ([runtime] memory_budget).
DEFAULT_MEMORY_BUDGET = 1 << 30
# Blocks never get smaller than this (per-block overhead would dominate)...
_MIN_BLOCK = 256
# ...nor larger than this many bytes: bigger blocks are no faster (bench/aliases.py --small, 20K
# artists: 4.6-6.3 s per model with 64 MB blocks, 10-11 s with 1 GB blocks).
_MAX_BLOCK_BYTES = 64 << 20
# Bytes per pair of a block's float64 temporaries (independent, lift, expected, score, union,
# jaccard, keep, and scipy's own), on top of the two gathered factor rows.
_BLOCK_BYTES_PER_PAIR = 96

# Equal-count factor-similarity bins for the lift calibration; at least this many pairs per bin so each
# median is stable.
_LIFT_BINS = 20
_MIN_PAIRS_PER_BIN = 50

_COLUMNS = [
    "artist_id",
    "alias_id",
    "factor_similarity",
    "listener_similarity",
    "shared_listeners",
    "artist_listeners",
    "alias_listeners",
    "expected_shared",
    "score",
]


# Pairs per block of the overlap kernel: the unit a caller following the work is told about.
_PAIR_BLOCK = 4096


@numba.njit(cache=True, parallel=True)
def _intersections(
    indptr: np.ndarray,
    indices: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    first_block: int,
    end_block: int,
) -> None:
    """``out[p] = |row a[p] ∩ row b[p]|`` of a CSR pattern with sorted indices, by merging the two sorted
    rows, for the pairs of blocks ``first_block .. end_block - 1`` of ``_PAIR_BLOCK`` pairs."""
    for p in numba.prange(first_block * _PAIR_BLOCK, min(end_block * _PAIR_BLOCK, a.size)):
        i, i_end = indptr[a[p]], indptr[a[p] + 1]
        j, j_end = indptr[b[p]], indptr[b[p] + 1]
        count = 0
        while i < i_end and j < j_end:
            x = indices[i]
            y = indices[j]
            if x == y:
                count += 1
                i += 1
                j += 1
            elif x < y:
                i += 1
            else:
                j += 1
        out[p] = count


def _listener_pattern(plays: csr_matrix) -> csr_matrix:
    """Items x users CSR with sorted indices; a stored positive count means "listened"."""
    listened = csr_matrix(plays, copy=True)
    listened.data = (listened.data > 0).astype(np.int8)
    listened.eliminate_zeros()
    items_users = listened.T.tocsr()
    items_users.sort_indices()
    return items_users


def _as_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    return ids if ids.dtype in (np.int32, np.int64) else ids.astype(np.int64)


def shared_counts(
    plays: csr_matrix,
    a: np.ndarray,
    b: np.ndarray,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Listener counts and overlaps for item pairs.

    ``plays`` is users x items (a positive entry = the user listened); ``a``, ``b`` are (p,) item ids.
    Returns ``listeners`` (n_items,) int64, ``|{u : plays[u, i] > 0}|``, and ``shared`` (p,) int64,
    ``|listeners(a[p]) ∩ listeners(b[p])|``. ``progress``: called as ``progress(pairs_done, p)`` while
    the overlaps are counted (:func:`recsys_assets.core.slices.run_sliced`); same result without it.
    """
    items_users = _listener_pattern(plays)
    listeners = np.diff(items_users.indptr).astype(np.int64)
    indptr = items_users.indptr.astype(np.int64)
    indices = items_users.indices.astype(np.int64)
    # Any integer dtype: no int64 copy of what may be tens of millions of pairs.
    a, b = _as_ids(a), _as_ids(b)
    shared = np.zeros(a.size, dtype=np.int64)

    def count(first_block: int, end_block: int) -> None:
        _intersections(indptr, indices, a, b, shared, first_block, end_block)

    n_blocks = -(-a.size // _PAIR_BLOCK)
    with numba_threads(threads):
        run_sliced(
            count,
            n_blocks,
            threads,
            progress,
            lambda blk: min(blk * _PAIR_BLOCK, a.size),
            a.size,
            chunk=_PAIR_BLOCK,
        )
    return listeners, shared


@numba.njit(cache=True)
def _unique_pairs(sorted_keys: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys ``lo * n_items + hi`` of a sorted int64 array, split into int32 (lo, hi)."""
    count = 0
    for p in range(sorted_keys.size):
        if p == 0 or sorted_keys[p] != sorted_keys[p - 1]:
            count += 1
    lo = np.empty(count, dtype=np.int32)
    hi = np.empty(count, dtype=np.int32)
    q = 0
    for p in range(sorted_keys.size):
        if p == 0 or sorted_keys[p] != sorted_keys[p - 1]:
            lo[q] = sorted_keys[p] // n_items
            hi[q] = sorted_keys[p] % n_items
            q += 1
    return lo, hi


def _candidate_pairs(
    item_factors: np.ndarray,
    k: int,
    index: AnnIndex | None,
    block_bytes: int,
    threads: int | None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct unordered pairs (item, one of its top-``k`` cosine neighbours) as int32 (a, b), a < b,
    sorted by (a, b). With an index the neighbours are queried a block of items at a time. ``progress``
    follows the neighbour search (stage ``"neighbours"``, in items)."""
    n_items = item_factors.shape[0]
    stage = _stage(progress, "neighbours", "items")
    if index is None:
        neighbours, _ = cosine_topk(item_factors, k, threads=threads, progress=stage)
    else:
        # Per queried item: ids, distances and cosines of k + 1 results (int32 / float32 each).
        rows = max(_MIN_BLOCK, block_bytes // (12 * (k + 1)))
        if progress is not None:  # reports about every 1 % (the search of an item does not depend on it)
            rows = min(rows, max(_MIN_BLOCK, -(-n_items // 100)))
        report = report_in_steps(stage, n_items)
        neighbours = np.empty((n_items, k), dtype=np.int32)
        for lo in range(0, n_items, rows):
            hi = min(lo + rows, n_items)
            neighbours[lo:hi] = index.neighbours_of_items(np.arange(lo, hi), k, threads=threads)[0]
            report(hi)
    keys = np.empty(neighbours.size, dtype=np.int64)
    filled = 0
    rows = max(1, block_bytes // (32 * k))
    for lo in range(0, n_items, rows):
        block = neighbours[lo : min(lo + rows, n_items)].astype(np.int64)
        source = np.broadcast_to(np.arange(lo, lo + block.shape[0], dtype=np.int64)[:, None], block.shape)
        found = block >= 0
        target, source = block[found], source[found]
        block_keys = np.minimum(source, target) * n_items + np.maximum(source, target)
        keys[filled : filled + block_keys.size] = block_keys
        filled += block_keys.size
    del neighbours
    keys = keys[:filled]
    keys.sort()
    return _unique_pairs(keys, n_items)


def _stage(progress: ProgressFn | None, stage: str, unit: str) -> ProgressFn | None:
    """``progress`` told that ``stage`` (counted in ``unit``) is running, or None without progress."""
    if progress is None:
        return None
    return lambda done, total: progress(done, total, stage=stage, unit=unit)


def _lift_bins(factor_similarity: np.ndarray, lift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's equal-count factor-similarity bin (int8) and the median lift of every bin (see the
    module docstring, step 3); the typical lift of pair ``p`` is ``medians[bins[p]]``."""
    n_bins = max(1, min(_LIFT_BINS, lift.size // _MIN_PAIRS_PER_BIN))
    order = np.argsort(factor_similarity, kind="stable")
    bins = np.empty(lift.size, dtype=np.int8)
    medians = np.empty(n_bins, dtype=np.float64)
    for j, chunk in enumerate(np.array_split(order, n_bins)):
        bins[chunk] = j
        medians[j] = np.median(lift[chunk])
    return bins, medians


def alias_candidates(
    item_factors: np.ndarray,
    plays: csr_matrix,
    k: int = 10,
    min_factor_similarity: float = 0.5,
    max_listener_overlap: float = 0.01,
    min_listeners: int = 20,
    index: AnnIndex | None = None,
    threads: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    min_score: float = 0.0,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Candidate duplicate-artist pairs: close in factor space, (almost) no shared listeners.

    Parameters
    ----------
    item_factors : (n_items, f) float array, any factor model (ALS, LSA...).
    plays : (n_users, n_items) sparse play counts; a positive entry means the user listened.
    k : neighbours per item that form the candidate pairs.
    min_factor_similarity : keep pairs with cosine of factors at least this.
    max_listener_overlap : keep pairs whose listener Jaccard ``|A ∩ B| / |A ∪ B|`` is at most this.
    min_listeners : keep pairs where both items have at least this many listeners.
    index : optional ANN index over ``item_factors`` to draw the neighbours from (default: exact top-k).
    threads : threads for the neighbour search and the overlap counts.
    memory_budget_bytes : working memory the blocked steps are sized from (module docstring, "Memory");
        the result does not depend on it.
    min_score : keep pairs whose ``score`` is at least this. Applied block by block, so the pairs that
        pass the other filters but not this one (at Last.fm-360K scale most of the ~36M candidates) are
        never gathered into one frame.
    progress : called as ``progress(done, total, stage=..., unit=...)`` through the stages
        ``"neighbours"`` (items), ``"listener overlaps"``, ``"factor similarities"`` and ``"scores"``
        (pairs); the result is the same without it.

    Returns
    -------
    DataFrame with one row per kept pair, sorted by ``score`` descending (ties by ids): ``artist_id`` <
    ``alias_id`` (int64 item ids), ``factor_similarity`` (cosine), ``listener_similarity`` (Jaccard),
    ``shared_listeners``, ``artist_listeners``, ``alias_listeners``, ``expected_shared`` (``lambda``) and
    ``score`` (``-log P(Poisson(lambda) <= shared)``); definitions in the module docstring.
    """
    if not isinstance(item_factors, np.ndarray) or item_factors.ndim != 2:
        raise TypeError("item_factors must be a 2-D numpy array (n_items, factors)")
    if not issparse(plays):
        raise TypeError(f"plays must be a scipy sparse users x items matrix, got {type(plays).__name__}")
    n_users, n_items = plays.shape
    if item_factors.shape[0] != n_items:
        raise ValueError(
            f"item_factors has {item_factors.shape[0]} rows but plays has {n_items} item columns; they must match"
        )
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not 0.0 <= max_listener_overlap <= 1.0:
        raise ValueError(
            f"max_listener_overlap is a Jaccard similarity in [0, 1], got {max_listener_overlap}"
        )
    if min_listeners < 0:
        raise ValueError(f"min_listeners must be >= 0, got {min_listeners}")
    if index is not None and (index.n_items != n_items or index.dim != item_factors.shape[1]):
        raise ValueError(
            f"index covers {index.n_items} items of dimension {index.dim}, but item_factors is "
            f"{item_factors.shape}; build the index from these factors"
        )

    if memory_budget_bytes < 1:
        raise ValueError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")

    # A quarter of the budget per block: the rest is for what cannot be blocked (module docstring) and
    # for the caller's own data (factors, play matrix).
    block_bytes = min(memory_budget_bytes // 4, _MAX_BLOCK_BYTES)
    a, b = _candidate_pairs(item_factors, int(k), index, block_bytes, threads, progress)
    if a.size == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if "_id" in c else "float64") for c in _COLUMNS})

    unit = normalize_rows(item_factors)
    listeners, shared = shared_counts(
        plays, a, b, threads=threads, progress=_stage(progress, "listener overlaps", "pairs")
    )
    # Blocks of pairs: two gathered factor rows plus the float64 temporaries per pair.
    step = max(_MIN_BLOCK, block_bytes // (8 * unit.shape[1] + _BLOCK_BYTES_PER_PAIR))
    blocks = [slice(lo, min(lo + step, a.size)) for lo in range(0, a.size, step)]
    factor_similarity = np.empty(a.size, dtype=np.float32)
    lift = np.empty(a.size, dtype=np.float64)
    report = report_in_steps(_stage(progress, "factor similarities", "pairs"), a.size)
    for blk in blocks:
        factor_similarity[blk] = np.einsum("ij,ij->i", unit[a[blk]], unit[b[blk]])
        independent = listeners[a[blk]] * listeners[b[blk]] / max(n_users, 1)
        lift[blk] = np.divide(shared[blk], independent, out=np.zeros(independent.size), where=independent > 0)
        report(blk.stop)
    bins, medians = _lift_bins(factor_similarity, lift)
    del lift

    kept: list[dict[str, np.ndarray]] = []
    report = report_in_steps(_stage(progress, "scores", "pairs"), a.size)
    for blk in blocks:
        la, lb, sh, fs = listeners[a[blk]], listeners[b[blk]], shared[blk], factor_similarity[blk]
        union = la + lb - sh
        jaccard = np.divide(sh, union, out=np.zeros(sh.size), where=union > 0)
        expected = medians[bins[blk]] * (la * lb / max(n_users, 1))
        keep = (
            (fs >= min_factor_similarity)
            & (jaccard <= max_listener_overlap)
            & (np.minimum(la, lb) >= min_listeners)
        )
        score = -poisson.logcdf(sh[keep], expected[keep])
        strong = score >= min_score
        keep[np.flatnonzero(keep)[~strong]] = False
        kept.append(
            {
                "artist_id": a[blk][keep].astype(np.int64),
                "alias_id": b[blk][keep].astype(np.int64),
                "factor_similarity": fs[keep].astype(np.float64),
                "listener_similarity": jaccard[keep],
                "shared_listeners": sh[keep],
                "artist_listeners": la[keep],
                "alias_listeners": lb[keep],
                "expected_shared": expected[keep],
                "score": score[strong],
            }
        )
        report(blk.stop)
    frame = pd.DataFrame({c: np.concatenate([part[c] for part in kept]) for c in _COLUMNS})
    return frame.sort_values(
        ["score", "artist_id", "alias_id"], ascending=[False, True, True], kind="stable"
    ).reset_index(drop=True)
