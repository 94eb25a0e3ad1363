"""Data movement: values pass through unchanged (already in storage form), except the
width-slice crop gain of H13/H14 (guide ch. 3 "Saturation hazard")."""
from __future__ import annotations

import numpy as np

from ...ir.ops.shape import slice_index_plan
from ..registry import kernel


@kernel("reshape", finish="keep", reshape_only=True)
def reshape(c, x, shape):
    return x.reshape(c.out_shape())      # the declared shape has -1 and 0 resolved


@kernel("squeeze", finish="keep", reshape_only=True)
def squeeze(c, x, axes):
    return x.reshape(c.out_shape())


@kernel("expand_dims", finish="keep", reshape_only=True)
def expand_dims(c, x, axes):
    return x.reshape(c.out_shape())


@kernel("transpose", finish="keep")
def transpose(c, x, perm):
    return np.transpose(x, perm)


@kernel("concat", finish="keep")
def concat(c, values, axis, interleave):
    if interleave and len(values) > 1:
        ax = axis % values[0].ndim
        return np.stack(values, axis=ax + 1).reshape(c.out_shape())
    return np.concatenate(values, axis=axis)


@kernel("split", finish="keep")
def split(c, x, num_splits, split_sizes, axis):
    ax = axis % x.ndim
    sizes = [c.out_shape(i)[ax] for i in range(len(c.op.outputs))]
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=ax))


@kernel("stack", finish="keep")
def stack(c, values, axis):
    return np.stack(values, axis=axis)


@kernel("slice_by_index", finish="keep")
def slice_by_index(c, x, begin, end, stride, begin_mask, end_mask, squeeze_mask):
    # The plan depends on the constants and x's shape only: made once per op and shape.
    plan = c.cache.get(("slices", x.shape))
    if plan is None:
        slices, _ = slice_index_plan(x.shape, begin, end, stride, begin_mask, end_mask, squeeze_mask)
        start = slices[-1].indices(x.shape[-1])[0] if x.ndim else 0
        plan = c.cache["slices", x.shape] = (tuple(slices), start != 0)
    y = x[plan[0]].reshape(c.out_shape())
    return c.nx.width_slice(y) if plan[1] else y


@kernel("slice_by_size", finish="keep")
def slice_by_size(c, x, begin, size):
    index = []
    for b, s, n in zip(begin, size, x.shape):
        b = b + n if b < 0 else b
        index.append(slice(b, n if s == -1 else b + s))
    y = x[tuple(index)]
    return c.nx.width_slice(y) if x.ndim and index[-1].start != 0 else y


@kernel("pad", finish="keep")
def pad(c, x, pad, mode, constant_val):
    k = len(pad) // 2
    widths = [(0, 0)] * (x.ndim - k) + [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(k)]
    if mode == "constant":
        value = c.nx.const(constant_val) if x.dtype.kind == "f" else constant_val
        if len(widths) != x.ndim or any(lo < 0 or hi < 0 for lo, hi in widths):
            return np.pad(x, widths, mode="constant", constant_values=value)   # it reports the error
        # np.pad's result by a fill and one copy (np.pad's generic route costs ~30 us a call)
        out = np.full(tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, widths)), value, x.dtype)
        out[tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, widths))] = x
        return out
    return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")


@kernel("tile", finish="keep")
def tile(c, x, reps):
    reps = tuple(reps)
    if len(reps) == x.ndim and all(r == 1 or n == 1 for n, r in zip(x.shape, reps)):
        # Only axes of length 1 repeat, where tiling is repeating (ndarray.repeat: a few times
        # cheaper than np.tile's Python wrapper at a model's small sizes).
        y = x.copy() if all(r == 1 for r in reps) else x
        for ax, r in enumerate(reps):
            if r != 1:
                y = y.repeat(r, axis=ax)
        return y
    return np.tile(x, reps)


@kernel("gather", finish="keep", program=lambda c, consts: ("gather",))
def gather(c, x, indices, axis, batch_dims):
    ax = axis % x.ndim
    idx = _wrap_indices(c, indices, x.shape[ax], ax)
    if batch_dims == 0:
        return np.take(x, idx, axis=ax)
    lead = x.shape[:batch_dims]
    xb = x.reshape((-1,) + x.shape[batch_dims:])
    ib = idx.reshape((-1,) + idx.shape[batch_dims:])
    parts = [np.take(xb[i], ib[i], axis=ax - batch_dims) for i in range(xb.shape[0])]
    return np.stack(parts).reshape(lead + parts[0].shape)


@kernel("crop", finish="keep")
def crop(c, x, crop_height, crop_width):
    (top, bottom), (left, right) = crop_height, crop_width
    h, w = x.shape[-2:]
    y = x[..., top:h - bottom, left:w - right]
    return c.nx.width_slice(y) if left else y        # a crop with a width offset is a width slice


@kernel("pixel_shuffle", finish="keep")
def pixel_shuffle(c, x, upscale_factor):
    f = upscale_factor
    n, ch, h, w = x.shape
    y = x.reshape(n, ch // (f * f), f, f, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(c.out_shape())


@kernel("reverse", finish="keep")
def reverse(c, x, axes):
    return np.flip(x, axis=None if axes is None else tuple(axes))


def _wrap_indices(c, indices: np.ndarray, n: int, ax: int) -> np.ndarray:
    if indices.size and (indices.min() < -n or indices.max() >= n):
        raise c.fail(f"indices {indices.min()}..{indices.max()} fall outside [{-n}, {n}) "
                     f"for axis {ax} of size {n}")
    return np.where(indices < 0, indices + n, indices)


@kernel("gather_along_axis", finish="keep")
def gather_along_axis(c, x, indices, axis):
    ax = axis % x.ndim
    return np.take_along_axis(x, _wrap_indices(c, indices, x.shape[ax], ax), axis=ax)


@kernel("slice_update", finish="keep")
def slice_update(c, x, update, begin, end, stride, begin_mask, end_mask, squeeze_mask):
    slices, _ = slice_index_plan(x.shape, begin, end, stride, begin_mask, end_mask, squeeze_mask)
    out = np.array(x, copy=True)
    target = out[tuple(slices)]
    target[...] = update.reshape(target.shape)
    return out


@kernel("gather_nd", finish="keep")
def gather_nd(c, x, indices, batch_dims):
    b, k = batch_dims, indices.shape[-1]
    dims = x.shape[b:b + k]
    for j, n in enumerate(dims):
        bad = (indices[..., j] < -n) | (indices[..., j] >= n)
        if bad.any():
            raise c.fail(f"indices[..., {j}] = {indices[..., j][bad].flat[0]} falls outside "
                         f"[{-n}, {n}) for axis {b + j} of size {n}")
    idx = np.where(indices < 0, indices + np.asarray(dims, indices.dtype), indices)
    lead = x.shape[:b]
    nb = int(np.prod(lead, dtype=np.int64))
    xb = x.reshape((nb,) + x.shape[b:])
    ib = idx.reshape((nb, -1, k))
    rows = np.arange(nb)[:, None]
    out = xb[(rows,) + tuple(ib[..., j] for j in range(k))]      # [nb, m, *x.shape[b + k:]]
    return out.reshape(indices.shape[:-1] + x.shape[b + k:])


_FILL_DTYPES = {"fp16": np.float32, "fp32": np.float32, "int32": np.int32, "bool": np.bool_}


@kernel("fill_like")
def fill_like(c, ref_tensor, value):
    return np.full(ref_tensor.shape, value, _FILL_DTYPES[c.out_dtype()])
