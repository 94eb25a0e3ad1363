"""The activation lookup table: a 33-knot piecewise-linear curve evaluated in fp16.

Guide ch. 3 ("Activation functions") and ch. 25 (the 43-entry table record): the input maps
affinely onto the 32 segments between 33 knots uniform over the table's domain, the
bracketing segment evaluates as slope * x + intercept in fp16, and past the domain the
value follows the end-knot asymptote. The knot values themselves are not published; this
model interpolates the function at the knots (plus an optional constant offset), which is
what `docs/numerics.md` calls the interpolating-knot model.

It is opt-in (a profile's `sigmoid_table` / `gelu_table`), for studies of the mechanism: the
guide measures the engine's activations at about half an ulp of the rounded function (ch. 3),
far closer than any uniform 33-knot interpolation of sigmoid or gelu, so the chip profiles
evaluate the rounded function instead (kernels/activations.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from .fp16 import F32, round_fp16

TAILS = ("clamp", "identity")   # past the domain: the end-knot value, or x itself


@dataclass(frozen=True)
class TableSpec:
    lo: float
    hi: float
    knots: int = 33
    left: str = "clamp"
    right: str = "clamp"
    offset: float = 0.0          # constant added to every knot (an origin bias)


class Table:
    """Knot values of one table, rounded to fp16 as the engine stores them."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], spec: TableSpec):
        if spec.knots < 2 or not spec.lo < spec.hi or spec.left not in TAILS or spec.right not in TAILS:
            raise ValueError(f"bad table spec {spec}")
        self.spec = spec
        xs = np.linspace(spec.lo, spec.hi, spec.knots)
        ys = round_fp16(fn(xs) + spec.offset).astype(np.float64)
        self.step = (spec.hi - spec.lo) / (spec.knots - 1)
        self.base = ys[:-1].astype(F32)
        self.delta = (ys[1:] - ys[:-1]).astype(F32)
        self.first, self.last = F32(ys[0]), F32(ys[-1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = self.spec
        t = (np.clip(x, F32(s.lo), F32(s.hi)) - F32(s.lo)) * F32(1.0 / self.step)
        seg = np.minimum(t.astype(np.intp), s.knots - 2)
        y = round_fp16(self.base[seg] + (t - seg) * self.delta[seg])
        y = np.where(x < F32(s.lo), x if s.left == "identity" else self.first, y)
        return np.where(x > F32(s.hi), x if s.right == "identity" else self.last, y).astype(F32)


@lru_cache(maxsize=None)
def build(name: str, spec: TableSpec) -> Table:
    from .functions import FUNCTIONS
    return Table(FUNCTIONS[name], spec)
