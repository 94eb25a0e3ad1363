"""MAC-array ops: convolutions, matmul, linear, attention (guide ch. 4, 20).

Each runs on the multiply array through its convolution or its matmul roof (guide ch. 9,
12); its work (`@spec.defwork`) and its fp16 range rule with the partial-sum bound
(`@spec.defrange`, guide ch. 3) follow the declaration.
"""
from __future__ import annotations

import math

import numpy as np

from .. import intervals as iv
from ..spec import ConstInput, MacWork, const, op, tensor
from ._rules import broadcast_shapes, check_spatial, pad_default, spatial_default, window_out

PAD_TYPES = ("valid", "same", "custom", "same_lower")
# Winograd F(2x2, 3x3) is taken by dense 3x3 stride-1 convs with enough channels (float work
# threshold 16, guide ch. 13 reference table).
WINOGRAD_MIN_CHANNELS = 16


def _batch_above_one(op):
    n = op.inputs["x"].shape[0]
    if n < 2:
        return None
    return (f"weight is a runtime tensor and the batch is {n}; dynamic-weight convolution above batch one "
            "crashes the compiler service (anekit.train.lower_runtime_weights rewrites it as patch expansion "
            "+ matmul)", n)


def _always_runtime(op):
    if op.type == "linear":
        return ("the weight is a runtime input, and MIL's linear takes a constant weight; "
                "anekit.train.lower_runtime_weights rewrites it as a matmul", "runtime")
    return ("the weight is a runtime input, and MIL's conv_transpose takes a constant weight before iOS 17; "
            "the dynamic-weight path also fails above batch one; anekit.train.lower_runtime_weights rewrites "
            "it as per-tap matmuls", "runtime")


# Guide ch. 19: dynamic-weight convolution works at batch one and crashes the compiler
# service above it, so a conv weight must be a compile-time constant from batch two.
_CONST_WEIGHT = {"weight": ConstInput("dynamic-weight-conv", _batch_above_one, "batch 1",
                                      "ANE guide ch. 19, dynamic-weight convolution above batch one")}
