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


def _compile():
    import numba
    from llvmlite import ir
    from numba.core import types as t
    from numba.extending import intrinsic

    @intrinsic
    def f64_bits(typingctx, v):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(64))
        return t.int64(t.float64), codegen

    @intrinsic
    def bits_f64(typingctx, b):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return t.float64(t.int64), codegen

    @intrinsic
    def f32_bits(typingctx, v):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return t.uint32(t.float32), codegen

    @intrinsic
    def bits_f32(typingctx, b):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.FloatType())
        return t.float32(t.uint32), codegen

    sp, sq, mp, mq, fp, fq = fn._SMALL_P, fn._SMALL_Q, fn._MID_P, fn._MID_Q, fn._FAR_P, fn._FAR_Q
    rsqrt_pi, rsqrt2, split = fn._RSQRT_PI, 1.0 / math.sqrt(2.0), _GELU_SPLIT
    rel, gelu_abs, gelu_far = REL, GELU_ABS, GELU_FAR
    magic = 6755399441055744.0          # 1.5 * 2**52: w / ln 2 + magic holds round(w / ln 2) in its low bits
    magic_bits = 0x4338000000000000
    log2e, ln2_hi, ln2_lo = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10
    # error_model numpy: x / 0 without a check per element (none occurs); contract: a * b + c may
    # fuse into one fma, which only makes A more accurate (the bits come from the guard, and
    # float32(A -+ E) stay monotonic in A -+ E however they round).
    options = dict(cache=True, error_model="numpy", fastmath={"contract"})
    inline = dict(options, inline="always")

    # Polynomials by Estrin's scheme (short dependency chains; every coefficient here is positive
    # and so is the variable, except r in exp, where the terms fall fast: the rounding error
    # stays within a few ulps like Horner's). Coefficients lowest power first.
    small_p, small_q = sp[::-1], sq[::-1] + (1.0,)
    mid_p, mid_q = mp[::-1], mq[::-1] + (1.0,)
    far_p, far_q = fp, (1.0,) + fq              # Cody's far P(y), Q(y) times z**10: in z**2, reversed
    exp_c = tuple(1.0 / math.factorial(j) for j in range(14))

    @numba.njit(**inline)
    def est5(y, y2, y4, a):
        return (a[0] + a[1] * y) + y2 * (a[2] + a[3] * y) + y4 * a[4]

    @numba.njit(**inline)
    def est6(y, y2, y4, a):
        return (a[0] + a[1] * y) + y2 * (a[2] + a[3] * y) + y4 * (a[4] + a[5] * y)

    @numba.njit(**inline)
    def est9(y, y2, y4, y8, a):
        return ((a[0] + a[1] * y) + y2 * (a[2] + a[3] * y)) + y4 * ((a[4] + a[5] * y) + y2 * (a[6] + a[7] * y)) \
            + y8 * a[8]

    @numba.njit(**inline)
    def exp_neg(w):
        """e**w for w in [-700, 0]: w = k ln 2 + r, |r| <= 0.35 (k ln2_hi exact for |k| < 2**11),
        Taylor to r**13 (remainder below 1e-17 relative), times 2**k built in the exponent field."""
        tk = w * log2e + magic
        k = tk - magic
        r = (w - k * ln2_hi) - k * ln2_lo
        r2 = r * r
        r4 = r2 * r2
        a = exp_c
        lo = ((a[0] + a[1] * r) + r2 * (a[2] + a[3] * r)) + r4 * ((a[4] + a[5] * r) + r2 * (a[6] + a[7] * r))
        hi = ((a[8] + a[9] * r) + r2 * (a[10] + a[11] * r)) + r4 * (a[12] + a[13] * r)
        return (lo + (r4 * r4) * hi) * bits_f64((f64_bits(tk) - magic_bits + 1023) << 52)

    @numba.njit(**inline)
    def quotient(z, with_far):
        """(n, d): erf(z) = n / d for z <= 0.46875, else erfc(z) = e**-z**2 n / d (Cody's
        rationals; beyond 4, with_far: his asymptotic form over z**10 in z**2, no 1 / z**2)."""
        z2 = z * z
        z4 = z2 * z2
        z8 = z4 * z4
        small = z <= 0.46875
        n = z * est5(z2, z4, z8, small_p) if small else est9(z, z2, z4, z8, mid_p)
        d = est5(z2, z4, z8, small_q) if small else est9(z, z2, z4, z8, mid_q)
        if with_far:
            # erfc = e**-z**2 (1/sqrt pi - y P(y) / Q(y)) / z, y = 1 / z**2; times z**10 / z**10
            qr = est6(z2, z4, z8, far_q)
            n = (z2 * qr * rsqrt_pi - est6(z2, z4, z8, far_p)) if z > 4.0 else n
            d = (z * z2 * qr) if z > 4.0 else d
        return n, d

    @numba.njit(**inline)
    def ratio(n, d):
        """n / d for d in [1, 1e30]: float32 division (a vector of them costs a fraction of float64
        division's time) and two Newton steps, 6e-8 -> 4e-15 -> a few ulps of float64."""
        y = numba.float64(numba.float32(1.0) / numba.float32(d))
        y = y + y * (1.0 - d * y)
        y = y + y * (1.0 - d * y)
        return n * y

    @numba.njit(**inline)
    def settle(bits, out, ok, i, m, e):
        """out[i] = float32(m) with x's sign, ok[i] = both ends of m +- e round alike and x is
        finite; 1 if not settled."""
        hi = f32_bits(numba.float32(m + e))
        lo = f32_bits(numba.float32(m - e))
        out[i] = hi | (bits & 0x80000000)
        settled = (hi == lo) & ((bits & 0x7F800000) != 0x7F800000)
        ok[i] = settled
        return 0 if settled else 1

    @numba.njit(**inline)
    def erf_bound(v):
        """(|A|, E) for erf at v."""
        a = min(abs(v), 4.0)
        n, d = quotient(a, False)
        q = ratio(n, d)
        m = q if a <= 0.46875 else 1.0 - exp_neg(-a * a) * q
        return m, rel * m

    @numba.njit(**inline)
    def gelu_bound(v, with_far):
        """(|A|, E) for gelu_precise at v; without with_far, E = inf past z = 4 (|x| > 5.66)."""
        neg = v < 0.0
        a = min(abs(v), 36.0)
        z = a * rsqrt2
        n, d = quotient(z, with_far)
        q = ratio(n, d)
        c = exp_neg(-0.5 * a * a) * q                   # a * a exact: a is a float32 value
        u = ((1.0 - q) if neg else (1.0 + q)) if z <= 0.46875 else (c if neg else 2.0 - c)
        m = 0.5 * abs(v) * u
        e = rel * m + (gelu_abs * abs(v) if v >= split else gelu_far * (z * z) * m)
        return m, (e if with_far or z <= 4.0 else math.inf)

    def erf_kernel(x, out, ok):
        left = 0
        for i in range(x.size):
            m, e = erf_bound(numba.float64(bits_f32(x[i])))
            left += settle(x[i], out, ok, i, m, e)
        return left

    def gelu_kernel(x, out, ok):
        """One vectorized pass without Cody's far form (it costs a sixth of the time, for the
        rare element past |x| = 5.66, left unsettled there), then a scalar pass over those."""
        left = 0
        far = 0
        for i in range(x.size):
            m, e = gelu_bound(numba.float64(bits_f32(x[i])), False)
            far += e == math.inf
            left += settle(x[i], out, ok, i, m, e)
        i = 0
        while far and i < x.size:   # a search loop, not vectorized (which would do all the work)
            if not ok[i]:
                v = numba.float64(bits_f32(x[i]))
                if not min(abs(v), 36.0) * rsqrt2 <= 4.0:       # gelu_bound's test, NaN included
                    far -= 1
                    m, e = gelu_bound(v, True)
                    left += settle(x[i], out, ok, i, m, e) - 1
            i += 1
        return left

    def erf_bounds(x, m, e):
        for i in range(x.size):
            m[i], e[i] = erf_bound(numba.float64(x[i]))

    def gelu_bounds(x, m, e):
        for i in range(x.size):
            m[i], e[i] = gelu_bound(numba.float64(x[i]), True)

    u32 = t.Array(t.uint32, 1, "C", readonly=True)
    sig = t.int64(u32, t.Array(t.uint32, 1, "C"), t.Array(t.boolean, 1, "C"))
    jit = numba.njit(sig, nogil=True, **options)
    f64 = t.Array(t.float64, 1, "C")
    bounds = numba.njit(t.void(t.Array(t.float32, 1, "C", readonly=True), f64, f64), **options)   # for the tests
    return {"erf": jit(erf_kernel), "gelu": jit(gelu_kernel),
            "erf bounds": bounds(erf_bounds), "gelu bounds": bounds(gelu_bounds)}


kernels = compiled.LazyKernel("erf/gelu kernel", _compile)
