"""Runtime weights in forms the engine compiles (guide ch. 15 and ch. 19).

A trainable weight is a graph input, not a folded constant. A matmul takes two runtime
operands natively, so a weight that feeds a matmul stays as it is ("weights as inputs"). A
convolution whose weight is a runtime tensor uses the engine's dynamic-weight path, which
compiles at batch one only (ch. 19); above that it is rewritten here as patch expansion
(one strided slice of the padded input per kernel tap) and a matmul against the reshaped
weight. MIL's linear takes a constant weight only, and its conv_transpose does before
iOS 17 (coremltools' op definitions), so with a runtime weight those are always rewritten:
a linear as a matmul with the weight transposed, a transposed convolution as one matmul per
kernel tap whose result is scattered back (`embed`).

    outs = lower_runtime_weights({"loss": loss, "dw": dw}, target="m1")   # then ak.program(outs)

Each op this writes is named `<op>__<form>` (forms in anekit.preflight.training.FORMS), so `ak.check` can say which
form a runtime-weight op took and why (anekit.preflight.training).
"""
from __future__ import annotations

import itertools

from ..ir.declared import F
from ..ir.ops._gradlib import conv_patches, embed, flat_taps, narrow, numel, window_pads
from ..ir.passes import rewrite
from ..ir.weights import is_weight
from ..preflight.ane_route import pad_runtime_matmuls_for

_serial = itertools.count()   # names for unnamed ops the rewrite touches


def needs_lowering(op) -> bool:
    """A conv above batch one, or any conv_transpose or linear, whose weight is a runtime tensor."""
    if op.type not in ("conv", "conv_transpose", "linear"):
        return False
    if is_weight(op.inputs["weight"]):
        return False
    return op.type != "conv" or op.inputs["x"].shape[0] > 1


def lower_runtime_weights(outputs, target=None):
    """The graph behind `outputs` (a tensor, a list or a {name: tensor} dict) with every
    runtime-weight conv, conv_transpose and linear rewritten as matmuls; returns the same
    structure. Ops that need no rewrite are shared with the original graph. With a `target`
    (a chip record or name) whose runtime matmuls need an inner dimension of some multiple
    (M1, preflight/ane_route.py), every runtime-operand matmul, the backward graph's and the
    rewrite's own, is then zero-padded to it (anekit.ir.passes.pad_runtime_matmuls)."""
    lowered = rewrite(outputs, lambda o, inputs: _LOWER[o.type](o, inputs) if needs_lowering(o) else None)
    return lowered if target is None else pad_runtime_matmuls_for(lowered, target)


def _base(o) -> str:
    """The name the rewritten ops of `o` start with: its own, else its type and a serial."""
    return o.name or f"{o.type}{next(_serial)}"


def _geometry(o, x, w):
    k = w.shape[2:]
    strides = tuple(o.attr("strides") or (1,) * len(k))
    dil = tuple(o.attr("dilations") or (1,) * len(k))
    return k, strides, dil


def _lower_conv(o, inputs):
    x, w, bias = inputs["x"], inputs["weight"], inputs.get("bias")
    k, strides, dil = _geometry(o, x, w)
    pads = window_pads(o, x.shape, k, strides, dil)
    groups = int(o.attr("groups"))
    n, cin = x.shape[:2]
    cout, out_sp = w.shape[0], o.outputs[0].shape[2:]
    cg, taps = cin // groups, numel(k)
    cols = conv_patches(x, k, strides, dil, pads, out_sp, groups)                       # [N, g, T*Cin/g, P]
    wm = F.transpose(F.reshape(w, shape=[cout, cg, taps]), perm=[0, 2, 1])         # [Cout, T, Cin/g]
    wm = F.reshape(wm, shape=[1, groups, cout // groups, taps * cg])
    y = F.matmul(wm, cols, name=f"{_base(o)}__patch_matmul")                             # [N, g, Cout/g, P]
    y = F.reshape(y, shape=[n, cout, *out_sp])
    return y if bias is None else y + F.reshape(bias, shape=[1, cout] + [1] * len(out_sp))


def _lower_conv_transpose(o, inputs):
    x, w, bias = inputs["x"], inputs["weight"], inputs.get("bias")
    k, strides, dil = _geometry(o, x, w)
    groups = int(o.attr("groups"))
    n, cin = x.shape[:2]
    cg, og = cin // groups, w.shape[1]
    out = o.outputs[0]
    full = [(s - 1) * st + d * (kk - 1) + 1 for s, st, d, kk in zip(x.shape[2:], strides, dil, k)]
    xs = F.reshape(x, shape=[n, groups, cg, numel(x.shape[2:])])
    wt = F.reshape(w, shape=[groups, cg, og, numel(k)])
    total, base = None, _base(o)
    for t, tap in enumerate(flat_taps(k)):
        w_t = F.slice_by_size(wt, begin=[0, 0, 0, t], size=[-1, -1, -1, 1])
        w_t = F.reshape(w_t, shape=[1, groups, cg, og])
        y_t = F.matmul(w_t, xs, transpose_x=True, name=f"{base}__tap_matmul{t}")        # [N, g, Cout/g, S]
        y_t = F.reshape(y_t, shape=[n, groups * og, *x.shape[2:]])
        part = embed(y_t, [n, groups * og, *full], [0, 0] + [q * d for q, d in zip(tap, dil)], [1, 1, *strides])
        total = part if total is None else total + part
    # Crop as conv_transpose does (pads before, output_shape); rows past `full` are zero.
    pad_type, pad = o.attr("pad_type"), o.attr("pad")
    begin = []
    for i, (f, q, s) in enumerate(zip(full, out.shape[2:], x.shape[2:])):
        if pad_type in ("same", "same_lower"):
            tot = f - s * strides[i]
            begin.append(max(tot // 2 if pad_type == "same" else tot - tot // 2, 0))
        else:
            begin.append(int(pad[2 * i]) if pad_type == "custom" else 0)
    extra = [max(0, st + q - f) for st, q, f in zip(begin, out.shape[2:], full)]
    if any(extra):
        total = F.pad(total, pad=[v for e in extra for v in (0, e)])
    y = narrow(total, [0, 0, *begin], out.shape)       # no loss-scaled width-offset slice
    return y if bias is None else y + F.reshape(bias, shape=[1, out.shape[1]] + [1] * (out.rank - 2))


def _lower_linear(o, inputs):
    x, w, bias = inputs["x"], inputs["weight"], inputs.get("bias")
    y = F.matmul(x, w, transpose_y=True, name=f"{_base(o)}__weight_matmul")
    return y if bias is None else y + bias


_LOWER = {"conv": _lower_conv, "conv_transpose": _lower_conv_transpose, "linear": _lower_linear}
