"""ATen op -> anekit ops: the one table of the PyTorch importer, keyed by ATen schema name.

Each rule gets the Context (`cx.t(v)` makes any value a graph tensor, `cx.dtype` is the
program's float type) and the op's arguments by schema name. Ops with no anekit counterpart are
composed from declared ones (hardswish = x * sigmoid_hard(x), causal attention = a constant
boolean mask). Inference only: dropout is the identity, batch norm uses running statistics.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ModelImportError
from ..ir.builder import build
from ._common import FLOATS, broadcast_to, same_float, table_decorator
from ..ir.graph import Tensor

ATEN: dict = {}
rule = table_decorator(ATEN)


def _axis(d: int, rank: int) -> int:
    return d % rank if rank else 0


def _pairs(v, n: int) -> list[int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * n if len(v) == 1 else v


# ---- convolution, pooling, normalization -------------------------------------------------

def _conv(cx, x, w, b, stride, padding, dilation, groups, transposed=False, output_padding=(0,)):
    x, w = cx.t(x), cx.t(w)
    n = x.rank - 2
    kw = dict(strides=_pairs(stride, n), dilations=_pairs(dilation, n), groups=int(groups),
              bias=None if b is None else cx.t(b))
    if isinstance(padding, str):   # conv2d(padding="same" | "valid")
        kw["pad_type"] = padding
    else:
        p = _pairs(padding, n)
        kw.update(pad_type="custom", pad=[v for q in p for v in (q, q)])
    if transposed:
        if any(_pairs(output_padding, n)):
            raise ModelImportError("transposed convolution with output_padding is not supported")
        return build("conv_transpose", x, w, **kw)
    return build("conv", x, w, **kw)


@rule("aten.conv1d", "aten.conv2d", "aten.conv3d", emits=("conv",))
def conv(cx, a):
    return _conv(cx, a["input"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["groups"])


@rule("aten.convolution", emits=("conv", "conv_transpose"))
def convolution(cx, a):
    return _conv(cx, a["input"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"],
                 a["groups"], a["transposed"], a["output_padding"])


def _batch_norm(cx, a):
    x = cx.t(a["input"])
    gamma = cx.t(a["weight"]) if a["weight"] is not None else None
    beta = cx.t(a["bias"]) if a["bias"] is not None else None
    return build("batch_norm", x, cx.t(a["running_mean"]), cx.t(a["running_var"]), gamma, beta,
                 epsilon=float(a["eps"]))


@rule("aten.batch_norm", emits=("batch_norm",))
def batch_norm(cx, a):
    if a["training"]:
        raise ModelImportError("batch_norm in training mode: call module.eval() before importing")
    return _batch_norm(cx, a)


@rule("aten._native_batch_norm_legit_no_training", emits=("batch_norm",))
def native_batch_norm(cx, a):
    return (_batch_norm(cx, a), None, None)


@rule("aten.layer_norm", emits=("layer_norm",))
def layer_norm(cx, a):
    x = cx.t(a["input"])
    k = len(a["normalized_shape"])
    w = None if a["weight"] is None else cx.t(a["weight"])
    b = None if a["bias"] is None else cx.t(a["bias"])
    return build("layer_norm", x, axes=list(range(x.rank - k, x.rank)), gamma=w, beta=b, epsilon=float(a["eps"]))


@rule("aten.native_layer_norm", emits=("layer_norm",))
def native_layer_norm(cx, a):
    return (layer_norm(cx, a), None, None)


def _pool(cx, a, kind):
    x = cx.t(a["self"])
    n = x.rank - 2
    k = _pairs(a["kernel_size"], n)
    s = _pairs(a["stride"], n) if a["stride"] else k
    p = _pairs(a["padding"], n)
    if kind == "max_pool" and any(d != 1 for d in _pairs(a["dilation"], n)):
        raise ModelImportError("max pooling with dilation is not supported")
    kw = dict(kernel_sizes=k, strides=s, pad_type="custom", pad=[v for q in p for v in (q, q)],
              ceil_mode=bool(a["ceil_mode"]))
    if kind == "avg_pool":
        if a.get("divisor_override") is not None:
            raise ModelImportError("avg_pool with divisor_override is not supported")
        kw["exclude_padding_from_average"] = not a["count_include_pad"]
    return build(kind, x, **kw)


@rule("aten.max_pool1d", "aten.max_pool2d", "aten.max_pool3d", emits=("max_pool",))
def max_pool(cx, a):
    return _pool(cx, a, "max_pool")


@rule("aten.max_pool2d_with_indices", emits=("max_pool",))
def max_pool_with_indices(cx, a):
    return (_pool(cx, a, "max_pool"), None)


@rule("aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d", emits=("avg_pool",))
def avg_pool(cx, a):
    return _pool(cx, a, "avg_pool")


@rule("aten.adaptive_avg_pool1d", "aten.adaptive_avg_pool2d", "aten.adaptive_avg_pool3d",
      emits=("reduce_mean", "avg_pool"))
def adaptive_avg_pool(cx, a):
    x = cx.t(a["self"])
    n = x.rank - 2
    out = _pairs(a["output_size"], n)
    size = x.shape[2:]
    if all(o == 1 for o in out):
        return build("reduce_mean", x, axes=list(range(2, x.rank)), keep_dims=True)
    if any(s % o for s, o in zip(size, out)):
        raise ModelImportError(f"adaptive_avg_pool: output size {out} does not divide input size {list(size)}")
    k = [s // o for s, o in zip(size, out)]
    return build("avg_pool", x, kernel_sizes=k, strides=k)


# ---- linear algebra and attention ----------------------------------------------------------

@rule("aten.linear", emits=("linear",))
def linear(cx, a):
    b = None if a["bias"] is None else cx.t(a["bias"])
    return build("linear", cx.t(a["input"]), cx.t(a["weight"]), b)


@rule("aten.matmul", "aten.mm", "aten.bmm", emits=("matmul",))
def matmul(cx, a):
    y = a["other"] if "other" in a else a["mat2"]
    return build("matmul", cx.t(a["self"]), cx.t(y))


@rule("aten.addmm", emits=("matmul", "add", "mul"))
def addmm(cx, a):
    out = build("matmul", cx.t(a["mat1"]), cx.t(a["mat2"]))
    if a["alpha"] != 1:
        out = out * float(a["alpha"])
    bias = cx.t(a["self"])
    return out + (bias if a["beta"] == 1 else bias * float(a["beta"]))


@rule("aten.scaled_dot_product_attention",
      emits=("scaled_dot_product_attention", "mul", "reshape", "tile", "cast"))
def sdpa(cx, a):
    """Declared sdpa scales by 1/sqrt(E) and takes one mask: another `scale` pre-scales q,
    is_causal becomes a constant lower-triangular boolean mask, GQA repeats k and v heads."""
    q, k, v = cx.t(a["query"]), cx.t(a["key"]), cx.t(a["value"])
    if a["dropout_p"]:
        raise ModelImportError("scaled_dot_product_attention with dropout_p > 0 (training) is not supported")
    e = q.shape[-1]
    if a["scale"] is not None and not math.isclose(a["scale"], 1 / math.sqrt(e), rel_tol=1e-6):
        q = q * float(a["scale"] * math.sqrt(e))
    if q.rank >= 3 and k.shape[-3] != q.shape[-3]:   # grouped-query attention
        rep = q.shape[-3] // k.shape[-3]
        k, v = (_repeat_heads(t, rep) for t in (k, v))
    mask = a["attn_mask"]
    if a["is_causal"]:
        if mask is not None:
            raise ModelImportError("scaled_dot_product_attention: attn_mask and is_causal together")
        mask = np.tril(np.ones((q.shape[-2], k.shape[-2]), dtype=bool))
    if mask is not None:
        mask = _mask(cx, mask)
    return build("scaled_dot_product_attention", q, k, v, mask)


def _mask(cx, mask):
    """Boolean masks stay boolean; additive float masks are clipped to -1e4 so fp16 stays finite
    (exp(-1e4) underflows to 0 all the same)."""
    if isinstance(mask, Tensor):
        return mask if mask.dtype == "bool" or mask.dtype == cx.dtype else build("cast", mask, dtype=cx.dtype)
    arr = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if arr.dtype.kind == "f":
        arr = np.maximum(arr.astype(np.float32), -1e4)
    return cx.t(arr)


def _repeat_heads(t, rep: int):
    *lead, h, s, d = t.shape
    t = build("reshape", t, shape=(*lead, h, 1, s, d))
    t = build("tile", t, reps=(1,) * len(lead) + (1, rep, 1, 1))
    return build("reshape", t, shape=(*lead, h * rep, s, d))


@rule("aten.embedding", emits=("gather",))
def embedding(cx, a):
    return build("gather", cx.t(a["weight"]), cx.t(a["indices"]), axis=0)


# ---- elementwise -------------------------------------------------------------------------

def _binary(op):
    def convert(cx, a):
        x, y = cx.t(a["self"]), a["other"]
        if "alpha" in a and a["alpha"] not in (None, 1):
            y = cx.t(y) * float(a["alpha"])
        x, y = same_float(x, _scalar_like(cx, y, x), cx.dtype)
        return build(op, x, y)
    return convert


def _scalar_like(cx, v, like):
    """A Python number as a const of `like`'s dtype (ints stay ints only for int tensors)."""
    if isinstance(v, (int, float, bool)) and not isinstance(v, np.ndarray):
        if like.dtype in FLOATS:
            return cx.t(float(v))
        return cx.t(np.asarray(v, dtype=np.int32 if like.dtype == "int32" else bool))
    return cx.t(v)


