"""Pattern rules that keep the correlation an op-by-op interval analysis loses.

Intervals treat every element as independent, so after a normalisation they forget that the
elements of one vector are tied together (RMS norm: x_i / sqrt(mean(x^2)) can reach sqrt(N)
for one i only when every other element is 0). The per-op rules on the declarations
(`fp16_range`) cannot see that; these few patterns can, and only ever tighten a bound:

- fibre norms: a tensor may carry (axes, B): every sub-array over `axes` (e.g. a channel
  vector) has L2 norm <= B. RMS norm creates one (x * rsqrt(k * sum(x^2) + eps) has norm
  <= 1/sqrt(k), so sqrt(N) for a mean); scaling, adding, slicing, concatenating, reshaping
  carry it; a linear map over those axes bounds each output lane by ||W_o|| * B (Cauchy-
  Schwarz, also every partial sum, since ||W_o,S|| ||x_S|| <= ||W_o|| B), the whole output
  vector by sigma_max(W) * B; a matmul contracting two such axes is bounded by B_x * B_y,
  its running sums too. |element| <= B, so the interval is cut to [-B, B].
- convex combinations: a matmul contracting a softmax output along its softmax axis averages
  the other operand, so output and running sums stay within that operand's bound and 0; a
  KV-cache write old * (1 - t) + new * t with t in [0, 1] stays within old's and new's hull.
- max scaling (the decoder's scaled RMS norm): x * 1/max(max|x|, floor) lies in [-1, 1], and
  rsqrt(mean((x s)^2) + eps s^2) is at most 1/sqrt(min(1/n, eps/floor^2)).
- rotate-half RoPE, concat([lo c - hi s, lo s + hi c]): norm <= sqrt(max c^2 + max s^2) ||t||.
- a matmul with one normed operand and one merely bounded: |q.k| <= ||q|| sqrt(n) max|k|.

Every bound here carries a small relative margin (MARGIN) for fp16 rounding of the
statistics (a mean of squares rounded down, probabilities summing a little over 1).
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from ..ir import intervals as iv

MARGIN = 1.02
_SVD_MAX = 1 << 22    # a larger weight takes its Frobenius norm (an upper bound of sigma_max)


def apply(op, res) -> None:
    """Tighten op's output interval (and MAC partial bound) from the patterns above; record
    the output's fibre norm for the ops downstream."""
    out = op.outputs[0] if len(op.outputs) == 1 else None
    if out is None or out.dtype not in ("fp16", "fp32"):
        return
    found = _rms(op, res) or _max_scaled(op, res) or _carry(op, res)
    cap = None
    if found is not None:
        axes, b, cap = found
        if math.isfinite(b):
            res.norms[id(out)] = (axes, b)
            cap = b if cap is None else min(cap, b)
    bound = _scaled_rsqrt(op, res) or _blend(op, res)
    if bound is not None:
        _tighten(res, out, bound)
    convex = _convex(op, res)
    if convex is not None:
        _tighten(res, out, convex)
        res.partials[id(op)] = min(res.partials.get(id(op), iv.INF), iv.mag(convex))
    if cap is not None and math.isfinite(cap):
        _tighten(res, out, (-cap, cap))
        if id(op) in res.partials:
            res.partials[id(op)] = min(res.partials[id(op)], cap)


def _tighten(res, t, bound):
    lo, hi = res.of(t)
    nlo, nhi = max(lo, bound[0]), min(hi, bound[1])
    if nlo <= nhi:
        res.intervals[id(t)] = (nlo, nhi)


def _producer(t, *types):
    return t.op if t.op is not None and t.op.type in types else None


def _scalar(t):
    """The value of a constant scalar (any shape of one element), else None."""
    if t.const is None or np.size(t.const) != 1:
        return None
    return float(np.asarray(t.const, np.float64).reshape(()))


# --- RMS norm: x * rsqrt(k * sum(x^2) + eps), x / sqrt(...) ---------------------------------

def _squares_of(t, x):
    """Is t = x^2 elementwise?"""
    p = t.op
    if p is None:
        return False
    if p.type == "square":
        return p.inputs["x"] is x
    if p.type == "mul":
        return p.inputs["x"] is x and p.inputs["y"] is x
    if p.type == "pow":
        return p.inputs["x"] is x and _scalar(p.inputs["y"]) == 2.0
    return False


