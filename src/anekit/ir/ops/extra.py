"""Ops coremltools' PyTorch converter emits for common networks beyond the core set.

Found by converting the test corpus (tests/models_zoo.py) and common layers: hardswish ->
thresholded_relu, padded transposed convs -> crop, bilinear interpolation ->
upsample_bilinear, pixel_shuffle, flip -> reverse, cumsum, torch.gather -> gather_along_axis,
topk, in-place slice assignment -> slice_update, and the iOS 18 state ops (read_state,
write_state; coreml_update_state is coremltools' fused write-then-read form). Semantics
follow the MIL op set as coremltools documents it.
"""
from __future__ import annotations

import math

from .. import intervals as iv
from ..spec import const, op, tensor
from ._rules import axes, axis
from .shape import STRIDED_SLICE, strided_slice_shape

ANY = ("fp16", "fp32", "int32", "bool")
NUMERIC = ("fp16", "fp32", "int32")


def _thresholded_relu_range(op, res):
    x, a = iv.x_of(op, res), float(op.attr("alpha"))
    kept = (max(x[0], a), x[1]) if x[1] >= a else None
    return iv.union((0.0, 0.0), kept) if kept else (0.0, 0.0)


@op(kind="activation", x=tensor(), alpha=const("T", 0, default=1.0), fp16_range=_thresholded_relu_range)
def thresholded_relu(a):
    """x where x >= alpha, else 0."""
    return [(a.T, a.x.shape)]


@op(kind="movement", x=tensor(), crop_height=const("int32", 1), crop_width=const("int32", 1), fp16_range=iv.same)
def crop(a):
    """Drop crop_height = (top, bottom) rows and crop_width = (left, right) columns of the last two axes."""
    if a.x.rank < 3:
        raise a.fail("x", f"needs rank >= 3, got shape {list(a.x.shape)}")
    h, w = a.x.shape[-2:]
    for name, (lo, hi), size in (("crop_height", a.crop_height, h), ("crop_width", a.crop_width, w)):
        if len(getattr(a, name)) != 2:
            raise a.fail(name, f"needs 2 values, got {list(getattr(a, name))}")
        if lo < 0 or hi < 0 or lo + hi >= size:
            raise a.fail(name, f"({lo}, {hi}) must be non-negative and leave some of size {size}")
    (t, b), (l, r) = a.crop_height, a.crop_width
    return [(a.T, a.x.shape[:-2] + (h - t - b, w - l - r))]


@op(kind="movement", x=tensor(),
    scale_factor_height=const(("fp16", "fp32", "int32"), 0, default=1),
    scale_factor_width=const(("fp16", "fp32", "int32"), 0, default=1),
    align_corners=const("bool", 0, default=True),
    half_pixel_centers=const("bool", 0, default=None),
    fp16_range=iv.same)   # bilinear weights are a convex combination
def upsample_bilinear(a):
    """Bilinear resize of the last two axes to floor(size * factor); half_pixel_centers defaults
    to `not align_corners` (iOS 16 form)."""
    if a.x.rank < 3:
        raise a.fail("x", f"needs rank >= 3, got shape {list(a.x.shape)}")
    sh, sw = float(a.scale_factor_height), float(a.scale_factor_width)
    if sh <= 0 or sw <= 0:
        raise a.fail("scale_factor_height", f"factors must be positive, got {sh}, {sw}")
    h, w = a.x.shape[-2:]
    out = (int(math.floor(h * sh)), int(math.floor(w * sw)))
    if min(out) < 1:
        raise a.fail("scale_factor_height", f"output size {list(out)} is empty")
    return [(a.T, a.x.shape[:-2] + out)]


