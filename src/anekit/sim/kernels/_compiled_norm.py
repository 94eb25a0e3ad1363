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
added an entry to it each time). normalize4 runs both stages and both sums in one call for
four-lane tiles on plain values (_compiled_reduce's row sums read the rows where they lie: a
transformer's [64, 128] layer_norm 41 -> 20 us), storing with the hardware fp16 conversion.
"""
from __future__ import annotations

import numpy as np

from .. import compiled
from . import _compiled_reduce

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


def _store_plain(v):
    """_store(v, False, 0) for a v that is not a NaN or is the default NaN of an invalid
    operation (whose 32-bit rounding cannot wrap): the hardware conversion where the host has
    it (compiled._hardware_round16; _compile swaps this in), one instruction pair instead of
    the bit arithmetic."""
    return _store(v, False, np.float32(0.0))


def _store_hardware(v):
    return _ZERO if v != v else compiled._hardware_round16(v, _MAX, False, _TINY, _TINY)


_ZERO, _MAX = np.float32(0.0), np.float32(65504.0)
_TINY = np.array([compiled._TINY_BITS], np.uint32).view(np.float32)[0]


def normalize4(lanes, inv_k, eps, gamma, beta, round_products, scale4, flush, d, dd, out):
    """centre and scale (with gamma and beta when not empty) with both wide sums inside, for
    four-lane tiles on plain values (_compiled_reduce._row_sums: the bits of
    mac.reduce_lanes): one call instead of four, no transposed copies. Lanes, gamma and beta
    finite within 65504 leave only the default NaN of 0 * inf to the stores (_store_plain).
    False (out unset) when the lanes, gamma, beta or the squares are not plain (an infinity,
    NaN, or beyond 65504), which the caller leaves to the stages above."""
    if not (_compiled_reduce._plain(lanes.reshape(-1)) and _compiled_reduce._plain(gamma)
            and _compiled_reduce._plain(beta)):
        return False
    rows, k = lanes.shape
    sums = np.empty(rows, np.float32)
    _compiled_reduce._row_sums(lanes, sums, scale4, flush)
    for r in range(rows):
        mean = _store_plain(sums[r] * inv_k)
        for i in range(k):
            v = _store_plain(lanes[r, i] - mean)
            d[r, i] = v
            p = v * v
            dd[r, i] = _store_plain(p) if round_products else p
    if not _compiled_reduce._plain(dd.reshape(-1)):
        return False
    _compiled_reduce._row_sums(dd, sums, scale4, flush)
    has_g, has_b = gamma.size > 0, beta.size > 0
    for r in range(rows):
        var = _store_plain(sums[r] * inv_k)
        inv = _store_plain(np.float32(1.0) / np.sqrt(_store_plain(var + eps)))
        for i in range(k):
            y = _store_plain(d[r, i] * inv)
            if has_g:
                y = _store_plain(y * gamma[i])
            if has_b:
                y = _store_plain(y + beta[i])
            out[r, i] = y
    return True


def _finite(a):
    """Whether every element of a flat float32 array is finite (an unsigned integer max)."""
    top = np.uint32(0)
    for i in range(a.shape[0]):
        top = max(top, _compiled_reduce._abs_bits(a[i]))
    return top < np.uint32(0x7F800000)


def _mean(s, k):
    """A row mean as np.mean(dtype=float32) finishes it: the float32 sum divided by the count
    in float64 (numpy's count is an intp), stored as float32."""
    return np.float32(np.float64(s) / np.float64(k))


def normalize_exact(lanes, eps, gamma, beta, d, out):
    """norm._normalize_last in exact numerics on finite lanes, gamma and beta (rows of lanes
    [R, K] C-contiguous): mean, d = lanes - mean, var = mean(d * d), d / sqrt(var + eps),
    then * gamma and + beta when not empty; numpy's operations in numpy's order, so its bits.
    False (out unset) on an infinity or NaN, which the caller leaves to numpy."""
    if not (_finite(lanes.reshape(-1)) and _finite(gamma) and _finite(beta)):
        return False
    rows, k = lanes.shape
    means, vars_ = np.empty(rows, np.float32), np.empty(rows, np.float32)
    _compiled_reduce.numpy_row_sums(lanes, means)          # (in passes over all rows: each vectorises)
    for r in range(rows):
        mean = _mean(means[r], k)
        means[r] = mean
        for i in range(k):
            v = lanes[r, i] - mean
            d[r, i] = v * v
    _compiled_reduce.numpy_row_sums(d, vars_)
    for r in range(rows):
        mean, root = means[r], np.sqrt(_mean(vars_[r], k) + eps)
        for i in range(k):
            out[r, i] = (lanes[r, i] - mean) / root
    if gamma.size:
        for r in range(rows):
            for i in range(k):
                out[r, i] = out[r, i] * gamma[i]
    if beta.size:
        for r in range(rows):
            for i in range(k):
                out[r, i] = out[r, i] + beta[i]
    return True


def _compile():
    """The numba versions, from numba's cache when it has them (called once sim/compiled.py's
    kernels are compiled: the helpers named above are numba functions then)."""
    import numba
    from numba.core import types as t

    g = globals()
    for name in ("_store", "_scale_row", "_store_plain"):     # numpy's error model: 1 / sqrt(0) is inf
        g[name] = numba.njit(cache=True, error_model="numpy")(g[name])
    if compiled._HARDWARE_FP16:
        g["_store_plain"] = numba.njit(cache=True)(_store_hardware)
    ro = lambda nd: t.Array(t.float32, nd, "C", readonly=True)       # noqa: E731
    rw = t.Array(t.float32, 2, "C")
    f32, flag = t.float32, t.boolean
    sigs = {"centre": (ro(2), ro(1), f32, flag, flag, f32, rw, rw),
            "scale": (ro(2), ro(1), f32, f32, ro(1), ro(1), flag, f32, rw)}
    for name, sig in sigs.items():      # as globals: normalize4 calls them
        g[name] = numba.njit(t.void(*sig), cache=True, nogil=True, error_model="numpy")(g[name])
    four = None
    if _compiled_reduce.kernels() is not None:      # its _plain and _row_sums compiled
        four = numba.njit(t.boolean(ro(2), f32, f32, ro(1), ro(1), flag, f32, flag, rw, rw, rw),
                          cache=True, nogil=True, error_model="numpy")(normalize4)
    exact = None
    if _compiled_reduce.kernels() is not None:
        for name in ("_finite", "_mean"):
            g[name] = numba.njit(cache=True)(g[name])
        exact = numba.njit(t.boolean(ro(2), f32, ro(1), ro(1), rw, rw), cache=True, nogil=True,
                           error_model="numpy")(normalize_exact)
    return g["centre"], g["scale"], four, exact


kernels = compiled.LazyKernel("normalization kernels", _compile)