for _names, _op in ((("aten.add", "aten.add_"), "add"),
                    (("aten.sub", "aten.sub_"), "sub"),
                    (("aten.mul", "aten.mul_"), "mul"),
                    (("aten.maximum",), "maximum"), (("aten.minimum",), "minimum"),
                    (("aten.eq",), "equal"), (("aten.ne",), "not_equal"),
                    (("aten.gt",), "greater"), (("aten.ge",), "greater_equal"),
                    (("aten.lt",), "less"), (("aten.le",), "less_equal")):
    rule(*_names, emits=(_op, "mul", "cast"))(_binary(_op))


@rule("aten.pow", emits=("pow", "square", "cast"))
def pow_(cx, a):
    x, e = cx.t(a["self"]), a["exponent"]
    if isinstance(e, (int, float)) and e == 2:
        return build("square", x)
    x, y = same_float(x, _scalar_like(cx, e, x), cx.dtype)
    return build("pow", x, y)


@rule("aten.rsub", emits=("sub", "mul", "cast"))
def rsub(cx, a):
    x = cx.t(a["self"])
    y = _scalar_like(cx, a["other"], x)
    if a["alpha"] not in (None, 1):
        x = x * float(a["alpha"])
    y, x = same_float(y, x, cx.dtype)
    return build("sub", y, x)


