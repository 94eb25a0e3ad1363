"""Convolution and transposed convolution on the MAC model.

A convolution becomes one batched matmul: the weight [groups, Cout/g, taps * Cin/g] against
the input windows [N, groups, taps * Cin/g, positions]. Lanes are ordered tap-major, input
channels fastest (the kernel rasterizes taps; each tap reduces across channels). A 1x1
stride-1 convolution is a plain matmul on a reshaped view. Depthwise convolutions that are
too big to emulate accumulate tap by tap. The 2**15 port ceiling applies when a
convolution accumulates two or more taps (guide ch. 3); a single-tap one keeps 65504.
A transposed convolution runs as the convolution of the zero-stuffed input with the
flipped kernel, then crops.
"""
from __future__ import annotations

import math

import numpy as np

from .. import mac
from ..fp16 import F32, has_nan
from ..registry import kernel
from ..scratch import F32_BYTES, elements, scratch
from . import _compiled_conv


def conv_pads(pad_type, pad, size, k, strides, dil) -> list[tuple[int, int]]:
    """(before, after) padding per spatial axis under MIL's pad types."""
    out = []
    for i, (n, kk, s, d) in enumerate(zip(size, k, strides, dil)):
        if pad_type == "custom":
            out.append((int(pad[2 * i]), int(pad[2 * i + 1])))
        elif pad_type in ("same", "same_lower"):
            total = max((-(-n // s) - 1) * s + d * (kk - 1) + 1 - n, 0)
            small = total // 2
            out.append((small, total - small) if pad_type == "same" else (total - small, small))
        else:
            out.append((0, 0))
    return out


def pad_spatial(x: np.ndarray, widths, fill=0.0) -> np.ndarray:
    """x [N, C, *spatial] with (before, after) of `fill` on each spatial axis: np.pad's values
    without its per-call bookkeeping (tens of microseconds, more than the copy on small maps)."""
    if not any(b or e for b, e in widths):
        return x
    xp = np.full(x.shape[:2] + tuple(n + b + e for n, (b, e) in zip(x.shape[2:], widths)), fill, x.dtype)
    xp[(slice(None), slice(None)) + tuple(slice(b, b + n) for n, (b, _) in zip(x.shape[2:], widths))] = x
    return xp


def _windows(xp: np.ndarray, k, strides, dil, out_sp) -> np.ndarray:
    """[N, C, *out, *k] view of the padded input's windows."""
    n = len(k)
    eff = [d * (kk - 1) + 1 for kk, d in zip(k, dil)]
    v = np.lib.stride_tricks.sliding_window_view(xp, eff, axis=tuple(range(2, 2 + n)))
    index = (slice(None), slice(None))
    index += tuple(slice(0, o * s, s) for o, s in zip(out_sp, strides))
    index += tuple(slice(None, None, d) for d in dil)
    return v[index]


# im2col elements up to which one cached index gather beats padding + window view + strided
# copy (measured: 7-20x faster at 1e3-1e4 elements, slower at 6e5)
GATHER_MAX = 1 << 16


def _im2col_index(chw, k, strides, pads, dil, out_sp, groups) -> np.ndarray:
    """For each im2col entry [groups, taps * Cin/g, positions] (lanes tap-major, channels
    fastest, as the windows route lays them out), the flat index into one image [C, *spatial]
    followed by a zero: padding reads the zero (index C * prod(spatial))."""
    cin, size = chw[0], chw[1:]
    flat = np.arange(math.prod(chw), dtype=np.intp).reshape(chw)
    padded = np.pad(flat, [(0, 0)] + pads, constant_values=math.prod(chw))
    win = _windows(padded[None], k, strides, dil, out_sp)[0]           # [C, *out, *k]
    sp = len(size)
    win = win.reshape((groups, cin // groups) + tuple(out_sp) + tuple(k))
    order = (0,) + tuple(range(2 + sp, 2 + 2 * sp)) + (1,) + tuple(range(2, 2 + sp))
    return np.ascontiguousarray(win.transpose(order)).reshape(groups, -1, math.prod(out_sp))


def _gather_columns(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The im2col columns [N, groups, taps * Cin/g, positions] of x by a cached index: one
    gather instead of padding, a window view and a strided copy (the same values: the
    padding is +0 either way)."""
    n = x.shape[0]
    size = math.prod(x.shape[1:])
    ext = np.empty((n, size + 1), F32)
    ext[:, :size] = x.reshape(n, size)
    ext[:, size] = 0.0
    return ext.take(index, axis=1) if n > 1 else ext[0].take(index)[None]


def _weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """[Cout, Cin/g, *k] -> [groups, Cout/g, taps * Cin/g], lanes tap-major."""
    w = np.moveaxis(weight, 1, -1)                        # [Cout, *k, Cin/g]
    return np.ascontiguousarray(w.reshape(groups, weight.shape[0] // groups, -1))


def _plan(nx, x_shape, w_shape, strides, pads, dil, groups, out_sp):
    """What `convolve` decides from the static shapes alone: (route, ceiling, positions, live
    taps or None)."""
    n, cin = x_shape[:2]
    k = w_shape[2:]
    taps, cin_g = math.prod(k), cin // groups
    positions = math.prod(out_sp)
    if taps == 1 and all(s == 1 for s in strides) and not any(p for pair in pads for p in pair):
        route = "pointwise"
    elif cin_g == 1 and (nx.profile.exact or n * w_shape[0] * positions * taps * cin_g
                         > nx.profile.tile_emulation_max_products):
        route = "tap_by_tap"
    elif n * taps * cin * positions <= GATHER_MAX:
        route = "gather"
    else:
        route = "windows"
    live = None
    lanes = nx.profile.mac_tile_lanes
    if route == "gather" and not nx.profile.exact and lanes and cin_g % lanes == 0 \
            and mac.lane_route(taps * cin_g, positions, nx.profile):
        live = _live_taps(x_shape[2:], k, strides, pads, dil, out_sp)
        live = live if len(live) < taps else None
    return route, taps * cin_g >= 2, positions, live


def convolve(c, x, weight, strides, pads, dil, groups, out_sp, cache_key="w") -> np.ndarray:
    nx = c.nx
    n, cin = x.shape[:2]
    k = weight.shape[2:]
    route, ceiling, positions, live = c.cached(cache_key + "_plan", lambda: _plan(
        nx, x.shape, weight.shape, strides, pads, dil, groups, out_sp))          # static shapes
    wop = c.cached_shared(cache_key, lambda: nx.operand(_weight_matrix(weight, groups)[None], -1), "weight",
                          weight, groups)
    cin_g = cin // groups
    if route == "pointwise":
        cols = x.reshape(n, groups, cin_g, positions)
    elif route == "gather":
        index = c.cached(cache_key + "_im2col",
                         lambda: _im2col_index(x.shape[1:], k, strides, pads, dil, out_sp, groups))
        y = None if live is None else _live_only(c, nx, x, weight, wop, groups, live, ceiling, cache_key, index)
        if y is not None:
            return y.reshape((n, weight.shape[0]) + tuple(out_sp))
        cols = _gather_columns(x, index)
    else:
        xp = pad_spatial(x, pads)
        if route == "tap_by_tap":
            y = _depthwise(nx, x, xp, wop.array[0], groups, ceiling, k, strides, dil, out_sp,
                           lambda key, make: c.cached(cache_key + key, make, "weight"))
            if y is not None:
                return y
        win = _windows(xp, k, strides, dil, out_sp)       # [N, Cin, *out, *k]
        sp = len(k)
        win = win.reshape((n, groups, cin_g) + tuple(out_sp) + tuple(k))
        order = (0, 1) + tuple(range(3 + sp, 3 + 2 * sp)) + (2,) + tuple(range(3, 3 + sp))
        cols = np.ascontiguousarray(win.transpose(order)).reshape(n, groups, math.prod(k) * cin_g, positions)
    y = nx.matmul(wop, cols, ceiling)                     # [N, groups, Cout/g, positions]
    return y.reshape((n, weight.shape[0]) + tuple(out_sp))


def _live_taps(size, k, strides, pads, dil, out_sp) -> tuple[int, ...]:
    """The taps (C order) that read the input at some output position; the others read only
    padding (a 3x3 convolution with padding 1 on a 1x1 map reads data through its centre)."""
    def reads(axis, a):
        return any(0 <= o * strides[axis] + a * dil[axis] - pads[axis][0] < size[axis] for o in range(out_sp[axis]))
    return tuple(t for t, tap in enumerate(np.ndindex(*k)) if all(reads(i, a) for i, a in enumerate(tap)))


def _live_only(c, nx, x, weight, wop, groups, live, ceiling, cache_key, index):
    """The lane-model convolution over the live taps alone, or None. A tap that reads only
    padding gives lanes of +-0 products (finite weights), which fill whole tiles when the
    channels per group are a multiple of the tile width; a tile of zeros is +-0 and adding it
    leaves any nonzero accumulator as it is, so every output that is not zero has the full
    convolution's bits. Outputs of zero (whose sign the zero tiles could change) send the
    whole convolution back to the full route."""
    if not wop.finite:
        return None
    cin_g = x.shape[1] // groups

    def weights():
        wm = _weight_matrix(weight, groups)
        wm = wm.reshape(wm.shape[:2] + (-1, cin_g))[:, :, list(live)]
        return nx.operand(wm.reshape(wm.shape[:2] + (-1,))[None], -1)
    wlive = c.cached_shared(cache_key + "_live", weights, "weight", weight, groups, cin_g, tuple(live))
    sub = c.cached(cache_key + "_im2col_live", lambda: np.ascontiguousarray(
        index.reshape((groups, -1, cin_g, index.shape[-1]))[:, list(live)].reshape(groups, -1, index.shape[-1])))
    y = nx.matmul(wlive, _gather_columns(x, sub), ceiling)
    return None if (y == 0).any() else y


def _uncached(key, make):
    return make()


def _depthwise(nx, x, xp, wm, groups, ceiling, k, strides, dil, out_sp, cached=_uncached):
    """Tap-by-tap accumulation for one input channel per group (xp: x padded); None when the
    port ceiling could be reached (the matmul route then checks interior partials exactly).
    `cached(key, make)` keeps what depends on the weight alone (conv passes the op's cache)."""
    p = nx.profile
    mult = wm.shape[1]
    w = wm.reshape(groups * mult, -1)                     # [Cout, taps]
    sp = len(k)
    limit = p.mac_output_ceiling if (ceiling and not p.exact) else None
    if limit is not None:
        xmax = np.abs(x).max(axis=tuple(i for i in range(x.ndim) if i != 1))
        wsum = cached("_abs_sums", lambda: np.abs(w).sum(axis=1))
        if (wsum * (np.repeat(xmax, mult) if mult > 1 else xmax)).max() >= limit:
            return None
    # The compiled kernel reads xp unchecked: only where every window lies inside it.
    inside = all((o - 1) * st + d * (kk - 1) < n for o, st, d, kk, n in zip(out_sp, strides, dil, k, xp.shape[2:]))
    jit = _compiled_conv.kernel() if sp in (1, 2) and inside else None
    if jit is not None:
        acc = _depthwise_compiled(jit, xp, w, k, strides, dil, out_sp, mult, cached)
    else:
        win = _windows(xp, k, strides, dil, out_sp)       # [N, Cin, *out, *k]
        acc = np.zeros((win.shape[0], w.shape[0]) + win.shape[2:2 + sp], F32)
        for t, tap in enumerate(np.ndindex(*k)):
            src = win[(Ellipsis,) + tap]                  # [N, Cin, *out]
            if mult > 1:
                src = np.repeat(src, mult, axis=1)
            acc += w[:, t].reshape((1, -1) + (1,) * sp) * src
    return acc if p.exact else mac.port_output(acc, p, limit)


def _depthwise_compiled(jit, xp, w, k, strides, dil, out_sp, mult, cached=_uncached) -> np.ndarray:
    """The numpy loop of _depthwise in one compiled pass (sim/kernels/_compiled_conv.py), 1-d
    convolutions as 2-d ones of height 1; channels innermost where that gives the same bits
    (one input channel per output, no NaN in the operands)."""
    n, cout = xp.shape[0], w.shape[0]
    shape = (n, cout) + tuple(out_sp)
    if len(k) == 1:
        xp, k, strides, dil, out_sp = xp[:, :, None, :], (1,) + tuple(k), (1,) + tuple(strides), \
            (1,) + tuple(dil), (1,) + tuple(out_sp)
    w = np.ascontiguousarray(w, dtype=F32).reshape((cout,) + tuple(k))
    if mult == 1:
        last = cached("_channels_last", lambda: None if has_nan(w) else np.ascontiguousarray(w.transpose(1, 2, 0)))
        if last is not None and not has_nan(xp):
            acc = np.empty((n,) + tuple(out_sp) + (cout,), F32)
            jit.channels_last(np.ascontiguousarray(xp.transpose(0, 2, 3, 1), dtype=F32), last,
                              strides[0], strides[1], dil[0], dil[1], acc)
            return np.ascontiguousarray(acc.transpose(0, 3, 1, 2)).reshape(shape)
    acc = np.empty((n, cout) + tuple(out_sp), F32)
    jit.depthwise2d(np.ascontiguousarray(xp, dtype=F32), w, strides[0], strides[1], dil[0], dil[1], mult, acc)
    return acc.reshape(shape)


@kernel("conv", finish="keep")
def conv(c, x, weight, bias, strides, pad_type, pad, dilations, groups):
    sp = x.ndim - 2
    strides = tuple(strides or (1,) * sp)
    dil = tuple(dilations or (1,) * sp)
    pads = c.cached("pads", lambda: conv_pads(pad_type, pad, x.shape[2:], weight.shape[2:], strides, dil))   # static shapes
    y = convolve(c, x, weight, strides, pads, dil, groups, c.out_shape()[2:])
    if bias is not None:
        y = c.nx.store(y + c.cached("bias", lambda: bias.reshape((1, -1) + (1,) * sp), "bias"))
    return y


@kernel("conv_transpose", finish="keep")
def conv_transpose(c, x, weight, bias, pad, output_shape, pad_type, strides, dilations, groups):
    sp = x.ndim - 2
    strides = tuple(strides or (1,) * sp)
    dil = tuple(dilations or (1,) * sp)
    k = weight.shape[2:]
    n, cin = x.shape[:2]
    cin_g = cin // groups
    # Equivalent forward weight: [Cout, Cin/g, *k], flipped in space.
    def forward_weight():
        w = weight.reshape((groups, cin_g, -1) + tuple(k))                # [g, Cin/g, Cout/g, *k]
        w = np.swapaxes(w, 1, 2).reshape((-1, cin_g) + tuple(k))
        return np.ascontiguousarray(np.flip(w, axis=tuple(range(2, 2 + sp))))
    wf = c.cached("wf", forward_weight, "weight")
    stuffed = np.zeros((n, cin) + tuple((s - 1) * st + 1 for s, st in zip(x.shape[2:], strides)), x.dtype)
    stuffed[(slice(None), slice(None)) + tuple(slice(None, None, st) for st in strides)] = x
    full = [(s - 1) * st + d * (kk - 1) + 1 for s, st, d, kk in zip(x.shape[2:], strides, dil, k)]
    edge = [(d * (kk - 1), d * (kk - 1)) for d, kk in zip(dil, k)]
    y = convolve(c, stuffed, wf, (1,) * sp, edge, dil, groups, full, cache_key="wt")
    out_sp = c.out_shape()[2:]
    index = [slice(None), slice(None)]
    tail = [(0, 0), (0, 0)]
    for i, (f, o, s) in enumerate(zip(full, out_sp, x.shape[2:])):
        if pad_type in ("same", "same_lower"):
            total = f - s * strides[i]
            half = total // 2 if pad_type == "same" else total - total // 2
            start = max(half, 0)
        elif pad_type == "custom":
            start = int(pad[2 * i])
        else:
            start = 0
        index.append(slice(start, start + o))
        tail.append((0, max(0, start + o - f)))
    y = y[tuple(index)]
    if any(t for _, t in tail):
        y = np.pad(y, tail)
    if bias is not None:
        y = c.nx.store(y + bias.reshape((1, -1) + (1,) * sp))
    return y


@scratch("conv")
def conv_scratch(op) -> int:
    """Padded input copy + im2col columns [N, taps * Cin, positions] + the matmul result."""
    x, w, out = op.inputs["x"], op.inputs["weight"], op.outputs[0]
    n, cin = x.shape[:2]
    taps, positions = elements(w.shape[2:]), elements(out.shape[2:])
    columns = n * taps * cin * positions
    return F32_BYTES * (elements(x.shape) + columns + elements(out.shape))


@scratch("conv_transpose")
def conv_transpose_scratch(op) -> int:
    """The zero-stuffed input, its im2col columns over the uncropped output, and that output."""
    x, w, out = op.inputs["x"], op.inputs["weight"], op.outputs[0]
    n, cin = x.shape[:2]
    sp = len(x.shape) - 2
    strides, dil = _ints(op, "strides", sp), _ints(op, "dilations", sp)
    k = w.shape[2:]
    stuffed = n * cin * elements((s - 1) * st + 1 for s, st in zip(x.shape[2:], strides))
    full = elements((s - 1) * st + d * (kk - 1) + 1 for s, st, d, kk in zip(x.shape[2:], strides, dil, k))
    return F32_BYTES * (stuffed + n * elements(k) * cin * full + 2 * n * out.shape[1] * full)


def _ints(op, name: str, n: int) -> list[int]:
    v = op.inputs.get(name)
    if v is None or getattr(v, "const", None) is None:
        return [1] * n
    vals = [max(int(i), 1) for i in np.asarray(v.const).reshape(-1)]
    return vals if len(vals) == n else [1] * n
