"""Elementwise functions of fp16 values by table: in a chip profile every value a kernel reads
is on the fp16 grid (storage rounds to it), so a costly float64 reference (gelu, erf) needs
evaluating once per fp16 value, not once per element. Bit-identical to evaluating it per
element: the table holds the very values the element-wise code computes.

The index is the float32 bit pattern shifted right by 13: an fp16 value held in float32 has
its 13 low significand bits clear (normal or subnormal fp16 alike, both are normal float32),
so 2**19 entries cover every sign, float32 exponent and 10-bit significand: every float32
with those bits clear, the fp16 grid and more (the table holds fn at each such point, so any
of them is looked up exactly). An array with any of those bits set (a NaN payload, an
exact-numerics value) is left to the caller's element-wise path.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import compiled
from .fp16 import F32

_U32 = np.uint32
_LOW = _U32(0x1FFF)
_TABLES: dict = {}


def _grid_points() -> np.ndarray:
    return (np.arange(1 << 19, dtype=_U32) << _U32(13)).view(F32)


_BUILD_SIZE = 4096           # an array this big builds the table at once
_BUILD_TOTAL = 1 << 16       # smaller arrays build it once they add up to this many elements
_SEEN: dict = {}             # elements evaluated per key while no table was built


def grid_table(key, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The table of fn over the fp16 grid under `key` (as `lookup` builds it), built now if need
    be: sim/program.py reads it by index inside its compiled loop."""
    t = _TABLES.get(key)
    if t is None:
        with np.errstate(all="ignore"):
            t = _TABLES[key] = np.ascontiguousarray(fn(_grid_points()), dtype=F32)
    return t


def lookup(key, fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray | None:
    """fn(x) (float32, elementwise) read from a table of fn over the fp16 grid, built once and
    kept under `key` (which must name everything fn depends on); None when x has a value off
    the grid, or while no table is built and the elements seen do not pay for one yet (a
    model's small activations pay after some runs: the table costs 2**19 evaluations once)."""
    if x.dtype != F32 or not x.size:
        return None
    table = _TABLES.get(key)
    if table is None and x.size < _BUILD_SIZE:
        seen = _SEEN[key] = _SEEN.get(key, 0) + x.size
        if seen < _BUILD_TOTAL:
            return None
    if table is not None:
        y = _lookup_compiled(table, x)
        if y is not None:
            return y
    u = x.view(_U32)
    if np.bitwise_and(u, _LOW).any():
        return None
    if table is None:
        table = grid_table(key, fn)
    return table.take(np.right_shift(u, _U32(13)))


def _lookup_compiled(table: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """`lookup`'s check and read in one compiled call: None where x is off the grid."""
    jit = _take()
    if jit is None or not x.flags.c_contiguous:
        return None
    out = np.empty(x.shape, F32)
    return out if jit(x.reshape(-1).view(_U32), table, out.reshape(-1)) else None


def _compile_take():
    import numba
    from numba.core import types as t

    def take(u, table, out):
        """out = table[u >> 13] when no u has a low bit set (every value on the grid), else
        False with out unwritten: the check first, as one vectorised pass."""
        low = np.uint32(0)
        for i in range(u.size):
            low |= u[i]
        if low & np.uint32(0x1FFF):
            return False
        for i in range(u.size):
            out[i] = table[u[i] >> np.uint32(13)]
        return True

    ro = lambda dt: t.Array(dt, 1, "C", readonly=True)          # noqa: E731
    sig = t.boolean(ro(t.uint32), ro(t.float32), t.Array(t.float32, 1, "C"))
    return numba.njit(sig, cache=True, nogil=True)(take)


_take = compiled.LazyKernel("fp16 grid lookup", _compile_take)