@rule("aten.div", "aten.div_", emits=("real_div", "floor", "cast"))
def div(cx, a):
    x, y = same_float(cx.t(a["self"]), _scalar_like(cx, a["other"], cx.t(a["self"])), cx.dtype)
    mode = a.get("rounding_mode")
    if x.dtype not in FLOATS:
        x, y = build("cast", x, dtype=cx.dtype), build("cast", y, dtype=cx.dtype)
    out = build("real_div", x, y)
    if mode == "floor":
        return build("floor", out)
    if mode == "trunc":
        raise ModelImportError("div with rounding_mode='trunc' is not supported")
    return out


_UNARY = {"aten.relu": "relu", "aten.relu_": "relu", "aten.sigmoid": "sigmoid", "aten.sigmoid_": "sigmoid",
          "aten.tanh": "tanh", "aten.exp": "exp", "aten.sqrt": "sqrt", "aten.abs": "abs", "aten.erf": "erf",
          "aten.silu": "silu", "aten.silu_": "silu", "aten.sin": "sin", "aten.cos": "cos",
          "aten.floor": "floor", "aten.ceil": "ceil", "aten.logical_not": "logical_not",
          "aten.relu6": "relu6", "aten.softplus": "softplus"}
for _name, _op in _UNARY.items():
    rule(_name, emits=(_op,))(lambda cx, a, _op=_op: build(_op, cx.t(a["self"])))


