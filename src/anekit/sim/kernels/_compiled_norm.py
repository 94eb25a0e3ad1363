"""The elementwise stages of a chip-profile normalization (norm.py's `_normalize_last` and
`_affine`) fused into two compiled passes (numba, the optional `fast` extra).

Each stage is the same float32 operation followed by the same fp16 storage rounding as the
numpy code (sim/compiled.py's `_round16`, the kernel behind fp16.round_fp16), in the same
order, so the bits are the same; the two wide sums stay with the MAC model (mac.reduce_lanes).
Small normalizations (a transformer's [tokens, width]) spend most of their time in the ten
numpy calls between the sums; here they are two. Used only while sim/compiled.py's kernels are
on (the same switch); tests/test_sim_compiled_kernels.py checks both routes bit for bit.
"""
from __future__ import annotations

import numpy as np

from .. import compiled


def _compile(jit):
    import numba
    from numba.core import types as t

    round16 = jit._round16          # compiled by jit.kernels(): one float32 value onto the fp16 grid
    top = np.int64(jit._F16_MAX_BITS)

    def centre(lanes, sums, inv_k, round_products, keep_nan, nan_val, d, dd):
        """mean = store(sums * inv_k); d = store(lanes - mean); dd = d * d, stored when the
        profile rounds products (Numerics.products)."""
        rows, k = lanes.shape
        for r in range(rows):
            mean = round16(sums[r] * inv_k, top, False, keep_nan, nan_val)
            for i in range(k):
                v = round16(lanes[r, i] - mean, top, False, keep_nan, nan_val)
                d[r, i] = v
                p = v * v
                dd[r, i] = round16(p, top, False, keep_nan, nan_val) if round_products else p

    def scale(d, sums, inv_k, eps, gamma, beta, keep_nan, nan_val, out):
        """var = store(sums * inv_k); inv = store(1 / sqrt(store(var + eps))); out = store(d *
        inv), then store(out * gamma) and store(out + beta) where given (empty: none)."""
        rows, k = d.shape
        one = np.float32(1.0)
        for r in range(rows):
            var = round16(sums[r] * inv_k, top, False, keep_nan, nan_val)
            inv = round16(one / np.sqrt(round16(var + eps, top, False, keep_nan, nan_val)),
                          top, False, keep_nan, nan_val)
            for i in range(k):
                y = round16(d[r, i] * inv, top, False, keep_nan, nan_val)
                if gamma.size:
                    y = round16(y * gamma[i], top, False, keep_nan, nan_val)
                if beta.size:
                    y = round16(y + beta[i], top, False, keep_nan, nan_val)
                out[r, i] = y

    ro = lambda nd: t.Array(t.float32, nd, "C", readonly=True)       # noqa: E731
    rw = t.Array(t.float32, 2, "C")
    f32, flag = t.float32, t.boolean
    return (numba.njit(t.void(ro(2), ro(1), f32, flag, flag, f32, rw, rw), cache=True, nogil=True)(centre),
            numba.njit(t.void(ro(2), ro(1), f32, f32, ro(1), ro(1), flag, f32, rw), cache=True, nogil=True)(scale))


kernels = compiled.LazyKernel("normalization kernels", lambda: _compile(compiled))
