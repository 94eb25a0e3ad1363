"""fp16 storage helpers: rounding, the engine's NaN rules, subnormal flush, saturation.

Values of fp16 tensors are kept in float32 arrays that hold exactly representable fp16
numbers: float32 arithmetic on two fp16 operands followed by one rounding to fp16 equals
the correctly rounded fp16 operation for +, -, *, / and sqrt (float32 carries at least
2 * 11 + 2 significand bits, so the double rounding is innocuous), and consumers skip a
conversion pass.
"""
from __future__ import annotations

import numpy as np

from . import compiled

F16_MAX = 65504.0                 # largest finite fp16 (guide ch. 3, tbl:c3-constants)
F32 = np.float32


_U32 = np.uint32
_MAX_BITS = _U32(0x477FE000)        # |bits| of 65504
_SUB_BITS = _U32(0x387FFFFF)        # |bits| just below 2**-14, the smallest normal fp16


def _bits(a: np.ndarray) -> np.ndarray:
    """The float32 bits of `a` as a flat uint32 array (1-D, so numpy never falls back to
    scalar arithmetic, which would warn on the intended wrap-around)."""
    return np.ascontiguousarray(a).reshape(-1).view(_U32)


def round_fp16(a, nan: float | None = None, limit: float | None = None, flush: bool = False) -> np.ndarray:
    """Round to the fp16 grid, half to even, overflow to +-inf; returns float32.

    Integer arithmetic on the float32 bits (about 5x faster than a float16 round trip and
    bit-identical to it): adding 0xFFF plus the lowest kept bit, then clearing the 13 low
    bits, rounds the significand to 11 bits half to even. The fp16 subnormal range and
    overflow are fixed up where present. `nan`, if given, replaces NaN; `limit` saturates
    magnitudes at or above it to infinity; `flush` sends subnormal results to +0. The
    options cost no extra pass (the MAC output port uses all three). With the `fast` extra the
    same rounding runs as one compiled pass (compiled.py)."""
    jit = compiled.kernels()
    if jit is not None:
        # The simulator calls this a few hundred times per training step on small arrays: the
        # argument handling is kept to the minimum (plain Python scalars dispatch fastest).
        if type(a) is not np.ndarray or a.dtype != F32:
            a = np.asarray(a, dtype=F32)
        out = np.empty(a.shape, F32)
        src = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
        jit.round_fp16(src, out.reshape(-1), _MAX_INT if limit is None else _top(limit), bool(flush),
                       nan is None, 0.0 if nan is None else F32(nan))
        return out
    a = np.asarray(a, dtype=F32)
    top = _MAX_BITS if limit is None else _U32(_top(limit))
    u = _bits(a)
    r = np.add(u, _U32(0x0FFF))
    t = np.right_shift(u, _U32(13))
    t &= _U32(1)
    r += t
    r &= _U32(0xFFFFE000)
    flat = r.view(F32)                        # a fresh array: fix-ups write in place
    if not r.size:
        return flat.reshape(a.shape)
    mag = np.bitwise_and(r, _U32(0x7FFFFFFF), out=t)
    if mag.max() > top:                       # overflow, inf, NaN, or the saturation limit
        _fix_large(flat, a.reshape(-1), np.flatnonzero(mag > top), nan)
    mag -= _U32(1)                            # zeros wrap to the top: min finds nonzero tiny values
    if mag.min() < _SUB_BITS:
        tiny = mag < _SUB_BITS
        if flush:
            np.copyto(flat, F32(0.0), where=tiny)     # about 3x faster than flat[tiny] = 0
            return flat.reshape(a.shape)
        if np.count_nonzero(tiny) * 32 > tiny.size:
            return _round_by_addition(a, nan, top)     # many subnormals: the branch-free route
        idx = np.flatnonzero(tiny)
        src = a.reshape(-1)[idx]
        flat[idx] = np.copysign((src + F32(0.75)) - F32(0.75), src)   # float32 steps by 2**-24 in [0.5, 1)
    return flat.reshape(a.shape)


