"""Pooling and nearest-neighbour upsampling."""
from __future__ import annotations


import numpy as np

from ..fp16 import F32
from ..registry import kernel
from .conv import conv_pads, pad_spatial


def _padded(c, x, kernel_sizes, strides, pad_type, pad, fill):
    """x padded as the pad type says (with `fill`), the pad widths, and the padding kept in
    the average (everything but the extension ceil_mode adds)."""
    def plan():                                  # static shapes: once per op
        sp = x.ndim - 2
        k = tuple(kernel_sizes)
        st = tuple(strides or (1,) * sp)
        out = c.out_shape()[2:]
        pads = conv_pads(pad_type, pad, x.shape[2:], k, st, (1,) * sp)
        extra = [max(0, (o - 1) * s + kk - (n + b + e)) for o, s, kk, n, (b, e) in zip(out, st, k, x.shape[2:], pads)]
        return [(0, 0), (0, 0)] + [(b, e + ex) for (b, e), ex in zip(pads, extra)], pads
    widths, pads = c.cached("pad_plan", plan)
    return pad_spatial(x, widths[2:], fill), widths, pads


def _windows(c, xp, kernel_sizes, strides):
    """Windows [N, C, *out, *k] of the padded input."""
    sp = xp.ndim - 2
    strides = tuple(strides or (1,) * sp)
    out = c.out_shape()[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, tuple(kernel_sizes), axis=tuple(range(2, 2 + sp)))
    return win[(slice(None), slice(None)) + tuple(slice(0, o * s, s) for o, s in zip(out, strides))]


def _taps(c, x, kernel_sizes, strides, pad_type, pad, fill):
    """The padded input and, per window tap in C order, the strided view [N, C, *out] of the
    values that tap reads: a reduction over windows as a few whole-array operations instead
    of numpy's reduction over a 2k-axis strided view (10-60x slower for small windows)."""
    padded, widths, pads = _padded(c, x, kernel_sizes, strides, pad_type, pad, fill)
    k = tuple(kernel_sizes)
    index = c.cached("tap_index", lambda: _tap_index(c, x, kernel_sizes, strides))     # static shapes

    def tap(t):
        return padded[index[t]]
    return k, tap, lambda: _windows(c, padded, kernel_sizes, strides), widths, pads


@kernel("max_pool", finish="keep")
def max_pool(c, x, kernel_sizes, strides, pad_type, pad, ceil_mode):
    padded, _, _ = _padded(c, x, kernel_sizes, strides, pad_type, pad, -np.inf)
    first, *rest = c.cached("tap_index", lambda: _tap_index(c, x, kernel_sizes, strides)).values()
    acc = padded[first].copy()
    for t in rest:                          # taps in C order, as always (ties keep the later operand)
        np.maximum(acc, padded[t], out=acc)
    return acc


def _tap_index(c, x, kernel_sizes, strides) -> dict[tuple, tuple]:
    """Window tap (in C order) -> the index of its strided view [N, C, *out] into the padded
    input: built once per op (a pooling op on a small map is call-bound)."""
    sp = x.ndim - 2
    st, out = tuple(strides or (1,) * sp), c.out_shape()[2:]
    return {t: (slice(None), slice(None)) + tuple(slice(i, i + o * s, s) for i, o, s in zip(t, out, st))
            for t in np.ndindex(*tuple(kernel_sizes))}


def _window_sums(k, tap, win):
    """Sum over each window, in the order numpy's reduction over the window view takes for 2-D
    windows narrower than 8 (each row left to right, then the rows top to bottom), so results
    keep their bits; anything else takes that reduction itself."""
    if len(k) != 2 or k[1] >= 8:
        sp = len(k)
        return win().sum(axis=tuple(range(2 + sp, 2 + 2 * sp)), dtype=F32)
    total = None
    for i in range(k[0]):
        row = tap((i, 0)).copy()
        for j in range(1, k[1]):
            row += tap((i, j))
        total = row if total is None else np.add(total, row, out=total)
    return total


@kernel("avg_pool")
def avg_pool(c, x, kernel_sizes, strides, pad_type, pad, exclude_padding_from_average, ceil_mode):
    k, tap, win, widths, pads = _taps(c, x, kernel_sizes, strides, pad_type, pad, 0.0)
    sp = x.ndim - 2
    total = _window_sums(k, tap, win)
    strides = tuple(strides or (1,) * sp)

    def divisor():
        # The window's elements inside the input (exclude) or inside input + padding.
        mask = np.zeros(tuple(n + b + e for n, (b, e) in zip(x.shape[2:], widths[2:])), F32)
        inner = tuple(slice(b, b + n) if exclude_padding_from_average else slice(0, b + n + e)
                      for n, (b, _), (_, e) in zip(x.shape[2:], widths[2:], pads))
        mask[inner] = 1.0
        mwin = np.lib.stride_tricks.sliding_window_view(mask, tuple(kernel_sizes))
        out = c.out_shape()[2:]
        count = mwin[tuple(slice(0, o * s, s) for o, s in zip(out, strides))].sum(axis=tuple(range(sp, 2 * sp)))
        return np.maximum(count, F32(1.0))
    return total / c.cached("divisor", divisor)


@kernel("upsample_nearest_neighbor", finish="keep")
def upsample_nearest_neighbor(c, x, scale_factor_height, scale_factor_width):
    h, w = x.shape[-2:]
    oh, ow = c.out_shape()[-2:]
    rows = np.minimum(np.floor(np.arange(oh) / float(scale_factor_height)).astype(np.intp), h - 1)
    cols = np.minimum(np.floor(np.arange(ow) / float(scale_factor_width)).astype(np.intp), w - 1)
    return x[..., rows[:, None], cols[None, :]]




def _source_coords(out: int, size: int, factor: float, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Fractional source coordinate of each output row or column (MIL upsample_bilinear)."""
    dst = np.arange(out, dtype=np.float64)
    if align_corners:
        src = dst * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
    elif half_pixel:
        src = (dst + 0.5) / factor - 0.5
    else:
        src = dst / factor
    return np.clip(src, 0.0, size - 1)


def _lerp_plan(ndim: int, size: int, src: np.ndarray, axis: int):
    """The neighbours and weights of each output along `axis` (fixed per op: shapes are static)."""
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, size - 1)
    frac = (src - lo).astype(F32)
    shape = [1] * ndim
    shape[axis] = -1
    frac = frac.reshape(shape)
    return lo, hi, F32(1.0) - frac, frac


def _lerp_axis(x: np.ndarray, plan, axis: int) -> np.ndarray:
    lo, hi, keep, frac = plan
    return np.take(x, lo, axis=axis) * keep + np.take(x, hi, axis=axis) * frac


@kernel("upsample_bilinear")
def upsample_bilinear(c, x, scale_factor_height, scale_factor_width, align_corners, half_pixel_centers):
    if align_corners and half_pixel_centers:
        raise c.fail("align_corners and half_pixel_centers cannot both be true")
    half = (not align_corners) if half_pixel_centers is None else bool(half_pixel_centers)
    oh, ow = c.out_shape()[-2:]
    h, w = x.shape[-2:]
    rows = c.cached("rows", lambda: _lerp_plan(
        x.ndim, h, _source_coords(oh, h, float(scale_factor_height), align_corners, half), x.ndim - 2))
    cols = c.cached("cols", lambda: _lerp_plan(
        x.ndim, w, _source_coords(ow, w, float(scale_factor_width), align_corners, half), x.ndim - 1))
    return _lerp_axis(_lerp_axis(x, rows, x.ndim - 2), cols, x.ndim - 1)
