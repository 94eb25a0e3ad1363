"""Reference scalar functions in float64 that numpy lacks (erf, gelu, silu, ...).

Used by the activation kernels in exact mode and to fill the activation tables. erf uses
its Maclaurin series up to |x| <= 3 (float64 keeps about 12 digits there despite the
alternating terms) and the asymptotic expansion of erfc beyond, so it is accurate far past
float32 precision without scipy.
"""
from __future__ import annotations

import math

import numpy as np

_TERMS = 64
# Maclaurin coefficients of erf(x) / x in powers of x**2: 2/sqrt(pi) * (-1)^n / (n! (2n+1))
_ERF_COEF = np.array([2.0 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                      for n in range(_TERMS)])


def erf(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    near = np.minimum(ax, 3.0)
    z = near * near
    # Horner in place: the same roundings as acc = acc * z + c from acc = 0 (0 * z + c is c;
    # a NaN z is NaN from the next term on), without a fresh float64 array per term.
    acc = np.full_like(z, _ERF_COEF[-1])
    for c in _ERF_COEF[-2::-1]:
        acc *= z
        acc += c
    out = np.multiply(near, acc, out=acc)
    big = ~(ax <= 3.0)                  # the asymptotic branch (NaN included), usually few
    if big.any():
        far = ax[big]
        inv = 1.0 / (2.0 * far * far)
        series = 1.0 - inv * (1.0 - 3.0 * inv * (1.0 - 5.0 * inv * (1.0 - 7.0 * inv * (1.0 - 9.0 * inv))))
        with np.errstate(over="ignore", under="ignore"):
            out[big] = 1.0 - np.exp(-far * far) / (far * math.sqrt(math.pi)) * series
    return np.copysign(out, x, out=out)


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))          # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gelu(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


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