def _mean_square(m, x, res):
    """(axes, k) when m >= k * sum over axes of x^2 with m broadcasting back over x, else None."""
    p = m.op
    if p is None:
        return None
    if p.type == "add":   # + a non-negative term (a constant eps, eps * s^2) only raises m
        for a, c in (("x", "y"), ("y", "x")):
            if res.of(p.inputs[c])[0] >= 0:
                found = _mean_square(p.inputs[a], x, res)
                if found is not None:
                    return found
        return None
    if p.type in ("mul", "real_div"):
        for a, c in (("x", "y"), ("y", "x")):
            if p.type == "real_div" and a == "y":
                continue
            v = _scalar(p.inputs[c])
            if v is not None and v > 0:
                inner = _mean_square(p.inputs[a], x, res)
                return None if inner is None else (inner[0], inner[1] * (v if p.type == "mul" else 1.0 / v))
        return None
    if p.type not in ("reduce_mean", "reduce_sum", "reduce_sum_square") or not p.attr("keep_dims"):
        return None
    src = p.inputs["x"]
    if p.type == "reduce_sum_square":
        if src is not x:
            return None
    elif not _squares_of(src, x):
        return None
    ax = p.attr("axes")
    axes = tuple(range(x.rank)) if ax is None else tuple(sorted({int(a) % x.rank for a in ax}))
    n = int(np.prod([x.shape[a] for a in axes]))
    return axes, (1.0 / n if p.type == "reduce_mean" else 1.0)


def _rms(op, res):
    if op.type == "mul":
        pairs = (("x", "y"), ("y", "x"))
        for a, r in pairs:
            x, inv = op.inputs[a], op.inputs[r]
            p = _producer(inv, "rsqrt")
            if p is not None and x.shape == op.outputs[0].shape and float(p.attr("epsilon") or 0.0) >= 0:
                found = _mean_square(p.inputs["x"], x, res)
                if found is not None:
                    return found[0], MARGIN / math.sqrt(found[1]), None
    elif op.type == "real_div":
        x, s = op.inputs["x"], op.inputs["y"]
        p = _producer(s, "sqrt")
        if p is not None and x.shape == op.outputs[0].shape:
            found = _mean_square(p.inputs["x"], x, res)
            if found is not None:
                return found[0], MARGIN / math.sqrt(found[1]), None
    return None


# --- max scaling: x / max(max|x|, c), the scaled form of a norm -----------------------------

def _max_abs(m, x):
    """The axes over which m >= max|x| (m broadcasting back over x; a positive floor
    maximum(., c) or a constant added only raise it), else None."""
    p = m.op
    if p is None:
        return None
    if p.type in ("maximum", "add"):
        for a, c in (("x", "y"), ("y", "x")):
            v = _scalar(p.inputs[c])
            if v is not None and v >= 0:
                return _max_abs(p.inputs[a], x)
        return None
    if p.type != "reduce_max" or not p.attr("keep_dims"):
        return None
    a = _producer(p.inputs["x"], "abs")
    if a is None or a.inputs["x"] is not x:
        return None
    ax = p.attr("axes")
    return tuple(range(x.rank)) if ax is None else tuple(sorted({int(i) % x.rank for i in ax}))


def _scale_of(t, res):
    """(x, s, axes, floor) when t = x * s with s = inverse(m), m >= max|x| over `axes` and
    m > 0: the elements of t lie in [-1, 1]. `floor` is set only for the exact form
    s = inverse(maximum(reduce_max(abs(x)), floor)) with no epsilon, where some |t| reaches 1
    whenever max|x| >= floor (None otherwise). Else None."""
    p = t.op
    if p is None or p.type != "mul":
        return None
    for a, r in (("x", "y"), ("y", "x")):
        x, s = p.inputs[a], p.inputs[r]
        inv = _producer(s, "inverse")
        if inv is None or x.shape != t.shape:
            continue
        eps, m = float(inv.attr("epsilon") or 0.0), inv.inputs["x"]
        if eps < 0 or not (res.of(m)[0] > 0 or eps > 0):
            continue
        axes = _max_abs(m, x)
        if axes is None:
            continue
        floor = None
        mx = _producer(m, "maximum")
        if eps == 0 and mx is not None:
            for a2, c2 in (("x", "y"), ("y", "x")):
                v = _scalar(mx.inputs[c2])
                if v is not None and v > 0 and _producer(mx.inputs[a2], "reduce_max") is not None:
                    floor = v
        return x, s, axes, floor
    return None


