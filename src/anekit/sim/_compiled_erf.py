"""float32(erf(x)) and float32(gelu_precise(x)) of the float64 references in functions.py, bit
for bit, without tables: one vectorized pass of float64 arithmetic and an error bound per
element (numba, the optional `fast` extra; the numpy route is taylor32.py's table expansion).

A is W. J. Cody's rational forms (the coefficients of functions.py) and exp written out (range
reduction by a multiple of ln 2, a degree-13 Taylor polynomial, 2**k from exponent bits), so
the loop has no calls or branches and LLVM vectorizes it (gelu's elements past |x| = 5.66,
which need Cody's third form, take a second, scalar pass). gelu is 0.5 |x| (1 -+ erf(|z|)),
z = x / sqrt 2, with erfc itself on the negative side: relative accuracy everywhere. E bounds
|A - reference(x)|: A's own error (below 1e-15 relative) plus the reference's, which for
gelu_precise includes the cancellation in 1 + erf(z) for x in [-3 sqrt 2, 0): an absolute
error of about 2**-53 in 1 + erf, so a term in |x|, and below -3 sqrt 2 its continued
fraction and exp(-z*z) with z*z rounded: a term in z**2 |A|. Rounding is monotonic, so where
float32(A - E) == float32(A + E) the reference rounds to that value too; the sign is x's
(both references have x's sign bit, zeros included). The rest (NaN, infinities, the rare
element near a rounding boundary) is flagged and the caller evaluates the reference on it.
Far out both functions are flat in float32: erf(x) is +-1.0f for |x| >= 4 (1 - erfc(4) is
1 - 1.5e-8, above the midpoint 1 - 2**-25), gelu(x) is -0.0f for x <= -15 and x for x >= 9,
so |x| is clamped (4 for erf, 36 for gelu) before A is formed, keeping exp in range.
tests/test_sim_erf_kernel.py checks E against mpmath and the bits against the references.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from . import compiled
from . import functions as fn

# E = REL |A| (+ GELU_ABS |x| where gelu_precise adds 1 + erf, + GELU_FAR z**2 |A| where it
# takes its continued fraction). A's error: Cody's forms (below 1e-18) and some 30 roundings
# of at most 2**-53 relative (no cancellation: every polynomial term here is positive, and
# 1 - erfc, 2 - erfc keep half their size): measured below 7e-16 relative against mpmath.
# The references' (tests/test_sim_erf_kernel.py): Cody's erf within 5e-16 relative; gelu_precise
# 0.5 x (1 + erf(z)) within 1.2e-16 |x| (2**-53 on 1 + erf, times 0.5 |x|) plus 3e-16 relative,
# its tail 0.5 x exp(-z*z) / (sqrt(pi) t) within 4.4e-16 z**2 relative (z*z rounded: exp
# turns its absolute error z**2 2**-52 into a relative one). Each taken at least 20 times.
REL = 2e-14
GELU_ABS = 1e-14
GELU_FAR = 1e-14
_GELU_SPLIT = -3.0 * math.sqrt(2.0)       # gelu_precise: the continued fraction below this x


# Coefficients lowest power first (functions.py lists them highest first; Q is monic there).
_SMALL_P, _SMALL_Q = fn._SMALL_P[::-1], fn._SMALL_Q[::-1] + (1.0,)
_MID_P, _MID_Q = fn._MID_P[::-1], fn._MID_Q[::-1] + (1.0,)
_FAR_P, _FAR_Q = fn._FAR_P, (1.0,) + fn._FAR_Q    # Cody's far P(y), Q(y) times z**10: in z**2, reversed
_EXP = tuple(1.0 / math.factorial(j) for j in range(14))
_RSQRT_PI, _RSQRT2 = fn._RSQRT_PI, 1.0 / math.sqrt(2.0)
_MAGIC = 6755399441055744.0         # 1.5 * 2**52: w / ln 2 + _MAGIC holds round(w / ln 2) in its low bits
_MAGIC_BITS = 0x4338000000000000
OPEN = 0x7FC0DEAD                   # the bits out holds where the bound left the element open: a
                                    # NaN, which no settled element is (finite x: finite results)
_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10


# --- plain Python here; _compile() swaps in numba versions (the bit casts become intrinsics) ---

def _f64_bits(v):
    return struct.unpack("<q", struct.pack("<d", v))[0]


def _bits_f64(b):
    return struct.unpack("<d", struct.pack("<q", b))[0]


def _f32_bits(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]


def _bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def _to_f32(v):                     # float64 -> float32, rounded to nearest
    return np.float32(v)


# Polynomials by Estrin's scheme (short dependency chains; every coefficient here is positive
# and so is the variable, except r in exp, where the terms fall fast: the rounding error
# stays within a few ulps like Horner's).

def _est5(y, y2, y4, a):
    return (a[0] + a[1] * y) + y2 * (a[2] + a[3] * y) + y4 * a[4]


def _est6(y, y2, y4, a):
    return (a[0] + a[1] * y) + y2 * (a[2] + a[3] * y) + y4 * (a[4] + a[5] * y)


def _est9(y, y2, y4, y8, a):
    return ((a[0] + a[1] * y) + y2 * (a[2] + a[3] * y)) + y4 * ((a[4] + a[5] * y) + y2 * (a[6] + a[7] * y)) \
        + y8 * a[8]


def _exp_neg(w):
    """e**w for w in [-700, 0]: w = k ln 2 + r, |r| <= 0.35 (k ln2_hi exact for |k| < 2**11),
    Taylor to r**13 (remainder below 1e-17 relative), times 2**k built in the exponent field."""
    tk = w * _LOG2E + _MAGIC
    k = tk - _MAGIC
    r = (w - k * _LN2_HI) - k * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    a = _EXP
    lo = ((a[0] + a[1] * r) + r2 * (a[2] + a[3] * r)) + r4 * ((a[4] + a[5] * r) + r2 * (a[6] + a[7] * r))
    hi = ((a[8] + a[9] * r) + r2 * (a[10] + a[11] * r)) + r4 * (a[12] + a[13] * r)
    return (lo + (r4 * r4) * hi) * _bits_f64((_f64_bits(tk) - _MAGIC_BITS + 1023) << 52)


def _quotient(z, with_far):
    """(n, d): erf(z) = n / d for z <= 0.46875, else erfc(z) = e**-z**2 n / d (Cody's
    rationals; beyond 4, with_far: his asymptotic form over z**10 in z**2, no 1 / z**2)."""
    z2 = z * z
    z4 = z2 * z2
    z8 = z4 * z4
    small = z <= 0.46875
    n = z * _est5(z2, z4, z8, _SMALL_P) if small else _est9(z, z2, z4, z8, _MID_P)
    d = _est5(z2, z4, z8, _SMALL_Q) if small else _est9(z, z2, z4, z8, _MID_Q)
    if with_far:
        # erfc = e**-z**2 (1/sqrt pi - y P(y) / Q(y)) / z, y = 1 / z**2; times z**10 / z**10
        qr = _est6(z2, z4, z8, _FAR_Q)
        n = (z2 * qr * _RSQRT_PI - _est6(z2, z4, z8, _FAR_P)) if z > 4.0 else n
        d = (z * z2 * qr) if z > 4.0 else d
    return n, d


def _ratio(n, d):
    """n / d for d in [1, 1e30]: float32 division (a vector of them costs a fraction of float64
    division's time) and two Newton steps, 6e-8 -> 4e-15 -> a few ulps of float64."""
    y = float(_to_f32(1.0 / _to_f32(d)))
    y = y + y * (1.0 - d * y)
    y = y + y * (1.0 - d * y)
    return n * y


def _settle(bits, out, i, m, e):
    """out[i] = float32(m) with x's sign where both ends of m +- e round alike and x is finite,
    else OPEN; 1 if OPEN."""
    hi = _f32_bits(_to_f32(m + e))
    lo = _f32_bits(_to_f32(m - e))
    settled = (hi == lo) & ((bits & 0x7F800000) != 0x7F800000)
    out[i] = (hi | (bits & 0x80000000)) if settled else OPEN
    return 0 if settled else 1


def _erf_bound(v):
    """(|A|, E) for erf at v."""
    a = min(abs(v), 4.0)
    n, d = _quotient(a, False)
    q = _ratio(n, d)
    m = q if a <= 0.46875 else 1.0 - _exp_neg(-a * a) * q
    return m, REL * m


def _gelu_bound(v, with_far):
    """(|A|, E) for gelu_precise at v; without with_far, E = inf past z = 4 (|x| > 5.66)."""
    neg = v < 0.0
    a = min(abs(v), 36.0)
    z = a * _RSQRT2
    n, d = _quotient(z, with_far)
    q = _ratio(n, d)
    c = _exp_neg(-0.5 * a * a) * q                  # a * a exact: a is a float32 value
    u = ((1.0 - q) if neg else (1.0 + q)) if z <= 0.46875 else (c if neg else 2.0 - c)
    m = 0.5 * abs(v) * u
    e = REL * m + (GELU_ABS * abs(v) if v >= _GELU_SPLIT else GELU_FAR * (z * z) * m)
    return m, (e if with_far or z <= 4.0 else math.inf)


def erf_kernel(x, out):
    """out = the bits of float32(erf(x)) for the float32 bits x, or OPEN; the count of OPEN."""
    left = 0
    for i in range(x.size):
        m, e = _erf_bound(float(_bits_f32(x[i])))
        left += _settle(x[i], out, i, m, e)
    return left


def gelu_kernel(x, out):
    """As erf_kernel for gelu_precise: one vectorized pass without Cody's far form (it costs a
    sixth of the time, for the rare element past |x| = 5.66, left open there), then a search
    loop over those (not vectorized: a vector loop would run the far form on every lane)."""
    left = 0
    far = 0
    for i in range(x.size):
        m, e = _gelu_bound(float(_bits_f32(x[i])), False)
        far += e == math.inf
        left += _settle(x[i], out, i, m, e)
    i = 0
    while far and i < x.size:
        if out[i] == OPEN:
            v = float(_bits_f32(x[i]))
            if not min(abs(v), 36.0) * _RSQRT2 <= 4.0:      # _gelu_bound's test, NaN included
                far -= 1
                m, e = _gelu_bound(v, True)
                left += _settle(x[i], out, i, m, e) - 1
        i += 1
    return left


def erf_bounds(x, m, e):
    """(|A|, E) per float32 x, for the tests."""
    for i in range(x.size):
        m[i], e[i] = _erf_bound(float(x[i]))


def gelu_bounds(x, m, e):
    for i in range(x.size):
        m[i], e[i] = _gelu_bound(float(x[i]), True)


_HELPERS = ("_to_f32", "_est5", "_est6", "_est9", "_exp_neg", "_quotient", "_ratio", "_settle", "_erf_bound",
            "_gelu_bound")


def _compile():
    """The numba versions, from numba's cache when it has them (module-level functions: numba
    caches closures under a key that changes every process)."""
    import numba
    from numba.core import types as t
    from numba.extending import intrinsic

    def cast(src, dst, name):
        @intrinsic
        def fn(typingctx, v):
            def codegen(context, builder, sig, args):
                return builder.bitcast(args[0], context.get_value_type(dst))
            return dst(src), codegen
        fn.__name__ = name
        return fn

    g = globals()
    g["_f64_bits"] = cast(t.float64, t.int64, "f64_bits")
    g["_bits_f64"] = cast(t.int64, t.float64, "bits_f64")
    g["_f32_bits"] = cast(t.float32, t.uint32, "f32_bits")
    g["_bits_f32"] = cast(t.uint32, t.float32, "bits_f32")
    # error_model numpy: x / 0 without a check per element (none occurs); contract: a * b + c may
    # fuse into one fma, which only makes A more accurate (the bits come from the guard, and
    # float32(A -+ E) stay monotonic in A -+ E however they round).
    options = dict(cache=True, error_model="numpy", fastmath={"contract"})
    for name in _HELPERS:
        g[name] = numba.njit(inline="always", **options)(g[name])
    u32 = t.Array(t.uint32, 1, "C", readonly=True)
    jit = numba.njit(t.int64(u32, t.Array(t.uint32, 1, "C")), nogil=True, **options)
    f64 = t.Array(t.float64, 1, "C")
    bounds = numba.njit(t.void(t.Array(t.float32, 1, "C", readonly=True), f64, f64), **options)
    return {"erf": jit(erf_kernel), "gelu": jit(gelu_kernel),
            "erf bounds": bounds(erf_bounds), "gelu bounds": bounds(gelu_bounds)}


kernels = compiled.LazyKernel("erf/gelu kernel", _compile)
