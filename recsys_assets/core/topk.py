"""Exact top-k by inner product and cosine, blocked so memory stays bounded.

The score matrix ``queries @ items.T`` is never materialised. Each numba thread takes a block of queries
and computes one ``block_rows x block_cols`` float32 tile at a time with a single-threaded BLAS GEMM
(L2-sized by default), then folds it, while it is in cache, into one small min-heap of size ``k`` per
query. The heap root is the current k-th best score; a vectorised maximum over 64 scores rejects almost
every slice with one comparison, and only the few scores that beat the root pay for a heap update. Cost
is about the GEMM alone (``bench/evaluate.py --mode recommend``).

Ties are broken by the lower item index: tiles are visited in increasing item order, so a candidate that
merely equals the current k-th best score always has a higher index than it and is rejected.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from scipy.sparse import csr_matrix, issparse

from recsys_assets.core.heap import sift_down, sort_best_first
from recsys_assets.core.slices import ProgressFn, report_in_steps, run_sliced
from recsys_assets.core.threads import blas_threads, numba_threads, resolve_threads

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "TILE_COLS",
    "TILE_ROWS",
    "cosine_topk",
    "normalize_rows",
    "tile_shape",
    "topk_dot",
    "topk_scores",
]

DEFAULT_MEMORY_BUDGET = 1 << 30
"""Bytes the score tiles of a blocked product may use when the caller gives no budget (1 GiB)."""
# Default tile per thread: 256 x 1024 float32 = 1 MiB, one core's L2 on the development machine.
TILE_ROWS = 256
TILE_COLS = 1024
# Scores per vectorised "anything above the k-th best?" check before a scalar heap scan.
_SCAN = 64


@numba.njit(cache=True, fastmath={"nnan", "nsz", "arcp", "contract", "reassoc"})
def _fold_row(row: np.ndarray, col0: int, hs: np.ndarray, hi: np.ndarray) -> None:
    """Fold one masked score row (items ``col0 + c``) into one query's heap.

    A vectorised maximum per ``_SCAN`` scores guards the scalar scan: only slices with a score above the
    root (the current k-th best) are scanned, and there only strictly better scores enter.
    """
    k = hs.size
    threshold = hs[0]
    w = row.size
    for b0 in range(0, w, _SCAN):
        b1 = min(b0 + _SCAN, w)
        # A whole-slice loop: LLVM vectorises it (a range with a variable start it does not).
        part = row[b0:b1]
        top = np.float32(-np.inf)
        for c in range(part.size):
            s = part[c]
            top = s if s > top else top
        if top > threshold:
            for c in range(b0, b1):
                s = row[c]
                if s > threshold:
                    hs[0] = s
                    hi[0] = col0 + c
                    sift_down(hs, hi, k)
                    threshold = hs[0]


@numba.njit(cache=True, parallel=True)
def _topk_tiles(
    queries: np.ndarray,
    items: np.ndarray,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    exclude_self: bool,
    block_rows: int,
    block_cols: int,
    heap_s: np.ndarray,
    heap_i: np.ndarray,
    first_block: int,
    end_block: int,
) -> None:
    """Score tiles ``queries[block] @ items[cols].T`` by BLAS, one thread per query block, and fold each
    tile into the per-query heaps while it is in cache; query blocks ``first_block .. end_block - 1``.

    Excluded items are overwritten with -inf in the tile, which the strict ``>`` test never admits; a
    cursor per query walks its (sorted) excluded items across the item tiles.
    """
    n = queries.shape[0]
    m = items.shape[0]
    for b in numba.prange(first_block, end_block):
        r0 = b * block_rows
        nb = min(block_rows, n - r0)
        block = queries[r0 : r0 + nb]
        cursor = ex_indptr[r0 : r0 + nb].copy()
        buffer = np.empty(nb * block_cols, dtype=np.float32)
        for col0 in range(0, m, block_cols):
            col1 = min(col0 + block_cols, m)
            tile = buffer[: nb * (col1 - col0)].reshape((nb, col1 - col0))
            np.dot(block, items[col0:col1].T, tile)
            for r in range(nb):
                q = r0 + r
                row = tile[r]
                pos = cursor[r]
                end = ex_indptr[q + 1]
                while pos < end and ex_indices[pos] < col1:
                    row[ex_indices[pos] - col0] = -np.inf
                    pos += 1
                cursor[r] = pos
                if exclude_self and col0 <= q < col1:
                    row[q - col0] = -np.inf
                _fold_row(row, col0, heap_s[q], heap_i[q])


@numba.njit(cache=True, parallel=True)
def _fold_score_block(
    scores: np.ndarray,
    r0: int,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    heap_s: np.ndarray,
    heap_i: np.ndarray,
) -> None:
    """Fold full score rows (queries ``r0 + r``) into their heaps, excluded items set to -inf first."""
    for r in numba.prange(scores.shape[0]):
        q = r0 + r
        row = scores[r]
        for pos in range(ex_indptr[q], ex_indptr[q + 1]):
            row[ex_indices[pos]] = -np.inf
        _fold_row(row, 0, heap_s[q], heap_i[q])


@numba.njit(cache=True, parallel=True)
def _sort_heaps(heap_s: np.ndarray, heap_i: np.ndarray) -> None:
    """Turn every row's heap into a best-first list in place (heapsort); empty slots become index -1."""
    n, k = heap_s.shape
    for q in numba.prange(n):
        hs = heap_s[q]
        hi = heap_i[q]
        sort_best_first(hs, hi)
        for t in range(k):
            if hs[t] == -np.inf:
                hi[t] = -1


