"""Layout and data-movement ops, pooling and resampling (vector engine; reshape, squeeze and
expand_dims are descriptor edits that move no data, guide ch. 4)."""
from __future__ import annotations

import math

from .. import intervals as iv
from ..spec import const, op, tensor, tensors
from ._rules import axes, axis, check_spatial, pad_default, window_out

ANY = ("fp16", "fp32", "int32", "bool")


@op(kind="movement", T=ANY, x=tensor(), shape=const("int32", 1), path="free", fp16_range=iv.same)
def reshape(a):
    """Reshape; one entry may be -1 (inferred) and 0 copies x's size on that axis."""
    want = [a.x.shape[i] if s == 0 and i < a.x.rank else s for i, s in enumerate(a.shape)]
    if want.count(-1) > 1 or any(s < -1 for s in want):
        raise a.fail("shape", f"{list(a.shape)}: at most one -1 and no other negative sizes")
    known = math.prod(s for s in want if s != -1)
    if -1 in want:
        if known == 0 or a.x.size % known:
            raise a.fail("shape", f"cannot infer -1 reshaping {list(a.x.shape)} to {list(a.shape)}")
        want[want.index(-1)] = a.x.size // known
    if math.prod(want) != a.x.size:
        raise a.fail("shape", f"{list(a.shape)} has {math.prod(want)} elements, x {list(a.x.shape)} has {a.x.size}")
    return [(a.T, tuple(want))]


@op(kind="movement", T=ANY, x=tensor(), perm=const("int32", 1), fp16_range=iv.same)
def transpose(a):
    """Permute axes: output axis i is x's axis perm[i]."""
    if len(a.perm) != a.x.rank or sorted(axes(a, "perm", a.perm, a.x.rank)) != list(range(a.x.rank)):
        raise a.fail("perm", f"{list(a.perm)} is not a permutation of {a.x.rank} axes")
    p = axes(a, "perm", a.perm, a.x.rank)
    return [(a.T, tuple(a.x.shape[i] for i in p))]


@op(kind="movement", T=ANY, values=tensors(), axis=const("int32", 0),
    interleave=const("bool", 0, default=False), fp16_range=iv.union_of("values"))
def concat(a):
    """Join along `axis`; with interleave, equal-shaped inputs alternate element by element."""
    first = a.values[0].shape
    ax = axis(a, "axis", a.axis, len(first))
    for t in a.values[1:]:
        if len(t.shape) != len(first) or any(s != f for i, (s, f) in enumerate(zip(t.shape, first)) if i != ax):
            raise a.fail("values", f"shapes {[list(v.shape) for v in a.values]} differ off axis {a.axis}")
        if a.interleave and t.shape != first:
            raise a.fail("values", "interleave needs equal shapes")
    total = sum(t.shape[ax] for t in a.values)
    return [(a.T, first[:ax] + (total,) + first[ax + 1:])]


@op(kind="movement", T=ANY, x=tensor(), num_splits=const("int32", 0, default=None),
    split_sizes=const("int32", 1, default=None), axis=const("int32", 0), fp16_range=iv.same)
