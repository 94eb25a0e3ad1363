"""const and the compressed-weight ops (guide ch. 7, 25). The simulator decompresses them
once at construction; in a chip profile the dense result is fp16, as the datapath rebuilds
every compressed weight to fp16 before the multiplier (guide ch. 3)."""
from __future__ import annotations

import numpy as np

from ..fp16 import F32
from ..registry import kernel


@kernel("const")
def const(c, val):
    return val


def _along(v, axis: int, rank: int) -> np.ndarray:
    v = np.asarray(v, dtype=F32)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    shape = [1] * rank
    shape[axis] = v.size
    return v.reshape(shape)


@kernel("constexpr_affine_dequantize")
def constexpr_affine_dequantize(c, quantized_data, zero_point, scale, axis):
    q = np.asarray(quantized_data)
    ax = int(axis) % q.ndim
    return (q.astype(F32) - _along(zero_point, ax, q.ndim)) * _along(scale, ax, q.ndim)


@kernel("constexpr_lut_to_dense")
def constexpr_lut_to_dense(c, indices, lut, vector_axis):
    idx = np.asarray(indices).astype(np.intp)
    r = idx.ndim
    palettes = lut.shape[r]
    if idx.size and (idx.min() < 0 or idx.max() >= palettes):
        raise c.fail(f"indices {idx.min()}..{idx.max()} fall outside the {palettes}-entry palette")
    # Palette group of each element along each axis: position // (axis size / groups).
    groups = tuple(np.arange(n).reshape([-1 if i == a else 1 for i in range(r)]) // (n // lut.shape[a])
                   for a, n in enumerate(idx.shape))
    vals = lut[groups + (idx,)]                                 # [*indices.shape, vector_size]
    vs = lut.shape[-1]
    if vs == 1:
        return vals[..., 0]
    ax = int(vector_axis) % r
    vals = np.moveaxis(vals, -1, ax + 1)                        # the vector follows its index
    return vals.reshape(c.out_shape())


@kernel("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(c, nonzero_data, mask):
    keep = np.asarray(mask) != 0
    data = np.asarray(nonzero_data).reshape(-1)
    if int(keep.sum()) != data.size:
        raise c.fail(f"mask sets {int(keep.sum())} positions but nonzero_data has {data.size} values")
    out = np.zeros(keep.shape, dtype=data.dtype)
    out[keep] = data
    return out


@kernel("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(c, data, scale, offset):
    d = np.asarray(data).astype(F32)

    def blocks(v):
        v = np.asarray(v, dtype=F32)
        for a, (n, b) in enumerate(zip(d.shape, v.shape)):
            if n != b:
                v = np.repeat(v, n // b, axis=a)
        return v
    if offset is not None:
        d = d - blocks(offset)
    return d * blocks(scale)
