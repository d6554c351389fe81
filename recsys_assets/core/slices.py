"""A parallel kernel run over consecutive ranges of its blocks, so a caller can follow the work.

The long steps (evaluation, recommendations, related artists, alias overlaps) are each one numba
``prange`` over thousands of blocks of users, items or pairs, and would say nothing until they end. With a
``progress`` callable, :func:`run_sliced` calls the kernel over consecutive block ranges instead and
reports after each one. Ranges start and end at whole blocks, so every block is computed exactly as in one
call (same rows, same tile, same arithmetic): the results are bit-identical with and without progress.

Range length adapts to the measured speed so that each range takes about ``target_s`` (0.5 s); the first
range is one block per thread, the next ones grow (at most 4x at a time) to the target. Inside a range the
threads take blocks dynamically (``numba.parallel_chunksize``, ``chunk`` loop iterations at a time) rather
than numba's default static halves: a range holds only a few blocks per thread, and with a static split the
thread that drew the heavier users would leave the other waiting at every range's end (measured: evaluation
16 % slower with static ranges, ``bench/progress_overhead.py``). Per range the remaining cost is one
parallel-region launch and its wait (tens of microseconds) against half a second of work.

A ``progress`` callable is anything called as ``progress(done, total, **info)``: ``done`` of ``total``
units (users, items, pairs) finished, ``info`` extra values (e.g. ``stage="listener overlaps"``,
``unit="pairs"``). A :class:`recsys_assets.progress.Progress` is one; the core never imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba

from recsys_assets.core.threads import resolve_threads

ProgressFn = Callable[..., Any]
"""``progress(done, total, **info)``; see the module docstring."""

# Seconds of work between two reports once the range length has adapted.
TARGET_SECONDS = 0.5
# Growth limit of the range length from one range to the next (timings of short ranges are noisy).
_GROWTH = 4


def run_sliced(
    kernel: Callable[[int, int], None],
    n_blocks: int,
    threads: int | None,
    progress: ProgressFn | None,
    done_after: Callable[[int], int],
    total: int,
    target_s: float = TARGET_SECONDS,
    chunk: int = 1,
    **info: Any,
) -> None:
    """Run ``kernel(b0, b1)`` (it processes blocks ``b0 .. b1 - 1``) over all ``n_blocks`` blocks.

    Without ``progress``: one call ``kernel(0, n_blocks)``. With it: consecutive ranges (module docstring),
    each followed by ``progress(done_after(b1), total, **info)``, where ``done_after(b)`` is the number of
    units finished when blocks ``0 .. b - 1`` are (e.g. ``min(b * block_rows, n_users)``). ``chunk``:
    the kernel's ``prange`` iterations a thread takes at a time within a range (1 when it loops over
    blocks; the block size when it loops over the items of blocks).
    """
    if progress is None or n_blocks <= 0:
        kernel(0, n_blocks)
        return
    threads = resolve_threads(threads)
    step = threads
    b0 = 0
    while b0 < n_blocks:
        b1 = min(n_blocks, b0 + step)
        started = time.perf_counter()
        with numba.parallel_chunksize(chunk):
            kernel(b0, b1)
        seconds = time.perf_counter() - started
        progress(done_after(b1), total, **info)
        per_block = seconds / (b1 - b0)
        wanted = int(target_s / per_block) if per_block > 0 else _GROWTH * step
        wanted = min(max(wanted, threads), _GROWTH * step)
        step = max(threads, wanted // threads * threads)
        b0 = b1


def report_in_steps(progress: ProgressFn | None, total: int, **info: Any) -> Callable[[int], None]:
    """``report(done)`` calling ``progress(done, total, **info)``, or doing nothing without ``progress``:
    for loops that already run in Python blocks (score functions, ANN batches)."""
    if progress is None:
        return lambda done: None
    return lambda done: progress(done, total, **info)
