"""Small chip-profile reductions and softmax as one compiled call each (numba, the optional
`fast` extra): reduce_sum / reduce_mean rows, layer_norm's two wide sums, softmax's passes.

A transformer's reductions are small ([64, 128] rows, [4, 64, 64] scores): through
mac.reduce_lanes each paid a transposed copy, an operand-statistics call, the lane kernel
and a few numpy calls around them (10-25 us for 2 us of arithmetic). Here one call checks
the lanes, sums them and applies the epilogue (scale, fp16 store), reading the rows where
they lie:
- rows laid out by lanes ([R, K] C-contiguous: a sum over the last axis): the tile values
  of every row first, four consecutive lanes per tile, then each row's tiles in order into
  the float32 accumulator;
- rows laid out by rows ([K, R] C-contiguous: a sum over the first axis of a matrix): the
  four-lane kernel's own loop (_compiled_mac._sums), vectorised across rows.
The arithmetic of each row is _compiled_mac._sums's (the same tile function on the same
lanes, tiles added in order from the first), so the bits are those of mac.reduce_lanes on
both routes; like _compiled_mac.lane_sums4 it covers "plain" lanes only (finite, at most
65504 in magnitude: no NaN, ceiling or exponent clamp can act), and a call on other lanes
returns False before writing anything the caller keeps, leaving them to mac.reduce_lanes.
Used only while sim/compiled.py's kernels are on (the same switch);
tests/test_sim_compiled_reduce.py checks every route against the numpy code bit for bit.
"""
from __future__ import annotations

import numpy as np

from .. import _compiled_mac, compiled

F32 = np.float32
_TOP = np.int64(compiled._F16_MAX_BITS)
_PLAIN_BITS = np.uint32(compiled._F16_MAX_BITS)       # |bits| of 65504: the largest plain lane
_ZERO = F32(0.0)


# --- kernels (plain Python here; _compile() swaps in the numba versions) ------------------

def _abs_bits(x):                 # |x|'s bits (an intrinsic once compiled)
    return np.uint32(np.array([x], F32).view(np.uint32)[0] & 0x7FFFFFFF)


def _plain(a):
    """Whether every element of a flat float32 array is finite and at most 65504 in magnitude
    (an unsigned integer max, which vectorises; a NaN's bits are above 65504's)."""
    top = np.uint32(0)
    for i in range(a.shape[0]):
        top = max(top, _abs_bits(a[i]))
    return top <= _PLAIN_BITS


def _epilogue(acc, out, mult, store, keep_nan, nan_val):
    """out = acc * mult, stored as fp16 (compiled._round16, as Numerics.store) with store."""
    for r in range(acc.shape[0]):
        v = acc[r] * mult
        out[r] = compiled._round16(v, _TOP, False, keep_nan, nan_val) if store else v


def _row_sums(x, out, scale, flush):
    """out[r] = the four-lane model of sum_k x[r, k] (plain lanes, x [R, K] C-contiguous):
    the tile values of every row (tiles [R, T]), then each row's tiles in order."""
    rows, k = x.shape
    full = k // 4
    nt = -(-k // 4)
    tiles = np.empty((rows, nt), np.float32)
    for r in range(rows):
        for t in range(full):
            b = 4 * t
            tiles[r, t] = _compiled_mac._tile(_compiled_mac._lane(x[r, b], flush),
                                              _compiled_mac._lane(x[r, b + 1], flush),
                                              _compiled_mac._lane(x[r, b + 2], flush),
                                              _compiled_mac._lane(x[r, b + 3], flush), scale, False)
    if full < nt:
        # The last tile's missing lanes are +0 (mac.tile_sums pads with zeros), as in _sums.
        b, n = 4 * full, k - 4 * full
        for r in range(rows):
            l1 = _compiled_mac._lane(x[r, min(b + 1, k - 1)], flush) if n > 1 else _ZERO
            l2 = _compiled_mac._lane(x[r, min(b + 2, k - 1)], flush) if n > 2 else _ZERO
            tiles[r, full] = _compiled_mac._tile(_compiled_mac._lane(x[r, b], flush), l1, l2, _ZERO, scale, False)
    for r in range(rows):        # row by row (across rows was 1.3-4x slower: strided tiles)
        acc = tiles[r, 0]
        for t in range(1, nt):
            acc = acc + tiles[r, t]
        out[r] = acc


def sums_by_lanes(x, out, scale, flush, mult, store, keep_nan, nan_val):
    """out[r] = epilogue(four-lane sum of x[r, :]) for x [R, K] C-contiguous, K >= 1; False
    (out unset) when some lane is not plain."""
    if not _plain(x.reshape(-1)):
        return False
    acc = np.empty(x.shape[0], np.float32)
    _row_sums(x, acc, scale, flush)
    _epilogue(acc, out, mult, store, keep_nan, nan_val)
    return True


def sums_by_rows(xt, out, scale, flush, mult, store, keep_nan, nan_val):
    """out[r] = epilogue(four-lane sum of xt[:, r]) for xt [K, R] C-contiguous, K >= 1 (a sum
    over the first axis): _compiled_mac._sums on the one block xt; False as sums_by_lanes."""
    if not _plain(xt.reshape(-1)):
        return False
    acc = np.empty(xt.shape[1], np.float32)
    _compiled_mac._sums(xt.reshape(1, xt.shape[0], xt.shape[1]), acc, scale, flush)
    _epilogue(acc, out, mult, store, keep_nan, nan_val)
    return True


def _compile():
    """The numba versions, from numba's cache when it has them (called once sim/compiled.py's
    kernels and the four-lane kernel are compiled: the helpers named above are numba
    functions then)."""
    import numba
    from llvmlite import ir
    from numba.core import types as t
    from numba.extending import intrinsic

    if _compiled_mac.kernel() is None:
        raise RuntimeError("the four-lane MAC kernel is unavailable")

    @intrinsic
    def abs_bits(typingctx, x):
        def codegen(context, builder, sig, args):
            i32 = ir.IntType(32)
            return builder.and_(builder.bitcast(args[0], i32), ir.Constant(i32, 0x7FFFFFFF))
        return t.uint32(t.float32), codegen

    g = globals()
    g["_abs_bits"] = abs_bits
    for name in ("_plain", "_epilogue", "_row_sums"):
        g[name] = numba.njit(cache=True)(g[name])
    ro = lambda nd: t.Array(t.float32, nd, "C", readonly=True)       # noqa: E731
    rw1 = t.Array(t.float32, 1, "C")
    f32, flag = t.float32, t.boolean
    sig = t.boolean(ro(2), rw1, f32, flag, f32, flag, flag, f32)
    for name in ("sums_by_lanes", "sums_by_rows"):
        g[name] = numba.njit(sig, cache=True, nogil=True)(g[name])
    return _Kernels()


class _Kernels:
    """The compiled entry points (module attributes looked up once)."""

    def __init__(self):
        self.sums_by_lanes, self.sums_by_rows = sums_by_lanes, sums_by_rows


kernels = compiled.LazyKernel("reduction kernels", _compile)
