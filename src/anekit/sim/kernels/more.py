"""Kernels of ir/ops/more.py: scatters, tensor construction, argsort, per-channel
activations, pixel_unshuffle, hyperbolic / inverse trigonometric math and rnn.

Floats compute in float32 on storage values and the executor rounds (finish="round");
data movement returns storage values unchanged (finish="keep")."""
from __future__ import annotations

import numpy as np

from ..fp16 import F32
from ..registry import kernel
from .constexpr import constexpr_blockwise_shift_scale as _blockwise, constexpr_lut_to_dense as _lut_to_dense
from .reduce import lanes_last
from .recurrent import _rnn_activation

_COMBINE = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
            "max": np.maximum, "min": np.minimum}


def _check_indices(c, indices, size, what):
    if indices.size == 1 and indices.dtype.kind in "iu" and 0 <= indices.reshape(-1)[0] < size:
        return indices      # one index in range, taken as it is (a loop trip's scatter)
    bad = (indices < -size) | (indices >= size)
    if bad.any():
        raise c.fail(f"index {int(indices[bad].reshape(-1)[0])} is out of range for {what} of size {size}")
    return np.where(indices < 0, indices + size, indices)


def _scatter_into(c, out, where, updates, mode):
    """out[where] (op)= updates, repeated positions applied in order (np.ufunc.at)."""
    if mode == "update":
        out[where] = updates
    else:
        fn = _COMBINE[mode]
        if mode == "div" and out.dtype.kind in "iu":
            fn = np.floor_divide
        fn.at(out, where, updates)
    return out


def _as_type(data, updates):
    dt = np.int32 if data.dtype.kind in "iu" else F32
    return np.array(data, dt), np.asarray(updates, dt)


@kernel("scatter", program=lambda c, consts: ("scatter",))
def scatter(c, data, indices, updates, axis, mode):
    out, upd = _as_type(data, updates)
    ax = axis % data.ndim
    idx = _check_indices(c, indices, data.shape[ax], f"axis {ax}")
    if ax == 0:                 # moveaxis would return `out` and `upd` themselves
        return _scatter_into(c, out, (idx,), upd, mode)
    moved, upd_m = np.moveaxis(out, ax, 0), np.moveaxis(upd, ax, 0)      # views: writes land in out
    _scatter_into(c, moved, (idx,), upd_m, mode)
    return out


@kernel("scatter_along_axis")
def scatter_along_axis(c, data, indices, updates, axis, mode):
    out, upd = _as_type(data, updates)
    ax = axis % data.ndim
    idx = _check_indices(c, indices, data.shape[ax], f"axis {ax}")
    grid = list(np.indices(indices.shape, sparse=True))
    grid[ax] = idx
    return _scatter_into(c, out, tuple(grid), upd, mode)


@kernel("scatter_nd")
def scatter_nd(c, data, indices, updates, mode):
    out, upd = _as_type(data, updates)
    k = indices.shape[-1]
    cols = tuple(_check_indices(c, indices[..., j], data.shape[j], f"axis {j}") for j in range(k))
    return _scatter_into(c, out, cols, upd, mode)


_NUMPY = {"fp16": F32, "fp32": F32, "int32": np.int32, "bool": np.bool_}


@kernel("fill", finish="keep")
def fill(c, shape, value):
    return np.full(tuple(shape), value, _NUMPY[c.out_dtype()])


@kernel("shape", finish="keep")
def shape(c, x):
    return np.array(x.shape or (1,), np.int32)


@kernel("range_1d")
def range_1d(c, end, start, step):
    n = c.out_shape()[0]
    return (start + step * np.arange(n, dtype=np.float64)).astype(_NUMPY[c.out_dtype()])


@kernel("one_hot")
def one_hot(c, indices, one_hot_vector_size, axis, on_value, off_value):
    ax = axis % (indices.ndim + 1)
    hit = np.expand_dims(indices, ax) == np.arange(one_hot_vector_size).reshape(
        [-1 if i == ax else 1 for i in range(indices.ndim + 1)])
    return np.where(hit, on_value, off_value).astype(_NUMPY[c.out_dtype()])


@kernel("band_part", finish="keep")
def band_part(c, x, lower, upper):
    m, n = x.shape[-2:]
    i, j = np.arange(m)[:, None], np.arange(n)[None, :]
    keep = ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))
    return np.where(keep, x, np.zeros((), x.dtype))


@kernel("argsort", finish="keep")
def argsort(c, x, axis, ascending):
    key = x if ascending else -x.astype(np.float64)       # stable both ways: ties keep their order
    return np.argsort(key, axis=axis, kind="stable").astype(np.int32)


def _channel(v, rank):
    return np.asarray(v, F32).reshape([-1] + [1] * (rank - 2))


