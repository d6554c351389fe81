"""Implicit-feedback alternating least squares (Hu, Koren & Volinsky 2008).

Model. ``confidence`` is a users x items sparse matrix holding the confidence ``c_ui > 0`` of every
observed pair; an observed pair has preference ``p_ui = 1``, every unobserved pair has ``c_ui = 1`` and
``p_ui = 0``. ALS minimises

    L(X, Y) = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)

by solving, in turn, every user row given the item factors and every item row given the user factors.
With the other side ``Y`` fixed, row ``u`` solves the normal equations

    (Y^T Y + lambda I + sum_{i in obs(u)} (c_ui - 1) y_i y_i^T) x_u = sum_{i in obs(u)} c_ui y_i

either exactly (Cholesky) or approximately with a few conjugate-gradient steps warm-started from the
row's current factors (Takacs, Pilaszy & Tikk 2011). The CG matrix-vector product never forms the
f x f matrix: it is ``G p + sum_i (c_ui - 1) (y_i . p) y_i`` with ``G = Y^T Y + lambda I`` computed once
per half-step, so one step costs O(f^2 + nnz_u f).

Algorithm, initialisation (uniform [0, 0.01) from ``numpy.random.default_rng(seed)``, users then
items), CG stopping rule and loss normalisation follow ``implicit`` 0.7.3's CPU ALS, so factors and
losses are directly comparable with it. Kernels are numba ``prange`` loops over blocks of rows of
balanced work; every row is computed independently and in a fixed order, so results do not depend on
the thread count.

A fit renumbers users and items by decreasing number of stored entries before solving and returns the
factors in the caller's order: the popular item rows that most stored entries gather then sit together
at the start of the factor matrix (fewer pages and cache lines to keep hot), and rows of similar cost
share a block. Reproducibility: a fixed seed gives the same bytes for any thread count, BLAS library or
process on one machine (the Gram matrix is summed by :func:`_gram_kernel`; see ``_CG_CACHE``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from recsys_assets.core.sparse import canonical_csr
from recsys_assets.core.threads import numba_threads

Solver = Literal["cg", "cholesky"]

# implicit's CG stops when the squared residual norm falls below this; matching it keeps the
# number of steps, hence the factors, comparable.
_CG_TOLERANCE = np.float32(1e-20)
# Blocks of rows handed to the thread pool per thread: enough that dynamic scheduling evens out
# skewed rows (Zipf-popular items) and other load on the machine, few enough that the per-block
# scratch allocation is negligible.
_BLOCKS_PER_THREAD = 64
# Prefetch the factor row of the stored entry this many entries ahead (8 and 16 measured alike at
# full size; 8 wastes less on short rows), one request per 64-byte cache line of float32.
_PREFETCH_AHEAD = 8
_FLOATS_PER_LINE = 16
# CG steps skip the prefetch on rows with at most this many entries: the first pass over the row
# left their factor rows in cache.
_CACHED_ENTRIES = 1024
# The factor width compiled with constant loop bounds (the product's default).
_UNROLLED_WIDTH = 64
# Fits renumber users and items by decreasing number of stored entries (see ``fit_als``).
_BY_POPULARITY = True


class AlsInputError(ValueError):
    """An input to ALS (matrix, factors or a parameter) is not usable."""


class AlsNumericalError(ArithmeticError):
    """The exact solver met a normal-equation matrix that is not positive definite."""


@dataclass
class AlsResult:
    """Factors of a fitted model and its training curve.

    ``user_factors`` is float32 ``(n_users, factors)``, ``item_factors`` float32 ``(n_items, factors)``;
    a user's score for an item is ``user_factors[u] @ item_factors[i]``. ``loss[k]`` is the training
    loss (:func:`als_loss`) after iteration ``k`` (empty when the loss was not computed) and
    ``seconds[k]`` the wall time of its two half-steps, loss excluded.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# numba kernels: one row of the outer matrix per loop iteration, blocks of rows per prange task.


