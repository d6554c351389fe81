"""The bounded top-k heap shared by the numba kernels of :mod:`~recsys_assets.core.topk` and
:mod:`~recsys_assets.core.metrics`.

A heap is a pair of equal-length rows, scores ``hs`` (float32) and item indices ``hi`` (int32), kept as
a min-heap whose root ``hs[0]`` is the *worst* entry, i.e. the current k-th best. Entries rank by score
descending, then by index ascending; empty slots hold ``(-inf, -1)``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def worse(s_a: float, i_a: int, s_b: float, i_b: int) -> bool:
    """(s_a, i_a) ranks below (s_b, i_b): lower score, or the same score and a higher item index."""
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@numba.njit(cache=True)
def sift_down(hs: np.ndarray, hi: np.ndarray, size: int) -> None:
    """Restore the min-heap (worst entry at the root) of the first ``size`` entries after a root change."""
    pos = 0
    s = hs[0]
    i = hi[0]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and worse(hs[child + 1], hi[child + 1], hs[child], hi[child]):
            child += 1
        if not worse(hs[child], hi[child], s, i):
            break
        hs[pos] = hs[child]
        hi[pos] = hi[child]
        pos = child
    hs[pos] = s
    hi[pos] = i


@numba.njit(cache=True)
def sort_best_first(hs: np.ndarray, hi: np.ndarray) -> None:
    """Turn a full heap into a best-first list in place (heapsort): moving the root (the worst) behind
    the shrinking heap leaves the row ordered best first."""
    for size in range(hs.size - 1, 0, -1):
        s = hs[0]
        i = hi[0]
        hs[0] = hs[size]
        hi[0] = hi[size]
        hs[size] = s
        hi[size] = i
        sift_down(hs, hi, size)
