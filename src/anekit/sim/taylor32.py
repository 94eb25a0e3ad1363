"""float32 results of costly float64 references (gelu, erf) in exact numerics, bit for bit,
about three times faster than evaluating the reference per element.

A kernel needs float32(f(x)), not f(x). For a float32 x, x0 = x with its 13 low significand
bits cleared is a point of a fixed table (the fp16 grid, as in fp16_grid.py) and d = x - x0
is exact and below 2**-10 |x0|; a third-order Taylor expansion about x0 from tabulated f(x0),
f'(x0), f''(x0)/2, f'''(x0)/6 gives A with |A - f(x)| <= E = C d**4 + R |A| (C bounds
|f''''| / 24, R the reference's own relative error and the table's). Rounding is monotonic,
so wherever float32(A - E) == float32(A + E), f's value rounds to that same float32. The
elements left (near a rounding boundary, outside the table's range, NaN) take f itself.

With numba, ERF and GELU skip the table: sim/_compiled_erf.py forms A from Cody's rationals
in one vectorized pass under the same kind of guard (several times faster, and no 2 MB table
to miss in cache); the bits are the same, float32(f(x)), on every route.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import _compiled_erf
from . import functions as fn

_U32 = np.uint32
_LO_EXP, _HI_EXP = 97, 130        # tabulated |x| in [2**-30, 8): float32 biased exponents
_PER_SIGN = (_HI_EXP - _LO_EXP) << 10
_RSQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Taylor32:
    def __init__(self, name: str, reference: Callable, derivatives: Callable, c4: float, rel: float,
                 lowest: float = -math.inf, direct: str | None = None):
        self.name, self.reference, self.derivatives = name, reference, derivatives
        self.c4, self.rel, self.lowest = c4, rel, lowest
        self.direct = direct            # its table-free kernel in _compiled_erf, if it has one
        self._tables = None

    def tables(self):
        if self._tables is None:
            mag = ((np.arange(_PER_SIGN, dtype=_U32) + _U32(_LO_EXP << 10)) << _U32(13)).view(np.float32)
            x0 = np.concatenate([mag, -mag]).astype(np.float64)
            with np.errstate(all="ignore"):
                self._tables = (self.reference(x0),) + tuple(self.derivatives(x0))
        return self._tables

    def worth(self, size: int) -> bool:
        """Whether an array of `size` elements should come through here rather than through
        the reference: big ones always (the numpy route's table costs 2 x 33792 reference
        evaluations, once); small ones only with the compiled kernel (a call costs a few
        microseconds; the reference's numpy passes cost tens)."""
        if size >= 4096:
            return True
        if size and self._direct() is not None:
            return True                 # no table: a call costs a few microseconds
        return False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32(reference(x)) for a float32 array."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        direct = self._direct()
        if direct is not None:
            return self._settled(direct, x)
        u = x.view(_U32)
        key = np.right_shift(np.bitwise_and(u, _U32(0x7FFFFFFF)), _U32(13)).astype(np.intp)
        key -= _LO_EXP << 10
        inside = key >= 0
        inside &= key < _PER_SIGN
        np.clip(key, 0, _PER_SIGN - 1, out=key)
        key += np.right_shift(u, _U32(31)).astype(np.intp) * _PER_SIGN
        x0 = np.bitwise_and(u, _U32(0xFFFFE000)).view(np.float32)
        t0, t1, t2, t3 = self.tables()
        with np.errstate(all="ignore"):
            d = np.subtract(x, x0, dtype=np.float64)                      # exact (inf - inf: NaN, flagged)
            a = t3.take(key)
            a *= d
            a += t2.take(key)
            a *= d
            a += t1.take(key)
            a *= d
            a += t0.take(key)
            e = d * d
            e *= e
            e *= self.c4
            e += self.rel * np.abs(a)
            hi = (a + e).astype(np.float32)
            ok = (a - e).astype(np.float32) == hi
            ok &= inside
            if self.lowest > -math.inf:
                ok &= x >= self.lowest
            rest = np.flatnonzero(~ok)
            if rest.size:
                hi.flat[rest] = self.reference(x.flat[rest].astype(np.float64)).astype(np.float32)
        return hi.reshape(x.shape)

    def _direct(self):
        kernels = _compiled_erf.kernels() if self.direct else None
        return None if kernels is None else kernels[self.direct]

    def _settled(self, kernel, x: np.ndarray) -> np.ndarray:
        """__call__ through the table-free kernel (sim/_compiled_erf.py): the same bits."""
        flat = x.reshape(-1)
        out = np.empty(flat.size, np.float32)
        if kernel(flat.view(_U32), out.view(_U32)):            # the count the bound left open
            rest = np.flatnonzero(out.view(_U32) == _compiled_erf.OPEN)
            with np.errstate(all="ignore"):
                out[rest] = self.reference(flat[rest].astype(np.float64)).astype(np.float32)
        return out.reshape(x.shape)



def _erf_derivatives(x0):
    t1 = (2.0 / math.sqrt(math.pi)) * np.exp(-x0 * x0)
    return t1, -x0 * t1, (2.0 * x0 * x0 - 1.0) / 3.0 * t1


def _gelu_derivatives(x0):
    phi = _RSQRT_2PI * np.exp(-0.5 * x0 * x0)
    cdf = 0.5 * (1.0 + fn.erf(x0 / math.sqrt(2.0)))
    return cdf + x0 * phi, 0.5 * phi * (2.0 - x0 * x0), phi * (x0 ** 3 - 4.0 * x0) / 6.0


# erf = (2/sqrt pi) e^-x^2 (12x - 8x^3): at most 4.41 in size (5.3 taken), / 24. gelu =
# phi (-x^4 + 7x^2 - 4): at most 1.60 (1.7 taken), / 24. R for erf: Cody's erf is within 6e-16
# of erf (a dense check against math.erf), plus the table's and A's own roundings: 4e-15. For
# gelu, 0.5 x (1 + erf(x / sqrt 2)) loses up to a factor 4300 of erf's accuracy to the
# cancellation in 1 + erf for x >= -3.5 (below, the reference itself): 3e-12, taken twice.
ERF = Taylor32("erf", fn.erf, _erf_derivatives, c4=5.3 / 24, rel=4e-15, direct="erf")


GELU = Taylor32("gelu", fn.gelu_precise, _gelu_derivatives, c4=1.7 / 24, rel=8e-12, lowest=-3.5,
                direct="gelu")
