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

from recsys_assets.core.ann import AnnIndex, related_items
from recsys_assets.core.threads import numba_threads
from recsys_assets.core.topk import cosine_topk, normalize_rows

__all__ = ["alias_candidates", "shared_counts"]

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


@numba.njit(cache=True, parallel=True)
def _intersections(indptr: np.ndarray, indices: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|row a[p] ∩ row b[p]| of a CSR pattern with sorted indices, by merging the two sorted rows."""
    out = np.zeros(a.size, dtype=np.int64)
    for p in numba.prange(a.size):
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
    return out


def _listener_pattern(plays: csr_matrix) -> csr_matrix:
    """Items x users CSR with sorted indices; a stored positive count means "listened"."""
    listened = csr_matrix(plays, copy=True)
    listened.data = (listened.data > 0).astype(np.int8)
    listened.eliminate_zeros()
    items_users = listened.T.tocsr()
    items_users.sort_indices()
    return items_users


def shared_counts(
    plays: csr_matrix, a: np.ndarray, b: np.ndarray, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Listener counts and overlaps for item pairs.

    ``plays`` is users x items (a positive entry = the user listened); ``a``, ``b`` are (p,) item ids.
    Returns ``listeners`` (n_items,) int64, ``|{u : plays[u, i] > 0}|``, and ``shared`` (p,) int64,
    ``|listeners(a[p]) ∩ listeners(b[p])|``.
    """
    items_users = _listener_pattern(plays)
    listeners = np.diff(items_users.indptr).astype(np.int64)
    with numba_threads(threads):
        shared = _intersections(
            items_users.indptr.astype(np.int64),
            items_users.indices.astype(np.int64),
            np.asarray(a, dtype=np.int64),
            np.asarray(b, dtype=np.int64),
        )
    return listeners, shared


def _typical_lift(factor_similarity: np.ndarray, lift: np.ndarray) -> np.ndarray:
    """Median lift of each pair's equal-count factor-similarity bin (see module docstring, step 3)."""
    n_bins = max(1, min(_LIFT_BINS, lift.size // _MIN_PAIRS_PER_BIN))
    order = np.argsort(factor_similarity, kind="stable")
    typical = np.empty_like(lift)
    for chunk in np.array_split(order, n_bins):
        typical[chunk] = np.median(lift[chunk])
    return typical


def alias_candidates(
    item_factors: np.ndarray,
    plays: csr_matrix,
    k: int = 10,
    min_factor_similarity: float = 0.5,
    max_listener_overlap: float = 0.01,
    min_listeners: int = 20,
    index: AnnIndex | None = None,
    threads: int | None = None,
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

    if index is None:
        neighbours, _ = cosine_topk(item_factors, int(k), threads=threads)
    else:
        neighbours, _ = related_items(index, int(k), threads=threads)
    source = np.repeat(np.arange(n_items, dtype=np.int64), neighbours.shape[1])
    target = neighbours.ravel().astype(np.int64)
    found = target >= 0
    lo = np.minimum(source[found], target[found])
    hi = np.maximum(source[found], target[found])
    pair_keys = np.unique(lo * n_items + hi)
    a, b = pair_keys // n_items, pair_keys % n_items
    if a.size == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if "_id" in c else "float64") for c in _COLUMNS})

    unit = normalize_rows(item_factors)
    factor_similarity = np.einsum("ij,ij->i", unit[a], unit[b])
    listeners, shared = shared_counts(plays, a, b, threads=threads)
    union = listeners[a] + listeners[b] - shared
    jaccard = np.divide(shared, union, out=np.zeros(a.size), where=union > 0)
    independent = listeners[a] * listeners[b] / max(n_users, 1)
    lift = np.divide(shared, independent, out=np.zeros(a.size), where=independent > 0)
    expected = _typical_lift(factor_similarity, lift) * independent
    score = -poisson.logcdf(shared, expected)

    keep = (
        (factor_similarity >= min_factor_similarity)
        & (jaccard <= max_listener_overlap)
        & (np.minimum(listeners[a], listeners[b]) >= min_listeners)
    )
    frame = pd.DataFrame(
        {
            "artist_id": a[keep],
            "alias_id": b[keep],
            "factor_similarity": factor_similarity[keep].astype(np.float64),
            "listener_similarity": jaccard[keep],
            "shared_listeners": shared[keep],
            "artist_listeners": listeners[a[keep]],
            "alias_listeners": listeners[b[keep]],
            "expected_shared": expected[keep],
            "score": score[keep],
        }
    )
    return frame.sort_values(
        ["score", "artist_id", "alias_id"], ascending=[False, True, True], kind="stable"
    ).reset_index(drop=True)