@kernel("prelu")
def prelu(c, x, alpha):
    return np.where(x >= 0, x, x * _channel(alpha, x.ndim))


@kernel("softplus_parametric")
def softplus_parametric(c, x, alpha, beta):
    return _channel(alpha, x.ndim) * np.logaddexp(F32(0), _channel(beta, x.ndim) * x)


@kernel("threshold")
def threshold(c, x, alpha):
    return np.maximum(x, F32(alpha))


@kernel("pixel_unshuffle", finish="keep")
def pixel_unshuffle(c, x, downscale_factor):
    f = downscale_factor
    n, ch, h, w = x.shape
    y = x.reshape(n, ch, h // f, f, w // f, f).transpose(0, 1, 3, 5, 2, 4)
    return y.reshape(n, ch * f * f, h // f, w // f)


_MATH = {"sinh": np.sinh, "cosh": np.cosh, "asin": np.arcsin, "acos": np.arccos, "atanh": np.arctanh,
         "asinh": np.arcsinh, "acosh": np.arccosh}


@kernel(*_MATH)
def unary_math(c, x):
    return _MATH[c.type](x.astype(F32, copy=False))


@kernel("rnn")
def rnn(c, x, initial_h, weight_ih, weight_hh, bias, direction, output_sequence, activation):
    """float32 recurrence; the executor rounds the outputs to the I/O dtype (as lstm)."""
    act = _rnn_activation(activation)
    x, h = np.asarray(x, F32), np.asarray(initial_h, F32)
    w_ih, w_hh = np.asarray(weight_ih, F32), np.asarray(weight_hh, F32)
    pre = np.einsum("sbi,hi->sbh", x, w_ih) + (0 if bias is None else np.asarray(bias, F32))
    steps = range(x.shape[0] - 1, -1, -1) if direction == "reverse" else range(x.shape[0])
    seq = np.empty((x.shape[0],) + h.shape, F32)
    for t in steps:
        h = act(pre[t] + h @ w_hh.T)
        seq[t] = h
    return (seq if output_sequence else h[None]), h


def _along(v, ndim, axis):
    """A scalar, or a per-channel vector shaped to broadcast along `axis`."""
    v = np.asarray(v)
    if v.ndim == 0 or axis is None:
        return v
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return v.reshape(shape)


_QUANT_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}


@kernel("quantize")
def quantize(c, input, zero_point, scale, axis, output_dtype):
    lo, hi = _QUANT_RANGE[output_dtype]
    zp = 0 if zero_point is None else _along(zero_point, input.ndim, axis).astype(np.int32)
    q = np.round(input / _along(scale, input.ndim, axis).astype(F32)) + zp
    return np.clip(q, lo, hi).astype(np.int32)


@kernel("dequantize")
def dequantize(c, input, zero_point, scale, axis):
    zp = 0 if zero_point is None else _along(zero_point, input.ndim, axis).astype(np.int32)
    return (input - zp).astype(F32) * _along(scale, input.ndim, axis).astype(F32)


@kernel("einsum", finish="keep")
def einsum(c, values, equation):
    """Through the MAC model as a matmul per h: [..., h, c, w] @ [..., h, w, u]."""
    x, y = values
    a = np.swapaxes(x, -2, -3)                      # [..., h, c, w]
    b = np.moveaxis(y, -2, -3)                      # [..., h, w, u]
    return np.swapaxes(c.nx.matmul(a, b), -2, -3).reshape(c.out_shape())


def _pixel_coordinate(v, size, mode, align_corners):
    """A coordinate along an axis of `size` pixels in pixel units (pixel i at i)."""
    if mode == "unnormalized":
        return v
    if mode == "normalized_zero_to_one":
        v = v * 2.0 - 1.0
    return (v + 1.0) / 2.0 * (size - 1) if align_corners else ((v + 1.0) * size - 1.0) / 2.0


def _reflect(v, low, high):
    """Mirror v into [low, high] (torch's reflect_coordinates)."""
    span = high - low
    if span <= 0:
        return np.zeros_like(v)
    d = np.abs(v - low)
    flips = np.floor(d / span)
    extra = d - flips * span
    return np.where(flips % 2 == 0, low + extra, high - extra)


def _pad_coordinate(v, size, padding_mode):
    if padding_mode == "reflection":          # about the centres of the edge pixels
        v = _reflect(v, 0.0, size - 1.0)
    elif padding_mode == "symmetric":         # about the outer edges of the edge pixels
        v = _reflect(v, -0.5, size - 0.5)
    if padding_mode != "constant":
        v = np.clip(v, 0.0, size - 1.0)
    return v


@kernel("resample")
def resample(c, x, coordinates, sampling_mode, padding_mode, padding_value, coordinates_mode, align_corners):
    return _sample(x, coordinates, sampling_mode, padding_mode, padding_value, coordinates_mode,
                   align_corners).reshape(c.out_shape()).astype(F32)


def _base_grid(n: int, align_corners: bool):
    """Normalized [-1, 1] positions of n output pixels (torch affine_grid's)."""
    if n == 1:
        return np.zeros(1)
    return np.linspace(-1.0, 1.0, n) if align_corners else (np.arange(n) * 2.0 + 1.0) / n - 1.0


@kernel("affine")
def affine(c, x, transform_matrix, output_height, output_width, sampling_mode, padding_mode, padding_value,
           coordinates_mode, align_corners):
    """Coordinates x' = a0 x + a1 y + a2, y' = b0 x + b1 y + b2 of each output pixel's
    normalized position, then sampled as resample does."""
    gx, gy = np.meshgrid(_base_grid(output_width, align_corners), _base_grid(output_height, align_corners))
    m = np.asarray(transform_matrix, np.float64).reshape(-1, 2, 3)                  # [D, 2, 3]
    pts = np.stack([gx, gy, np.ones_like(gx)], -1)                                  # [H2, W2, 3]
    grid = np.einsum("hwk,dik->dhwi", pts, m)                                      # [D, H2, W2, 2]
    return _sample(x, grid, sampling_mode, padding_mode, padding_value, coordinates_mode,
                   align_corners).reshape(c.out_shape()).astype(F32)


def _sample(x, coordinates, sampling_mode, padding_mode, padding_value, coordinates_mode, align_corners):
    b, ch, h, w = x.shape
    grid = np.broadcast_to(np.asarray(coordinates, np.float64), (b,) + coordinates.shape[1:])
    ix = _pad_coordinate(_pixel_coordinate(grid[..., 0], w, coordinates_mode, align_corners), w, padding_mode)
    iy = _pad_coordinate(_pixel_coordinate(grid[..., 1], h, coordinates_mode, align_corners), h, padding_mode)
    flat = x.reshape(b, ch, h * w).astype(np.float64)
    fill = float(padding_value) if padding_mode == "constant" else 0.0

    def at(yy, xx):
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1)).astype(np.int64).reshape(b, 1, -1)
        vals = np.take_along_axis(flat, np.broadcast_to(idx, (b, ch, idx.shape[-1])), axis=2)
        return np.where(inside.reshape(b, 1, -1), vals, fill)

    if sampling_mode == "nearest":
        out = at(np.rint(iy), np.rint(ix))
    else:
        x0, y0 = np.floor(ix), np.floor(iy)
        wx, wy = (ix - x0).reshape(b, 1, -1), (iy - y0).reshape(b, 1, -1)
        out = ((1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1))
               + wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1)))
    return out