def split(a):
    """Split along `axis` into num_splits equal parts or parts of split_sizes (several outputs)."""
    ax = axis(a, "axis", a.axis, a.x.rank)
    n = a.x.shape[ax]
    if a.split_sizes is not None:
        sizes = list(a.split_sizes)
        if sum(sizes) != n or any(s <= 0 for s in sizes):
            raise a.fail("split_sizes", f"{sizes} must be positive and sum to {n}")
    elif a.num_splits is not None:
        if a.num_splits <= 0 or n % a.num_splits:
            raise a.fail("num_splits", f"{a.num_splits} does not divide axis size {n}")
        sizes = [n // a.num_splits] * a.num_splits
    else:
        raise a.fail("num_splits", "give num_splits or split_sizes")
    return [(a.T, a.x.shape[:ax] + (s,) + a.x.shape[ax + 1:]) for s in sizes]


@op(kind="movement", T=ANY, values=tensors(), axis=const("int32", 0), fp16_range=iv.union_of("values"))
def stack(a):
    """Stack equal-shaped tensors along a new axis."""
    first = a.values[0].shape
    if any(t.shape != first for t in a.values):
        raise a.fail("values", f"shapes {[list(v.shape) for v in a.values]} must be equal")
    ax = axis(a, "axis", a.axis, len(first), extra=1)
    return [(a.T, first[:ax] + (len(a.values),) + first[ax:])]


def slice_index_plan(x_shape, begin, end, stride, begin_mask, end_mask, squeeze_mask):
    """Per-axis Python slices and which axes to drop, shared by the shape rule and kernels."""
    r = len(x_shape)
    stride = stride or (1,) * r
    begin_mask = begin_mask or (False,) * r
    end_mask = end_mask or (False,) * r
    squeeze_mask = squeeze_mask or (False,) * r
    slices = []
    for i in range(r):
        b = None if begin_mask[i] else begin[i]
        e = None if end_mask[i] else end[i]
        if squeeze_mask[i]:
            b = b or 0
            e = b + 1 if b != -1 else None
        slices.append(slice(b, e, stride[i]))
    return slices, [i for i in range(r) if squeeze_mask[i]]


def strided_slice_shape(a) -> tuple[int, ...]:
    """Shape selected by slice_by_index-style arguments (begin, end, stride and the masks)."""
    r = a.x.rank
    for n in ("begin", "end", "stride", "begin_mask", "end_mask", "squeeze_mask"):
        v = getattr(a, n)
        if v is not None and len(v) != r:
            raise a.fail(n, f"needs {r} values (x shape {list(a.x.shape)}), got {list(v)}")
    if a.stride is not None and 0 in a.stride:
        raise a.fail("stride", "stride 0")
    slices, drop = slice_index_plan(a.x.shape, a.begin, a.end, a.stride, a.begin_mask, a.end_mask, a.squeeze_mask)
    shape = [len(range(*s.indices(n))) for s, n in zip(slices, a.x.shape)]
    for i in drop:
        if shape[i] != 1:
            raise a.fail("squeeze_mask", f"axis {i} keeps {shape[i]} elements, cannot squeeze")
    if 0 in shape:
        raise a.fail("begin", f"slice of {list(a.x.shape)} from {list(a.begin)} to {list(a.end)} is empty")
    return tuple(s for i, s in enumerate(shape) if i not in drop)


STRIDED_SLICE = dict(begin=const("int32", 1), end=const("int32", 1), stride=const("int32", 1, default=None),
                     begin_mask=const("bool", 1, default=None), end_mask=const("bool", 1, default=None),
                     squeeze_mask=const("bool", 1, default=None))


@op(kind="movement", T=ANY, x=tensor(), **STRIDED_SLICE, fp16_range=iv.same)
def slice_by_index(a):
    """Strided slice x[begin:end:stride] per axis, with masks as in MIL / TensorFlow."""
    return [(a.T, strided_slice_shape(a))]


@op(kind="movement", T=ANY, x=tensor(), begin=const("int32", 1), size=const("int32", 1), fp16_range=iv.same)
def slice_by_size(a):
    """x[begin : begin + size] per axis; size -1 takes the rest."""
    r = a.x.rank
    if len(a.begin) != r or len(a.size) != r:
        raise a.fail("size", f"begin {list(a.begin)} and size {list(a.size)} need {r} values")
    out = []
    for i, (b, s, n) in enumerate(zip(a.begin, a.size, a.x.shape)):
        b = b + n if b < 0 else b
        s = n - b if s == -1 else s
        if not (0 <= b < n and 0 < s and b + s <= n):
            raise a.fail("size", f"axis {i}: begin {b} size {s} leaves axis of size {n}")
        out.append(s)
    return [(a.T, tuple(out))]


@op(kind="movement", T=ANY, x=tensor(), axes=const("int32", 1, default=None), path="free", fp16_range=iv.same)
def squeeze(a):
    """Drop size-1 axes (all of them when axes is omitted)."""
    if a.axes is None:
        return [(a.T, tuple(s for s in a.x.shape if s != 1))]
    ax = axes(a, "axes", a.axes, a.x.rank)
    for i in ax:
        if a.x.shape[i] != 1:
            raise a.fail("axes", f"axis {i} has size {a.x.shape[i]}, not 1 (x shape {list(a.x.shape)})")
    return [(a.T, tuple(s for i, s in enumerate(a.x.shape) if i not in ax))]


@op(kind="movement", T=ANY, x=tensor(), axes=const("int32", 1), path="free", fp16_range=iv.same)
def expand_dims(a):
    """Insert size-1 axes at the given output positions."""
    r = a.x.rank + len(a.axes)
    ax = axes(a, "axes", a.axes, r)
    it = iter(a.x.shape)
    return [(a.T, tuple(1 if i in ax else next(it) for i in range(r)))]


def _pad_range(op, res):
    x = iv.x_of(op, res)
    if op.attr("mode") == "constant":
        c = float(op.attr("constant_val") or 0.0)
        return iv.union(x, (c, c))
    return x


@op(kind="movement", T=("fp16", "fp32", "int32"), x=tensor(), pad=const("int32", 1), fp16_range=_pad_range,
    mode=const("string", 0, default="constant", choices=("constant", "reflect", "replicate")),
    constant_val=const("T", 0, default=0.0))
def pad(a):
    """Pad the last len(pad)/2 axes by (before, after) pairs."""
    p = a.pad
    if len(p) % 2 or len(p) > 2 * a.x.rank or any(v < 0 for v in p):
        raise a.fail("pad", f"{list(p)} must be non-negative (before, after) pairs for at most {a.x.rank} axes")
    k = len(p) // 2
    shape = list(a.x.shape)
    for j in range(k):
        i = a.x.rank - k + j
        if a.mode == "reflect" and max(p[2 * j], p[2 * j + 1]) >= shape[i]:
            raise a.fail("pad", f"reflect padding {p[2 * j]},{p[2 * j + 1]} needs axis {i} longer than that")
        shape[i] += p[2 * j] + p[2 * j + 1]
    return [(a.T, tuple(shape))]


@op(kind="movement", T=ANY, x=tensor(), reps=const("int32", 1), fp16_range=iv.same)
def tile(a):
    """Repeat x reps[i] times along axis i."""
    if len(a.reps) != a.x.rank or any(r < 1 for r in a.reps):
        raise a.fail("reps", f"{list(a.reps)} needs {a.x.rank} positive values")
    return [(a.T, tuple(s * r for s, r in zip(a.x.shape, a.reps)))]


@op(kind="movement", T=ANY, x=tensor(), indices=tensor("int32"), axis=const("int32", 0, default=0),
    batch_dims=const("int32", 0, default=0), fp16_range=iv.same,
    coreml_ignored={"validate_indices": (False, True)})   # iOS 17: a runtime check, no effect in range
def gather(a):
    """Take slices of x along `axis` at `indices` (embedding lookup)."""
    ax = axis(a, "axis", a.axis, a.x.rank)
    b = a.batch_dims
    if not 0 <= b <= min(ax, a.indices.rank) or a.indices.shape[:b] != a.x.shape[:b]:
        raise a.fail("batch_dims", f"{b} does not fit x {list(a.x.shape)} and indices {list(a.indices.shape)}")
    return [(a.T, a.x.shape[:ax] + a.indices.shape[b:] + a.x.shape[ax + 1:])]


def _pool(a):
    if not 3 <= a.x.rank <= 5:
        raise a.fail("x", f"rank {a.x.rank}; pooling needs [N, C, *spatial]")
    n = a.x.rank - 2
    check_spatial(a, ("kernel_sizes", "strides", "pad"), n)
    sp = [window_out(a, a.x.shape[2 + i], a.kernel_sizes[i], a.strides[i], 1, a.pad_type,
                     a.pad[2 * i], a.pad[2 * i + 1], a.ceil_mode) for i in range(n)]
    return [(a.T, a.x.shape[:2] + tuple(sp))]


_POOL = dict(x=tensor(), kernel_sizes=const("int32", 1),
             strides=const("int32", 1, default=lambda a: (1,) * max(a.x.rank - 2, 0)),
             pad_type=const("string", 0, default="valid", choices=("valid", "same", "custom", "same_lower")),
             pad=const("int32", 1, default=pad_default))


def _avg_pool_range(op, res):
    x = iv.x_of(op, res)
    pads = op.attr("pad") or ()
    if op.attr("pad_type") != "valid" and (op.attr("pad_type") != "custom" or any(pads)):
        return iv.union(x, (0.0, 0.0))   # padding zeros may enter the average
    return x


op(kind="pool", name="avg_pool", **_POOL, exclude_padding_from_average=const("bool", 0, default=False),
   ceil_mode=const("bool", 0, default=False), fp16_range=_avg_pool_range)(_pool)
op(kind="pool", name="max_pool", **_POOL, ceil_mode=const("bool", 0, default=False), fp16_range=iv.same)(_pool)


@op(kind="movement", x=tensor(), scale_factor_height=const(("fp32", "int32"), 0, default=1),
    scale_factor_width=const(("fp32", "int32"), 0, default=1), fp16_range=iv.same)
def upsample_nearest_neighbor(a):
    """Nearest-neighbour upsampling of the last two axes by the given factors."""
    if a.x.rank < 3:
        raise a.fail("x", f"needs rank >= 3, got shape {list(a.x.shape)}")
    h, w = a.x.shape[-2:]
    sh, sw = a.scale_factor_height, a.scale_factor_width
    if sh <= 0 or sw <= 0:
        raise a.fail("scale_factor_height", f"factors must be positive, got {sh}, {sw}")
    return [(a.T, a.x.shape[:-2] + (int(math.floor(h * sh)), int(math.floor(w * sw))))]


# --- gradient rules (vector-Jacobian products written with forward ops; guide ch. 15) ---------

import numpy as _np  # noqa: E402

from ..declared import F  # noqa: E402
from ._gradlib import adjoint_window, embed, flat_taps, make_const as _make_const  # noqa: E402
from ._gradlib import narrow, numel as _numel, window_pads, zeros as _zeros  # noqa: E402
from ..spec import REGISTRY  # noqa: E402
from ...errors import GradientError


def _back_to(op, gs):
    return {"x": F.reshape(gs[0], shape=list(op.inputs["x"].shape))}


for _spec in (reshape, squeeze, expand_dims):
    _spec.defgrad(_back_to)


@transpose.defgrad
def _transpose_grad(op, gs):
    perm = [p % op.inputs["x"].rank for p in op.attr("perm")]
    return {"x": F.transpose(gs[0], perm=[perm.index(i) for i in range(len(perm))])}


@concat.defgrad
def _concat_grad(op, gs):
    vals, g = op.inputs["values"], gs[0]
    ax = op.attr("axis") % g.rank
    if op.attr("interleave"):
        k = len(vals)
        return {"values": tuple(
            F.slice_by_index(g, begin=[i if j == ax else 0 for j in range(g.rank)], end=list(g.shape),
               stride=[k if j == ax else 1 for j in range(g.rank)]) for i in range(k))}
    parts, start = [], 0
    for v in vals:
        begin = [start if j == ax else 0 for j in range(g.rank)]
        parts.append(F.slice_by_size(g, begin=begin, size=list(v.shape)))
        start += v.shape[ax]
    return {"values": tuple(parts)}


@split.defgrad
def _split_grad(op, gs):
    ax = op.attr("axis") % op.inputs["x"].rank
    parts = [g if g is not None else _zeros(t.shape, t.dtype) for g, t in zip(gs, op.outputs)]
    return {"x": parts[0] if len(parts) == 1 else F.concat(parts, axis=ax)}


@stack.defgrad
def _stack_grad(op, gs):
    g = gs[0]
    ax = op.attr("axis") % g.rank
    shape = list(op.inputs["values"][0].shape)
    out = []
    for i in range(g.shape[ax]):
        part = F.slice_by_size(g, begin=[i if j == ax else 0 for j in range(g.rank)],
                  size=[1 if j == ax else -1 for j in range(g.rank)])
        out.append(F.reshape(part, shape=shape))
    return {"values": tuple(out)}


@slice_by_index.defgrad
def _slice_by_index_grad(op, gs):
    x, g = op.inputs["x"], gs[0]
    slices, drop = slice_index_plan(x.shape, op.attr("begin"), op.attr("end"), op.attr("stride"),
                                    op.attr("begin_mask"), op.attr("end_mask"), op.attr("squeeze_mask"))
    kept = [len(range(*s.indices(n))) for s, n in zip(slices, x.shape)]
    g = F.reshape(g, shape=kept)
    begins, strides, flips = [], [], []
    for i, (s, n) in enumerate(zip(slices, x.shape)):
        start, _, step = s.indices(n)
        if step < 0:               # a reversed slice: its elements run from the last picked
            start, step = start + (kept[i] - 1) * step, -step
            flips.append(i)
        begins.append(start)
        strides.append(step)
    if flips:
        g = F.reverse(g, axes=flips)
    return {"x": embed(g, x.shape, begins, strides)}


@slice_by_size.defgrad
def _slice_by_size_grad(op, gs):
    x = op.inputs["x"]
    begins = [b + n if b < 0 else b for b, n in zip(op.attr("begin"), x.shape)]
    return {"x": embed(gs[0], x.shape, begins, [1] * x.rank)}


@pad.defgrad
def _pad_grad(op, gs):
    x, p = op.inputs["x"], op.attr("pad")
    if op.attr("mode") != "constant":
        raise GradientError(f"pad: no gradient rule for mode '{op.attr('mode')}' (constant padding has one)")
    k = len(p) // 2
    begin = [0] * (x.rank - k) + [p[2 * j] for j in range(k)]
    return {"x": F.slice_by_size(gs[0], begin=begin, size=list(x.shape))}


@tile.defgrad
def _tile_grad(op, gs):
    """Sum the copies, one tiled axis at a time through a rank-4 view (the engine's rank limit)."""
    x, g = op.inputs["x"], gs[0]
    for i, r in enumerate(op.attr("reps")):
        if r == 1:
            continue
        shape = list(g.shape)
        view = [_numel(shape[:i]), r, x.shape[i], _numel(shape[i + 1:])]
        g = F.reshape(F.reduce_sum(F.reshape(g, shape=view), axes=[1]),
               shape=shape[:i] + [x.shape[i]] + shape[i + 1:])
    return {"x": g}


@gather.defgrad
def _gather_grad(op, gs):
    """Scatter-add as a matmul with a one-hot matrix of the indices (embedding gradient), per
    batch slice when batch_dims > 0: [B, M, V]^T x [B, pre, M, post] in rank-4 views."""
    x, idx, g = op.inputs["x"], op.inputs["indices"], gs[0]
    nb = op.attr("batch_dims")
    ax = op.attr("axis") % x.rank
    v = x.shape[ax]
    batch = _numel(x.shape[:nb])
    m = _numel(idx.shape[nb:])
    flat_idx = F.reshape(idx, shape=[batch, 1, m, 1])
    wrapped = F.select(flat_idx < 0, flat_idx + v, flat_idx)     # negative indices count from the end
    onehot = F.cast(F.equal(wrapped, _make_const(_np.arange(v, dtype=_np.int32), "int32")),
                dtype=g.dtype)                                       # [B, 1, M, V]
    pre, post = _numel(x.shape[nb:ax]), _numel(x.shape[ax + 1:])
    g4 = F.reshape(g, shape=[batch, pre, m, post])
    dx = F.matmul(onehot, g4, transpose_x=True)                  # [B, pre, V, post]
    return {"x": F.reshape(dx, shape=list(x.shape))}


def _pool_geometry(op):
    x = op.inputs["x"]
    k = tuple(op.attr("kernel_sizes"))
    strides = tuple(op.attr("strides") or (1,) * len(k))
    dil = (1,) * len(k)
    return x, k, strides, dil, window_pads(op, x.shape, k, strides, dil)


def _covering_pads(x, out, k, strides, pads):
    """Pads after each spatial axis extended so every output window lies inside (ceil_mode)."""
    full = []
    for i, (pb, pe) in enumerate(pads):
        need = (out.shape[2 + i] - 1) * strides[i] + k[i] - x.shape[2 + i] - pb
        full.append((pb, max(pe, need)))
    return full


def _avg_pool_grad(op, gs):
    """Each input gets the cotangent of every window holding it over that window's count: a
    depthwise transposed convolution with a ones kernel."""
    x, k, strides, dil, pads = _pool_geometry(op)
    g, c = gs[0], x.shape[1]
    pads = _covering_pads(x, g, k, strides, pads)
    if op.attr("exclude_padding_from_average"):
        ones = _np.zeros((1, 1) + tuple(x.shape[2:]))
        ones = _np.pad(_np.ones_like(ones), [(0, 0), (0, 0)] + pads)
        win = _np.lib.stride_tricks.sliding_window_view(ones, k, axis=tuple(range(2, x.rank)))
        win = win[(slice(None), slice(None)) + tuple(slice(0, o * s, s) for o, s in zip(g.shape[2:], strides))]
        count = win.sum(axis=tuple(range(x.rank, 2 * x.rank - 2)))
        scaled = g * _make_const(1.0 / _np.maximum(count, 1), g.dtype)
    else:
        scaled = g * (1.0 / _numel(k))
    flat, out_shape = adjoint_window(x.shape, g.shape, k, strides, dil, pads)
    ones_w = _make_const(_np.ones((c, 1) + k), g.dtype)
    dx = F.conv_transpose(scaled, ones_w, pad=flat, pad_type="custom", strides=list(strides),
            groups=c, output_shape=out_shape)
    if dx.shape != x.shape:   # windows past the edge (ceil_mode) fall outside x
        dx = F.slice_by_size(dx, begin=[0] * x.rank, size=list(x.shape))
    return {"x": dx}


def _max_pool_grad(op, gs):
    """The cotangent goes to the first position of each window that holds the maximum (as
    PyTorch picks it): per kernel tap a strided slice compared with the output, masked by
    the taps before it, scattered back with `embed`."""
    x, k, strides, dil, pads = _pool_geometry(op)
    y, g = op.outputs[0], gs[0]
    pads = _covering_pads(x, y, k, strides, pads)
    lowest = -65504.0 if x.dtype == "fp16" else -3.0e38
    xp = F.pad(x, pad=[v for pair in pads for v in pair], constant_val=lowest) \
        if any(p for pair in pads for p in pair) else x
    free, total = None, None          # free: 1 where no earlier tap took the window (float masks:
    for tap in flat_taps(k):          # the engine has no logical ops, guide appendix A)
        begin = [0, 0] + list(tap)
        end = [x.shape[0], x.shape[1]] + [t + (o - 1) * s + 1 for t, o, s in zip(tap, y.shape[2:], strides)]
        hit = F.select(F.equal(F.slice_by_index(xp, begin=begin, end=end, stride=[1, 1, *strides]), y),
                 _make_const(1.0, y.dtype), 0.0)
        if free is not None:
            hit = hit * free
            free = free - hit
        else:
            free = 1.0 - hit
        part = embed(g * hit, xp.shape, begin, [1, 1, *strides])
        total = part if total is None else total + part
    if xp is not x:
        total = narrow(total, [0, 0] + [pb for pb, _ in pads], x.shape)
    return {"x": total}


REGISTRY["avg_pool"].defgrad(_avg_pool_grad)
REGISTRY["max_pool"].defgrad(_max_pool_grad)


@upsample_nearest_neighbor.defgrad
def _upsample_nearest_grad(op, gs):
    """Integer factors: each input pixel feeds an sh x sw block, so its cotangent is the block sum."""
    x, g = op.inputs["x"], gs[0]
    sh, sw = float(op.attr("scale_factor_height")), float(op.attr("scale_factor_width"))
    if not (sh.is_integer() and sw.is_integer()):
        raise GradientError(f"upsample_nearest_neighbor: no gradient rule for fractional scale factors ({sh}, {sw})")
    h, w = x.shape[-2:]
    sh, sw = int(sh), int(sw)
    lead = _numel(x.shape[:-2])
    rows = F.reduce_sum(F.reshape(g, shape=[lead, h, sh, w * sw]), axes=[2])     # rank <= 4
    cols = F.reduce_sum(F.reshape(rows, shape=[lead * h, w, sw]), axes=[2])
    return {"x": F.reshape(cols, shape=list(x.shape))}
