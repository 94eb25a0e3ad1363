"""fp16 range analysis: interval propagation from declared input ranges.

Every tensor gets an interval (lo, hi) that contains every value it can take, given the
ranges declared on the function inputs (`ak.input(..., range=(lo, hi))`) and the values of
the constants. A tensor with no bound gets (-inf, inf). Each op's rule is a fact on its
declaration (`OpSpec.fp16_range`, in `ir/ops/*`; the interval arithmetic is ir/intervals.py);
this module walks a function and applies them. MAC ops also get a partial-sum bound (the
largest magnitude any running sum can reach: sum of |w| times the largest |x|), because the
multiply-accumulate port saturates on interior partials even when the final sum would come
back into range (guide ch. 3). After each op's own rule, preflight/patterns.py tightens the
bound where a pattern of ops keeps a correlation the per-op rules lose (RMS norm, vector
norms through linear maps, softmax-weighted averages).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import patterns
from ..ir.intervals import INF, UNBOUNDED, array_iv, bounded, fix, mag, union

__all__ = ["RangeResult", "start", "step", "propagate", "INF", "UNBOUNDED", "bounded", "mag", "union"]


@dataclass
class RangeResult:
    intervals: dict[int, tuple[float, float]]   # id(tensor) -> (lo, hi)
    partials: dict[int, float]                  # id(op) -> bound on |partial sums| (MAC ops)
    taps: dict[int, int]                        # id(op) -> terms per output (MAC ops)
    norms: dict[int, tuple] = None              # id(tensor) -> (axes, L2 bound of each fibre), see patterns

    def __post_init__(self):
        if self.norms is None:
            self.norms = {}

    def of(self, t) -> tuple[float, float]:
        iv = self.intervals.get(id(t))
        if iv is None:
            # Constants are bounded on first use: a large weight nobody needs a bound for
            # (its consumer's input is unbounded anyway) is never scanned.
            iv = _const_iv(t) if t.const is not None and t.op is not None and t.op.type == "const" else UNBOUNDED
            self.intervals[id(t)] = iv
        return iv


def _const_iv(t):
    if t.dtype in ("string",):
        return UNBOUNDED
    if t.dtype == "bool":
        return (0.0, 1.0)
    return array_iv(t.const)


def start(fn) -> RangeResult:
    """Intervals of the function inputs; ops are added one at a time with step()."""
    res = RangeResult({}, {}, {})
    for t in fn.inputs:
        res.intervals[id(t)] = tuple(map(float, t.range)) if t.range is not None else UNBOUNDED
    return res


_RULE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError)


def step(op, res: RangeResult) -> None:
    """Bound one op's outputs from its inputs' intervals (ops must come in graph order)."""
    if op.type == "const":
        return   # bounded lazily by RangeResult.of
    rule = op.spec.fp16_range
    try:
        outs = None if rule is None else rule(op, res)
    except _RULE_ERRORS:
        outs = None   # an op the analysis cannot bound stays unbounded, never a crash
    if outs is None:
        outs = [UNBOUNDED] * len(op.outputs)
    elif isinstance(outs, list):
        outs = outs + [UNBOUNDED] * (len(op.outputs) - len(outs))
    elif isinstance(outs, tuple):
        outs = [outs] * len(op.outputs)
    for t, o in zip(op.outputs, outs):
        res.intervals[id(t)] = (0.0, 1.0) if t.dtype == "bool" else fix(*o)
    try:
        patterns.apply(op, res)
    except _RULE_ERRORS:
        pass   # a pattern that does not fit leaves the op's own bound, which is sound


def propagate(fn) -> RangeResult:
    res = start(fn)
    for op in fn.ops:
        step(op, res)
    return res