def _dense(c, mask, nonzero):
    keep = np.asarray(mask) != 0
    data = np.asarray(nonzero).reshape(-1)
    if int(keep.sum()) != data.size:
        raise c.fail(f"mask sets {int(keep.sum())} positions but there are {data.size} nonzero values")
    out = np.zeros(keep.shape, data.dtype)
    out[keep] = data
    return keep, out


@kernel("constexpr_lut_to_sparse", finish="keep")
def constexpr_lut_to_sparse(c, indices_mask, indices_nonzero_data, lut, vector_axis):
    """Densify the indices, look them up as constexpr_lut_to_dense does, keep the masked values
    (row-major order, the mask widened along vector_axis)."""
    keep, idx = _dense(c, indices_mask, indices_nonzero_data)
    dense = _lut_to_dense(c, idx, lut, vector_axis)
    if lut.shape[-1] > 1:
        keep = np.repeat(keep, lut.shape[-1], axis=int(vector_axis) % keep.ndim)
    return keep.astype(np.uint8), np.asarray(dense[keep], F32)


@kernel("constexpr_sparse_blockwise_shift_scale", finish="keep")
def constexpr_sparse_blockwise_shift_scale(c, data_mask, nonzero_data, scale, offset):
    keep, data = _dense(c, data_mask, nonzero_data)
    dense = _blockwise(c, data, scale, offset)
    return keep.astype(np.uint8), np.asarray(dense[keep], F32)


@kernel("clamped_relu")
def clamped_relu(c, x, alpha, beta):
    return np.minimum(np.where(x >= 0, x, x * F32(alpha)), F32(beta))


@kernel("scaled_tanh")
def scaled_tanh(c, x, alpha, beta):
    return F32(alpha) * np.tanh(F32(beta) * x)


@kernel("reduce_log_sum")
def reduce_log_sum(c, x, axes, keep_dims):
    """The sum through the accumulator model as reduce_sum, then its log."""
    return np.log(c.nx.store(c.nx.wide_sum(lanes_last(x, axes)))).reshape(c.out_shape())


@kernel("flatten2d", finish="keep")
def flatten2d(c, x, axis):
    return x.reshape(c.out_shape())
