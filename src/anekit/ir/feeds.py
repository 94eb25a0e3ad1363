"""Binding user arrays to a function's declared inputs (every backend and the simulator use it)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import DTypeError, ShapeError
from . import dtypes as _dt
from .fp16cast import to_fp16
from .graph import Function


def bind_inputs(fn: Function, feeds, optional=()) -> dict[str, np.ndarray]:
    """Check names, shapes and values against `fn`'s inputs; convert each to its declared dtype.

    Inputs named in `optional` (state buffers) may be left out. A shape that differs only by
    size-1 axes (e.g. (64, 256) for (1, 64, 1, 256)) is reshaped; anything else is refused
    naming the input and both shapes.
    """
    if not isinstance(feeds, Mapping):
        raise ShapeError(f"inputs must be a mapping {{name: array}}, got {type(feeds).__name__}")
    names = [t.name for t in fn.inputs]
    missing = [t for t in fn.inputs if t.name not in feeds and t.name not in optional]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        parts = ([f"missing {[t.name for t in missing]}"] if missing else []) + \
                ([f"unexpected {extra}"] if extra else [])
        raise ShapeError(f"function '{fn.name}' takes inputs "
                         f"{', '.join(f'{t.name} {t.dtype}{list(t.shape)}' for t in fn.inputs)}: " + ", ".join(parts))
    return {t.name: _convert(t, feeds[t.name]) for t in fn.inputs if t.name in feeds}


def _convert(t, value) -> np.ndarray:
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise DTypeError(f"input '{t.name}': not convertible to an array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise DTypeError(f"input '{t.name}': numeric array expected, got dtype {a.dtype}")
    if a.shape != t.shape:
        if a.size != t.size or [s for s in a.shape if s != 1] != [s for s in t.shape if s != 1]:
            raise ShapeError(f"input '{t.name}': expected shape {list(t.shape)}, got {list(a.shape)}")
        a = a.reshape(t.shape)
    if t.dtype == "int32":
        if a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.round(a))):
            raise DTypeError(f"input '{t.name}' is int32; got non-integer values")
        if a.size and (a.min() < -2 ** 31 or a.max() >= 2 ** 31):
            raise DTypeError(f"input '{t.name}': values out of int32 range")
    elif t.dtype == "bool" and a.dtype.kind != "b" and not np.isin(a, (0, 1)).all():
        raise DTypeError(f"input '{t.name}' is bool; got values other than 0 and 1")
    if t.dtype == "fp16" and a.dtype != np.float16:
        return to_fp16(a)                                 # numpy's cast is slow on fp16 subnormals
    with np.errstate(over="ignore", invalid="ignore"):   # fp16 overflow to inf is the point
        return np.array(a, dtype=_dt.to_numpy(t.dtype), order="C")