def as_factor_matrix(name: str, x: object, error: type[Exception] = ValueError) -> np.ndarray:
    """``x`` as a C-contiguous float32 2-D array; TypeError if it is not a 2-D numpy array, ``error``
    if any value is NaN or infinite."""
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise TypeError(f"{name} must be a 2-D numpy array, got {type(x).__name__} {getattr(x, 'shape', '')}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise error(f"{name} contains NaN or infinite values; clean the factors before ranking")
    return x


def tile_shape(
    n_rows: int,
    n_cols: int,
    threads: int | None,
    block_rows: int | None = None,
    block_cols: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[int, int]:
    """Rows x columns of the float32 score tile each thread computes and folds.

    The given sizes, else the defaults (``TILE_ROWS x TILE_COLS``: 1 MiB, one core's L2 here), clipped to
    the matrix, then halved (rows first) until one tile per thread fits in half of
    ``memory_budget_bytes``. Raises ValueError on a non-positive size or budget.
    """
    if memory_budget_bytes < 1:
        raise ValueError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    rows = TILE_ROWS if block_rows is None else int(block_rows)
    cols = TILE_COLS if block_cols is None else int(block_cols)
    if rows < 1 or cols < 1:
        raise ValueError(f"block_rows and block_cols must be positive, got {rows}, {cols}")
    rows, cols = min(rows, max(n_rows, 1)), min(cols, max(n_cols, 1))
    per_tile = memory_budget_bytes // (2 * 4 * resolve_threads(threads))
    while rows * cols > per_tile and rows > 1:
        rows = max(1, rows // 2)
    while rows * cols > per_tile and cols > 1:
        cols = max(1, cols // 2)
    return rows, cols


def topk_dot(
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    exclude: csr_matrix | None = None,
    exclude_self: bool = False,
    block_rows: int | None = None,
    block_cols: int | None = None,
    threads: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items per query by inner product ``score[q, i] = queries[q] @ items[i]``.

    Parameters
    ----------
    queries : (n, f) float array (converted to float32).
    items : (m, f) float array (converted to float32).
    k : number of items to return per query, ``k >= 1``.
    exclude : optional (n, m) sparse matrix; its stored entries (any value) are items removed from that
        query's candidates, e.g. the artists a user already played.
    exclude_self : remove item ``q`` from query row ``q`` (item-item lists where ``queries`` are the items).
    block_rows, block_cols : tile shape per thread (see :func:`tile_shape`); the results do not depend on it.
    threads : numba threads; each computes its own tiles with a single-threaded BLAS GEMM.
    memory_budget_bytes : the tiles of all threads stay within half of it.
    progress : called as ``progress(queries_done, n)`` while the tiles are folded
        (:func:`recsys_assets.core.slices.run_sliced`); the result is the same without it.

    Returns
    -------
    indices : (n, k) int32, best first; ties go to the lower item index.
    scores : (n, k) float32, matching inner products.
    Rows with fewer than ``k`` candidates are padded with index -1 and score ``-inf``.
    Memory beyond the inputs and outputs: one tile per thread and the (sorted) exclusion indices.
    """
    queries = as_factor_matrix("queries", queries)
    items = as_factor_matrix("items", items)
    n, m = queries.shape[0], items.shape[0]
    if queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"queries have {queries.shape[1]} factors but items have {items.shape[1]}; they must match"
        )
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    rows, cols = tile_shape(n, m, threads, block_rows, block_cols, memory_budget_bytes)
    k = int(k)
    ex_indptr, ex_indices = _exclusions(exclude, n, m)
    heap_s = np.full((n, k), -np.inf, dtype=np.float32)
    heap_i = np.full((n, k), -1, dtype=np.int32)
    with numba_threads(threads):
        if n and m:

            def fold(first_block: int, end_block: int) -> None:
                _topk_tiles(
                    queries, items, ex_indptr, ex_indices, bool(exclude_self), rows, cols, heap_s, heap_i,
                    first_block, end_block,
                )  # fmt: skip

            run_sliced(fold, -(-n // rows), threads, progress, lambda b: min(b * rows, n), n)
        _sort_heaps(heap_s, heap_i)
    return heap_i, heap_s


def _exclusions(exclude: csr_matrix | None, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, sorted indices int32) of the (n, m) sparse ``exclude``; empty rows when None."""
    if exclude is None:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    if not issparse(exclude):
        raise TypeError(f"exclude must be a scipy sparse matrix, got {type(exclude).__name__}")
    if exclude.shape != (n, m):
        raise ValueError(f"exclude has shape {exclude.shape}, expected (n_queries, n_items) = {(n, m)}")
    exclude = csr_matrix(exclude)
    if not exclude.has_sorted_indices:
        exclude = exclude.sorted_indices()
    return exclude.indptr.astype(np.int64), exclude.indices.astype(np.int32)


def topk_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    n_queries: int,
    n_items: int,
    k: int,
    exclude: csr_matrix | None = None,
    block_rows: int | None = None,
    threads: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items per query of a model given as ``score_fn(query_ids) -> (len(query_ids),
    n_items)`` scores (for models that do not rank by an inner product, e.g. a neural network).

    ``score_fn`` is called on consecutive blocks of at most ``block_rows`` query ids (ascending) under
    ``threads`` BLAS threads; its rows are copied to float32 and must be finite. Without ``block_rows``, a
    block holds as many queries (at most ``TILE_ROWS``) as fit twice (the function's result and the
    float32 copy) in ``memory_budget_bytes``. ``exclude``, the result and its ties and padding are as in
    :func:`topk_dot` (same heap: the two agree when ``score_fn`` is an inner product). ``progress``: as
    in :func:`topk_dot`, after each block.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if memory_budget_bytes < 1:
        raise ValueError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    if block_rows is None:
        block_rows = max(1, min(TILE_ROWS, memory_budget_bytes // (2 * 4 * max(n_items, 1))))
    if block_rows < 1:
        raise ValueError(f"block_rows must be positive, got {block_rows}")
    ex_indptr, ex_indices = _exclusions(exclude, n_queries, n_items)
    heap_s = np.full((n_queries, int(k)), -np.inf, dtype=np.float32)
    heap_i = np.full((n_queries, int(k)), -1, dtype=np.int32)
    report = report_in_steps(progress, n_queries)
    for r0 in range(0, n_queries, block_rows):
        ids = np.arange(r0, min(r0 + block_rows, n_queries))
        with blas_threads(threads):
            scores = np.array(score_fn(ids), dtype=np.float32, order="C", copy=True)
        if scores.shape != (ids.size, n_items):
            raise ValueError(
                f"score_fn returned shape {scores.shape} for {ids.size} queries; expected {(ids.size, n_items)}"
            )
        if not np.isfinite(scores).all():
            raise ValueError("score_fn returned NaN or infinite scores")
        with numba_threads(threads):
            _fold_score_block(scores, r0, ex_indptr, ex_indices, heap_s, heap_i)
        report(r0 + ids.size)
    with numba_threads(threads):
        _sort_heaps(heap_s, heap_i)
    return heap_i, heap_s


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm, ``v / ||v||``; all-zero rows stay zero. (n, f) -> (n, f) float32."""
    vectors = as_factor_matrix("vectors", vectors)
    norms = np.linalg.norm(vectors, axis=1)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return vectors * scale[:, None].astype(np.float32)


def cosine_topk(
    vectors: np.ndarray,
    k: int,
    exclude_self: bool = True,
    query_ids: np.ndarray | None = None,
    block_rows: int | None = None,
    block_cols: int | None = None,
    threads: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` neighbours by cosine similarity ``v_q . v_i / (||v_q|| ||v_i||)`` among rows of ``vectors``.

    Parameters
    ----------
    vectors : (m, f) float array, one row per item.
    k : neighbours per query.
    exclude_self : a query is never its own neighbour.
    query_ids : optional int array (n,) of the rows to query (default: all ``m`` rows, ``n = m``).
    block_rows, block_cols, threads, memory_budget_bytes, progress : as in :func:`topk_dot` (progress
        counts the queries with a non-zero vector, the only ones searched).

    Returns
    -------
    indices : (n, k) int32 item rows, best first (ties: lower index); scores : (n, k) float32 cosines.

    All-zero rows have no direction: they are never returned as neighbours and, as queries, get no
    neighbours. Missing slots are index -1, score ``-inf``.
    """
    unit = normalize_rows(vectors)
    m = unit.shape[0]
    if query_ids is None:
        query_ids = np.arange(m, dtype=np.int64)
    else:
        query_ids = np.asarray(query_ids)
        if query_ids.ndim != 1 or not np.issubdtype(query_ids.dtype, np.integer):
            raise TypeError("query_ids must be a 1-D integer array of row numbers")
        if query_ids.size and (query_ids.min() < 0 or query_ids.max() >= m):
            raise ValueError(f"query_ids must lie in [0, {m}); got values outside")
        query_ids = query_ids.astype(np.int64)
    n = query_ids.size
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")

    nonzero = np.flatnonzero(unit.any(axis=1))
    # Position of every row inside the compacted non-zero set, -1 for zero rows.
    compact = np.full(m, -1, dtype=np.int64)
    compact[nonzero] = np.arange(nonzero.size)
    live = np.flatnonzero(compact[query_ids] >= 0)
    exclude = None
    if exclude_self:
        exclude = csr_matrix(
            (np.ones(live.size, dtype=np.float32), (np.arange(live.size), compact[query_ids[live]])),
            shape=(live.size, nonzero.size),
        )

    indices = np.full((n, int(k)), -1, dtype=np.int32)
    scores = np.full((n, int(k)), -np.inf, dtype=np.float32)
    if live.size and nonzero.size:
        sub_idx, sub_scores = topk_dot(
            unit[query_ids[live]],
            unit[nonzero],
            k,
            exclude=exclude,
            block_rows=block_rows,
            block_cols=block_cols,
            threads=threads,
            memory_budget_bytes=memory_budget_bytes,
            progress=progress,
        )
        found = sub_idx >= 0
        indices[live] = np.where(found, nonzero[np.maximum(sub_idx, 0)], -1)
        scores[live] = sub_scores
    return indices, scores
