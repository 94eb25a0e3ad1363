"""ONNX op -> anekit ops: the one table of the ONNX importer, keyed by ONNX op type.

Each rule gets the Context (`cx.t(v)` a graph tensor, `cx.const(v, name)` a compile-time value),
the node's input values in order (None for an omitted optional input) and its attributes.
Inputs that were attributes in older opsets (axes, split sizes) are read from either place.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelImportError
from ..ir.builder import build
from ._common import FLOATS, broadcast_to, same_float, table_decorator

ONNX: dict = {}
rule = table_decorator(ONNX)


def _arg(values, i):
    return values[i] if i < len(values) else None


def _axis(d: int, rank: int) -> int:
    return int(d) % rank if rank else 0


def _pads(at, n):
    """ONNX pads [b0, b1, ..., e0, e1, ...] -> anekit (b0, e0, b1, e1, ...) and a pad_type."""
    auto = at.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return {"pad_type": "same" if auto == "SAME_UPPER" else "same_lower"}
    if auto == "VALID":
        return {"pad_type": "valid"}
    p = list(at.get("pads", [0] * (2 * n)))
    return {"pad_type": "custom", "pad": [v for i in range(n) for v in (p[i], p[n + i])]}


# ---- convolution, pooling, normalization -------------------------------------------------

@rule("Conv", emits=("conv",))
def conv(cx, v, at):
    x, w = cx.t(v[0]), cx.t(v[1])
    n = x.rank - 2
    b = _arg(v, 2)
    return build("conv", x, w, None if b is None else cx.t(b), strides=at.get("strides", [1] * n),
                 dilations=at.get("dilations", [1] * n), groups=int(at.get("group", 1)), **_pads(at, n))


@rule("ConvTranspose", emits=("conv_transpose",))
def conv_transpose(cx, v, at):
    x, w = cx.t(v[0]), cx.t(v[1])
    n = x.rank - 2
    if any(at.get("output_padding", [])) or "output_shape" in at:
        raise ModelImportError("ConvTranspose with output_padding or output_shape is not supported")
    b = _arg(v, 2)
    return build("conv_transpose", x, w, None if b is None else cx.t(b), strides=at.get("strides", [1] * n),
                 dilations=at.get("dilations", [1] * n), groups=int(at.get("group", 1)), **_pads(at, n))


def _pool(cx, v, at, kind):
    x = cx.t(v[0])
    n = x.rank - 2
    if any(d != 1 for d in at.get("dilations", [1] * n)):
        raise ModelImportError(f"{kind} with dilations is not supported")
    kw = dict(kernel_sizes=at["kernel_shape"], strides=at.get("strides", [1] * n),
              ceil_mode=bool(at.get("ceil_mode", 0)), **_pads(at, n))
    if kind == "avg_pool":
        kw["exclude_padding_from_average"] = not at.get("count_include_pad", 0)
    return build(kind, x, **kw)


@rule("MaxPool", emits=("max_pool",))
def max_pool(cx, v, at):
    return _pool(cx, v, at, "max_pool")


@rule("AveragePool", emits=("avg_pool",))
def avg_pool(cx, v, at):
    return _pool(cx, v, at, "avg_pool")


@rule("GlobalAveragePool", "GlobalMaxPool", emits=("reduce_mean", "reduce_max"))
def global_pool(cx, v, at):
    x = cx.t(v[0])
    return build("reduce_mean" if cx.node.op_type == "GlobalAveragePool" else "reduce_max", x,
                 axes=list(range(2, x.rank)), keep_dims=True)


@rule("BatchNormalization", emits=("batch_norm",))
def batch_norm(cx, v, at):
    if at.get("training_mode", 0):
        raise ModelImportError("BatchNormalization in training mode is not supported")
    x, scale, bias, mean, var = (cx.t(t) for t in v[:5])
    return build("batch_norm", x, mean, var, scale, bias, epsilon=float(at.get("epsilon", 1e-5)))


@rule("LayerNormalization", emits=("layer_norm",))
def layer_norm(cx, v, at):
    x = cx.t(v[0])
    ax = _axis(at.get("axis", -1), x.rank)
    b = _arg(v, 2)
    return build("layer_norm", x, axes=list(range(ax, x.rank)), gamma=cx.t(v[1]),
                 beta=None if b is None else cx.t(b), epsilon=float(at.get("epsilon", 1e-5)))


# ---- linear algebra ----------------------------------------------------------------------

@rule("MatMul", emits=("matmul",))
def matmul(cx, v, at):
    return build("matmul", cx.t(v[0]), cx.t(v[1]))


@rule("Gemm", emits=("linear", "matmul", "mul", "add"))
def gemm(cx, v, at):
    a, b, c = cx.t(v[0]), cx.t(v[1]), _arg(v, 2)
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    ta, tb = at.get("transA", 0), at.get("transB", 0)
    if tb and not ta and alpha == 1 and beta == 1 and (c is None or cx.t(c).shape == (b.shape[0],)):
        return build("linear", a, b, None if c is None else cx.t(c))   # y = a @ b.T + c
    out = build("matmul", a, b, transpose_x=bool(ta), transpose_y=bool(tb))
    if alpha != 1:
        out = out * alpha
    if c is not None:
        out = out + (cx.t(c) if beta == 1 else cx.t(c) * beta)
    return out


# ---- elementwise -------------------------------------------------------------------------

for _name, _op in (("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "real_div"), ("Pow", "pow"),
                   ("Max", "maximum"), ("Min", "minimum"), ("Equal", "equal"), ("Less", "less"),
                   ("LessOrEqual", "less_equal"), ("Greater", "greater"), ("GreaterOrEqual", "greater_equal"),
                   ("And", "logical_and"), ("Or", "logical_or"), ("Xor", "logical_xor")):
    def _binary(cx, v, at, _op=_op):
        if len(v) != 2:
            raise ModelImportError(f"{cx.node.op_type} with {len(v)} inputs is not supported")
        x, y = same_float(cx.t(v[0]), cx.t(v[1]), cx.dtype)
        if _op == "real_div" and x.dtype not in FLOATS:
            raise ModelImportError("integer Div is not supported")
        return build(_op, x, y)
    rule(_name, emits=(_op, "cast"))(_binary)

_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Sqrt": "sqrt", "Abs": "abs",
          "Erf": "erf", "Floor": "floor", "Ceil": "ceil", "Sin": "sin", "Cos": "cos", "Not": "logical_not",
          "Softplus": "softplus", "Softsign": "softsign", "Sign": "sign", "Round": "round"}
for _name, _op in _UNARY.items():
    rule(_name, emits=(_op,))(lambda cx, v, at, _op=_op: build(_op, cx.t(v[0])))


@rule("Log", emits=("log",))
def log(cx, v, at):
    return build("log", cx.t(v[0]), epsilon=0.0)


@rule("Reciprocal", emits=("real_div",))
def reciprocal(cx, v, at):
    return 1.0 / cx.t(v[0])


@rule("Neg", emits=("mul",))
def neg(cx, v, at):
    return -cx.t(v[0])


@rule("IsNaN", emits=("not_equal",))
def isnan(cx, v, at):
    x = cx.t(v[0])
    return build("not_equal", x, x)   # NaN is the only value unequal to itself


@rule("Identity", "Dropout", emits=())
def identity(cx, v, at):
    return cx.t(v[0])


@rule("Gelu", emits=("gelu",))
def gelu(cx, v, at):
    mode = {"none": "EXACT", "tanh": "TANH_APPROXIMATION"}[at.get("approximate", "none")]
    return build("gelu", cx.t(v[0]), mode=mode)


@rule("HardSigmoid", emits=("sigmoid_hard",))
def hard_sigmoid(cx, v, at):
    return build("sigmoid_hard", cx.t(v[0]), alpha=float(at.get("alpha", 0.2)), beta=float(at.get("beta", 0.5)))


@rule("HardSwish", emits=("sigmoid_hard", "mul"))
def hard_swish(cx, v, at):
    x = cx.t(v[0])
    return x * build("sigmoid_hard", x, alpha=1 / 6, beta=0.5)


@rule("LeakyRelu", emits=("leaky_relu",))
def leaky_relu(cx, v, at):
    return build("leaky_relu", cx.t(v[0]), alpha=float(at.get("alpha", 0.01)))


@rule("Elu", emits=("elu",))
def elu(cx, v, at):
    return build("elu", cx.t(v[0]), alpha=float(at.get("alpha", 1.0)))


@rule("Clip", emits=("clip", "maximum", "minimum"))
def clip(cx, v, at):
    x = cx.t(v[0])
    lo, hi = cx.const(_arg(v, 1), "min"), cx.const(_arg(v, 2), "max")
    lo = at.get("min") if lo is None else float(lo)
    hi = at.get("max") if hi is None else float(hi)
    if lo is not None and hi is not None:
        return build("clip", x, alpha=float(lo), beta=float(hi))
    if lo is not None:
        return build("maximum", x, cx.t(np.float32(lo)))
    return build("minimum", x, cx.t(np.float32(hi))) if hi is not None else x


@rule("Where", emits=("select", "cast"))
def where(cx, v, at):
    a, b = same_float(cx.t(v[1]), cx.t(v[2]), cx.dtype)
    return build("select", cx.t(v[0]), a, b)


@rule("Softmax", emits=("softmax",))
def softmax(cx, v, at):
    return build("softmax", cx.t(v[0]), axis=int(at.get("axis", -1)))


@rule("Cast", emits=("cast",))
def cast(cx, v, at):
    import onnx
    x = cx.t(v[0])
    kind = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(at["to"])).kind
    target = cx.dtype if kind == "f" else ("bool" if kind == "b" else "int32")
    return x if x.dtype == target else build("cast", x, dtype=target)


# ---- reductions --------------------------------------------------------------------------

for _name, _op in (("ReduceMean", "reduce_mean"), ("ReduceSum", "reduce_sum"), ("ReduceMax", "reduce_max"),
                   ("ReduceMin", "reduce_min"), ("ReduceProd", "reduce_prod"), ("ReduceL2", "reduce_l2_norm")):
    def _reduce(cx, v, at, _op=_op):
        x = cx.t(v[0])
        axes = cx.const(_arg(v, 1), "axes")
        axes = at.get("axes") if axes is None else np.atleast_1d(axes).tolist()
        if not axes:
            if at.get("noop_with_empty_axes", 0):
                return x
            axes = None
        else:
            axes = [_axis(a, x.rank) for a in axes]
        return build(_op, x, axes=axes, keep_dims=bool(at.get("keepdims", 1)))
    rule(_name, emits=(_op,))(_reduce)


# ---- shape and data movement --------------------------------------------------------------

@rule("Reshape", emits=("reshape",))
def reshape(cx, v, at):
    x = cx.t(v[0])
    shape = [int(s) for s in cx.const(v[1], "shape")]
    if at.get("allowzero", 0) and 0 in shape:
        raise ModelImportError("Reshape with allowzero and a zero size is not supported")
    return build("reshape", x, shape=shape)


@rule("Flatten", emits=("reshape",))
def flatten(cx, v, at):
    x = cx.t(v[0])
    ax = _axis(at.get("axis", 1), x.rank + 1)
    return build("reshape", x, shape=(int(np.prod(x.shape[:ax])), int(np.prod(x.shape[ax:]))))


@rule("Transpose", emits=("transpose",))
def transpose(cx, v, at):
    x = cx.t(v[0])
    return build("transpose", x, perm=at.get("perm", list(reversed(range(x.rank)))))


@rule("Unsqueeze", emits=("expand_dims",))
def unsqueeze(cx, v, at):
    x = cx.t(v[0])
    axes = cx.const(_arg(v, 1), "axes")
    axes = at["axes"] if axes is None else np.atleast_1d(axes).tolist()
    return build("expand_dims", x, axes=[_axis(a, x.rank + len(axes)) for a in axes])


@rule("Squeeze", emits=("squeeze",))
def squeeze(cx, v, at):
    x = cx.t(v[0])
    axes = cx.const(_arg(v, 1), "axes")
    axes = at.get("axes") if axes is None else np.atleast_1d(axes).tolist()
    return build("squeeze", x, axes=None if axes is None else [_axis(a, x.rank) for a in axes])


@rule("Expand", emits=("reshape", "tile"))
def expand(cx, v, at):
    x = cx.t(v[0])
    shape = [int(s) for s in cx.const(v[1], "shape")]
    return broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape)))


@rule("Tile", emits=("tile",))
def tile(cx, v, at):
    return build("tile", cx.t(v[0]), reps=[int(r) for r in cx.const(v[1], "repeats")])


@rule("Concat", emits=("concat",))
def concat(cx, v, at):
    xs = [cx.t(t) for t in v]
    return xs[0] if len(xs) == 1 else build("concat", xs, axis=_axis(at["axis"], xs[0].rank))


@rule("Split", emits=("split",))
def split(cx, v, at):
    x = cx.t(v[0])
    ax = _axis(at.get("axis", 0), x.rank)
    sizes = cx.const(_arg(v, 1), "split")
    sizes = at.get("split") if sizes is None else sizes.tolist()
    n_out = len(cx.node.output)
    if sizes is None:
        out = build("split", x, num_splits=n_out, axis=ax)
    else:
        out = build("split", x, split_sizes=list(sizes), axis=ax)
    return list(out) if isinstance(out, tuple) else [out]


@rule("Slice", emits=("slice_by_index",))
def slice_(cx, v, at):
    x = cx.t(v[0])
    starts, ends = cx.const(v[1], "starts").tolist(), cx.const(v[2], "ends").tolist()
    axes = cx.const(_arg(v, 3), "axes")
    axes = list(range(len(starts))) if axes is None else [_axis(a, x.rank) for a in axes.tolist()]
    steps = cx.const(_arg(v, 4), "steps")
    steps = [1] * len(starts) if steps is None else steps.tolist()
    begin, end, stride = [0] * x.rank, list(x.shape), [1] * x.rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st < 0:
            raise ModelImportError("Slice with a negative step is not supported")
        begin[a], end[a], stride[a] = slice(s, e, st).indices(x.shape[a])
    if begin == [0] * x.rank and end == list(x.shape) and stride == [1] * x.rank:
        return x
    return build("slice_by_index", x, begin=begin, end=end, stride=stride)


@rule("Gather", emits=("gather",))
def gather(cx, v, at):
    x = cx.t(v[0])
    idx = v[1]
    if not isinstance(idx, type(x)):   # negative constant indices count from the end
        idx = np.asarray(idx)
        idx = np.where(idx < 0, idx + x.shape[_axis(at.get("axis", 0), x.rank)], idx)
    return build("gather", x, cx.t(idx), axis=_axis(at.get("axis", 0), x.rank))
