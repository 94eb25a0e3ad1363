"""fp16 storage helpers: rounding, the engine's NaN rules, subnormal flush, saturation.

Values of fp16 tensors are kept in float32 arrays that hold exactly representable fp16
numbers: float32 arithmetic on two fp16 operands followed by one rounding to fp16 equals
the correctly rounded fp16 operation for +, -, *, / and sqrt (float32 carries at least
2 * 11 + 2 significand bits, so the double rounding is innocuous), and consumers skip a
conversion pass.
"""
from __future__ import annotations

import numpy as np

F16_MAX = 65504.0                 # largest finite fp16 (guide ch. 3, tbl:c3-constants)
F16_MIN_NORMAL = 2.0 ** -14       # below this an fp16 value is subnormal
F32 = np.float32


_U32 = np.uint32
_MAX_BITS = _U32(0x477FE000)        # |bits| of 65504
_SUB_BITS = _U32(0x387FFFFF)        # |bits| just below 2**-14, the smallest normal fp16


def _bits(a: np.ndarray) -> np.ndarray:
    """The float32 bits of `a` as a flat uint32 array (1-D, so numpy never falls back to
    scalar arithmetic, which would warn on the intended wrap-around)."""
    return np.ascontiguousarray(a).reshape(-1).view(_U32)


def round_fp16(a, nan: float | None = None) -> np.ndarray:
    """Round to the fp16 grid, half to even, overflow to +-inf; returns float32.

    Integer arithmetic on the float32 bits (about 5x faster than a float16 round trip and
    bit-identical to it): adding 0xFFF plus the lowest kept bit, then clearing the 13 low
    bits, rounds the significand to 11 bits half to even; the fp16 subnormal range and
    overflow are fixed up only when present. `nan`, if given, replaces NaN."""
    a = np.asarray(a, dtype=F32)
    u = _bits(a)
    r = np.add(u, _U32(0x0FFF))
    t = np.right_shift(u, _U32(13))
    t &= _U32(1)
    r += t
    r &= _U32(0xFFFFE000)
    flat, src = r.view(F32), a.reshape(-1)    # r is a fresh array: fix-ups write in place
    if not r.size:
        return flat.reshape(a.shape)
    mag = np.bitwise_and(r, _U32(0x7FFFFFFF), out=t)
    if mag.max() > _MAX_BITS:                 # overflow, inf or NaN present
        big = np.flatnonzero(mag > _MAX_BITS)
        flat[big] = np.copysign(F32(np.inf), src[big])
        isnan = big[np.isnan(src[big])]
        if isnan.size:
            flat[isnan] = src[isnan] if nan is None else F32(nan)
    mag -= _U32(1)                            # zeros wrap to the top: min finds nonzero tiny values
    if mag.min() < _SUB_BITS:
        tiny = np.flatnonzero(mag < _SUB_BITS)
        flat[tiny] = np.rint(src[tiny] * F32(2.0 ** 24)) * F32(2.0 ** -24)
    return flat.reshape(a.shape)


def has_nan(a: np.ndarray) -> bool:
    # max() propagates NaN in one pass without allocating a mask
    return a.size > 0 and bool(np.isnan(a.max()))


def nan_to_zero(a: np.ndarray) -> np.ndarray:
    """The engine flushes every indeterminate form (inf-inf, 0*inf, sqrt(-1), ...) to +0."""
    if has_nan(a):
        a = np.where(np.isnan(a), F32(0.0), a)
    return a


def nan_to_inf(a: np.ndarray) -> np.ndarray:
    """NaN arriving at the engine's input boundary becomes +inf (guide ch. 3)."""
    if has_nan(a):
        a = np.where(np.isnan(a), F32(np.inf), a)
    return a


def flush_subnormals(a: np.ndarray) -> np.ndarray:
    """Nonzero values below 2**-14 to +0 (the M1 accumulator stage, guide ch. 3)."""
    a = np.asarray(a, dtype=F32)
    mag = np.bitwise_and(_bits(a), _U32(0x7FFFFFFF))
    mag -= _U32(1)                            # zeros wrap to the top
    if mag.size and mag.min() < _SUB_BITS:
        a = np.where((mag < _SUB_BITS).reshape(a.shape), F32(0.0), a)
    return a


def saturate(a: np.ndarray, limit: float) -> np.ndarray:
    """Magnitudes at or above `limit` become infinities of the same sign."""
    over = np.abs(a) >= limit
    if over.any():
        a = np.where(over, np.copysign(F32(np.inf), a), a)
    return a


def ulp_fp16(a) -> np.ndarray:
    """Spacing of the fp16 grid at |a| (2**-24 in the subnormal range); float32."""
    m = np.abs(np.asarray(a, dtype=F32))
    _, e = np.frexp(m)                      # m = f * 2**e with f in [0.5, 1)
    return np.ldexp(F32(1.0), np.maximum(e - 1, -14) - 10).astype(F32)