@intrinsic
def _prefetch(typingctx, matrix, row, col):  # pragma: no cover
    """Hint the CPU to fetch the cache line holding ``matrix[row, col]`` (``llvm.prefetch``).

    The rows a CG pass reads are scattered over a factor matrix far larger than the caches; asking
    for them a few entries ahead overlaps the memory latency (about 20% of a full-size iteration).
    """
    if not isinstance(matrix, types.Array) or matrix.ndim != 2:
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        index = [
            context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], signature.args[1:], strict=True)
        ]
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, index, wraparound=False)
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]), "llvm.prefetch.p0"
        )
        # read access, high temporal locality, data cache
        builder.call(function, [pointer, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(matrix, row, col), codegen


# Determinism: every sum over k lives in a loop that only reads memory. A loop that also writes
# gets vectorised or not depending on a runtime aliasing check of its arrays' addresses, and with
# fastmath the two versions sum in different orders, so results would depend on where the scratch
# buffers happen to be allocated (seen as threads=1 vs threads=2 differences).
# Every helper takes the vector length ``f`` as an argument rather than reading it from a shape, so
# that a kernel can call them with a compile-time constant (see ``_cg_rows_unrolled``).
@numba.njit(cache=True, fastmath=True, inline="always")
def _dot(a, b, f):  # pragma: no cover
    s = np.float32(0.0)
    for k in range(f):
        s += a[k] * b[k]
    return s


@numba.njit(cache=True, fastmath=True, inline="always")
def _gram_times(gram, v, out, f):  # pragma: no cover
    """out = gram @ v, four rows at a time so the four sums share each load of v."""
    for j in range(0, f - 3, 4):
        g0 = gram[j]
        g1 = gram[j + 1]
        g2 = gram[j + 2]
        g3 = gram[j + 3]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        for k in range(f):
            vk = v[k]
            a0 += g0[k] * vk
            a1 += g1[k] * vk
            a2 += g2[k] * vk
            a3 += g3[k] * vk
        out[j] = a0
        out[j + 1] = a1
        out[j + 2] = a2
        out[j + 3] = a3
    for j in range(f - f % 4, f):
        out[j] = _dot(gram[j], v, f)


@numba.njit(cache=True, fastmath=True, inline="always")
def _dot4(y1, y2, y3, y4, v, f):  # pragma: no cover
    """(y1 . v, y2 . v, y3 . v, y4 . v) in one loop: the four sums share each load of v."""
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    s4 = np.float32(0.0)
    for k in range(f):
        vk = v[k]
        s1 += y1[k] * vk
        s2 += y2[k] * vk
        s3 += y3[k] * vk
        s4 += y4[k] * vk
    return s1, s2, s3, s4


@numba.njit(cache=True, fastmath=True, inline="always")
def _prefetch_row(fixed, row, f):  # pragma: no cover
    for col in range(0, f, _FLOATS_PER_LINE):
        _prefetch(fixed, row, col)


@numba.njit(cache=True, fastmath=True, inline="always")
def _add_rows(indices, data, start, end, fixed, v, rhs, sign, out, f, prefetch):  # pragma: no cover
    """out += sum over stored entries idx of (rhs c + sign (c - 1)(y . v)) y, y = fixed[indices[idx]].

    Four entries per step: one read-modify-write of ``out`` for four rows. ``prefetch`` asks for the
    factor rows ahead of use: needed when they come from memory, wasted issue slots when an earlier
    pass over the same row left them in cache. Together 5% faster than two entries per step with
    prefetch always on (100K x 80K x 5M matrix), with the same results bit for bit.
    """
    one = np.float32(1.0)
    idx = start
    while idx + 3 < end:
        if prefetch and idx + _PREFETCH_AHEAD + 3 < end:
            for ahead in range(idx + _PREFETCH_AHEAD, idx + _PREFETCH_AHEAD + 4):
                _prefetch_row(fixed, indices[ahead], f)
        y1 = fixed[indices[idx]]
        y2 = fixed[indices[idx + 1]]
        y3 = fixed[indices[idx + 2]]
        y4 = fixed[indices[idx + 3]]
        c1 = data[idx]
        c2 = data[idx + 1]
        c3 = data[idx + 2]
        c4 = data[idx + 3]
        s1, s2, s3, s4 = _dot4(y1, y2, y3, y4, v, f)
        t1 = rhs * c1 + sign * (c1 - one) * s1
        t2 = rhs * c2 + sign * (c2 - one) * s2
        t3 = rhs * c3 + sign * (c3 - one) * s3
        t4 = rhs * c4 + sign * (c4 - one) * s4
        for k in range(f):
            out[k] += (t1 * y1[k] + t2 * y2[k]) + (t3 * y3[k] + t4 * y4[k])
        idx += 4
    while idx < end:
        y = fixed[indices[idx]]
        c = data[idx]
        t = rhs * c + sign * (c - one) * _dot(y, v, f)
        for k in range(f):
            out[k] += t * y[k]
        idx += 1


@numba.njit(cache=True, fastmath=True, inline="always")
def _cg_block(indptr, indices, data, fixed, gram, current, cg_steps, first, last, f):  # pragma: no cover
    """CG update of rows ``first..last-1`` of ``current`` for factor width ``f``."""
    zero = np.float32(0.0)
    one = np.float32(1.0)
    r = np.empty(f, dtype=np.float32)
    p = np.empty(f, dtype=np.float32)
    ap = np.empty(f, dtype=np.float32)
    for u in range(first, last):
        start = indptr[u]
        end = indptr[u + 1]
        x = current[u]
        if start == end:
            # The exact solution of G x = 0 is x = 0; also what implicit stores.
            x[:] = 0.0
            continue
        # The first pass fetches the row's factor rows from memory; the CG steps find them in
        # cache unless the row is long enough to overflow it (1024 factor rows of 64 floats: 256 KiB).
        hot = end - start <= _CACHED_ENTRIES
        # r = b - A x  with  b = sum c y,  A x = G x + sum (c - 1)(y . x) y
        _gram_times(gram, x, r, f)
        for k in range(f):
            r[k] = -r[k]
        _add_rows(indices, data, start, end, fixed, x, one, -one, r, f, True)
        p[:] = r
        rs_old = _dot(r, r, f)
        if rs_old < _CG_TOLERANCE:
            continue
        for _ in range(cg_steps):
            _gram_times(gram, p, ap, f)
            _add_rows(indices, data, start, end, fixed, p, zero, one, ap, f, not hot)
            p_ap = _dot(p, ap, f)
            # A is positive definite for lambda > 0; a non-positive curvature (lambda = 0 on a
            # singular system) would divide by zero or move the wrong way, so stop there.
            if not p_ap > 0.0:
                break
            alpha = rs_old / p_ap
            for k in range(f):
                x[k] += alpha * p[k]
                r[k] -= alpha * ap[k]
            rs_new = _dot(r, r, f)
            if rs_new < _CG_TOLERANCE:
                break
            beta = rs_new / rs_old
            for k in range(f):
                p[k] = r[k] + beta * p[k]
            rs_old = rs_new


# The CG kernels are compiled in every process, never loaded from numba's on-disk cache: with numba
# 0.68.1 on AMD Zen 4, the machine code loaded from the cache gave other float32 results (every
# element of a half-step, at rounding level) than the code compiled in-process, so a fit from a cold
# cache (a fresh clone, the first run) and every later fit differed by up to 1e-3 after 15
# iterations. Compiling costs a few seconds once per process that fits ALS.
_CG_CACHE = False


@numba.njit(cache=_CG_CACHE, fastmath=True, parallel=True)
def _cg_rows(indptr, indices, data, fixed, gram, current, cg_steps, block_starts):  # pragma: no cover
    f = fixed.shape[1]
    for b in numba.prange(block_starts.shape[0] - 1):
        _cg_block(
            indptr, indices, data, fixed, gram, current, cg_steps, block_starts[b], block_starts[b + 1], f
        )


@numba.njit(cache=_CG_CACHE, fastmath=True, parallel=True)
def _cg_rows_unrolled(
    indptr, indices, data, fixed, gram, current, cg_steps, block_starts
):  # pragma: no cover
    """``_cg_rows`` for ``fixed.shape[1] == _UNROLLED_WIDTH``.

    The width is a compile-time constant here, so LLVM unrolls every length-f loop completely
    (15% faster on a 100K x 80K x 5M matrix; the sums are ordered differently, so factors differ from
    the generic kernel's in the last bits); compiled on first use only, so other widths do not pay.
    """
    for b in numba.prange(block_starts.shape[0] - 1):
        _cg_block(
            indptr,
            indices,
            data,
            fixed,
            gram,
            current,
            cg_steps,
            block_starts[b],
            block_starts[b + 1],
            _UNROLLED_WIDTH,
        )


@numba.njit(cache=True, fastmath=True, parallel=True)
def _cholesky_rows(indptr, indices, data, fixed, gram, current, block_starts, failed):  # pragma: no cover
    f = fixed.shape[1]
    for blk in numba.prange(block_starts.shape[0] - 1):
        # float64 normal equations: this path is the exact reference, so spend the precision.
        a = np.empty((f, f), dtype=np.float64)
        rhs = np.empty(f, dtype=np.float64)
        for u in range(block_starts[blk], block_starts[blk + 1]):
            start = indptr[u]
            end = indptr[u + 1]
            if start == end:
                current[u, :] = 0.0
                continue
            for j in range(f):
                rhs[j] = 0.0
                for k in range(j + 1):
                    a[j, k] = gram[j, k]
            # Lower triangle of A = G + sum (c - 1) y y^T, and b = sum c y.
            for idx in range(start, end):
                y = fixed[indices[idx]]
                c = np.float64(data[idx])
                w = c - 1.0
                for j in range(f):
                    yj = np.float64(y[j])
                    rhs[j] += c * yj
                    wyj = w * yj
                    for k in range(j + 1):
                        a[j, k] += wyj * y[k]
            # In-place Cholesky A = L L^T on the lower triangle.
            ok = True
            for j in range(f):
                d = a[j, j]
                for k in range(j):
                    d -= a[j, k] * a[j, k]
                if not d > 0.0:
                    ok = False
                    break
                d = np.sqrt(d)
                a[j, j] = d
                for i in range(j + 1, f):
                    s = a[i, j]
                    for k in range(j):
                        s -= a[i, k] * a[j, k]
                    a[i, j] = s / d
            if not ok:
                failed[u] = True
                continue
            # Solve L z = b, then L^T x = z, in place in rhs.
            for j in range(f):
                s = rhs[j]
                for k in range(j):
                    s -= a[j, k] * rhs[k]
                rhs[j] = s / a[j, j]
            for j in range(f - 1, -1, -1):
                s = rhs[j]
                for k in range(j + 1, f):
                    s -= a[k, j] * rhs[k]
                rhs[j] = s / a[j, j]
            for j in range(f):
                current[u, j] = rhs[j]


@numba.njit(cache=True, fastmath=True, parallel=True)
def _loss_rows(
    indptr, indices, data, user_factors, item_factors, gram, block_starts, out
):  # pragma: no cover
    f = user_factors.shape[1]
    for blk in numba.prange(block_starts.shape[0] - 1):
        for u in range(block_starts[blk], block_starts[blk + 1]):
            x = user_factors[u]
            # sum over all items of (x . y_i)^2 = x^T (Y^T Y) x ...
            total = 0.0
            for j in range(f):
                acc = 0.0
                for k in range(f):
                    acc += gram[j, k] * x[k]
                total += acc * x[j]
            # ... corrected on the observed pairs: c (1 - s)^2 replaces s^2.
            end = indptr[u + 1]
            for idx in range(indptr[u], end):
                if idx + _PREFETCH_AHEAD < end:
                    _prefetch_row(item_factors, indices[idx + _PREFETCH_AHEAD], f)
                y = item_factors[indices[idx]]
                s = 0.0
                for k in range(f):
                    s += np.float64(y[k]) * x[k]
                c = np.float64(data[idx])
                total += c * (1.0 - s) * (1.0 - s) - s * s
            out[u] = total


# Rows per block of the Gram matrix's partial sums: a fixed partition (not one per thread), so the
# float64 partial sums and the order they are added in do not depend on the thread count.
_GRAM_BLOCK_ROWS = 1024


@numba.njit(cache=True, parallel=True)
def _gram_kernel(fixed, block_rows, partials, out):  # pragma: no cover
    """out = fixed^T fixed in float64, summed in an order fixed by ``block_rows`` alone.

    Block ``b`` (rows ``b * block_rows`` onwards) accumulates its rows into ``partials[b]`` one row at a
    time (each element's sum runs over the rows in order, four rows added first then to the sum; the loops over elements only vectorise, they
    reorder nothing), then the blocks are added in block order. No fastmath: strict IEEE order, and the
    products of float32 values are exact in float64. This replaces a BLAS call whose float32 summation
    order depends on the BLAS kernel (``OPENBLAS_CORETYPE``) and thread count: two fits of one machine
    differed by 1e-3 after 15 iterations when only that changed.
    """
    n, f = fixed.shape
    n_blocks = partials.shape[0]
    for b in numba.prange(n_blocks):
        acc = partials[b]
        first = b * block_rows
        rows = min(n, first + block_rows) - first
        # The block's rows converted once (the update below reads every element f / 2 times).
        block = np.empty((rows, f), dtype=np.float64)
        for r in range(rows):
            for k in range(f):
                block[r, k] = fixed[first + r, k]
        r = 0
        # Eight rows per pass over the accumulator: one load and store of it per eight rows.
        while r + 7 < rows:
            y1 = block[r]
            y2 = block[r + 1]
            y3 = block[r + 2]
            y4 = block[r + 3]
            y5 = block[r + 4]
            y6 = block[r + 5]
            y7 = block[r + 6]
            y8 = block[r + 7]
            for j in range(f):
                a1 = y1[j]
                a2 = y2[j]
                a3 = y3[j]
                a4 = y4[j]
                a5 = y5[j]
                a6 = y6[j]
                a7 = y7[j]
                a8 = y8[j]
                row = acc[j]
                # Lower triangle only; mirrored below.
                for k in range(j + 1):
                    row[k] += ((a1 * y1[k] + a2 * y2[k]) + (a3 * y3[k] + a4 * y4[k])) + (
                        (a5 * y5[k] + a6 * y6[k]) + (a7 * y7[k] + a8 * y8[k])
                    )
            r += 8
        while r < rows:
            y = block[r]
            for j in range(f):
                a = y[j]
                row = acc[j]
                for k in range(j + 1):
                    row[k] += a * y[k]
            r += 1
    for j in range(f):
        for k in range(j + 1):
            total = 0.0
            for b in range(n_blocks):
                total += partials[b, j, k]
            out[j, k] = total
            out[k, j] = total


# ----------------------------------------------------------------------------------------------
# validation and plumbing


def _checked_confidence(confidence: sp.spmatrix) -> sp.csr_matrix:
    """Float32 CSR copy in canonical form (sorted, no duplicates, no stored zeros), validated."""
    if not sp.issparse(confidence):
        raise AlsInputError(
            f"confidence must be a scipy sparse matrix (users x items), got {type(confidence).__name__}"
        )
    if confidence.ndim != 2:
        raise AlsInputError(f"confidence must be 2-D, got shape {confidence.shape}")
    if not (np.issubdtype(confidence.dtype, np.number) and not np.iscomplexobj(confidence.data)):
        raise AlsInputError(f"confidence must hold real numbers, got dtype {confidence.dtype}")
    # A stored zero carries no confidence: treat it as unobserved (c = 1, p = 0).
    matrix = canonical_csr(confidence, dtype=np.float32, copy=True, drop_zeros=True)
    if matrix.nnz and not np.all(np.isfinite(matrix.data)):
        raise AlsInputError("confidence holds NaN or infinite values; clean the weighted matrix first")
    if matrix.nnz and matrix.data.min() < 0:
        raise AlsInputError(
            "confidence must be non-negative (negative feedback is not supported); "
            f"found minimum {matrix.data.min():g}"
        )
    matrix.indptr = matrix.indptr.astype(np.int64, copy=False)
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix


def _checked_factors(name: str, factors: np.ndarray, rows: int, width: int | None) -> np.ndarray:
    """C-contiguous float32 copy of a factor matrix with ``rows`` rows (and ``width`` columns)."""
    array = np.asarray(factors)
    if array.ndim != 2 or array.shape[0] != rows or (width is not None and array.shape[1] != width):
        expected = f"({rows}, {width if width is not None else 'factors'})"
        raise AlsInputError(f"{name} must have shape {expected}, got {array.shape}")
    if array.shape[1] < 1:
        raise AlsInputError(f"{name} needs at least one column")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise AlsInputError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise AlsInputError(f"{name} holds NaN or infinite values")
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _checked_regularization(regularization: float) -> float:
    if not np.isfinite(regularization) or regularization < 0:
        raise AlsInputError(f"regularization must be a finite number >= 0, got {regularization!r}")
    return float(regularization)


def _checked_solver(solver: str, cg_steps: int) -> None:
    if solver not in ("cg", "cholesky"):
        raise AlsInputError(f"solver must be 'cg' or 'cholesky', got {solver!r}")
    if isinstance(cg_steps, bool) or not isinstance(cg_steps, int | np.integer) or cg_steps < 1:
        raise AlsInputError(f"cg_steps must be an integer >= 1, got {cg_steps!r}")


def _row_blocks(indptr: np.ndarray, factors: int, n_threads: int) -> np.ndarray:
    """Boundaries of contiguous row blocks of about equal work, int64 of length ``n_blocks + 1``.

    A row costs about ``nnz_row * 4 f`` flops per CG pass plus ``f^2`` for the Gram product, so its
    weight is ``nnz_row + f / 4``.
    """
    n_rows = indptr.shape[0] - 1
    n_blocks = max(1, min(n_rows, n_threads * _BLOCKS_PER_THREAD))
    work = np.diff(indptr).astype(np.float64) + factors / 4.0
    cumulative = np.cumsum(work)
    targets = cumulative[-1] * np.arange(1, n_blocks) / n_blocks if n_rows else np.empty(0)
    inner = np.searchsorted(cumulative, targets, side="left") + 1
    bounds = np.concatenate(([0], inner, [n_rows])).astype(np.int64)
    return np.unique(bounds)


def _gram(fixed: np.ndarray, regularization: float, dtype: type) -> np.ndarray:
    """``fixed^T fixed + regularization * I`` in ``dtype``, the same bits for any thread count or BLAS.

    Accumulated in float64 by :func:`_gram_kernel`; the float32 result is the float64 sum rounded once.
    Call inside ``numba_threads``.
    """
    n_blocks = max(1, -(-fixed.shape[0] // _GRAM_BLOCK_ROWS))
    gram = np.empty((fixed.shape[1], fixed.shape[1]), dtype=np.float64)
    with numba.parallel_chunksize(1):
        _gram_kernel(fixed, _GRAM_BLOCK_ROWS, np.zeros((n_blocks,) + gram.shape), gram)
    gram[np.diag_indices_from(gram)] += regularization
    return np.ascontiguousarray(gram, dtype=dtype)


def _solve_in_place(
    matrix: sp.csr_matrix,
    fixed: np.ndarray,
    current: np.ndarray,
    regularization: float,
    solver: str,
    cg_steps: int,
    n_threads: int,
    blocks: np.ndarray,
) -> None:
    """One half-step on validated inputs; overwrites ``current``. Call inside ``numba_threads``."""
    if solver == "cg":
        gram = _gram(fixed, regularization, np.float32)
        kernel = _cg_rows_unrolled if fixed.shape[1] == _UNROLLED_WIDTH else _cg_rows
        with numba.parallel_chunksize(1):
            kernel(matrix.indptr, matrix.indices, matrix.data, fixed, gram, current, cg_steps, blocks)
        return
    gram = _gram(fixed, regularization, np.float64)
    failed = np.zeros(current.shape[0], dtype=np.bool_)
    with numba.parallel_chunksize(1):
        _cholesky_rows(matrix.indptr, matrix.indices, matrix.data, fixed, gram, current, blocks, failed)
    if failed.any():
        row = int(np.flatnonzero(failed)[0])
        raise AlsNumericalError(
            f"the normal equations of row {row} are not positive definite "
            f"({int(failed.sum())} rows failed); use regularization > 0"
        )


def _popularity_orders(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(users by decreasing stored entries, items by decreasing stored entries), ties by index."""
    user_counts = np.diff(matrix.indptr)
    item_counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
    return np.argsort(-user_counts, kind="stable"), np.argsort(-item_counts, kind="stable")


def _permuted(matrix: sp.csr_matrix, user_order: np.ndarray, item_order: np.ndarray) -> sp.csr_matrix:
    """``matrix[user_order][:, item_order]`` in canonical CSR form (int64 indptr, int32 indices)."""
    rows = matrix[user_order]
    new_index = np.empty_like(item_order)
    new_index[item_order] = np.arange(item_order.shape[0])
    rows.indices = new_index[rows.indices].astype(np.int32)
    rows.has_sorted_indices = False
    rows.sort_indices()
    rows.indptr = rows.indptr.astype(np.int64, copy=False)
    return rows


def _loss(
    matrix: sp.csr_matrix,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    regularization: float,
    blocks: np.ndarray,
) -> float:
    """Loss on validated inputs (see :func:`als_loss`). Call inside ``numba_threads``."""
    # float64: the loss is a reference figure (compared with implicit's to 1e-5 and across runs); a
    # float32 Gram would carry up to n_items * eps32 relative error into the unobserved-pairs term.
    gram = _gram(item_factors, 0.0, np.float64)
    per_row = np.empty(matrix.shape[0], dtype=np.float64)
    with numba.parallel_chunksize(1):
        _loss_rows(
            matrix.indptr, matrix.indices, matrix.data, user_factors, item_factors, gram, blocks, per_row
        )
    norms = np.square(user_factors, dtype=np.float64).sum() + np.square(item_factors, dtype=np.float64).sum()
    n_users, n_items = matrix.shape
    total_confidence = float(matrix.data.sum(dtype=np.float64)) + n_users * n_items - matrix.nnz
    return float((per_row.sum() + regularization * norms) / total_confidence)


# ----------------------------------------------------------------------------------------------
# public API


def solve_rows(
    confidence: sp.csr_matrix,
    fixed: np.ndarray,
    current: np.ndarray,
    regularization: float,
    solver: str = "cg",
    cg_steps: int = 3,
    threads: int | None = None,
) -> np.ndarray:
    """One ALS half-step: new factors for every row of ``confidence`` given the ``fixed`` side.

    ``confidence`` is rows x cols (users x items to solve users, its transpose to solve items),
    ``fixed`` float ``(cols, f)``, ``current`` float ``(rows, f)`` the rows' present factors. Row ``u``
    solves ``(F^T F + lambda I + sum_i (c_ui - 1) f_i f_i^T) x_u = sum_i c_ui f_i`` over its stored
    columns ``i``: exactly with ``solver="cholesky"`` (float64 normal equations), or with ``cg_steps``
    conjugate-gradient steps started from ``current[u]`` with ``solver="cg"``. Rows without stored
    values get zero vectors. Returns a new float32 ``(rows, f)`` array; ``current`` is not modified.
    Use it to fold in new users: ``solve_rows(their_rows, item_factors, zeros, lambda, "cholesky")``.
    """
    matrix = _checked_confidence(confidence)
    fixed32 = _checked_factors("fixed", fixed, matrix.shape[1], None)
    out = _checked_factors("current", current, matrix.shape[0], fixed32.shape[1])
    regularization = _checked_regularization(regularization)
    _checked_solver(solver, cg_steps)
    with numba_threads(threads) as n_threads:
        blocks = _row_blocks(matrix.indptr, fixed32.shape[1], n_threads)
        _solve_in_place(matrix, fixed32, out, regularization, solver, int(cg_steps), n_threads, blocks)
    return out


def als_loss(
    confidence: sp.csr_matrix,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    regularization: float,
    threads: int | None = None,
) -> float:
    """Training loss of factors on a confidence matrix, normalised like ``implicit``'s ``calculate_loss``.

    ``(sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|_F^2 + |Y|_F^2)) / sum_{u,i} c_ui``, where the
    sums run over all ``n_users * n_items`` pairs (unobserved pairs: ``c = 1``, ``p = 0``), so the
    denominator is ``sum of stored confidences + n_users * n_items - nnz``. ``confidence`` is users x
    items, ``user_factors`` ``(n_users, f)``, ``item_factors`` ``(n_items, f)``; accumulated in float64.
    """
    matrix = _checked_confidence(confidence)
    users = _checked_factors("user_factors", user_factors, matrix.shape[0], None)
    items = _checked_factors("item_factors", item_factors, matrix.shape[1], users.shape[1])
    regularization = _checked_regularization(regularization)
    with numba_threads(threads) as n_threads:
        blocks = _row_blocks(matrix.indptr, users.shape[1], n_threads)
        return _loss(matrix, users, items, regularization, blocks)


def fit_als(
    confidence: sp.csr_matrix,
    factors: int = 64,
    regularization: float = 0.01,
    iterations: int = 15,
    solver: Solver = "cg",
    cg_steps: int = 3,
    seed: int = 0,
    threads: int | None = None,
    user_factors: np.ndarray | None = None,
    item_factors: np.ndarray | None = None,
    compute_loss: bool = True,
    callback: Callable[[int, float | None, float], None] | None = None,
) -> AlsResult:
    """Fit implicit-feedback ALS factors to a users x items confidence matrix.

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2)`` (module docstring) by
    ``iterations`` rounds of: solve all users given the items, then all items given the users
    (:func:`solve_rows`). Factors start from ``user_factors`` / ``item_factors`` when given (copied,
    warm start), else uniform in ``[0, 0.01)`` drawn by ``numpy.random.default_rng(seed)``, users then
    items, float32, the same draw as ``implicit`` with ``random_state=seed``. Stored zeros count as
    unobserved. After each iteration ``callback(iteration, loss_or_None, seconds)`` is called.
    ``threads`` sizes the numba pool (BLAS stays on one thread inside); results do not depend on it.
    """
    matrix = _checked_confidence(confidence)
    if isinstance(factors, bool) or not isinstance(factors, int | np.integer) or factors < 1:
        raise AlsInputError(f"factors must be an integer >= 1, got {factors!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < 0:
        raise AlsInputError(f"iterations must be an integer >= 0, got {iterations!r}")
    regularization = _checked_regularization(regularization)
    _checked_solver(solver, cg_steps)
    n_users, n_items = matrix.shape

    rng = np.random.default_rng(seed)
    if user_factors is None:
        users = rng.random((n_users, factors), dtype=np.float32) * np.float32(0.01)
    else:
        users = _checked_factors("user_factors", user_factors, n_users, factors)
    if item_factors is None:
        items = rng.random((n_items, factors), dtype=np.float32) * np.float32(0.01)
    else:
        items = _checked_factors("item_factors", item_factors, n_items, factors)

    # Solve in popularity order (module docstring): permute in, un-permute the factors out.
    user_order, item_order = _popularity_orders(matrix) if _BY_POPULARITY else (None, None)
    if user_order is not None:
        matrix = _permuted(matrix, user_order, item_order)
        users, items = users[user_order], items[item_order]
    transposed = matrix.T.tocsr()
    transposed.indptr = transposed.indptr.astype(np.int64, copy=False)
    transposed.indices = transposed.indices.astype(np.int32, copy=False)

    result = AlsResult(user_factors=users, item_factors=items)
    with numba_threads(threads) as n_threads:
        user_blocks = _row_blocks(matrix.indptr, factors, n_threads)
        item_blocks = _row_blocks(transposed.indptr, factors, n_threads)
        for iteration in range(iterations):
            start = time.perf_counter()
            _solve_in_place(matrix, items, users, regularization, solver, cg_steps, n_threads, user_blocks)
            _solve_in_place(
                transposed, users, items, regularization, solver, cg_steps, n_threads, item_blocks
            )
            seconds = time.perf_counter() - start
            loss = _loss(matrix, users, items, regularization, user_blocks) if compute_loss else None
            result.seconds.append(seconds)
            if loss is not None:
                result.loss.append(loss)
            if callback is not None:
                callback(iteration, loss, seconds)
    if user_order is not None:
        result.user_factors = np.empty_like(users)
        result.user_factors[user_order] = users
        result.item_factors = np.empty_like(items)
        result.item_factors[item_order] = items
    return result
