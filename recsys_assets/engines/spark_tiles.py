"""Numpy helpers of the Spark top-N stage (:func:`recsys_assets.engines.spark.recommend_all`).

They run on Spark's Python workers. This module imports only numpy and is pickled by value
(``cloudpickle.register_pickle_by_value``), so executors need numpy but not this package installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def factor_block(rows: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, factors float32 (m, k)) of one block's ``(id, f0..f{k-1})`` rows, ids ascending."""
    rows = sorted(rows, key=lambda r: r[0])
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.array([r[1:] for r in rows], dtype=np.float32).reshape(len(rows), k)
    return ids, vectors


def top_n_rows(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best entries of every row of ``scores`` with their ``ids`` (same shape), best first,
    equal scores by id."""
    if n < scores.shape[1]:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        ids, scores = np.take_along_axis(ids, part, axis=1), np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((ids, -scores), axis=1)
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


def score_tile(pair: Any, n: int) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Top-n of one (user block, artist block) tile, played artists scored -inf."""
    (ublock, (uids, U, played_rows, played_items)), (_, (iids, V)) = pair
    scores = U @ V.T
    if played_rows.size and iids.size:
        column = np.minimum(np.searchsorted(iids, played_items), iids.size - 1)
        inside = iids[column] == played_items
        scores[played_rows[inside], column[inside]] = -np.inf
    top_i, top_s = top_n_rows(np.broadcast_to(iids, scores.shape), scores, n)
    return ublock, (uids, top_i, top_s)


def merge_tiles(a: tuple, b: tuple, n: int) -> tuple:
    """The top-n of two tiles' top lists for the same user block."""
    uids, ia, sa = a
    _, ib, sb = b
    top_i, top_s = top_n_rows(np.concatenate([ia, ib], axis=1), np.concatenate([sa, sb], axis=1), n)
    return uids, top_i, top_s


def user_block_arrays(key_rows: tuple[int, tuple[Any, Any]], k: int) -> tuple[int, tuple]:
    """A user block's (ids, factors, played rows, played artist ids) from its cogrouped factor rows
    and ``(user_id, artist_id)`` played pairs (pairs of users without factors are dropped)."""
    block, (factor_rows, played) = key_rows
    uids, U = factor_block(factor_rows, k)
    pairs = np.array(list(played), dtype=np.int64).reshape(-1, 2)
    row = np.minimum(np.searchsorted(uids, pairs[:, 0]), max(uids.size - 1, 0))
    known = uids[row] == pairs[:, 0] if uids.size else np.zeros(len(pairs), bool)
    return block, (uids, U, row[known], pairs[known, 1])


def rows_out(block: tuple) -> Iterator[tuple[int, int, int, float]]:
    """``(user_id, rank, artist_id, score)`` rows of a merged user block, excluded (-inf) cells left out."""
    uids, top_i, top_s = block
    for r, u in enumerate(uids):
        for rank in range(top_i.shape[1]):
            if np.isfinite(top_s[r, rank]):
                yield int(u), rank, int(top_i[r, rank]), float(top_s[r, rank])
