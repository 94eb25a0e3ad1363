"""Elementwise arithmetic, comparisons, logic and unary math.

Kernels compute in float32 on storage values; the executor rounds the result to fp16 and
applies the NaN rule (inf - inf, 0 * inf, sqrt(-1) -> +0) in a chip profile.
"""
from __future__ import annotations

import numpy as np

from ..compiled import ABS, ADD, DIV, MAX, MIN, MUL, RECIP, RSQRT, SQRT, SUB
from ..fp16 import F32
from .. import fp16_grid, taylor32
from ..functions import erf
from ..registry import kernel

_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply,
           "maximum": np.maximum, "minimum": np.minimum}
_COMPARE = {"equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
            "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal}
_LOGICAL = {"logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}
_UNARY = {"abs": np.abs, "exp": np.exp, "exp2": np.exp2, "floor": np.floor, "ceil": np.ceil,
          "round": np.round, "sign": np.sign, "sin": np.sin, "cos": np.cos, "tan": np.tan,
          "atan": np.arctan}


def _is_int(a: np.ndarray) -> bool:
    return a.dtype.kind in "iu"


def _int_program(c, consts):
    """int32 add, sub and mul (numpy's wrap-around) in a loop program; float ones take the tape form."""
    code = {"add": ADD, "sub": SUB, "mul": MUL}.get(c.type)
    return ("int_binary", code) if code is not None and c.out_dtype() == "int32" else None


@kernel(*_BINARY, tape={"add": (ADD, ("x", "y")), "sub": (SUB, ("x", "y")), "mul": (MUL, ("x", "y")),
                        "maximum": (MAX, ("x", "y")), "minimum": (MIN, ("x", "y"))},
        program=_int_program)
def binary(c, x, y):
    return _BINARY[c.type](x, y)


@kernel("real_div", tape={"real_div": (DIV, ("x", "y"))})
def real_div(c, x, y):
    if _is_int(x):
        safe = np.where(y == 0, 1, y)
        return np.where(y == 0, 0, np.trunc(x / safe)).astype(np.int32)
    return np.divide(x, c.nx.denominator(y), dtype=F32)


@kernel("floor_div")
def floor_div(c, x, y):
    if _is_int(x):
        return np.floor_divide(x, np.where(y == 0, 1, y)) * (y != 0)
    return np.floor(np.divide(x, c.nx.denominator(y), dtype=F32))


@kernel("mod")
def mod(c, x, y):
    if _is_int(x):
        return np.mod(x, np.where(y == 0, 1, y)) * (y != 0)
    return np.mod(x, y)


@kernel("pow")
def pow_(c, x, y):
    if _is_int(x):
        return np.power(x.astype(np.float64), y).astype(np.int64).astype(np.int32)
    return np.power(x, y, dtype=F32)


@kernel(*_COMPARE, program=lambda c, consts: ("compare", list(_COMPARE).index(c.type)))
def compare(c, x, y):
    return _COMPARE[c.type](x, y)


@kernel(*_LOGICAL)
def logical(c, x, y):
    return _LOGICAL[c.type](x, y)


@kernel("logical_not")
def logical_not(c, x):
    return np.logical_not(x)


@kernel(*_UNARY, tape={"abs": (ABS, ("x", "x"))})
def unary(c, x):
    return _UNARY[c.type](x)


@kernel("square", tape={"square": (MUL, ("x", "x"))})
def square(c, x):
    return x * x


@kernel("sqrt", tape={"sqrt": (SQRT, ("x", "x"))})
def sqrt(c, x):
    r = np.sqrt(x)
    return r + F32(0.0) if c.nx.fp16 else r     # the engine returns +0 for -0


@kernel("erf")
def erf_(c, x):
    f = lambda v: erf(v).astype(F32)      # noqa: E731
    y = fp16_grid.lookup(("erf",), f, x) if c.nx.fp16 else None   # chip profiles: x on the fp16 grid
    if y is None and x.dtype == F32 and taylor32.ERF.worth(x.size):
        y = taylor32.ERF(x)                 # the same bits, by table and a guarded expansion
    return f(x) if y is None else y


# The tape reads epsilon, a const parameter, as one value nx.const(epsilon) (sim/registry.py).
@kernel("rsqrt", tape={"rsqrt": (RSQRT, ("x", "epsilon"))})
def rsqrt(c, x, epsilon):
    nx = c.nx
    return F32(1.0) / np.sqrt(nx.denominator(nx.store(x + nx.const(epsilon))))


@kernel("inverse", tape={"inverse": (RECIP, ("x", "epsilon"))})
def inverse(c, x, epsilon):
    nx = c.nx
    return F32(1.0) / nx.denominator(nx.store(x + nx.const(epsilon)))


@kernel("log")
def log(c, x, epsilon):
    nx = c.nx
    v = nx.store(x + nx.const(epsilon))
    r = np.log(v)
    sentinel = nx.profile.log_of_zero
    if nx.fp16 and sentinel is not None:
        r = np.where(v == 0, F32(sentinel), r)   # log(+0) is a finite sentinel on the engine
    return r


@kernel("select", finish="keep", program=lambda c, consts: ("select",))
def select(c, cond, a, b):
    return np.where(cond, a, b)


def _rounds_on_store(c) -> bool:
    """A cast to a float type in a chip profile that stores NaN as 0, of a computed value: the
    executor's store after it rounds to fp16 with the float16 round trip's bits (NaN payloads
    aside, gone as 0; a folded constant is ingested instead, which keeps NaN: it takes the
    round trip)."""
    return c.nx.fp16 and c.nx.profile.indeterminate_to_zero and "x" not in c.const_params


def _float_to_float(c, consts) -> bool:
    return consts.get("dtype") in ("fp16", "fp32") and c.op.inputs["x"].dtype in ("fp16", "fp32")


def _cast_program(c, consts):
    """A float cast that rounds on store is the storage rounding of its input; in exact
    numerics a copy or the fp16 round trip; an int32 cast of int32 values a copy."""
    if _float_to_float(c, consts):
        if not c.nx.fp16:             # exact: fp32 a float32 copy, fp16 the float16 round trip
            return ("copy",) if consts.get("dtype") == "fp32" else ("round",)
        return ("round",) if _rounds_on_store(c) else None
    return ("copy",) if consts.get("dtype") == "int32" and c.op.inputs["x"].dtype == "int32" else None


def _cast_identity(c, consts):
    """A float-to-float cast that rounds on store is the identity on a stored value."""
    return _float_to_float(c, consts) and _rounds_on_store(c)


@kernel("cast", program=_cast_program, identity_when=_cast_identity)
def cast(c, x, dtype):
    if dtype in ("fp16", "fp32"):
        v = x.astype(F32)
        if dtype == "fp32" or _rounds_on_store(c):
            return v
        return v.astype(np.float16).astype(F32)
    if dtype == "int32":
        if x.dtype.kind == "f":
            x = np.clip(np.nan_to_num(x, nan=0.0), -2.0 ** 31, 2.0 ** 31 - 1)
        return x.astype(np.int32)
    return x != 0
