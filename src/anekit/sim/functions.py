"""Reference scalar functions in float64 that numpy lacks (erf, gelu, silu, ...).

Used by the activation kernels in exact mode and to fill the activation tables. erf uses
W. J. Cody's rational Chebyshev approximations (Math. Comp. 23, 1969, pp. 631-637: erf on
|x| <= 0.46875, erfc on (0.46875, 4] and beyond 4), accurate to about 1e-16 relative: far
past float32 precision, without scipy, in about a fifth of the time of a power series.
"""
from __future__ import annotations

import math

import numpy as np

# Cody (1969), the double-precision coefficients. erf(x) = x P(x^2) / Q(x^2) on |x| <= 0.46875;
# erfc(x) = exp(-x^2) P(x) / Q(x) on (0.46875, 4]; erfc(x) = exp(-x^2) / x (1/sqrt(pi) -
# P(1/x^2) / (x^2 Q(1/x^2))) beyond 4. Highest power first; Q is monic.
_SMALL_P = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
            3.77485237685302021e02, 3.20937758913846947e03)
_SMALL_Q = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
            2.84423683343917062e03)
_MID_P = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
          6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
          1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_MID_Q = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_FAR_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
          1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_FAR_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_SMALL_MAX, _MID_MAX = 0.46875, 4.0
_RSQRT_PI = 1.0 / math.sqrt(math.pi)


def _ratio(z, p, q):
    """P(z) / Q(z) by Horner, Q monic (its leading 1 implied), in place on fresh arrays."""
    num = np.multiply(z, p[0])
    num += p[1]
    den = np.add(z, q[0])
    for c in p[2:]:
        num *= z
        num += c
    for c in q[1:]:
        den *= z
        den += c
    return np.divide(num, den, out=num)


def _exp_neg_square(y):
    """exp(-y^2) without the rounding error of y*y magnified by exp: y = h + l with h a
    multiple of 1/16 (h*h exact), exp(-y^2) = exp(-h^2) exp(-(y - h)(y + h))  (Cody)."""
    h = np.trunc(y * 16.0)
    h *= 1.0 / 16.0
    lo = np.subtract(y, h)
    lo *= -(y + h)
    h *= h
    np.negative(h, out=h)
    np.exp(h, out=h)
    return np.multiply(h, np.exp(lo, out=lo), out=h)


def _erfc_mid(y):
    return np.multiply(_exp_neg_square(y), _ratio(y, _MID_P, _MID_Q))


def _erfc_far(y):
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        z = 1.0 / (y * y)
        tail = (_RSQRT_PI - z * _ratio(z, _FAR_P, _FAR_Q)) / y
        return np.where(y < 27.0, _exp_neg_square(np.minimum(y, 27.0)) * tail, 0.0)  # 0 in float64 beyond


def erfc_positive(y) -> np.ndarray:
    """erfc(y) for float64 y > 0.46875, to about 1e-16 relative, also deep in the tail."""
    y = np.asarray(y, dtype=np.float64)
    out = _erfc_mid(np.minimum(y, _MID_MAX))
    far = np.flatnonzero(y > _MID_MAX)
    if far.size:
        out.flat[far] = _erfc_far(y.flat[far])
    return out


def erf(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):    # x = +-inf: inf / inf in the near formula
        return _erf(x)


def _erf(x):
    ax = np.abs(x)
    # Both near formulas on every element (cheaper than gathering the two sets), then a select;
    # beyond 4 (few elements, or none) the far formula on those alone. NaN stays NaN.
    near = x * _ratio(x * x, _SMALL_P, _SMALL_Q)
    mid = _erfc_mid(np.clip(ax, _SMALL_MAX, _MID_MAX))
    np.subtract(1.0, mid, out=mid)
    np.copysign(mid, x, out=mid)
    out = np.where(ax <= _SMALL_MAX, near, mid)
    far = np.flatnonzero(ax > _MID_MAX)
    if far.size:
        xf = x.flat[far]
        out.flat[far] = np.copysign(1.0 - _erfc_far(np.abs(xf)), xf)
    return out


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))          # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gelu(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _erfc_continued_fraction(z: np.ndarray) -> np.ndarray:
    """erfc(z) for z >= 3 by its continued fraction (40 levels: far below 1e-12 relative
    there); gelu_precise's left tail."""
    t = z
    for n in range(40, 0, -1):
        t = z + (n / 2.0) / t
    with np.errstate(under="ignore"):
        return np.exp(-z * z) / (math.sqrt(math.pi) * t)


def gelu_precise(x) -> np.ndarray:
    """gelu in float64, accurate to well under an fp16 ulp everywhere: the left tail
    0.5 x erfc(-x / sqrt 2) holds only a tiny value, so it needs erfc's relative accuracy."""
    x = np.asarray(x, dtype=np.float64)
    y = gelu(x)
    far = x < -3.0 * math.sqrt(2.0)
    if far.any():
        xf = x[far]
        y[far] = 0.5 * xf * _erfc_continued_fraction(-xf / math.sqrt(2.0))
    return y


def gelu_tanh(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return x * sigmoid(1.702 * x)


def silu(x):
    x = np.asarray(x, dtype=np.float64)
    return x * sigmoid(x)


def softplus(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


FUNCTIONS = {"sigmoid": sigmoid, "tanh": np.tanh, "gelu": gelu, "silu": silu, "erf": erf}