@rule("aten.log", emits=("log",))
def log(cx, a):
    return build("log", cx.t(a["self"]), epsilon=0.0)


@rule("aten.rsqrt", emits=("rsqrt",))
def rsqrt(cx, a):
    return build("rsqrt", cx.t(a["self"]), epsilon=0.0)


@rule("aten.reciprocal", emits=("real_div",))
def reciprocal(cx, a):
    return 1.0 / cx.t(a["self"])


@rule("aten.neg", emits=("mul",))
def neg(cx, a):
    return -cx.t(a["self"])


@rule("aten.gelu", "aten.gelu_", emits=("gelu",))
def gelu(cx, a):
    mode = {"none": "EXACT", "tanh": "TANH_APPROXIMATION"}[a["approximate"]]
    return build("gelu", cx.t(a["self"]), mode=mode)


@rule("aten.hardsigmoid", "aten.hardsigmoid_", emits=("sigmoid_hard",))
def hardsigmoid(cx, a):
    return build("sigmoid_hard", cx.t(a["self"]), alpha=1 / 6, beta=0.5)


@rule("aten.hardswish", "aten.hardswish_", emits=("sigmoid_hard", "mul"))
def hardswish(cx, a):
    x = cx.t(a["self"])
    return x * build("sigmoid_hard", x, alpha=1 / 6, beta=0.5)


@rule("aten.leaky_relu", "aten.leaky_relu_", emits=("leaky_relu",))
def leaky_relu(cx, a):
    return build("leaky_relu", cx.t(a["self"]), alpha=float(a["negative_slope"]))


@rule("aten.elu", "aten.elu_", emits=("elu",))
def elu(cx, a):
    if a["scale"] != 1 or a["input_scale"] != 1:
        raise ModelImportError("elu with scale or input_scale other than 1 is not supported")
    return build("elu", cx.t(a["self"]), alpha=float(a["alpha"]))


@rule("aten.clamp", "aten.clamp_", "aten.hardtanh", "aten.hardtanh_", emits=("clip", "maximum", "minimum"))
def clamp(cx, a):
    x = cx.t(a["self"])
    lo = a["min"] if "min" in a else a["min_val"]
    hi = a["max"] if "max" in a else a["max_val"]
    if lo is not None and hi is not None:
        return build("clip", x, alpha=float(lo), beta=float(hi))
    if lo is not None:
        return build("maximum", x, _scalar_like(cx, lo, x))
    return build("minimum", x, _scalar_like(cx, hi, x))


@rule("aten.where", emits=("select", "cast"))
def where(cx, a):
    x, y = same_float(cx.t(a["self"]), cx.t(a["other"]), cx.dtype)
    return build("select", cx.t(a["condition"]), x, y)


@rule("aten.softmax", "aten._softmax", emits=("softmax",))
def softmax(cx, a):
    return build("softmax", cx.t(a["self"]), axis=int(a["dim"]))


# ---- reductions --------------------------------------------------------------------------

def _reduce(op):
    def convert(cx, a):
        x = cx.t(a["self"])
        dims = a.get("dim")
        axes = None if dims is None or dims == [] else [_axis(d, x.rank) for d in
                                                         (dims if isinstance(dims, (list, tuple)) else [dims])]
        return build(op, x, axes=axes, keep_dims=bool(a.get("keepdim", False)))
    return convert


