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


# --- softmax ---------------------------------------------------------------------------------

def _as_int(x):                   # float32 bits as int32 (an intrinsic once compiled)
    return np.int32(np.array([x], F32).view(np.int32)[0])


def _from_int(b):                 # int32 bits as float32 (an intrinsic once compiled)
    return np.array([b], np.int32).view(F32)[0]


def _key(b):
    """Float bits b (int32) -> an int32 that orders as the float does (negative floats: the
    magnitude bits flipped); its own inverse."""
    return b ^ ((b >> 31) & 0x7FFFFFFF)


def _store_plain(v):
    """Numerics.store (round_fp16, NaN to +0) of a value that is not a NaN or is the default
    NaN of an invalid operation (whose 32-bit rounding cannot wrap): the hardware conversion
    where the host has it (_compile swaps it in)."""
    return compiled._round16(v, _TOP, False, False, _ZERO)


def _store_hardware(v):
    return _ZERO if v != v else compiled._hardware_round16(v, _MAX, False, _TINY, _TINY)


_MAX = F32(65504.0)
_TINY = np.array([compiled._TINY_BITS], np.uint32).view(F32)[0]
_INT_MIN = np.int32(-2 ** 31)


def softmax_shift(x, d, store, finite):
    """d = x - max(row) for each row of x [R, K] C-contiguous, stored (Numerics.store) with
    store: the first stage of reduce.softmax_along. The max as an integer max of ordered keys
    (vectorises; a float max with NaN rules does not); it is one of the row's values, and
    only its zero's sign can differ from numpy's, which no x - m shows after the exp.
    False (d partly set) on a NaN, or with `finite` on an infinity: left to numpy there."""
    rows, k = x.shape
    limit = np.uint32(0x7F7FFFFF) if finite else np.uint32(0x7F800000)
    for r in range(rows):
        top, km = np.uint32(0), _INT_MIN
        for i in range(k):
            top = max(top, _abs_bits(x[r, i]))
            km = max(km, _key(_as_int(x[r, i])))
        if top > limit:
            return False
        m = _from_int(_key(km))
        for i in range(k):
            v = x[r, i] - m
            d[r, i] = _store_plain(v) if store else v
    return True


def _block_sum(a, lo, n):
    """numpy's float32 pairwise summation of a[lo:lo + n] for n <= 128 (one block: eight
    accumulators, or one below eight lanes), without the +0 its reduction starts from."""
    if n < 8:
        res = np.float32(-0.0)
        for i in range(lo, lo + n):
            res = res + a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    end = n - n % 8
    while i < end:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


def _pairwise(a, lo, n):
    """numpy's float32 add.reduce of a[lo:lo + n] without its starting +0: blocks of up to
    128 (_block_sum), longer runs split in halves at a multiple of eight."""
    if n <= 128:
        return _block_sum(a, lo, n)
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(a, lo, n2) + _pairwise(a, lo + n2, n - n2)


def numpy_row_sums(x, out):
    """out[r] = np.add.reduce(x[r]) for x [R, K] C-contiguous: _pairwise from +0; a row of one
    block of eights (8 <= K <= 128) with its eight accumulators as one vector held across the
    row (2-3x faster than eight scalars)."""
    rows, k = x.shape
    if k < 8 or k > 128:
        flat = x.reshape(-1)
        for r in range(rows):
            out[r] = _ZERO + _pairwise(flat, r * k, k)
        return
    end = k - k % 8
    acc = np.empty(8, np.float32)
    for r in range(rows):
        for j in range(8):
            acc[j] = x[r, j]
        for i in range(8, end, 8):
            for j in range(8):
                acc[j] += x[r, i + j]
        res = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
        for i in range(end, k):
            res += x[r, i]
        out[r] = _ZERO + res


def softmax_scale(e, out, store):
    """out = e / sum(e) per row of e [R, K] C-contiguous (the exponentials; out another
    array), with e stored first and the quotient stored with store; the sum is numpy's
    (_pairwise from +0), so the bits are those of reduce.softmax_along's
    e / e.sum(axis=-1, dtype=float32). In passes over the whole array (each vectorises)."""
    rows, k = e.shape
    flat = e.reshape(-1)
    if store:
        for i in range(flat.shape[0]):
            flat[i] = _store_plain(flat[i])
    sums = np.empty(rows, np.float32)
    numpy_row_sums(e, sums)
    for r in range(rows):
        s = sums[r]
        for i in range(k):
            v = e[r, i] / s
            out[r, i] = _store_plain(v) if store else v


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
    ro = lambda nd: t.Array(t.float32, nd, "C", readonly=True)       # noqa: E731
    rw1, rw2 = t.Array(t.float32, 1, "C"), t.Array(t.float32, 2, "C")

    @intrinsic
    def as_int(typingctx, x):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return t.int32(t.float32), codegen

    @intrinsic
    def from_int(typingctx, b):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.FloatType())
        return t.float32(t.int32), codegen

    g = globals()
    # |x|'s bits: the four-lane MAC module's intrinsic (compiled above: kernel() was called)
    g["_abs_bits"], g["_as_int"], g["_from_int"] = _compiled_mac._abs_bits, as_int, from_int
    for name in ("_plain", "_epilogue", "_row_sums", "_key", "_store_plain"):
        g[name] = numba.njit(cache=True)(g[name])
    if compiled._HARDWARE_FP16:
        g["_store_plain"] = numba.njit(cache=True)(_store_hardware)
    g["_block_sum"] = numba.njit(cache=True)(_block_sum)
    g["_pairwise"] = numba.njit(t.float32(ro(1), t.intp, t.intp), cache=True)(_pairwise)
    g["numpy_row_sums"] = numba.njit(cache=True)(numpy_row_sums)

    f32, flag = t.float32, t.boolean
    sig = t.boolean(ro(2), rw1, f32, flag, f32, flag, flag, f32)
    for name in ("sums_by_lanes", "sums_by_rows"):
        g[name] = numba.njit(sig, cache=True, nogil=True)(g[name])
    g["softmax_shift"] = numba.njit(t.boolean(ro(2), rw2, flag, flag), cache=True, nogil=True)(softmax_shift)
    g["softmax_scale"] = numba.njit(t.void(rw2, rw2, flag), cache=True, nogil=True,
                                    error_model="numpy")(softmax_scale)
    return _Kernels()


class _Kernels:
    """The compiled entry points (module attributes looked up once)."""

    def __init__(self):
        self.sums_by_lanes, self.sums_by_rows = sums_by_lanes, sums_by_rows
        self.softmax_shift, self.softmax_scale = softmax_shift, softmax_scale


kernels = compiled.LazyKernel("reduction kernels", _compile)
