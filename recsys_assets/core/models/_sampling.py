"""numba helpers of the sampling models (BPR, logistic MF): a counter-based generator, a sorted-row
search, a prefetch hint and the logistic function with its log-loss.

Each block of work owns one 64-bit state, seeded from the fit's ``numpy.random.default_rng(seed)`` (or
from a hash of the block's coordinates), so which samples a block draws never depends on how many
threads run the blocks. The generator is splitmix64 (Steele, Lea & Flood 2014): the state advances by
a constant and the output is a bijective mix of it; a bounded integer uses the top 32 bits
(Lemire's multiply-shift, bias below ``n / 2**32``).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)


@numba.njit(cache=True, inline="always")
def mix64(z):  # pragma: no cover
    """splitmix64's output function: a bijection of 64-bit integers that scrambles every bit."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def next_below(state, n):  # pragma: no cover
    """``(new_state, r)`` with ``r`` uniform in ``[0, n)`` (``0 < n < 2**32``)."""
    state = state + _GOLDEN
    r = ((mix64(state) >> _S32) * np.uint64(n)) >> _S32
    return state, np.int64(r)


@numba.njit(cache=True, inline="always")
def row_state(seed, epoch, half, row):  # pragma: no cover
    """A generator state for one row of one half-epoch: a hash of the coordinates, so rows can run in
    any order on any thread and still draw the same numbers."""
    z = mix64(np.uint64(seed) + _GOLDEN * np.uint64(epoch + 1))
    z = mix64(z + _GOLDEN * np.uint64(half + 1))
    return mix64(z + _GOLDEN * np.uint64(row + 1))


@numba.njit(cache=True)
def draws(state, n, count):  # pragma: no cover
    """``count`` integers from :func:`next_below` starting at ``state`` (for tests)."""
    out = np.empty(count, np.int64)
    for k in range(count):
        state, out[k] = next_below(state, n)
    return out


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def sigmoid_softplus(t):  # pragma: no cover
    """``(sigma(t), log(1 + exp(t)))`` from one ``exp(-|t|)`` (no overflow), in ``t``'s precision."""
    e = np.exp(-abs(t))
    if t >= 0:
        return np.float32(1.0) / (np.float32(1.0) + e), t + np.log1p(e)
    return e / (np.float32(1.0) + e), np.log1p(e)


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def sigmoid(t):  # pragma: no cover
    """``sigma(t)`` without overflow, in ``t``'s precision."""
    e = np.exp(-abs(t))
    return np.float32(1.0) / (np.float32(1.0) + e) if t >= 0 else e / (np.float32(1.0) + e)


@numba.njit(cache=True, inline="always")
def row_contains(indptr, indices, row, col):  # pragma: no cover
    """Whether sorted CSR row ``row`` stores column ``col``: a binary search whose steps compile to
    conditional moves (no branch to mispredict; the search's outcome is a coin flip per step)."""
    base, n = indptr[row], indptr[row + 1] - indptr[row]
    if n == 0:
        return False
    while n > 1:
        half = n >> 1
        base = base + half if indices[base + half] <= col else base
        n -= half
    return indices[base] == col


@intrinsic
def prefetch(typingctx, array, index):  # pragma: no cover
    """Hint the CPU to fetch the cache line holding ``array[index]`` of a 1-d or 2-d array (a tuple of
    indices for 2-d), via ``llvm.prefetch`` on a byte pointer (so arrays of any dtype share it)."""
    if not isinstance(array, types.Array):
        return None
    index_types = tuple(index.types) if isinstance(index, types.BaseTuple) else (index,)
    if len(index_types) != array.ndim or not all(isinstance(t, types.Integer) for t in index_types):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        if isinstance(index_type, types.BaseTuple):
            values = cgutils.unpack_tuple(builder, args[1], len(index_type))
            index_list = [
                context.cast(builder, v, t, types.intp) for v, t in zip(values, index_type, strict=True)
            ]
        else:
            index_list = [context.cast(builder, args[1], index_type, types.intp)]
        pointer = cgutils.get_item_pointer(context, builder, array_type, ary, index_list, wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
        )
        # read/write access 1 (the rows are updated), high temporal locality, data cache
        builder.call(function, [builder.bitcast(pointer, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen
