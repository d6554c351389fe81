"""The numba kernels of implicit ALS (see :mod:`recsys_assets.core.als` for the model and the fit).

One job each: a CG half-step over blocks of rows (:func:`cg_rows`, and :func:`cg_rows_unrolled` for the
default width), the exact Cholesky half-step (:func:`cholesky_rows`), the per-row loss
(:func:`loss_rows`) and the thread-count-independent Gram matrix (:func:`gram_kernel`).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

# implicit's CG stops when the squared residual norm falls below this; matching it keeps the
# number of steps, hence the factors, comparable.
_CG_TOLERANCE = np.float32(1e-20)
# Prefetch the factor row of the stored entry this many entries ahead (8 and 16 measured alike at
# full size; 8 wastes less on short rows), one request per 64-byte cache line of float32.
_PREFETCH_AHEAD = 8
_FLOATS_PER_LINE = 16
# CG steps skip the prefetch on rows with at most this many entries: the first pass over the row
# left their factor rows in cache.
_CACHED_ENTRIES = 1024
# The factor width compiled with constant loop bounds (the product's default).
UNROLLED_WIDTH = 64


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
# that a kernel can call them with a compile-time constant (see ``cg_rows_unrolled``).
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
def cg_rows(indptr, indices, data, fixed, gram, current, cg_steps, block_starts):  # pragma: no cover
    f = fixed.shape[1]
    for b in numba.prange(block_starts.shape[0] - 1):
        _cg_block(
            indptr, indices, data, fixed, gram, current, cg_steps, block_starts[b], block_starts[b + 1], f
        )


@numba.njit(cache=_CG_CACHE, fastmath=True, parallel=True)
def cg_rows_unrolled(indptr, indices, data, fixed, gram, current, cg_steps, block_starts):  # pragma: no cover
    """``cg_rows`` for ``fixed.shape[1] == UNROLLED_WIDTH``.

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
            UNROLLED_WIDTH,
        )


@numba.njit(cache=True, fastmath=True, parallel=True)
def cholesky_rows(indptr, indices, data, fixed, gram, current, block_starts, failed):  # pragma: no cover
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
def loss_rows(indptr, indices, data, user_factors, item_factors, gram, block_starts, out):  # pragma: no cover
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
GRAM_BLOCK_ROWS = 1024


@numba.njit(cache=True, parallel=True)
def gram_kernel(fixed, block_rows, partials, out):  # pragma: no cover
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