# linear and conv_transpose read a constant weight only (coremltools' MIL op definitions: linear
# in iOS 15 and 17, conv_transpose in iOS 15); a runtime weight goes through a matmul instead.
_CONST_WEIGHT_ALWAYS = {"weight": ConstInput("runtime-weight", _always_runtime, "constant weight",
                                             "coremltools MIL op definitions (linear; conv_transpose before iOS 17)")}


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def _conv_work(op) -> MacWork:
    out = op.outputs[0].shape
    x, k = op.inputs["x"].shape, op.inputs["weight"].shape
    groups = int(op.attr("groups") or 1)
    taps = _numel(k[2:])
    if op.type == "conv":
        macs = _numel(out) * (x[1] // groups) * taps
    else:   # each input element scatters into Cout/groups x kernel outputs
        macs = _numel(x) * (k[1]) * taps
    winograd = (op.type == "conv" and len(k) == 4 and tuple(k[2:]) == (3, 3) and groups == 1
                and tuple(op.attr("strides") or (1, 1)) == (1, 1)
                and tuple(op.attr("dilations") or (1, 1)) == (1, 1)
                and x[1] >= WINOGRAD_MIN_CHANNELS and out[1] >= WINOGRAD_MIN_CHANNELS)
    return MacWork(macs, out[1], out[-1] if len(out) > 2 else 1, winograd)


def _conv_range(op, res):
    x = iv.x_of(op, res)
    wt = op.inputs["weight"]
    k = wt.shape
    pads = op.attr("pad") or ()
    if op.attr("pad_type") in ("same", "same_lower") or any(pads):
        x = iv.union(x, (0.0, 0.0))   # zero padding enters the window
    bias = op.inputs.get("bias")
    transpose = op.type == "conv_transpose"
    terms = int(np.prod(k[2:])) * (k[0] if transpose else k[1])
    if not iv.bounded(x):
        return iv.unbounded_mac(op, res, terms)
    w = wt.const
    if w is None:
        return iv.dynamic_mac(op, res, x, res.of(wt), terms, res.of(bias) if bias is not None else None)
    axes = tuple([0] + list(range(2, len(k)))) if transpose else tuple(range(1, len(k)))
    pos, neg, absum = iv.weight_sums(w, axes)
    if transpose:   # weight [Cin, Cout/groups, *K]: output channel j of each group
        g = int(op.attr("groups") or 1)
        pos, neg, absum = (np.tile(a, g) for a in (pos, neg, absum))
    bconst = None if bias is None else bias.const
    if bias is not None and bconst is None:
        out = iv.mac_result(op, res, pos, neg, absum, x, None, terms)
        bi = res.of(bias)
        res.partials[id(op)] += iv.mag(bi)
        return iv.fix(out[0] + bi[0], out[1] + bi[1])
    return iv.mac_result(op, res, pos, neg, absum, x, bconst, terms)




def _conv_common(a, transpose: bool):
    x, w = a.x, a.weight
    if not 3 <= x.rank <= 5:
        raise a.fail("x", f"rank {x.rank} (shape {list(x.shape)}); conv needs [N, C, *spatial] with 1-3 spatial axes")
    n = x.rank - 2
    if w.rank != x.rank:
        raise a.fail("weight", f"rank {w.rank} (shape {list(w.shape)}) must equal x's rank {x.rank}")
    check_spatial(a, ("strides", "dilations", "pad"), n)
    g = a.groups
    if g < 1:
        raise a.fail("groups", f"must be >= 1, got {g}")
    cin = x.shape[1]
    if transpose:
        if w.shape[0] != cin:
            raise a.fail("weight", f"shape {list(w.shape)}: dim 0 must be x's channels {cin}")
        cout = w.shape[1] * g
    else:
        if cin % g or w.shape[1] * g != cin:
            raise a.fail("weight", f"shape {list(w.shape)}: dim 1 x groups ({w.shape[1]} x {g}) must equal "
                                   f"x's channels {cin} (x shape {list(x.shape)})")
        cout = w.shape[0]
        if cout % g:
            raise a.fail("groups", f"{g} does not divide output channels {cout}")
    if a.bias is not None and a.bias.shape != (cout,):
        raise a.fail("bias", f"shape {list(a.bias.shape)} must be [{cout}]")
    return n, cout


@op(kind="mac", path="conv", fp16_range=_conv_range, const_inputs=_CONST_WEIGHT,
    x=tensor(), weight=tensor(), bias=tensor(optional=True),
    strides=const("int32", 1, default=spatial_default(1)),
    pad_type=const("string", 0, default="valid", choices=PAD_TYPES),
    pad=const("int32", 1, default=pad_default),
    dilations=const("int32", 1, default=spatial_default(1)),
    groups=const("int32", 0, default=1))
def conv(a):
    """N-d convolution (cross-correlation), x [N, Cin, *S], weight [Cout, Cin/groups, *K]."""
    n, cout = _conv_common(a, transpose=False)
    k = a.weight.shape[2:]
    sp = [window_out(a, a.x.shape[2 + i], k[i], a.strides[i], a.dilations[i], a.pad_type,
                     a.pad[2 * i], a.pad[2 * i + 1]) for i in range(n)]
    return [(a.T, (a.x.shape[0], cout, *sp))]


conv.defwork(_conv_work)


@op(kind="mac", path="conv", fp16_range=_conv_range, const_inputs=_CONST_WEIGHT_ALWAYS,
    x=tensor(), weight=tensor(), bias=tensor(optional=True),
    pad=const("int32", 1, default=pad_default),
    output_shape=const("int32", 1, default=None),
    pad_type=const("string", 0, default="valid", choices=PAD_TYPES),
    strides=const("int32", 1, default=spatial_default(1)),
    dilations=const("int32", 1, default=spatial_default(1)),
    groups=const("int32", 0, default=1))
def conv_transpose(a):
    """Transposed convolution, weight [Cin, Cout/groups, *K]."""
    n, cout = _conv_common(a, transpose=True)
    k = a.weight.shape[2:]
    sp = []
    for i in range(n):
        size, s, d = a.x.shape[2 + i], a.strides[i], a.dilations[i]
        if a.pad_type in ("same", "same_lower"):
            sp.append(size * s)
        else:
            pb, pe = (0, 0) if a.pad_type == "valid" else (a.pad[2 * i], a.pad[2 * i + 1])
            sp.append((size - 1) * s + d * (k[i] - 1) + 1 - pb - pe)
    shape = (a.x.shape[0], cout, *sp)
    if a.output_shape is not None:
        want = tuple(a.output_shape)
        if len(want) != len(shape) or want[:2] != shape[:2] or any(
                w < s or w >= s + a.strides[i] for i, (w, s) in enumerate(zip(want[2:], shape[2:]))):
            raise a.fail("output_shape", f"{list(want)} is not reachable from computed {list(shape)}")
        shape = want
    if any(s <= 0 for s in shape):
        raise a.fail("pad", f"leaves a non-positive output shape {list(shape)}")
    return [(a.T, shape)]


conv_transpose.defwork(_conv_work)


@op(kind="mac", path="matmul", x=tensor(), y=tensor(),
    transpose_x=const("bool", 0, default=False), transpose_y=const("bool", 0, default=False))
def matmul(a):
    """Batched matrix product with numpy broadcasting over leading axes."""
    xs, ys = list(a.x.shape), list(a.y.shape)
    if not xs or not ys:
        raise a.fail("x", "matmul needs rank >= 1 operands")
    if len(xs) == 1:
        xs = [1] + xs
    if len(ys) == 1:
        ys = ys + [1]
    if a.transpose_x:
        xs[-2:] = xs[:-3:-1]
    if a.transpose_y:
        ys[-2:] = ys[:-3:-1]
    if xs[-1] != ys[-2]:
        raise a.fail("y", f"inner dimensions differ: x {list(a.x.shape)} (transpose_x={a.transpose_x}) "
                          f"and y {list(a.y.shape)} (transpose_y={a.transpose_y})")
    batch = broadcast_shapes(a, "y", tuple(xs[:-2]), tuple(ys[:-2]))
    out = list(batch) + ([xs[-2]] if a.x.rank > 1 else []) + ([ys[-1]] if a.y.rank > 1 else [])
    return [(a.T, tuple(out))]


def _rows_work(op, inner: int) -> MacWork:
    """out [..., M, N]: every output element takes `inner` multiply-accumulates."""
    out = op.outputs[0].shape
    return MacWork(_numel(out) * inner, out[-1] if out else 1, _numel(out[:-1]) if len(out) > 1 else 1)


def matmul_inner(op) -> int:
    xs = op.inputs["x"].shape
    return xs[-2] if (op.attr("transpose_x") and len(xs) > 1) else xs[-1]


matmul.defwork(lambda op: _rows_work(op, matmul_inner(op)))


@matmul.defrange
def _matmul_range(op, res):
    xt, yt = op.inputs["x"], op.inputs["y"]
    tx, ty = bool(op.attr("transpose_x")), bool(op.attr("transpose_y"))
    inner = (xt.shape[-2] if tx and xt.rank > 1 else xt.shape[-1])
    if not (iv.bounded(res.of(xt)) if xt.const is None else True) or \
            not (iv.bounded(res.of(yt)) if yt.const is None else True):
        return iv.unbounded_mac(op, res, inner)
    if yt.const is not None and xt.const is None and yt.rank >= 2:
        w = np.asarray(yt.const, np.float64)
        w = np.swapaxes(w, -1, -2) if ty else w          # [..., K, N]
        w = w.reshape((-1,) + w.shape[-2:]).transpose(1, 0, 2).reshape(w.shape[-2], -1)
        pos, neg, absum = iv.weight_sums(w, 0)
        return iv.mac_result(op, res, pos, neg, absum, res.of(xt), None, inner)
    if xt.const is not None and yt.const is None and xt.rank >= 2:
        w = np.asarray(xt.const, np.float64)
        w = np.swapaxes(w, -1, -2) if tx else w          # [..., M, K]: rows against y's columns
        w = w.reshape(-1, w.shape[-1])
        pos, neg, absum = iv.weight_sums(w, 1)
        return iv.mac_result(op, res, pos, neg, absum, res.of(yt), None, inner)
    return iv.dynamic_mac(op, res, res.of(xt), res.of(yt), inner)


@op(kind="mac", path="matmul", const_inputs=_CONST_WEIGHT_ALWAYS,
    x=tensor(), weight=tensor(), bias=tensor(optional=True))
def linear(a):
    """x @ weight.T + bias, weight [out, in] (a 1x1 conv on the ANE)."""
    if a.weight.rank != 2:
        raise a.fail("weight", f"must be [out, in], got shape {list(a.weight.shape)}")
    if a.x.rank < 1 or a.x.shape[-1] != a.weight.shape[1]:
        raise a.fail("weight", f"in-features {a.weight.shape[1]} must match x's last axis (x shape {list(a.x.shape)})")
    if a.bias is not None and a.bias.shape != (a.weight.shape[0],):
        raise a.fail("bias", f"shape {list(a.bias.shape)} must be [{a.weight.shape[0]}]")
    return [(a.T, a.x.shape[:-1] + (a.weight.shape[0],))]


linear.defwork(lambda op: _rows_work(op, op.inputs["weight"].shape[1]))


@linear.defrange
def _linear_range(op, res):
    x = iv.x_of(op, res)
    wt, bias = op.inputs["weight"], op.inputs.get("bias")
    terms = wt.shape[1]
    if not iv.bounded(x):
        return iv.unbounded_mac(op, res, terms)
    if wt.const is None or (bias is not None and bias.const is None):
        return iv.dynamic_mac(op, res, x, res.of(wt), terms, res.of(bias) if bias is not None else None)
    pos, neg, absum = iv.weight_sums(wt.const, 1)
    return iv.mac_result(op, res, pos, neg, absum, x, None if bias is None else bias.const, terms)


def _sdpa_work(op) -> MacWork:
    q, k, v = (op.inputs[n].shape for n in ("query", "key", "value"))
    batch = _numel(op.outputs[0].shape[:-2])
    return MacWork(batch * q[-2] * k[-2] * (q[-1] + v[-1]), k[-2], q[-2] * batch)


def _sdpa_range(op, res):
    q, k, v = (res.of(op.inputs[n]) for n in ("query", "key", "value"))
    e = op.inputs["query"].shape[-1]
    # The Q K^T product runs on the MAC array; bound it after the 1/sqrt(E) scale.
    res.partials[id(op)] = e * iv.mag(q) * iv.mag(k) / math.sqrt(e)
    res.taps[id(op)] = e
    return v   # the output is a convex combination of value rows


@op(kind="mac", path="matmul", mac_work=_sdpa_work, fp16_range=_sdpa_range, since="ios18",
    query=tensor(), key=tensor(), value=tensor(),
    attn_mask=tensor(("bool", "fp16", "fp32"), optional=True))
def scaled_dot_product_attention(a):
    """softmax(Q K^T / sqrt(E) + mask) V, Q [..., L, E], K [..., S, E], V [..., S, Ev] (iOS18)."""
    q, k, v = a.query.shape, a.key.shape, a.value.shape
    if len(q) < 3 or len(k) != len(q) or len(v) != len(q):
        raise a.fail("key", f"query/key/value need equal rank >= 3, got {list(q)}, {list(k)}, {list(v)}")
    if q[-1] != k[-1]:
        raise a.fail("key", f"embedding size {k[-1]} differs from query's {q[-1]}")
    if k[-2] != v[-2]:
        raise a.fail("value", f"sequence length {v[-2]} differs from key's {k[-2]}")
    batch = broadcast_shapes(a, "value", q[:-2], k[:-2], v[:-2])
    if a.attn_mask is not None:
        broadcast_shapes(a, "attn_mask", a.attn_mask.shape, batch + (q[-2], k[-2]))
    return [(a.T, tuple(batch) + (q[-2], v[-1]))]




# --- gradient rules (vector-Jacobian products written with forward ops; guide ch. 15) ---------

from ..declared import F  # noqa: E402
from ._gradlib import adjoint_window, conv_patches, numel, unbroadcast, window_pads  # noqa: E402


@matmul.defgrad
def _matmul_grad(op, gs):
    """out = A @ B with A = x or x^T, B = y or y^T: dA = g B^T, dB = A^T g, then undo the
    transposes with matmul's own flags; batch axes broadcast away in autodiff."""
    x, y, g = op.inputs["x"], op.inputs["y"], gs[0]
    tx, ty = bool(op.attr("transpose_x")), bool(op.attr("transpose_y"))
    x2 = x if x.rank > 1 else F.reshape(x, shape=[1, x.shape[0]])
    y2 = y if y.rank > 1 else F.reshape(y, shape=[y.shape[0], 1])
    g2 = g
    if x.rank == 1:
        g2 = F.expand_dims(g2, axes=[g2.rank - (1 if y.rank > 1 else 0)])
    if y.rank == 1:
        g2 = F.expand_dims(g2, axes=[g2.rank])
    if tx:
        dx = F.matmul(y2, g2, transpose_x=ty, transpose_y=True)
    else:
        dx = F.matmul(g2, y2, transpose_y=not ty)
    if ty:
        dy = F.matmul(g2, x2, transpose_x=True, transpose_y=tx)
    else:
        dy = F.matmul(x2, g2, transpose_x=not tx)
    dx, dy = unbroadcast(dx, x2.shape), unbroadcast(dy, y2.shape)
    return {"x": F.reshape(dx, shape=list(x.shape)) if x.rank == 1 else dx,
            "y": F.reshape(dy, shape=list(y.shape)) if y.rank == 1 else dy}


@linear.defgrad
def _linear_grad(op, gs):
    x, w, g = op.inputs["x"], op.inputs["weight"], gs[0]
    n_out, n_in = w.shape
    g2 = F.reshape(g, shape=[-1, n_out])
    x2 = F.reshape(x, shape=[-1, n_in])
    return {"x": F.matmul(g, w),
            "weight": F.matmul(g2, x2, transpose_x=True),
            "bias": F.reduce_sum(g2, axes=[0])}


def conv_geometry(op):
    """(kernel, strides, dilations, pads) of a conv op, pads as (before, after) per axis."""
    x, w = op.inputs["x"], op.inputs["weight"]
    k = w.shape[2:]
    strides = tuple(op.attr("strides") or (1,) * len(k))
    dil = tuple(op.attr("dilations") or (1,) * len(k))
    return k, strides, dil, window_pads(op, x.shape, k, strides, dil)


def conv_weight_grad(x, g, k, strides, dil, pads, groups):
    """dL/dW of a convolution by patch expansion and a matmul: one strided slice of the padded
    input per kernel tap, stacked on the channel axis, then per sample [g, Cout/g, P] x
    [g, T*Cin/g, P]^T summed over the batch (guide ch. 15: the engine has no multi-channel
    weight-gradient op). Contracting positions per sample keeps every axis within the
    engine's per-axis limit where batch x positions would not."""
    n, cin = x.shape[:2]
    cout, out_sp = g.shape[1], g.shape[2:]
    positions, taps, cg = numel(out_sp), numel(k), cin // groups
    gm = F.reshape(g, shape=[n, groups, cout // groups, positions])
    patches = conv_patches(x, k, strides, dil, pads, out_sp, groups)                  # [N, g, T*Cin/g, P]
    dw = F.reduce_sum(F.matmul(gm, patches, transpose_y=True), axes=[0])        # [g, Cout/g, T*Cin/g]
    dw = F.transpose(F.reshape(dw, shape=[groups, cout // groups, taps, cg]), perm=[0, 1, 3, 2])
    return F.reshape(dw, shape=[cout, cg, *k])


@conv.defgrad
def _conv_grad(op, gs):
    """Data gradient: the transposed convolution with the same weight; weight gradient: patch
    expansion + matmul; bias: the sum over batch and positions."""
    x, w, g = op.inputs["x"], op.inputs["weight"], gs[0]
    k, strides, dil, pads = conv_geometry(op)
    groups = int(op.attr("groups"))
    flat, out_shape = adjoint_window(x.shape, g.shape, k, strides, dil, pads)
    dx = F.conv_transpose(g, w, pad=flat, pad_type="custom", strides=list(strides),
            dilations=list(dil), groups=groups, output_shape=out_shape)
    return {"x": dx, "weight": conv_weight_grad(x, g, k, strides, dil, pads, groups),
            "bias": F.reduce_sum(g, axes=[0] + list(range(2, g.rank)))}


@conv_transpose.defgrad
def _conv_transpose_grad(op, gs):
    """The transposed convolution is the adjoint of conv with the same weight, so its data
    gradient is that conv and its weight gradient the conv weight gradient with the roles of
    input and cotangent swapped."""
    x, w, g = op.inputs["x"], op.inputs["weight"], gs[0]
    k = w.shape[2:]
    strides = tuple(op.attr("strides") or (1,) * len(k))
    dil = tuple(op.attr("dilations") or (1,) * len(k))
    pad_type, pad = op.attr("pad_type"), op.attr("pad")
    pads = []
    for i in range(len(k)):
        if pad_type == "custom":
            pads.append((int(pad[2 * i]), int(pad[2 * i + 1])))
        elif pad_type in ("same", "same_lower"):
            full = (x.shape[2 + i] - 1) * strides[i] + dil[i] * (k[i] - 1) + 1
            total = full - x.shape[2 + i] * strides[i]
            start = max(total // 2 if pad_type == "same" else total - total // 2, 0)
            pads.append((start, max(total - start, 0)))
        else:
            pads.append((0, 0))
    groups = int(op.attr("groups"))
    dx = F.conv(g, w, strides=list(strides), pad_type="custom", pad=[v for p in pads for v in p],
            dilations=list(dil), groups=groups)
    return {"x": dx, "weight": conv_weight_grad(g, x, k, strides, dil, pads, groups),
            "bias": F.reduce_sum(g, axes=[0] + list(range(2, g.rank)))}


@scaled_dot_product_attention.defgrad
def _sdpa_grad(op, gs):
    """Recompute P = softmax(Q K^T s + mask) with forward ops, then dV = P^T g, dP = g V^T,
    dS = P (dP - sum(dP P)), dQ = dS K s, dK = dS^T Q s (a float mask gets dS)."""
    q, k, v, mask, g = (op.inputs["query"], op.inputs["key"], op.inputs["value"],
                        op.inputs.get("attn_mask"), gs[0])
    scale = 1.0 / (q.shape[-1] ** 0.5)
    s = F.matmul(q, k, transpose_y=True) * scale
    if mask is not None:
        s = F.select(mask, s, -3.0e38 if s.dtype == "fp32" else -65504.0) if mask.dtype == "bool" else s + mask
    p = F.softmax(s, axis=-1)
    dp = F.matmul(g, v, transpose_y=True)
    ds = p * (dp - F.reduce_sum(dp * p, axes=[-1], keep_dims=True))
    out = {"query": F.matmul(ds, k) * scale,
           "key": F.matmul(ds, q, transpose_x=True) * scale,
           "value": F.matmul(p, g, transpose_x=True)}
    if mask is not None and mask.dtype != "bool":
        out["attn_mask"] = ds
    return out
