"""Tap-by-tap depthwise convolution in one compiled pass (numba, the optional `fast` extra).

conv.py's `_depthwise` accumulates, for each tap in order, acc += w[c, tap] * x[window]: a
float32 product, then a float32 add, from +0. This kernel does the same two float32
operations in the same order per output (numba keeps float32 arithmetic in float32 and does
not fuse the multiply and add without fastmath), so the bits are the same; it reads the
padded input in place instead of one strided view, repeat and temporary per tap. Used only
while sim/compiled.py's kernels are on (the same switch: ANEKIT_NO_JIT=1 at start-up,
compiled.set_enabled); tests/test_sim_compiled_kernels.py checks both routes bit for bit.

`channels_last` is the same sum for one input channel per output channel on [N, H, W, C]
copies: the innermost loop runs over channels, independent accumulators the compiler
vectorises, where the output-major loop waits on one output's chain of dependent adds
(2-4x faster on ConvNeXt's 7x7 maps). Vector code may take a NaN operand's payload from
either side of an add, so conv.py uses it only for inputs without NaN (every NaN the sum
makes then is the one default NaN, and the bits are the same).
"""
from __future__ import annotations

import numpy as np

from types import SimpleNamespace

from .. import compiled


def _compile():
    import numba
    from numba.core import types as t

    def depthwise2d(xp, w, sh, sw, dh, dw, mult, out):
        """out[n, co, i, j] = sum over taps (a, b) in order of w[co, a, b] * xp[n, co // mult,
        i * sh + a * dh, j * sw + b * dw], float32 throughout, from +0."""
        nb, cout, oh, ow = out.shape
        kh, kw = w.shape[1], w.shape[2]
        zero = np.float32(0.0)
        for n in range(nb):
            for co in range(cout):
                ci = co // mult
                for i in range(oh):
                    for j in range(ow):
                        acc = zero
                        for a in range(kh):
                            row = i * sh + a * dh
                            for b in range(kw):
                                acc += w[co, a, b] * xp[n, ci, row, j * sw + b * dw]
                        out[n, co, i, j] = acc

    def channels_last(xt, wt, sh, sw, dh, dw, out):
        """out[n, i, j, c] = sum over taps (a, b) in order of wt[a, b, c] * xt[n, i * sh +
        a * dh, j * sw + b * dw, c], float32 throughout, from +0 (depthwise2d's sum with the
        multiplier 1, channels innermost)."""
        nb, oh, ow, cc = out.shape
        kh, kw = wt.shape[0], wt.shape[1]
        zero = np.float32(0.0)
        for n in range(nb):
            for i in range(oh):
                for j in range(ow):
                    o = out[n, i, j]
                    for c in range(cc):
                        o[c] = zero
                    for a in range(kh):
                        for b in range(kw):
                            xr = xt[n, i * sh + a * dh, j * sw + b * dw]
                            wr = wt[a, b]
                            for c in range(cc):
                                o[c] += wr[c] * xr[c]

    f4 = lambda nd: t.Array(t.float32, nd, "C", readonly=True)       # noqa: E731
    i64 = t.int64
    out4 = t.Array(t.float32, 4, "C")
    return SimpleNamespace(
        depthwise2d=numba.njit(t.void(f4(4), f4(3), i64, i64, i64, i64, i64, out4), cache=True, nogil=True)(depthwise2d),
        channels_last=numba.njit(t.void(f4(4), f4(3), i64, i64, i64, i64, out4), cache=True, nogil=True)(channels_last))


kernel = compiled.LazyKernel("depthwise kernels", _compile)