def _max_scaled(op, res):
    """x * inverse(m) or x / m with m >= max|x| > 0 over some axes: every element lies in
    [-1, 1] (fp16 rounding of 1/m adds MARGIN), so each fibre over those axes has norm
    <= sqrt(its size)."""
    if op.type == "mul":
        found = _scale_of(op.outputs[0], res)
        if found is None:
            return None
        x, _, axes, _ = found
    elif op.type == "real_div" and res.of(op.inputs["y"])[0] > 0:
        x, axes = op.inputs["x"], _max_abs(op.inputs["y"], op.inputs["x"])
        if axes is None or x.shape != op.outputs[0].shape:
            return None
    else:
        return None
    return axes, math.sqrt(_fibre_size(x, axes)) * MARGIN, MARGIN


def _eps_times_square(t, s):
    """eps when t = (s * s) * eps or s * (s * eps) with a constant eps > 0, else None."""
    p = _producer(t, "mul")
    if p is None:
        return None
    for a, c in (("x", "y"), ("y", "x")):
        e, q = _scalar(p.inputs[c]), _producer(p.inputs[a], "mul")
        if e is not None and e > 0 and q is not None and q.inputs["x"] is s and q.inputs["y"] is s:
            return e
        if p.inputs[a] is s and q is None:
            inner = _producer(p.inputs[c], "mul")
            for a2, c2 in (("x", "y"), ("y", "x")):
                e = None if inner is None else _scalar(inner.inputs[c2])
                if e is not None and e > 0 and inner.inputs[a2] is s:
                    return e
    return None


def _squared_source(m):
    """The tensor whose squares a mean-square expression m reduces (through added or scaling
    constants), else None; _mean_square then checks the whole form."""
    p = m.op
    while p is not None and p.type in ("add", "mul", "real_div"):
        nxt = [t for t in (p.inputs["x"], p.inputs["y"]) if _scalar(t) is None]
        if p.type == "add":
            nxt = [t for t in nxt if t.op is not None and t.op.type in
                   ("reduce_mean", "reduce_sum", "reduce_sum_square", "mul", "real_div")]
        if len(nxt) != 1:
            return None
        p = nxt[0].op
    if p is None:
        return None
    if p.type == "reduce_sum_square":
        return p.inputs["x"]
    if p.type in ("reduce_mean", "reduce_sum") and p.inputs["x"].op is not None:
        return p.inputs["x"].op.inputs.get("x")
    return None


def _scaled_rsqrt(op, res):
    """rsqrt(k sum(xs^2) + eps s^2) with xs = x * s, s = 1 / max(max|x|, floor) (the scaled
    RMS norm): if max|x| >= floor some |xs| is 1 and the argument is >= k, else s = 1 / floor
    and it is >= eps / floor^2. So the output is <= 1 / sqrt(min(k, eps / floor^2))."""
    m = op.inputs["x"].op if op.type == "rsqrt" else None
    if m is None or m.type != "add":
        return None
    for a, c in (("x", "y"), ("y", "x")):
        src = _squared_source(m.inputs[a])
        found = None if src is None else _scale_of(src, res)
        if found is None or found[3] is None:
            continue
        ms = _mean_square(m.inputs[a], src, res)
        eps = _eps_times_square(m.inputs[c], found[1])
        if ms is None or ms[0] != found[2] or eps is None:
            continue
        return (0.0, MARGIN / math.sqrt(min(ms[1], eps / found[3] ** 2)))
    return None


# --- carrying a fibre norm through ops --------------------------------------------------------

def _norm(res, t):
    return res.norms.get(id(t))


def _fibre_size(t, axes):
    return int(np.prod([t.shape[a] for a in axes]))


