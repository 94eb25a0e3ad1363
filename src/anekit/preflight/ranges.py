"""fp16 range analysis: interval propagation from declared input ranges.

Every tensor gets an interval (lo, hi) that contains every value it can take, given the
ranges declared on the function inputs (`ak.input(..., range=(lo, hi))`) and the values of
the constants. A tensor with no bound gets (-inf, inf). MAC ops also get a partial-sum bound
(the largest magnitude any running sum can reach: sum of |w| times the largest |x|), because
the multiply-accumulate port saturates on interior partials even when the final sum would
come back into range (guide ch. 3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INF = float("inf")
UNBOUNDED = (-INF, INF)


@dataclass
class RangeResult:
    intervals: dict[int, tuple[float, float]]   # id(tensor) -> (lo, hi)
    partials: dict[int, float]                  # id(op) -> bound on |partial sums| (MAC ops)
    taps: dict[int, int]                        # id(op) -> terms per output (MAC ops)

    def of(self, t) -> tuple[float, float]:
        iv = self.intervals.get(id(t))
        if iv is None:
            # Constants are bounded on first use: a large weight nobody needs a bound for
            # (its consumer's input is unbounded anyway) is never scanned.
            iv = _const_iv(t) if t.const is not None and t.op is not None and t.op.type == "const" else UNBOUNDED
            self.intervals[id(t)] = iv
        return iv


def bounded(iv) -> bool:
    return math.isfinite(iv[0]) and math.isfinite(iv[1])


def mag(iv) -> float:
    return max(abs(iv[0]), abs(iv[1]))


def union(*ivs):
    return (min(i[0] for i in ivs), max(i[1] for i in ivs))


def _fix(lo, hi):
    lo = -INF if lo != lo else lo   # NaN from inf - inf: no bound
    hi = INF if hi != hi else hi
    return (float(lo), float(hi))


def _mul(a, b):
    ps = []
    for x in a:
        for y in b:
            p = x * y
            ps.append(0.0 if p != p else p)   # 0 * inf: the factor is exactly 0 there
    return _fix(min(ps), max(ps))


def _const_iv(t):
    if t.dtype in ("string",):
        return UNBOUNDED
    if t.dtype == "bool":
        return (0.0, 1.0)
    return _array_iv(t.const)


def _array_iv(v):
    a = np.asarray(v)
    if a.dtype.kind not in "biuf" or a.size == 0:
        return UNBOUNDED
    lo, hi = float(a.min()), float(a.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return UNBOUNDED
    return (lo, hi)


def _monotone(f, iv):
    lo, hi = iv
    return _fix(f(lo), f(hi))


def _exp(x):
    return 0.0 if x == -INF else (INF if x > 700 else math.exp(x))


def _with_min(f, iv, xmin, fmin):
    """A function decreasing then increasing with its minimum fmin at xmin (silu, gelu)."""
    lo, hi = iv
    vals = [f(lo), f(hi)]
    if lo <= xmin <= hi:
        vals.append(fmin)
    return _fix(min(vals), max(vals))


def _silu(x):
    if x == INF:
        return INF
    if x == -INF:
        return 0.0
    return x / (1.0 + _exp(-x)) if x > -700 else 0.0


def _gelu(x):
    if abs(x) == INF:
        return max(x, 0.0)
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _softplus(x):
    if x == INF:
        return INF
    return x + math.log1p(_exp(-x)) if x > 0 else math.log1p(_exp(x))


UNARY = {
    "relu": lambda iv: (max(iv[0], 0.0), max(iv[1], 0.0)),
    "relu6": lambda iv: (min(max(iv[0], 0.0), 6.0), min(max(iv[1], 0.0), 6.0)),
    "sigmoid": lambda iv: (0.0, 1.0), "tanh": lambda iv: (-1.0, 1.0), "erf": lambda iv: (-1.0, 1.0),
    "softsign": lambda iv: (-1.0, 1.0), "sign": lambda iv: (-1.0, 1.0),
    "sin": lambda iv: (-1.0, 1.0), "cos": lambda iv: (-1.0, 1.0),
    "atan": lambda iv: (-math.pi / 2, math.pi / 2),
    "sigmoid_hard": lambda iv: (0.0, 1.0),
    "abs": lambda iv: (0.0 if iv[0] <= 0 <= iv[1] else min(abs(iv[0]), abs(iv[1])), mag(iv)),
    "square": lambda iv: (0.0 if iv[0] <= 0 <= iv[1] else min(iv[0] ** 2, iv[1] ** 2), mag(iv) ** 2),
    "sqrt": lambda iv: (math.sqrt(max(iv[0], 0.0)), math.sqrt(max(iv[1], 0.0))),
    "exp": lambda iv: _monotone(_exp, iv),
    "exp2": lambda iv: _monotone(lambda x: _exp(x * math.log(2.0)), iv),
    "floor": lambda iv: _monotone(math.floor, iv) if bounded(iv) else iv,
    "ceil": lambda iv: _monotone(math.ceil, iv) if bounded(iv) else iv,
    "round": lambda iv: _monotone(round, iv) if bounded(iv) else iv,
    "silu": lambda iv: _with_min(_silu, iv, -1.2785, -0.2785),
    "gelu": lambda iv: _with_min(_gelu, iv, -0.7518, -0.1700),
    "softplus": lambda iv: _monotone(_softplus, iv),
    "identity": lambda iv: iv,
}
SAME = frozenset({"reshape", "transpose", "squeeze", "expand_dims", "slice_by_index", "slice_by_size", "split",
                  "tile", "gather", "max_pool", "upsample_nearest_neighbor", "reduce_max", "reduce_min",
                  "reduce_mean", "crop", "gather_along_axis", "pixel_shuffle", "reverse",
                  "upsample_bilinear"})   # bilinear weights are a convex combination
# Outputs drawn from the union of these value inputs (maximum/minimum: a sound superset).
UNION = {"concat": ("values",), "stack": ("values",), "maximum": ("x", "y"), "minimum": ("x", "y"),
         "select": ("a", "b")}
BOOLEAN = frozenset({"equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_not",
                     "logical_and", "logical_or", "logical_xor"})


def start(fn) -> RangeResult:
    """Intervals of the function inputs; ops are added one at a time with step()."""
    res = RangeResult({}, {}, {})
    for t in fn.inputs:
        res.intervals[id(t)] = tuple(map(float, t.range)) if t.range is not None else UNBOUNDED
    return res


def step(op, res: RangeResult) -> None:
    """Bound one op's outputs from its inputs' intervals (ops must come in graph order)."""
    if op.type == "const":
        return
    try:
        outs = _op(op, res)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError):
        outs = None   # an op the analysis cannot bound stays unbounded, never a crash
    if outs is None:
        outs = [UNBOUNDED] * len(op.outputs)
    elif isinstance(outs, list):
        outs = outs + [UNBOUNDED] * (len(op.outputs) - len(outs))
    elif isinstance(outs, tuple):
        outs = [outs] * len(op.outputs)
    for t, o in zip(op.outputs, outs):
        res.intervals[id(t)] = (0.0, 1.0) if t.dtype == "bool" else _fix(*o)


def propagate(fn) -> RangeResult:
    res = start(fn)
    for op in fn.ops:
        step(op, res)
    return res


def _in(op, res, name):
    t = op.inputs.get(name)
    return None if t is None else res.of(t)


def _op(op, res: RangeResult):
    kind, name = op.spec.kind, op.type
    if kind == "constexpr":
        return _constexpr(op, res)
    if name in BOOLEAN:
        return (0.0, 1.0)
    if name in UNARY:
        return UNARY[name](_in(op, res, "x"))
    if name in SAME:
        return _in(op, res, "x")
    if name in UNION:
        ts = []
        for p in UNION[name]:
            v = op.inputs[p]
            ts.extend(res.of(t) for t in (v if isinstance(v, tuple) else (v,)))
        return union(*ts)
    if name in _HANDLERS:
        return _HANDLERS[name](op, res)
    return None


def _binary(op, res):
    a, b = _in(op, res, "x"), _in(op, res, "y")
    name = op.type
    if name == "add":
        return _fix(a[0] + b[0], a[1] + b[1])
    if name == "sub":
        return _fix(a[0] - b[1], a[1] - b[0])
    if name == "mul":
        return _mul(a, b)
    if name in ("real_div", "floor_div"):
        if b[0] <= 0.0 <= b[1]:
            return UNBOUNDED
        return _mul(a, (1.0 / b[1], 1.0 / b[0]))
    return None


CONSTEXPR_OPS = frozenset({"constexpr_affine_dequantize", "constexpr_lut_to_dense", "constexpr_sparse_to_dense",
                           "constexpr_blockwise_shift_scale"})


def _constexpr(op, res):
    if op.type == "constexpr_affine_dequantize":
        q = np.asarray(op.attrs["quantized_data"], np.float64)
        zp = np.asarray(op.attrs["zero_point"], np.float64)
        sc = np.asarray(op.attrs["scale"], np.float64)
        ax = int(op.attrs["axis"]) % q.ndim
        if zp.ndim == 1 and zp.size > 1:
            zp = zp.reshape([zp.size if i == ax else 1 for i in range(q.ndim)])
        if sc.ndim == 1 and sc.size > 1:
            sc = sc.reshape([sc.size if i == ax else 1 for i in range(q.ndim)])
        return _array_iv((q - zp) * sc)
    if op.type == "constexpr_lut_to_dense":
        return _array_iv(op.inputs["lut"].const)
    if op.type == "constexpr_sparse_to_dense":
        return union(_array_iv(op.inputs["nonzero_data"].const), (0.0, 0.0))
    if op.type == "constexpr_blockwise_shift_scale":
        d = res.of(op.inputs["data"])
        if op.inputs.get("offset") is not None:
            o = res.of(op.inputs["offset"])
            d = _fix(d[0] - o[1], d[1] - o[0])
        return _mul(d, res.of(op.inputs["scale"]))
    return None


def _pad(op, res):
    x = _in(op, res, "x")
    if op.attr("mode") == "constant":
        c = float(op.attr("constant_val") or 0.0)
        return union(x, (c, c))
    return x


def _avg_pool(op, res):
    x = _in(op, res, "x")
    pads = op.attr("pad") or ()
    if op.attr("pad_type") != "valid" and (op.attr("pad_type") != "custom" or any(pads)):
        return union(x, (0.0, 0.0))   # padding zeros may enter the average
    return x


def _reduced_count(op) -> int:
    x = op.inputs["x"].shape
    axes = op.attr("axes")
    if axes is None:
        return int(np.prod(x)) if x else 1
    return int(np.prod([x[a % len(x)] for a in axes])) if x else 1


def _reduce(op, res):
    x, n = _in(op, res, "x"), _reduced_count(op)
    name = op.type
    if name == "reduce_sum":
        return _fix(x[0] * n, x[1] * n)
    if name == "reduce_l1_norm":
        return (0.0, n * mag(x))
    if name == "reduce_l2_norm":
        return (0.0, math.sqrt(n) * mag(x))
    if name == "reduce_sum_square":
        return (0.0, n * mag(x) ** 2)
    if name == "reduce_log_sum_exp":
        return _fix(x[0], x[1] + math.log(n))
    if name in ("reduce_argmax", "reduce_argmin"):
        return (0.0, float(op.inputs["x"].shape[op.attr("axis") % op.inputs["x"].rank] - 1))
    return None


def _affine(z, op, res):
    """z * gamma + beta for the norms."""
    if op.inputs.get("gamma") is not None:
        z = _mul(z, res.of(op.inputs["gamma"]))
    if op.inputs.get("beta") is not None:
        b = res.of(op.inputs["beta"])
        z = _fix(z[0] + b[0], z[1] + b[1])
    return z


def _norm_bound(n: int) -> tuple[float, float]:
    # |x_i - mean| / std <= sqrt(n - 1) over n values (population variance).
    r = math.sqrt(max(n - 1, 0))
    return (-r, r)


def _layer_norm(op, res):
    x = op.inputs["x"].shape
    n = int(np.prod([x[a % len(x)] for a in op.attr("axes")]))
    return _affine(_norm_bound(n), op, res)


def _instance_norm(op, res):
    n = int(np.prod(op.inputs["x"].shape[2:]))
    return _affine(_norm_bound(n), op, res)


def _batch_norm(op, res):
    x = _in(op, res, "x")
    mean, var = res.of(op.inputs["mean"]), res.of(op.inputs["variance"])
    eps = float(op.attr("epsilon"))
    if var[0] + eps <= 0:
        return None
    z = _mul(_fix(x[0] - mean[1], x[1] - mean[0]), (0.0, 1.0 / math.sqrt(var[0] + eps)))
    z = union(z, _fix(-mag(z), mag(z)))
    return _affine(z, op, res)


def _clip(op, res):
    x = _in(op, res, "x")
    a, b = float(op.attr("alpha")), float(op.attr("beta"))
    return (min(max(x[0], a), b), min(max(x[1], a), b))


def _scaled(op, res, f):
    """Functions monotone on each side of 0 (either slope sign): the hull of the endpoints and 0."""
    iv = _in(op, res, "x")
    g = f(op)
    pts = [g(iv[0]), g(iv[1])] + ([g(0.0)] if iv[0] < 0.0 < iv[1] else [])
    return (min(pts), max(pts))


def _leaky(op):
    a = float(op.attr("alpha"))
    return lambda v: v if v >= 0 else a * v


def _elu(op):
    a = float(op.attr("alpha"))
    return lambda v: v if v > 0 else a * (_exp(v) - 1.0)


def _linear_act(op):
    a, b = float(op.attr("alpha")), float(op.attr("beta"))
    return lambda v: a * v + b


def _ordered(f, iv):
    lo, hi = _monotone(f, iv)
    return (min(lo, hi), max(lo, hi))


def _cast(op, res):
    x = _in(op, res, "x")
    return (0.0, 1.0) if op.attr("dtype") == "bool" else x


def _log(op, res):
    x = _in(op, res, "x")
    eps = float(op.attr("epsilon") or 0.0)
    lo, hi = x[0] + eps, x[1] + eps
    if hi <= 0:
        return None
    return _fix(math.log(lo) if lo > 0 else -INF, math.log(hi) if hi < INF else INF)


def _rsqrt(op, res):
    x = _in(op, res, "x")
    eps = float(op.attr("epsilon") or 0.0)
    lo, hi = max(x[0], 0.0) + eps, max(x[1], 0.0) + eps
    if lo <= 0:
        return (1.0 / math.sqrt(hi) if hi < INF and hi > 0 else 0.0, INF)
    return (1.0 / math.sqrt(hi) if hi < INF else 0.0, 1.0 / math.sqrt(lo))


def _inverse(op, res):
    x = _in(op, res, "x")
    eps = float(op.attr("epsilon") or 0.0)
    lo, hi = x[0] + eps, x[1] + eps
    if lo <= 0.0 <= hi:
        return None
    return _ordered(lambda v: 1.0 / v if v not in (INF, -INF) else 0.0, (lo, hi))


# ---- MAC ops: output interval per output channel, and the partial-sum bound -------------

def _weight_sums(w: np.ndarray, axes):
    """Per output lane: sum of positive weights, of negative weights, of |w| (accumulated in
    float64 without widening the whole array)."""
    w = np.asarray(w)
    if w.dtype.kind != "f":
        w = w.astype(np.float32)
    if np.isnan(w).any():
        w = np.nan_to_num(w, nan=0.0)
    pos = np.add.reduce(np.clip(w, 0, None), axis=axes, dtype=np.float64)
    neg = np.add.reduce(np.clip(w, None, 0), axis=axes, dtype=np.float64)
    return pos, neg, pos - neg


def _unbounded_mac(op, res, terms):
    res.partials[id(op)] = INF
    res.taps[id(op)] = terms
    return UNBOUNDED


def _mac_result(op, res, pos, neg, absum, x, bias, terms):
    """Interval of y = sum(w x) + b per output lane, given the sums of the positive and
    negative weights; records the partial-sum bound."""
    b = np.zeros_like(pos) if bias is None else np.asarray(bias, np.float64).reshape(pos.shape)
    xm = mag(x)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = pos * x[1] + neg * x[0] + b
        lo = pos * x[0] + neg * x[1] + b
        partial = float(np.max(absum * xm + np.abs(b))) if absum.size else 0.0
    res.partials[id(op)] = 0.0 if partial != partial else partial
    res.taps[id(op)] = terms
    return _fix(float(np.min(lo)), float(np.max(hi)))


def _dynamic_mac(op, res, x, w, terms, bias_iv=None):
    p = _mul(x, w)
    s = _fix(p[0] * terms, p[1] * terms)
    res.partials[id(op)] = terms * mag(x) * mag(w) + (mag(bias_iv) if bias_iv else 0.0)
    res.taps[id(op)] = terms
    if bias_iv:
        s = _fix(s[0] + bias_iv[0], s[1] + bias_iv[1])
    return s


def _conv(op, res):
    x = _in(op, res, "x")
    wt = op.inputs["weight"]
    k = wt.shape
    pads = op.attr("pad") or ()
    if op.attr("pad_type") in ("same", "same_lower") or any(pads):
        x = union(x, (0.0, 0.0))   # zero padding enters the window
    bias = op.inputs.get("bias")
    transpose = op.type == "conv_transpose"
    terms = int(np.prod(k[2:])) * (k[0] if transpose else k[1])
    if not bounded(x):
        return _unbounded_mac(op, res, terms)
    w = wt.const
    if w is None:
        return _dynamic_mac(op, res, x, res.of(wt), terms, res.of(bias) if bias is not None else None)
    axes = tuple([0] + list(range(2, len(k)))) if transpose else tuple(range(1, len(k)))
    pos, neg, absum = _weight_sums(w, axes)
    if transpose:   # weight [Cin, Cout/groups, *K]: output channel j of each group
        g = int(op.attr("groups") or 1)
        pos, neg, absum = (np.tile(a, g) for a in (pos, neg, absum))
    bconst = None if bias is None else bias.const
    if bias is not None and bconst is None:
        out = _mac_result(op, res, pos, neg, absum, x, None, terms)
        bi = res.of(bias)
        res.partials[id(op)] += mag(bi)
        return _fix(out[0] + bi[0], out[1] + bi[1])
    return _mac_result(op, res, pos, neg, absum, x, bconst, terms)


def _matmul(op, res):
    xt, yt = op.inputs["x"], op.inputs["y"]
    tx, ty = bool(op.attr("transpose_x")), bool(op.attr("transpose_y"))
    inner = (xt.shape[-2] if tx and xt.rank > 1 else xt.shape[-1])
    if not (bounded(res.of(xt)) if xt.const is None else True) or not (bounded(res.of(yt)) if yt.const is None else True):
        return _unbounded_mac(op, res, inner)
    if yt.const is not None and xt.const is None and yt.rank >= 2:
        w = np.asarray(yt.const, np.float64)
        w = np.swapaxes(w, -1, -2) if ty else w          # [..., K, N]
        w = w.reshape((-1,) + w.shape[-2:]).transpose(1, 0, 2).reshape(w.shape[-2], -1)
        pos, neg, absum = _weight_sums(w, 0)
        return _mac_result(op, res, pos, neg, absum, res.of(xt), None, inner)
    if xt.const is not None and yt.const is None and xt.rank >= 2:
        w = np.asarray(xt.const, np.float64)
        w = np.swapaxes(w, -1, -2) if tx else w          # [..., M, K]: rows against y's columns
        w = w.reshape(-1, w.shape[-1])
        pos, neg, absum = _weight_sums(w, 1)
        return _mac_result(op, res, pos, neg, absum, res.of(yt), None, inner)
    return _dynamic_mac(op, res, res.of(xt), res.of(yt), inner)


def _linear(op, res):
    x = _in(op, res, "x")
    wt, bias = op.inputs["weight"], op.inputs.get("bias")
    terms = wt.shape[1]
    if not bounded(x):
        return _unbounded_mac(op, res, terms)
    if wt.const is None or (bias is not None and bias.const is None):
        return _dynamic_mac(op, res, x, res.of(wt), terms, res.of(bias) if bias is not None else None)
    pos, neg, absum = _weight_sums(wt.const, 1)
    return _mac_result(op, res, pos, neg, absum, x, None if bias is None else bias.const, terms)


def _sdpa(op, res):
    q, k, v = (res.of(op.inputs[n]) for n in ("query", "key", "value"))
    e = op.inputs["query"].shape[-1]
    # The Q K^T product runs on the MAC array; bound it after the 1/sqrt(E) scale.
    res.partials[id(op)] = e * mag(q) * mag(k) / math.sqrt(e)
    res.taps[id(op)] = e
    return v   # the output is a convex combination of value rows


_HANDLERS = {
    "add": _binary, "sub": _binary, "mul": _binary, "real_div": _binary, "floor_div": _binary,
    "pad": _pad, "avg_pool": _avg_pool,
    "reduce_sum": _reduce, "reduce_l1_norm": _reduce, "reduce_l2_norm": _reduce,
    "reduce_sum_square": _reduce, "reduce_log_sum_exp": _reduce, "reduce_argmax": _reduce,
    "reduce_argmin": _reduce,
    "softmax": lambda op, res: (0.0, 1.0),
    "layer_norm": _layer_norm, "instance_norm": _instance_norm, "batch_norm": _batch_norm,
    "clip": _clip,
    "leaky_relu": lambda op, res: _scaled(op, res, _leaky),
    "elu": lambda op, res: _scaled(op, res, _elu),
    "linear_activation": lambda op, res: _ordered(_linear_act(op), _in(op, res, "x")),
    "cast": _cast, "log": _log, "rsqrt": _rsqrt, "inverse": _inverse,
    "conv": _conv, "conv_transpose": _conv, "matmul": _matmul, "linear": _linear,
    "scaled_dot_product_attention": _sdpa,
}
def _thresholded_relu(op, res):
    x, a = _in(op, res, "x"), float(op.attr("alpha"))
    kept = (max(x[0], a), x[1]) if x[1] >= a else None
    return union((0.0, 0.0), kept) if kept else (0.0, 0.0)


def _cumsum(op, res):
    x = _in(op, res, "x")
    n = op.inputs["x"].shape[op.attr("axis") % op.inputs["x"].rank]
    return union(_fix(x[0] * n, x[1] * n), (0.0, 0.0) if op.attr("exclusive") else x)


def _topk(op, res):
    x = op.inputs["x"]
    return [res.of(x), (0.0, float(x.shape[op.attr("axis") % x.rank] - 1))][:len(op.outputs)]


_HANDLERS.update({
    "thresholded_relu": _thresholded_relu, "cumsum": _cumsum, "topk": _topk,
    "coreml_update_state": lambda op, res: res.of(op.inputs["value"]),
    "slice_update": lambda op, res: union(res.of(op.inputs["x"]), res.of(op.inputs["update"])),
})
# Ops deliberately left unbounded (the analysis says nothing about their output), or with no
# output at all (write_state).
UNBOUNDED_OPS = frozenset({"pow", "mod", "tan", "reduce_prod", "read_state", "write_state"})


def rule_names() -> frozenset[str]:
    """Every op name a range rule is keyed on (tests check these against REGISTRY)."""
    return (frozenset(UNARY) | SAME | frozenset(UNION) | BOOLEAN | frozenset(_HANDLERS) | UNBOUNDED_OPS | CONSTEXPR_OPS
            | {"const"})
