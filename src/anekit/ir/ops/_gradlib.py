"""Helpers for the gradient rules declared with the ops (`@<spec>.defgrad`).

Every helper builds forward ops only, so a backward graph is an ordinary program that
checks, estimates, simulates and runs like the forward one (guide ch. 15: "a backward pass
built from forward operations").
"""
from __future__ import annotations

import math

import numpy as np

from ..builder import make_const
from ..declared import F
from ..graph import Tensor

FLOAT = ("fp16", "fp32")


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum `g` over the axes numpy broadcasting added or stretched to reach `shape`."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.rank - len(shape)
    if lead > 0:
        g = F.reduce_sum(g, axes=list(range(lead)), keep_dims=False) if len(shape) else \
            F.reduce_sum(g, keep_dims=False)
    stretched = [i for i, (n, m) in enumerate(zip(g.shape, shape)) if m == 1 and n != 1]
    if stretched:
        g = F.reduce_sum(g, axes=stretched, keep_dims=True)
    if g.shape != shape:   # only size-1 axes differ now
        g = F.reshape(g, shape=list(shape))
    return g


def expand_to(g: Tensor, shape: tuple) -> Tensor:
    """Broadcast `g` (same rank, size-1 axes) up to `shape` with tile (a forward op)."""
    if g.shape == tuple(shape):
        return g
    reps = [m // n for n, m in zip(g.shape, shape)]
    return F.tile(g, reps=reps)


def reduced_keep_shape(x_shape, axes, keep_dims) -> tuple:
    """Shape a reduction's output has with keep_dims=True (to re-broadcast a cotangent)."""
    r = len(x_shape)
    ax = set(range(r)) if axes is None else {a % r for a in axes}
    return tuple(1 if i in ax else s for i, s in enumerate(x_shape))


def zeros(shape, dtype) -> Tensor:
    return make_const(np.zeros(shape), dtype)


def same_pads(size, k, stride, dil, pad_type) -> tuple[int, int]:
    """(before, after) padding MIL's "same" / "same_lower" give one spatial axis."""
    total = max((-(-size // stride) - 1) * stride + dil * (k - 1) + 1 - size, 0)
    small = total // 2
    return (small, total - small) if pad_type == "same" else (total - small, small)


def window_pads(op, x_shape, k, strides, dil) -> list[tuple[int, int]]:
    """Per-spatial-axis (before, after) padding of a conv or pool op, whatever its pad_type."""
    pad_type = op.attr("pad_type")
    pad = op.attr("pad")
    out = []
    for i in range(len(k)):
        if pad_type == "custom":
            out.append((int(pad[2 * i]), int(pad[2 * i + 1])))
        elif pad_type in ("same", "same_lower"):
            out.append(same_pads(x_shape[2 + i], k[i], strides[i], dil[i], pad_type))
        else:
            out.append((0, 0))
    return out


def adjoint_window(x_shape, out_shape, k, strides, dil, pads):
    """conv_transpose arguments that undo a window op's geometry: custom pads and the
    output_shape that restores x's spatial size (rows the forward op never read get zero)."""
    flat, need_shape = [], False
    for i in range(len(k)):
        size, o = x_shape[2 + i], out_shape[2 + i]
        full = (o - 1) * strides[i] + dil[i] * (k[i] - 1) + 1
        pb = pads[i][0]
        pe = max(full - pb - size, 0)
        flat += [pb, pe]
        need_shape |= full - pb - pe != size
    return flat, (list(x_shape) if need_shape else None)


def embed(g: Tensor, full_shape, begins, strides) -> Tensor:
    """Scatter `g` into zeros of `full_shape`: element j of axis i lands at begins[i] + j *
    strides[i] (the adjoint of a strided slice), using concat, reshape and pad only."""
    for i, s in enumerate(strides):
        if s == 1 or g.shape[i] == 1:
            continue
        n, shape = g.shape[i], list(g.shape)
        a, c = numel(shape[:i]), numel(shape[i + 1:])
        e = F.reshape(g, shape=[a, n, 1, c])                     # a rank-4 view, whatever g's rank
        e = F.concat([e, zeros([a, n, s - 1, c], g.dtype)], axis=2)
        e = F.slice_by_size(F.reshape(e, shape=[a, n * s, c]), begin=[0, 0, 0],
              size=[a, (n - 1) * s + 1, c])                         # drop the trailing zeros
        g = F.reshape(e, shape=shape[:i] + [(n - 1) * s + 1] + shape[i + 1:])
    pads = []
    for i, (n, full, start) in enumerate(zip(g.shape, full_shape, begins)):
        pads += [start, full - start - n]
    if any(pads):
        g = F.pad(g, pad=pads)
    return g


def flat_taps(k) -> list[tuple[int, ...]]:
    return list(np.ndindex(*k)) if k else [()]


def numel(shape) -> int:
    return int(math.prod(shape))


def narrow(t: Tensor, begin, size) -> Tensor:
    """slice_by_size that keeps a nonzero offset off the width (last) axis: such a slice goes
    through a crop that saturates above 4094 on M1/M2 (guide ch. 3, ch. 15), and cotangents
    carry the loss scale, so the width offset is taken on the height axis of a transposed view
    (after the other axes are cut in place)."""
    begin, size = list(begin), list(size)
    if t.rank < 2 or begin[-1] == 0:
        return F.slice_by_size(t, begin=begin, size=size)
    w_begin, w_size = begin[-1], size[-1]
    if any(begin[:-1]) or list(size[:-1]) != list(t.shape[:-1]):
        t = F.slice_by_size(t, begin=begin[:-1] + [0], size=size[:-1] + [t.shape[-1]])
    perm = list(range(t.rank - 2)) + [t.rank - 1, t.rank - 2]
    view = F.transpose(t, perm=perm)
    cut = F.slice_by_size(view, begin=[0] * (t.rank - 2) + [w_begin, 0],
            size=list(view.shape[:-2]) + [w_size, view.shape[-1]])
    return F.transpose(cut, perm=perm)


def conv_patches(x, k, strides, dil, pads, out_sp, groups):
    """Patch expansion of a convolution's input: one strided slice of the padded input per
    kernel tap, stacked on the channel axis as [N, groups, taps * Cin/groups, positions]. A
    matmul against it is the convolution (runtime-weight lowering) or its weight gradient."""
    n, cin = x.shape[:2]
    cg, positions = cin // groups, numel(out_sp)
    if any(p for pair in pads for p in pair):
        x = F.pad(x, pad=[v for pair in pads for v in pair])
    cols = []
    for tap in flat_taps(k):
        begin = [0, 0] + [t * d for t, d in zip(tap, dil)]
        end = [n, cin] + [t * d + (o - 1) * s + 1 for t, d, o, s in zip(tap, dil, out_sp, strides)]
        patch = F.slice_by_index(x, begin=begin, end=end, stride=[1, 1, *strides])   # [N, Cin, *out]
        cols.append(F.reshape(patch, shape=[n, groups, cg, positions]))
    return cols[0] if len(cols) == 1 else F.concat(cols, axis=2)


def pass_at_or_above_alpha(op, gs) -> dict:
    """Gradient of an op that passes x where x >= alpha (threshold, thresholded_relu)."""
    x = op.inputs["x"]
    return {"x": F.select(x >= op.attr("alpha"), gs[0], 0.0)}