def _carry(op, res):
    out = op.outputs[0]
    kind = op.type
    if kind in ("mul", "add", "sub"):
        xs = [op.inputs["x"], op.inputs["y"]]
        normed = [(t, _norm(res, t)) for t in xs if _norm(res, t) is not None and t.shape == out.shape]
        if not normed:
            return None
        if kind == "mul":
            t, (axes, b) = normed[0]
            other = xs[1] if t is xs[0] else xs[0]
            return axes, b * iv.mag(res.of(other)), None
        axes = normed[0][1][0]
        total = 0.0
        for t in xs:
            n = _norm(res, t)
            if n is not None and n[0] == axes and t.shape == out.shape:
                total += n[1]
            else:   # a bounded term adds at most sqrt(fibre size) * its magnitude
                total += math.sqrt(_fibre_size(out, axes)) * iv.mag(res.of(t))
        return axes, total, None
    if kind in ("slice_by_index", "slice_by_size", "identity"):
        n = _norm(res, op.inputs["x"])
        return (n[0], n[1], None) if n is not None and out.rank == op.inputs["x"].rank else None
    if kind == "concat":
        rot = _rotation(op, res)
        if rot is not None:
            return rot
        ns = [_norm(res, t) for t in op.inputs["values"]]
        if any(n is None or n[0] != ns[0][0] for n in ns):
            return None
        axis = int(op.attr("axis")) % out.rank
        if axis in ns[0][0]:
            return ns[0][0], math.sqrt(sum(n[1] ** 2 for n in ns)), None
        return ns[0][0], max(n[1] for n in ns), None
    if kind == "transpose":
        n = _norm(res, op.inputs["x"])
        if n is None:
            return None
        perm = [int(p) % out.rank for p in op.attr("perm")]
        return tuple(sorted(perm.index(a) for a in n[0])), n[1], None
    if kind == "reshape":
        return _reshape(op, res)
    if kind == "conv":
        return _conv(op, res)
    if kind == "linear":
        return _linear(op, res)
    if kind == "matmul":
        return _convex_norm(op, res) or _matmul(op, res)
    return None


def _half_slice(t, axis):
    """(source, begin along axis) when t = slice_by_size(source) cutting only `axis`."""
    p = _producer(t, "slice_by_size")
    if p is None:
        return None
    src = p.inputs["x"]
    begin, size = [int(b) for b in p.attr("begin")], [int(z) for z in p.attr("size")]
    for i in range(src.rank):
        if i != axis and (begin[i] != 0 or size[i] not in (-1, src.shape[i])):
            return None
    return src, begin[axis]


def _products(t, kind):
    """The two factor pairs of t = a * b (kind "mul"), or of t = p -/+ q with p, q products."""
    p = _producer(t, kind)
    if p is None:
        return None
    out = []
    for name in ("x", "y"):
        m = _producer(p.inputs[name], "mul")
        if m is None:
            return None
        out.append((m.inputs["x"], m.inputs["y"]))
    return out


def _rotation(op, res):
    """Rotate-half RoPE: concat([lo c - hi s, lo s + hi c]) along the normed axis, lo and hi the
    two halves of t. Per pair (lo c - hi s)^2 + (lo s + hi c)^2 = (c^2 + s^2)(lo^2 + hi^2) (the
    cross terms cancel), so the norm is at most sqrt(max c^2 + max s^2) ||t|| (||t|| itself
    when c, s are a true cos / sin pair, which the intervals cannot know)."""
    vals = op.inputs["values"]
    out = op.outputs[0]
    if len(vals) != 2:
        return None
    axis = int(op.attr("axis")) % out.rank
    first, second = _products(vals[0], "sub"), _products(vals[1], "add")
    if first is None or second is None:
        return None
    (a1, c1), (b1, s1) = first        # lo * c - hi * s
    for (a2, s2), (b2, c2) in (second, second[::-1]):   # lo * s + hi * c, either order
        if a2 is a1 and b2 is b1 and s2 is s1 and c2 is c1:
            break
    else:
        return None
    lo, hi = _half_slice(a1, axis), _half_slice(b1, axis)
    if lo is None or hi is None or lo[0] is not hi[0] or a1.shape != b1.shape:
        return None
    t, half = lo[0], a1.shape[axis]
    if abs(lo[1] - hi[1]) < half or out.shape[axis] != 2 * half:
        return None     # overlapping halves: a pair could count one element twice
    n = _norm(res, t)
    if n is None or n[0] != (axis,) or any(x.shape[axis] != 1 and x.shape[axis] != half for x in (c1, s1)):
        return None
    gain = math.sqrt(iv.mag(res.of(c1)) ** 2 + iv.mag(res.of(s1)) ** 2)
    return (axis,), n[1] * gain, None