for _name, _op in (("aten.mean", "reduce_mean"), ("aten.sum", "reduce_sum"), ("aten.amax", "reduce_max"),
                   ("aten.amin", "reduce_min")):
    rule(_name, emits=(_op,))(_reduce(_op))


def _bool_reduce(op):
    """any / all as max / min over 0-1 int32 values (reductions take no bool), then > 0."""
    def convert(cx, a):
        x = cx.t(a["self"])
        dims = a.get("dim")
        axes = None if dims is None else [_axis(d, x.rank) for d in
                                          (dims if isinstance(dims, (list, tuple)) else [dims])]
        if x.dtype in FLOATS:
            x = build("not_equal", x, 0.0)
        if x.dtype == "bool":
            x = build("cast", x, dtype="int32")
        return build("greater", build(op, x, axes=axes, keep_dims=bool(a.get("keepdim", False))), 0)
    return convert


rule("aten.any", emits=("not_equal", "cast", "reduce_max", "greater"))(_bool_reduce("reduce_max"))
rule("aten.all", emits=("not_equal", "cast", "reduce_min", "greater"))(_bool_reduce("reduce_min"))


def _filled(value):
    """x-shaped constants depend only on x's static shape: consts, whatever x computes."""
    def convert(cx, a):
        x = cx.t(a["self"])
        want = a.get("dtype")
        if want is None:
            kind = "f" if x.dtype in FLOATS else ("b" if x.dtype == "bool" else "i")
        else:
            import torch
            kind = "f" if want.is_floating_point else ("b" if want == torch.bool else "i")
        dt = {"f": np.float32, "b": bool, "i": np.int32}[kind]
        return cx.t(np.full(x.shape, a["fill_value"] if value is None else value, dtype=dt))
    return convert


rule("aten.full_like", emits=("const",))(_filled(None))
rule("aten.zeros_like", emits=("const",))(_filled(0))
rule("aten.ones_like", emits=("const",))(_filled(1))


# ---- shape and data movement --------------------------------------------------------------

def _passthrough(cx, a):
    return a["self"]


# Inference-time no-ops: copies, layout hints, dropout in eval mode, metadata checks.
rule("aten.clone", "aten.contiguous", "aten.alias", "aten.detach", "aten.lift_fresh_copy",
     emits=())(_passthrough)


@rule("aten.dropout", "aten.dropout_", "aten.feature_dropout", "aten.alpha_dropout", emits=())
def dropout(cx, a):
    if a["train"]:
        raise ModelImportError("dropout in training mode: call module.eval() before importing")
    return a["input"] if "input" in a else a["self"]



rule("aten._assert_tensor_metadata", emits=())(lambda cx, a: None)


@rule("aten.to", "aten._to_copy", emits=("cast",))
def to(cx, a):
    """Float-to-float conversions keep the program's one float type; others cast."""
    x = cx.t(a["self"])
    want = a.get("dtype")
    if want is None:
        return x
    import torch
    kind = "f" if want.is_floating_point else ("b" if want == torch.bool else "i")
    target = cx.dtype if kind == "f" else ("bool" if kind == "b" else "int32")
    return x if x.dtype == target else build("cast", x, dtype=target)


@rule("aten.view", "aten.reshape", "aten._unsafe_view", emits=("reshape",))
def reshape(cx, a):
    return build("reshape", cx.t(a["self"]), shape=[int(s) for s in (a["size"] if "size" in a else a["shape"])])


@rule("aten.flatten", emits=("reshape",))
def flatten(cx, a):
    x = cx.t(a["self"])
    s, e = _axis(a["start_dim"], x.rank), _axis(a["end_dim"], x.rank)
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return build("reshape", x, shape=shape)


@rule("aten.permute", emits=("transpose",))
def permute(cx, a):
    x = cx.t(a["self"])
    return build("transpose", x, perm=[_axis(d, x.rank) for d in a["dims"]])


