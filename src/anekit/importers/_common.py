"""What both importers share: the rule record, constants from arrays, composed helpers."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ModelImportError, UsageError
from ..ir.builder import build, make_const
from ..ir.graph import Tensor

FLOATS = ("fp16", "fp32")
_INT32 = np.iinfo(np.int32)
_FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class Rule:
    """How one source op becomes anekit ops: `emits` names every declared op `convert` may build
    (checked against the registry by the tests, listed in docs/importers.md)."""
    emits: tuple[str, ...]
    convert: Callable


def table_decorator(table: dict):
    """`@rule("Conv", emits=("conv",))` files the function under each source name."""
    def rule(*names: str, emits: tuple[str, ...] = ()):
        def wrap(fn):
            for n in names:
                if n in table:
                    raise RuntimeError(f"importer rule '{n}' defined twice")
                table[n] = Rule(tuple(emits), fn)
            return fn
        return wrap
    return rule


def check_dtype(dtype: str) -> str:
    if dtype not in FLOATS:
        raise UsageError(f"dtype must be 'fp16' or 'fp32' (the program's float type), got {dtype!r}")
    return dtype


def const_from_array(arr: np.ndarray, float_dtype: str, what: str = "constant") -> Tensor:
    """A const tensor: floats take the program's float type (fp16 saturating at +-65504),
    integers become int32 (MIL has no int64), booleans stay bool."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
        if float_dtype == "fp16":   # masks made with finfo(float32).min saturate instead of
            arr = np.clip(arr, -_FP16_MAX, _FP16_MAX)   # becoming inf (inf * 0 would be NaN)
        return make_const(arr, float_dtype)
    if arr.dtype.kind == "b":
        return make_const(arr, "bool")
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < _INT32.min or arr.max() > _INT32.max):
            raise ModelImportError(f"{what}: integer values beyond int32 cannot be represented")
        return make_const(arr.astype(np.int32), "int32")
    raise ModelImportError(f"{what}: unsupported constant dtype {arr.dtype}")


def input_dtype(np_dtype, float_dtype: str, what: str) -> str:
    kind = np.dtype(np_dtype).kind
    if kind == "f":
        return float_dtype
    if kind in "iu":
        return "int32"
    if kind == "b":
        return "bool"
    raise ModelImportError(f"input '{what}': unsupported dtype {np_dtype}")


def same_float(x: Tensor, y: Tensor, float_dtype: str) -> tuple[Tensor, Tensor]:
    """Binary ops need one dtype: a non-float operand meeting a float one is cast to floats."""
    if x.dtype == y.dtype:
        return x, y
    if x.dtype in FLOATS and y.dtype not in FLOATS:
        return x, build("cast", y, dtype=x.dtype)
    if y.dtype in FLOATS and x.dtype not in FLOATS:
        return build("cast", x, dtype=y.dtype), y
    if x.dtype in FLOATS and y.dtype in FLOATS:
        return build("cast", x, dtype=float_dtype), build("cast", y, dtype=float_dtype)
    return x, build("cast", y, dtype=x.dtype)


def broadcast_to(x: Tensor, shape) -> Tensor:
    """numpy broadcast_to with declared ops: leading size-1 axes by reshape, then tile."""
    shape = tuple(int(s) for s in shape)
    if x.shape == shape:
        return x
    if x.rank < len(shape):
        x = build("reshape", x, shape=(1,) * (len(shape) - x.rank) + x.shape)
    reps = []
    for have, want in zip(x.shape, shape):
        if have != want and have != 1:
            raise ModelImportError(f"cannot broadcast shape {list(x.shape)} to {list(shape)}")
        reps.append(want if have == 1 else 1)
    return build("tile", x, reps=reps) if any(r != 1 for r in reps) else x


def innermost_frame(trace: str) -> str:
    """'file:line in function: code' of the last frame of a Python stack trace, or ''."""
    lines = (trace or "").rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        m = re.match(r'\s*File "(.+)", line (\d+), in (\S+)', lines[i])
        if m:
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return f"{m.group(1)}:{m.group(2)} in {m.group(3)}: {code}".rstrip(": ")
    return ""