def _reshape(op, res):
    """A reshape that splits the normed axis into a run of axes: the innermost of the run is a
    sub-vector of the old fibre."""
    x, out = op.inputs["x"], op.outputs[0]
    n = _norm(res, x)
    if n is None or len(n[0]) != 1:
        return None
    a = n[0][0]
    before, size, after = int(np.prod(x.shape[:a])), x.shape[a], int(np.prod(x.shape[a + 1:]))
    for k in range(out.rank + 1):
        if int(np.prod(out.shape[:k])) != before:
            continue
        for m in range(k + 1, out.rank + 1):
            if int(np.prod(out.shape[k:m])) == size and int(np.prod(out.shape[m:])) == after:
                return (m - 1,), n[1], None
    # A reshape that merges the normed axis with its neighbours into one axis j: the new fibre
    # holds whole old fibres, count of them, so its norm is at most sqrt(count) * B.
    for k in range(a + 1):
        for m in range(a + 1, x.rank + 1):
            lead, mid, tail = (int(np.prod(s)) for s in (x.shape[:k], x.shape[k:m], x.shape[m:]))
            for j in range(out.rank):
                if (int(np.prod(out.shape[:j])) == lead and out.shape[j] == mid
                        and int(np.prod(out.shape[j + 1:])) == tail):
                    return (j,), n[1] * math.sqrt(mid // size), None
    return None


def _sigma_max(w2d: np.ndarray) -> float:
    """An upper bound of the largest singular value. With G the smaller Gram matrix,
    lambda_max(G)^m <= ||G^m||_F for every m, and the gap closes fast as m grows: squaring
    six times (m = 64) leaves at most a factor n^(1/128) on sigma (usually far less), and
    takes six matrix products where an eigensolver takes many times longer. Each square is
    renormalised so nothing overflows; MARGIN covers the float rounding."""
    if w2d.size > _SVD_MAX:
        return float(np.linalg.norm(w2d))
    w = np.asarray(w2d, np.float64)
    g = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    f = float(np.linalg.norm(g))
    if f == 0.0 or not math.isfinite(f):
        return f
    log_bound, h = math.log(f), g / f          # G^(2^k) = exp(log_bound) * h, ||h||_F = 1
    for _ in range(6):
        h = h @ h                               # h symmetric and nonzero: h @ h = h h^T is nonzero
        f = float(np.linalg.norm(h))
        h /= f
        log_bound = 2.0 * log_bound + math.log(f)
    return math.sqrt(math.exp(log_bound / 64.0)) * MARGIN


_WEIGHT_FACTS: dict = {}     # id(weight array) -> (weakref to it, row norms, sigma bound)


def _weight_facts(arr, shape2d):
    """Row norms and the sigma_max bound of a constant weight, computed once per array: the
    checker, analyze_ranges and a model's range declaration each walk the same program."""
    hit = _WEIGHT_FACTS.get(id(arr))
    if hit is not None and hit[0]() is arr:
        return hit[1], hit[2]
    w2d = np.asarray(arr, np.float64).reshape(shape2d)
    rows, sigma = np.sqrt(np.add.reduce(w2d * w2d, axis=1)), _sigma_max(w2d)
    try:
        _WEIGHT_FACTS[id(arr)] = (weakref.ref(arr, lambda _, k=id(arr): _WEIGHT_FACTS.pop(k, None)), rows, sigma)
    except TypeError:
        pass    # an array type without weak references is simply not cached
    return rows, sigma


def _lanes(arr, shape2d, nb, bias):
    """(per-lane cap, output vector norm) of y = W x + bias with ||x|| <= nb."""
    rows, sigma = _weight_facts(arr, shape2d)
    rows = rows * nb
    bb = np.zeros(rows.shape[0]) if bias is None else np.abs(np.asarray(bias, np.float64)).reshape(-1)
    cap = float(np.max(rows * MARGIN + bb)) if rows.size else 0.0
    vec = sigma * nb + float(np.sqrt(np.sum(bb * bb)))
    return cap, vec


def _conv(op, res):
    x, wt, bias = op.inputs["x"], op.inputs["weight"], op.inputs.get("bias")
    n = _norm(res, x)
    if n is None or n[0] != (1,) or wt.const is None or (bias is not None and bias.const is None):
        return None
    k = wt.shape
    if any(s != 1 for s in k[2:]) or int(op.attr("groups") or 1) != 1 or any(op.attr("pad") or ()):
        return None
    cap, vec = _lanes(wt.const, (k[0], k[1]), n[1], None if bias is None else bias.const)
    return (1,), vec, cap


def _linear(op, res):
    x, wt, bias = op.inputs["x"], op.inputs["weight"], op.inputs.get("bias")
    n = _norm(res, x)
    if n is None or n[0] != (x.rank - 1,) or wt.const is None or (bias is not None and bias.const is None):
        return None
    cap, vec = _lanes(wt.const, wt.shape, n[1], None if bias is None else bias.const)
    return (x.rank - 1,), vec, cap


def _contracted(op):
    """Axes (of x and of y, as non-negative indices) that a matmul contracts."""
    xt, yt = op.inputs["x"], op.inputs["y"]
    if xt.rank < 2 or yt.rank < 2:
        return None
    ax = xt.rank - (2 if op.attr("transpose_x") else 1)
    ay = yt.rank - (1 if op.attr("transpose_y") else 2)
    return ax, ay


def _matmul(op, res):
    c = _contracted(op)
    if c is None:
        return None
    ns = [_norm(res, op.inputs[name]) for name in ("x", "y")]
    ns = [n if n is not None and n[0] == (ax,) else None for n, ax in zip(ns, c)]
    if ns[0] is None and ns[1] is None:
        return None     # checked first: a large constant's interval is never scanned for nothing
    bs = []
    for name, ax, n in (("x", c[0], ns[0]), ("y", c[1], ns[1])):
        # an operand without a norm: its vector along the contracted axis is at most
        # sqrt(length) * its largest magnitude
        bs.append(n[1] if n is not None else math.sqrt(op.inputs[name].shape[ax]) * iv.mag(res.of(op.inputs[name])))
    if not all(math.isfinite(b) for b in bs):
        return None
    cap = bs[0] * bs[1]
    return (), iv.INF, cap


# --- blends: a * (1 - t) + b * t with t in [0, 1] lies between a and b ---------------------

def _weights_of(t):
    """(a, w) pairs of t = a * w (either operand order)."""
    m = _producer(t, "mul")
    return [] if m is None else [(m.inputs["x"], m.inputs["y"]), (m.inputs["y"], m.inputs["x"])]


def _blend(op, res):
    """A KV-cache write `old * (1 - onehot) + new * onehot`: each element is a convex
    combination of old and new, so within their hull (interval arithmetic would add them)."""
    if op.type != "add":
        return None
    for a, keep in _weights_of(op.inputs["x"]):
        k = _producer(keep, "sub")
        if k is None or _scalar(k.inputs["x"]) != 1.0:
            continue
        t = k.inputs["y"]
        lo, hi = res.of(t)
        if lo < 0.0 or hi > 1.0:
            continue
        for b, w in _weights_of(op.inputs["y"]):
            if w is t:
                return iv.union(res.of(a), res.of(b))
    return None


# --- softmax-weighted averages --------------------------------------------------------------

def _convex(op, res):
    if op.type != "matmul":
        return None
    c = _contracted(op)
    if c is None:
        return None
    for name, other, ax in (("x", "y", c[0]), ("y", "x", c[1])):
        t = op.inputs[name]
        p = _producer(t, "softmax")
        if p is not None and int(p.attr("axis")) % t.rank == ax:
            v = res.of(op.inputs[other])
            if iv.bounded(v):
                return (min(v[0], 0.0) * MARGIN, max(v[1], 0.0) * MARGIN)
    return None


def _convex_norm(op, res):
    """A softmax-weighted average of the other operand's vectors: ||sum p_j v_j|| <= max ||v_j||
    (the norm is convex), along the other operand's free axis of the product."""
    c = _contracted(op)
    out = op.outputs[0]
    if c is None:
        return None
    for name, other, ax in (("x", "y", c[0]), ("y", "x", c[1])):
        t, o = op.inputs[name], op.inputs[other]
        p = _producer(t, "softmax")
        n = _norm(res, o)
        if p is None or int(p.attr("axis")) % t.rank != ax or n is None or o.rank != out.rank:
            continue
        free = (2 * o.rank - 3 - (c[0] if other == "x" else c[1]),)   # the last two axes but the contracted one
        if n[0] == free:
            return ((out.rank - 1,) if other == "y" else (out.rank - 2,)), n[1] * MARGIN, None
    return None