@rule("aten.transpose", emits=("transpose",))
def transpose(cx, a):
    x = cx.t(a["self"])
    perm = list(range(x.rank))
    i, j = _axis(a["dim0"], x.rank), _axis(a["dim1"], x.rank)
    perm[i], perm[j] = perm[j], perm[i]
    return build("transpose", x, perm=perm)


@rule("aten.t", emits=("transpose",))
def t(cx, a):
    x = cx.t(a["self"])
    return x if x.rank < 2 else build("transpose", x, perm=[1, 0])


@rule("aten.unsqueeze", emits=("expand_dims",))
def unsqueeze(cx, a):
    x = cx.t(a["self"])
    return build("expand_dims", x, axes=[_axis(a["dim"], x.rank + 1)])


@rule("aten.squeeze", emits=("squeeze",))
def squeeze(cx, a):
    x = cx.t(a["self"])
    dims = a.get("dim")
    if dims is None:
        return build("squeeze", x) if 1 in x.shape else x
    dims = [_axis(d, x.rank) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    dims = [d for d in dims if x.shape[d] == 1]
    return build("squeeze", x, axes=dims) if dims else x


@rule("aten.expand", emits=("reshape", "tile"))
def expand(cx, a):
    x = cx.t(a["self"])
    size = list(a["size"])
    lead = len(size) - x.rank
    shape = [x.shape[i - lead] if s == -1 else s for i, s in enumerate(size)]
    return broadcast_to(x, shape)


@rule("aten.cat", "aten.concat", emits=("concat",))
def cat(cx, a):
    xs = [cx.t(v) for v in a["tensors"]]
    xs = [v for v in xs if v.size]
    return xs[0] if len(xs) == 1 else build("concat", xs, axis=_axis(a["dim"], xs[0].rank))


@rule("aten.stack", emits=("stack",))
def stack(cx, a):
    xs = [cx.t(v) for v in a["tensors"]]
    return build("stack", xs, axis=_axis(a["dim"], xs[0].rank + 1))


@rule("aten.slice", emits=("slice_by_index",))
def slice_(cx, a):
    x = cx.t(a["self"])
    d = _axis(a["dim"], x.rank)
    n = x.shape[d]
    start, end, step = a["start"], a["end"], a["step"]
    start, end, step = slice(start, end, step).indices(n)
    if start == 0 and end == n and step == 1:
        return x
    begin, stop = [0] * x.rank, list(x.shape)
    begin[d], stop[d] = start, end
    stride = [1] * x.rank
    stride[d] = step
    return build("slice_by_index", x, begin=begin, end=stop, stride=stride)


@rule("aten.select", emits=("slice_by_index",))
def select_(cx, a):
    x = cx.t(a["self"])
    d = _axis(a["dim"], x.rank)
    i = a["index"] % x.shape[d]
    begin, end = [0] * x.rank, list(x.shape)
    begin[d], end[d] = i, i + 1
    squeeze_mask = [k == d for k in range(x.rank)]
    return build("slice_by_index", x, begin=begin, end=end, squeeze_mask=squeeze_mask)


@rule("aten.split", "aten.split_with_sizes", emits=("split",))
def split(cx, a):
    x = cx.t(a["self"])
    d = _axis(a["dim"], x.rank)
    sizes = a["split_size"] if "split_size" in a else a["split_sizes"]
    if isinstance(sizes, int):
        n = x.shape[d]
        sizes = [sizes] * (n // sizes) + ([n % sizes] if n % sizes else [])
    if len(sizes) == 1:
        return [x]
    out = build("split", x, split_sizes=list(sizes), axis=d)
    return list(out)


@rule("aten.chunk", emits=("split",))
def chunk(cx, a):
    x = cx.t(a["self"])
    d = _axis(a["dim"], x.rank)
    step = -(-x.shape[d] // a["chunks"])
    return split(cx, {"self": x, "dim": d, "split_size": step})
