"""The elementwise stages of a chip-profile normalization (norm.py's `_normalize_last` and
`_affine`) fused into two compiled passes (numba, the optional `fast` extra).

Each stage is the same float32 operation followed by the same fp16 storage rounding as the
numpy code (sim/compiled.py's `_round16`, the kernel behind fp16.round_fp16), in the same
order, so the bits are the same; the two wide sums stay with the MAC model (mac.reduce_lanes).
Small normalizations (a transformer's [tokens, width]) spend most of their time in the ten
numpy calls between the sums; here they are two. Used only while sim/compiled.py's kernels are
on (the same switch); tests/test_sim_compiled_kernels.py checks both routes bit for bit.

The kernels are module-level functions that name sim/compiled.py's helpers as globals: a
closure over a compiled function missed numba's on-disk cache in every new process (and
added an entry to it each time). (A third kernel with both sums inside, row by row, was
slower than the vectorised sums even on a ViT's [17, 32]: the lane model needs vectors.)
"""
from __future__ import annotations

import numpy as np

from .. import compiled

_TOP = np.int64(compiled._F16_MAX_BITS)


def _store(v, keep_nan, nan_val):
    return compiled._round16(v, _TOP, False, keep_nan, nan_val)


def centre(lanes, sums, inv_k, round_products, keep_nan, nan_val, d, dd):
    """mean = store(sums * inv_k); d = store(lanes - mean); dd = d * d, stored when the
    profile rounds products (Numerics.products)."""
    rows, k = lanes.shape
    for r in range(rows):
        mean = _store(sums[r] * inv_k, keep_nan, nan_val)
        for i in range(k):
            v = _store(lanes[r, i] - mean, keep_nan, nan_val)
            d[r, i] = v
            p = v * v
            dd[r, i] = _store(p, keep_nan, nan_val) if round_products else p


def _scale_row(d, out, r, var_sum, inv_k, eps, gamma, beta, keep_nan, nan_val):
    """var = store(var_sum * inv_k); inv = store(1 / sqrt(store(var + eps))); out = store(d *
    inv), then store(out * gamma) and store(out + beta) where given (empty: none)."""
    var = _store(var_sum * inv_k, keep_nan, nan_val)
    inv = _store(np.float32(1.0) / np.sqrt(_store(var + eps, keep_nan, nan_val)), keep_nan, nan_val)
    for i in range(d.shape[1]):
        y = _store(d[r, i] * inv, keep_nan, nan_val)
        if gamma.size:
            y = _store(y * gamma[i], keep_nan, nan_val)
        if beta.size:
            y = _store(y + beta[i], keep_nan, nan_val)
        out[r, i] = y


def scale(d, sums, inv_k, eps, gamma, beta, keep_nan, nan_val, out):
    """_scale_row for every row, with the variance sums given."""
    for r in range(d.shape[0]):
        _scale_row(d, out, r, sums[r], inv_k, eps, gamma, beta, keep_nan, nan_val)


def _compile():
    """The numba versions, from numba's cache when it has them (called once sim/compiled.py's
    kernels are compiled: the helpers named above are numba functions then)."""
    import numba
    from numba.core import types as t

    g = globals()
    for name in ("_store", "_scale_row"):
        g[name] = numba.njit(cache=True)(g[name])
    ro = lambda nd: t.Array(t.float32, nd, "C", readonly=True)       # noqa: E731
    rw = t.Array(t.float32, 2, "C")
    f32, flag = t.float32, t.boolean
    sigs = {"centre": (ro(2), ro(1), f32, flag, flag, f32, rw, rw),
            "scale": (ro(2), ro(1), f32, f32, ro(1), ro(1), flag, f32, rw)}
    return tuple(numba.njit(t.void(*sig), cache=True, nogil=True)(g[name]) for name, sig in sigs.items())


kernels = compiled.LazyKernel("normalization kernels", _compile)
