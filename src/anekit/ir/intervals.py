"""Interval arithmetic for the fp16 range rules that sit on the op declarations.

An interval (lo, hi) contains every value a tensor can take; (-inf, inf) is no bound. A range
rule `rule(op, res)` reads its inputs' intervals with `res.of(tensor)` and returns its
output's interval, a list with one per output, or None (unbounded). MAC ops also record in
`res.partials` the largest magnitude a running sum can reach, because the multiply-accumulate
port saturates on interior partials even when the final sum would come back into range
(guide ch. 3), and in `res.taps` the terms per output. The propagation itself is
preflight/ranges.py.
"""
from __future__ import annotations

import math

import numpy as np

INF = float("inf")
UNBOUNDED = (-INF, INF)
BOOL = (0.0, 1.0)


def bounded(iv) -> bool:
    return math.isfinite(iv[0]) and math.isfinite(iv[1])


def mag(iv) -> float:
    return max(abs(iv[0]), abs(iv[1]))


def union(*ivs):
    return (min(i[0] for i in ivs), max(i[1] for i in ivs))


def fix(lo, hi):
    lo = -INF if lo != lo else lo   # NaN from inf - inf: no bound
    hi = INF if hi != hi else hi
    return (float(lo), float(hi))


def mul(a, b):
    ps = []
    for x in a:
        for y in b:
            p = x * y
            ps.append(0.0 if p != p else p)   # 0 * inf: the factor is exactly 0 there
    return fix(min(ps), max(ps))


def array_iv(v):
    a = np.asarray(v)
    if a.dtype.kind not in "biuf" or a.size == 0:
        return UNBOUNDED
    lo, hi = float(a.min()), float(a.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return UNBOUNDED
    return (lo, hi)


def monotone(f, iv):
    lo, hi = iv
    return fix(f(lo), f(hi))


def ordered(f, iv):
    """A monotone function of either direction."""
    lo, hi = monotone(f, iv)
    return (min(lo, hi), max(lo, hi))


def exp(x):
    return 0.0 if x == -INF else (INF if x > 700 else math.exp(x))


def with_min(f, iv, xmin, fmin):
    """A function decreasing then increasing with its minimum fmin at xmin (silu, gelu)."""
    lo, hi = iv
    vals = [f(lo), f(hi)]
    if lo <= xmin <= hi:
        vals.append(fmin)
    return fix(min(vals), max(vals))


def x_of(op, res, name="x"):
    """The interval of input `name` (None when the optional input is absent)."""
    t = op.inputs.get(name)
    return None if t is None else res.of(t)


# --- rule makers for the common shapes of rule ---------------------------------------------

def unary(f):
    """A rule applying `f(interval) -> interval` to input x."""
    return lambda op, res: f(x_of(op, res))


def same(op, res):
    """Output values are drawn from x (data movement, max/min reductions, max pooling)."""
    return x_of(op, res)


def union_of(*params):
    """Output values are drawn from the union of these inputs (tensors or tuples of them)."""
    def rule(op, res):
        ivs = []
        for p in params:
            v = op.inputs[p]
            ivs.extend(res.of(t) for t in (v if isinstance(v, tuple) else (v,)))
        return union(*ivs)
    return rule


def boolean(op, res):
    return BOOL


def unbounded(op, res):
    """Deliberately unbounded: the analysis says nothing about this op's output."""
    return None


def hull_through_zero(g, iv):
    """Functions monotone on each side of 0 (either slope sign): the hull of the endpoints and 0."""
    pts = [g(iv[0]), g(iv[1])] + ([g(0.0)] if iv[0] < 0.0 < iv[1] else [])
    return (min(pts), max(pts))


def affine(z, op, res):
    """z * gamma + beta for the norms."""
    if op.inputs.get("gamma") is not None:
        z = mul(z, res.of(op.inputs["gamma"]))
    if op.inputs.get("beta") is not None:
        b = res.of(op.inputs["beta"])
        z = fix(z[0] + b[0], z[1] + b[1])
    return z


def norm_bound(n: int) -> tuple[float, float]:
    # |x_i - mean| / std <= sqrt(n - 1) over n values (population variance).
    r = math.sqrt(max(n - 1, 0))
    return (-r, r)


# --- MAC ops: output interval per output lane, and the partial-sum bound -------------------

def weight_sums(w: np.ndarray, axes):
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


def unbounded_mac(op, res, terms):
    res.partials[id(op)] = INF
    res.taps[id(op)] = terms
    return UNBOUNDED


def mac_result(op, res, pos, neg, absum, x, bias, terms):
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
    return fix(float(np.min(lo)), float(np.max(hi)))


def dynamic_mac(op, res, x, w, terms, bias_iv=None):
    """Both operands are runtime tensors: bound from their intervals alone."""
    p = mul(x, w)
    s = fix(p[0] * terms, p[1] * terms)
    res.partials[id(op)] = terms * mag(x) * mag(w) + (mag(bias_iv) if bias_iv else 0.0)
    res.taps[id(op)] = terms
    if bias_iv:
        s = fix(s[0] + bias_iv[0], s[1] + bias_iv[1])
    return s