@op(kind="movement", T=ANY, x=tensor(), upscale_factor=const("int32", 0), fp16_range=iv.same)
def pixel_shuffle(a):
    """[N, C*f*f, H, W] -> [N, C, H*f, W*f] (depth to space, PyTorch's channel order)."""
    f = a.upscale_factor
    if a.x.rank != 4:
        raise a.fail("x", f"needs rank 4 [N, C, H, W], got shape {list(a.x.shape)}")
    n, c, h, w = a.x.shape
    if f < 1 or c % (f * f):
        raise a.fail("upscale_factor", f"{f}^2 must divide the {c} channels")
    return [(a.T, (n, c // (f * f), h * f, w * f))]


@op(kind="movement", T=ANY, x=tensor(), axes=const("int32", 1, default=None), fp16_range=iv.same)
def reverse(a):
    """Reverse the order of elements along `axes` (all axes when omitted)."""
    if a.axes is not None:
        axes(a, "axes", a.axes, a.x.rank)
    return [(a.T, a.x.shape)]


def _cumsum_range(op, res):
    x = iv.x_of(op, res)
    n = op.inputs["x"].shape[op.attr("axis") % op.inputs["x"].rank]
    return iv.union(iv.fix(x[0] * n, x[1] * n), (0.0, 0.0) if op.attr("exclusive") else x)


@op(kind="reduction", T=NUMERIC, x=tensor(), axis=const("int32", 0, default=0),
    exclusive=const("bool", 0, default=False), reverse=const("bool", 0, default=False), fp16_range=_cumsum_range)
def cumsum(a):
    """Running sum along `axis` (exclusive: shifted by one; reverse: from the end)."""
    axis(a, "axis", a.axis, a.x.rank)
    return [(a.T, a.x.shape)]


@op(kind="movement", T=ANY, x=tensor(), indices=tensor("int32"), axis=const("int32", 0, default=0),
    fp16_range=iv.same, coreml_ignored={"validate_indices": (False, True)})
def gather_along_axis(a):
    """out[..., i, ...] = x[..., indices[..., i, ...], ...] along `axis` (torch.gather)."""
    ax = axis(a, "axis", a.axis, a.x.rank)
    if a.indices.rank != a.x.rank or any(
            s != t for i, (s, t) in enumerate(zip(a.indices.shape, a.x.shape)) if i != ax):
        raise a.fail("indices", f"shape {list(a.indices.shape)} must match x {list(a.x.shape)} off axis {ax}")
    return [(a.T, a.indices.shape)]


@op(kind="movement", T=ANY, x=tensor(), indices=tensor("int32"), batch_dims=const("int32", 0, default=0),
    fp16_range=iv.same, coreml_ignored={"validate_indices": (False, True)})   # iOS 17: a runtime check
def gather_nd(a):
    """out[b..., i...] = x[b..., *indices[b..., i..., :]]: the last axis of `indices` holds K
    coordinates into x's axes after the first `batch_dims` (tf.gather_nd; Hugging Face masks)."""
    b, k = a.batch_dims, a.indices.shape[-1] if a.indices.rank else 0
    if a.indices.rank < 1 or not 0 <= b < a.indices.rank or a.indices.shape[:b] != a.x.shape[:b]:
        raise a.fail("batch_dims", f"{b} does not fit x {list(a.x.shape)} and indices {list(a.indices.shape)}")
    if not 1 <= k <= a.x.rank - b:
        raise a.fail("indices", f"last axis {k} must address 1..{a.x.rank - b} axes of x {list(a.x.shape)}")
    return [(a.T, a.indices.shape[:-1] + a.x.shape[b + k:])]


@op(kind="movement", T=ANY, ref_tensor=tensor(), value=const(("fp16", "fp32", "int32", "bool"), 0, default=0.0),
    fp16_range=lambda op, res: (float(op.attr("value")),) * 2)
def fill_like(a):
    """A tensor of ref_tensor's shape holding `value`, in value's dtype (torch.full_like; the
    masked-softmax rows of transformers 5 attention). A float value takes ref_tensor's float
    dtype (fp32 when ref_tensor is not float): shape rules see the value, not its width."""
    v = a.value
    if isinstance(v, bool):
        return [("bool", a.ref_tensor.shape)]
    if isinstance(v, int):
        return [("int32", a.ref_tensor.shape)]
    return [(a.T if a.T in ("fp16", "fp32") else "fp32", a.ref_tensor.shape)]


_RNN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear", "hard_sigmoid", "scaled_tanh")


def _lstm_range(op, res):
    """h = o * act(c) lies in [-1, 1] with sigmoid gates and tanh; c grows by at most one per
    step (|f c + i z| <= |c| + 1), so it is bounded by the sequence length plus the initial c."""
    if (op.attr("recurrent_activation"), op.attr("cell_activation"), op.attr("activation")) != \
            ("sigmoid", "tanh", "tanh") or op.attr("peephole") is not None:
        return None
    c0 = res.of(op.inputs["initial_c"])
    bound = max(abs(c0[0]), abs(c0[1])) + op.inputs["x"].shape[0]
    return [(-1.0, 1.0), (-1.0, 1.0), (-bound, bound)]


@op(kind="recurrent", x=tensor(), initial_h=tensor(), initial_c=tensor(), weight_ih=tensor(), weight_hh=tensor(),
    bias=tensor(optional=True), peephole=tensor(optional=True), weight_ih_back=tensor(optional=True),
    weight_hh_back=tensor(optional=True), bias_back=tensor(optional=True), peephole_back=tensor(optional=True),
    direction=const("string", 0, default="forward", choices=("forward", "reverse", "bidirectional")),
    output_sequence=const("bool", 0, default=False),
    recurrent_activation=const("string", 0, default="sigmoid", choices=_RNN_ACTIVATIONS),
    cell_activation=const("string", 0, default="tanh", choices=_RNN_ACTIVATIONS),
    activation=const("string", 0, default="tanh", choices=_RNN_ACTIVATIONS),
    clip=const("T", 0, default=None), fp16_range=_lstm_range)
def lstm(a):
    """LSTM over x [S, B, I] (gate order input, forget, output, cell: MIL's, not torch's i, f, g,
    o); returns (every or the last h [S | 1, B, D*H], last h [B, D*H], last c [B, D*H]),
    D = 2 when bidirectional. Guide Appendix A: no engine path on any family."""
    if a.x.rank != 3:
        raise a.fail("x", f"shape {list(a.x.shape)}: lstm takes [sequence, batch, input]")
    s, b, i = a.x.shape
    four_h, hh = a.weight_hh.shape if a.weight_hh.rank == 2 else (None, None)
    if four_h != 4 * (hh or 0) or a.weight_ih.shape != (four_h, i):
        raise a.fail("weight_ih", f"{list(a.weight_ih.shape)} and weight_hh {list(a.weight_hh.shape)} must be "
                                  f"[4H, {i}] and [4H, H]")
    d = 2 if a.direction == "bidirectional" else 1
    if d == 2 and (a.weight_ih_back is None or a.weight_hh_back is None):
        raise a.fail("weight_ih_back", "a bidirectional lstm needs weight_ih_back and weight_hh_back")
    for name in ("bias", "bias_back"):
        t = getattr(a, name)
        if t is not None and t.shape != (four_h,):
            raise a.fail(name, f"shape {list(t.shape)}, expected [{four_h}]")
    for name in ("initial_h", "initial_c"):
        if getattr(a, name).shape != (b, d * hh):
            raise a.fail(name, f"shape {list(getattr(a, name).shape)}, expected [{b}, {d * hh}]")
    state = (a.T, (b, d * hh))
    return [(a.T, (s if a.output_sequence else 1, b, d * hh)), state, state]


@op(kind="reduction", T=NUMERIC, x=tensor(), k=const("int32", 0, default=1),
    axis=const("int32", 0, default=-1), ascending=const("bool", 0, default=False),
    sort=const("bool", 0, default=True), return_indices=const("bool", 0, default=True),
    output_indices_dtype=const("string", 0, default="int32", choices=("int32",)),
    fp16_range=lambda op, res: [res.of(op.inputs["x"]),
                                (0.0, float(op.inputs["x"].shape[op.attr("axis") % op.inputs["x"].rank] - 1))],
    coreml_dtype_param="output_indices_dtype")
def topk(a):
    """The k largest (or smallest, ascending) values along `axis`, and their int32 indices."""
    ax = axis(a, "axis", a.axis, a.x.rank)
    n = a.x.shape[ax]
    k = n if a.k == -1 else a.k
    if not 1 <= k <= n:
        raise a.fail("k", f"{a.k} is not in 1..{n} (axis {ax} of {list(a.x.shape)})")
    shape = a.x.shape[:ax] + (k,) + a.x.shape[ax + 1:]
    return [(a.T, shape), ("int32", shape)] if a.return_indices else [(a.T, shape)]


# --- states (iOS 18): a state input holds a tensor that persists across calls ----------------

@op(kind="movement", T=ANY, since="ios18", input=tensor(), state_role="read", state_param="input",
    fp16_range=lambda op, res: res.of(op.inputs["input"]))   # what the state is declared to hold
def read_state(a):
    """The current value of a state input."""
    return [(a.T, a.input.shape)]


@op(kind="movement", T=ANY, since="ios18", input=tensor(), data=tensor(), state_role="write", state_param="input",
    fp16_range=iv.unbounded)
def write_state(a):
    """Store `data` into a state input (no outputs; later read_state ops see it)."""
    if a.data.shape != a.input.shape:
        raise a.fail("data", f"shape {list(a.data.shape)} must equal the state's {list(a.input.shape)}")
    return []


@op(kind="movement", T=ANY, since="ios18", state=tensor(), value=tensor(), state_role="update", state_param="state",
    fp16_range=lambda op, res: res.of(op.inputs["value"]))
def coreml_update_state(a):
    """write_state(state, value) followed by read_state(state): stores and returns `value`."""
    if a.value.shape != a.state.shape:
        raise a.fail("value", f"shape {list(a.value.shape)} must equal the state's {list(a.state.shape)}")
    return [(a.T, a.value.shape)]


@op(kind="movement", T=ANY, since="ios18", x=tensor(), update=tensor(), **STRIDED_SLICE,
    fp16_range=iv.union_of("x", "update"))
def slice_update(a):
    """x with the strided slice x[begin:end:stride] (as slice_by_index selects it) replaced by
    `update` (in-place tensor assignment, e.g. a KV-cache write)."""
    want = strided_slice_shape(a)
    if a.update.shape != want:
        raise a.fail("update", f"shape {list(a.update.shape)} must be the slice's {list(want)}")
    return [(a.T, a.x.shape)]


# --- gradient rules (vector-Jacobian products written with forward ops; guide ch. 15) ---------

import numpy as _np  # noqa: E402

from ..declared import F  # noqa: E402
from ._gradlib import embed as _embed, make_const as _make_const, pass_at_or_above_alpha as _pass_at_or_above_alpha  # noqa: E402
from ...errors import GradientError
from .shape import slice_index_plan


thresholded_relu.defgrad(_pass_at_or_above_alpha)


@crop.defgrad
def _crop_grad(op, gs):
    x = op.inputs["x"]
    begins = [0] * (x.rank - 2) + [op.attr("crop_height")[0], op.attr("crop_width")[0]]
    return {"x": _embed(gs[0], x.shape, begins, [1] * x.rank)}


@pixel_shuffle.defgrad
def _pixel_shuffle_grad(op, gs):
    x, f = op.inputs["x"], op.attr("upscale_factor")
    n, c, h, w = x.shape
    # space to depth in rank-4 steps (the engine's rank limit): [nC, h, f, w*f] -> [nC, f, h, w*f]
    # -> [nC*f, h, w, f] -> [nC*f, f, h, w] -> [n, C*f*f, h, w]
    g = F.transpose(F.reshape(gs[0], shape=[n * (c // (f * f)), h, f, w * f]), perm=[0, 2, 1, 3])
    g = F.transpose(F.reshape(g, shape=[n * (c // (f * f)) * f, h, w, f]), perm=[0, 3, 1, 2])
    return {"x": F.reshape(g, shape=list(x.shape))}


@reverse.defgrad
def _reverse_grad(op, gs):
    axes_ = op.attr("axes")
    return {"x": F.reverse(gs[0], axes=list(axes_) if axes_ is not None else None)}


@cumsum.defgrad
def _cumsum_grad(op, gs):
    """Each input feeds every later (or, reversed, earlier) running sum: the cumsum of the
    cotangent in the other direction."""
    return {"x": F.cumsum(gs[0], axis=op.attr("axis"), exclusive=bool(op.attr("exclusive")),
                    reverse=not op.attr("reverse"))}


def scatter_along_axis(g, indices, size, ax):
    """The adjoint of gather_along_axis: out[..., v, ...] = sum_k g[..., k, ...] [indices = v],
    as a matmul with a one-hot matrix (forward ops only)."""
    r = g.rank
    perm = [i for i in range(r) if i != ax] + [ax]
    back = [perm.index(i) for i in range(r)]
    idx = F.transpose(indices, perm=perm)
    idx = F.select(idx < 0, idx + size, idx)                       # negative indices from the end
    onehot = F.cast(F.equal(F.expand_dims(idx, axes=[r]),
                           _make_const(_np.arange(size, dtype=_np.int32), "int32")), dtype=g.dtype)  # [..., K, V]
    gt = F.expand_dims(F.transpose(g, perm=perm), axes=[r - 1])                      # [..., 1, K]
    dx = F.matmul(gt, onehot)                                                              # [..., 1, V]
    dx = F.squeeze(dx, axes=[r - 1])
    return F.transpose(dx, perm=back)


@gather_along_axis.defgrad
def _gather_along_axis_grad(op, gs):
    x = op.inputs["x"]
    ax = op.attr("axis") % x.rank
    return {"x": scatter_along_axis(gs[0], op.inputs["indices"], x.shape[ax], ax)}


@topk.defgrad
def _topk_grad(op, gs):
    if gs[0] is None:
        return {}
    if len(op.outputs) < 2:
        raise GradientError("topk: the gradient needs the indices output (return_indices=True)")
    x = op.inputs["x"]
    ax = op.attr("axis") % x.rank
    return {"x": scatter_along_axis(gs[0], op.outputs[1], x.shape[ax], ax)}


@slice_update.defgrad
def _slice_update_grad(op, gs):
    x, u, g = op.inputs["x"], op.inputs["update"], gs[0]
    args = dict(begin=list(op.attr("begin")), end=list(op.attr("end")))
    for name in ("stride", "begin_mask", "end_mask", "squeeze_mask"):
        v = op.attr(name)
        if v is not None:
            args[name] = list(v)
    slices, _ = slice_index_plan(x.shape, args["begin"], args["end"], args.get("stride"), args.get("begin_mask"),
                                 args.get("end_mask"), args.get("squeeze_mask"))
    keep = _np.ones(x.shape)
    keep[tuple(slices)] = 0.0                       # the overwritten elements get no gradient
    return {"x": g * _make_const(keep, g.dtype),
            "update": F.reshape(F.slice_by_index(g, **args), shape=list(u.shape))}


@gather_nd.defgrad
def _gather_nd_grad(op, gs):
    """Scatter-add as a matmul with a one-hot matrix of each index row's row-major cell among
    the K addressed axes, per batch slice: [B, 1, M, V]^T x [B, 1, M, post] in rank-4 views."""
    x, idx, g = op.inputs["x"], op.inputs["indices"], gs[0]
    b, k = op.attr("batch_dims"), idx.shape[-1]
    dims = x.shape[b:b + k]
    batch, cells, post = math.prod(x.shape[:b]), math.prod(dims), math.prod(x.shape[b + k:])
    rows = math.prod(idx.shape[b:-1])
    strides = [math.prod(dims[j + 1:]) for j in range(k)]
    wrapped = F.select(idx < 0, idx + _make_const(_np.array(dims, _np.int32), "int32"), idx)
    cell = F.reduce_sum(wrapped * _make_const(_np.array(strides, _np.int32), "int32"), axes=[-1])
    onehot = F.cast(F.equal(F.reshape(cell, shape=[batch, 1, rows, 1]),
                            _make_const(_np.arange(cells, dtype=_np.int32), "int32")), dtype=g.dtype)
    dx = F.matmul(onehot, F.reshape(g, shape=[batch, 1, rows, post]), transpose_x=True)   # [B, 1, V, post]
    return {"x": F.reshape(dx, shape=list(x.shape))}


@fill_like.defgrad
def _fill_like_grad(op, gs):
    return {"ref_tensor": None}          # only the shape of ref_tensor is read
