"""Thread control for numba kernels and BLAS.

The machines this runs on are small (2 cores), so every parallel region must be sized on purpose:
numba's ``prange`` uses ``numba.set_num_threads``; BLAS (numpy/scipy GEMM) is limited with
threadpoolctl. Inside a numba-parallel region BLAS must stay single-threaded, otherwise the two
pools multiply each other's threads (oversubscription made ``implicit`` itself ~10x slower).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numba
from threadpoolctl import threadpool_limits


def resolve_threads(threads: int | None) -> int:
    """Number of threads to use: ``threads`` if positive, else all cores numba may use.

    ``threads`` larger than numba's configured maximum (``NUMBA_NUM_THREADS``) is clipped to it.
    """
    limit = numba.config.NUMBA_NUM_THREADS
    if threads is None or threads <= 0:
        return min(limit, os.cpu_count() or 1)
    return max(1, min(int(threads), limit))


@contextlib.contextmanager
def numba_threads(threads: int | None) -> Iterator[int]:
    """Run a numba-parallel region on ``threads`` threads with BLAS pinned to one thread.

    Restores the previous numba thread count on exit. Yields the thread count used.
    """
    n = resolve_threads(threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield n
    finally:
        numba.set_num_threads(previous)


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[int]:
    """Run BLAS-heavy numpy/scipy code (GEMM, SVD) on ``threads`` threads. Yields the count used."""
    n = resolve_threads(threads)
    with threadpool_limits(limits=n, user_api="blas"):
        yield n