def _top(limit: float) -> int:
    """The largest |bits| kept below a saturation limit (cached: a few limits recur)."""
    top = _TOPS.get(limit)
    if top is None:
        top = _TOPS[limit] = int(min(_MAX_BITS, _U32(np.float32(limit).view(_U32) - 1)))
    return top


_MAX_INT = int(_MAX_BITS)
_TOPS: dict = {}


def _fix_large(flat, src, big, nan):
    flat[big] = np.copysign(F32(np.inf), src[big])
    isnan = big[np.isnan(src[big])]
    if isnan.size:
        flat[isnan] = src[isnan] if nan is None else F32(nan)


def _round_by_addition(a: np.ndarray, nan: float | None, top) -> np.ndarray:
    """The same rounding as float additions: adding c = +-2**(e + 13), e the exponent of x
    (at least -14, the fp16 subnormal floor), leaves float32 a step of exactly one fp16 ulp
    at x, so (x + c) - c rounds x half to even onto the fp16 grid, subnormals included."""
    src = np.ascontiguousarray(a).reshape(-1)
    u = src.view(_U32)
    t = np.bitwise_and(u, _U32(0x7F800000))
    np.maximum(t, _U32(113 << 23), out=t)
    t += _U32(13 << 23)
    t |= u & _U32(0x80000000)
    c = t.view(F32)
    with np.errstate(over="ignore", invalid="ignore"):
        y = src + c
        y -= c
    y.view(_U32)[...] |= u & _U32(0x80000000)   # a value rounding to zero keeps its sign
    mag = y.view(_U32) & _U32(0x7FFFFFFF)
    if mag.max() > top:                          # after the sign: a replaced NaN keeps the value given
        big = np.flatnonzero(mag > top)
        _fix_large(y, src, big, nan)
        # NaNs whose bits reach 0x7FFFF000 wrap to a zero in the bit route above; do the same
        wrap = big[(u[big] & _U32(0x7FFFFFFF)) >= _U32(0x7FFFF000)]
        y.view(_U32)[wrap] = (u[wrap] + _U32(0x1000)) & _U32(0xFFFFE000)
    return y.reshape(a.shape)


def all_finite(a: np.ndarray) -> bool:
    """Whether every element is finite (no inf, no NaN): np.isfinite(a).all(), in one compiled
    pass without the mask for a float32 C-contiguous array when the compiled kernels are on."""
    jit = compiled.kernels()
    if jit is not None and type(a) is np.ndarray and a.dtype == F32 and a.flags.c_contiguous:
        return bool(jit.all_finite(a.reshape(-1)))
    return bool(np.isfinite(a).all())


def has_nan(a: np.ndarray) -> bool:
    # max() propagates NaN in one pass without allocating a mask
    return a.size > 0 and bool(np.isnan(a.max()))


def nan_to_zero(a: np.ndarray) -> np.ndarray:
    """The engine flushes every indeterminate form (inf-inf, 0*inf, sqrt(-1), ...) to +0."""
    if has_nan(a):
        a = np.where(np.isnan(a), F32(0.0), a)
    return a


def flush_subnormals(a: np.ndarray) -> np.ndarray:
    """Nonzero values below 2**-14 to +0 (the M1 accumulator stage, guide ch. 3)."""
    a = np.asarray(a, dtype=F32)
    if not a.size:
        return a
    jit = compiled.kernels()
    if jit is not None:
        out = np.empty(a.size, F32)
        jit.flush_subnormals(np.ascontiguousarray(a).reshape(-1), out)
        return out.reshape(a.shape)
    mag = np.bitwise_and(np.atleast_1d(a).view(_U32), _U32(0x7FFFFFFF))   # strided views need no copy
    mag -= _U32(1)                            # zeros wrap to the top
    if mag.min() < _SUB_BITS:
        a = np.where((mag < _SUB_BITS).reshape(a.shape), F32(0.0), a)
    return a


def saturate(a: np.ndarray, limit: float) -> np.ndarray:
    """Magnitudes at or above `limit` become infinities of the same sign."""
    over = np.abs(a) >= limit
    if over.any():
        a = np.where(over, np.copysign(F32(np.inf), a), a)
    return a
