"""Binding user arrays to a function's declared inputs (shared by every backend)."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from . import dtypes as _dt
from .graph import Function


def bind_inputs(fn: Function, feeds: dict) -> dict[str, np.ndarray]:
    """Check names and shapes against `fn`'s inputs and convert each array to its declared dtype.

    A shape that differs only by size-1 axes (e.g. (64, 256) for (1, 64, 1, 256)) is reshaped;
    anything else is refused naming the input and both shapes.
    """
    if not isinstance(feeds, dict):
        raise ShapeError(f"inputs must be a dict {{name: array}}, got {type(feeds).__name__}")
    names = [t.name for t in fn.inputs]
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise ShapeError(f"function '{fn.name}' takes inputs {names}: " + ", ".join(parts))
    out = {}
    for t in fn.inputs:
        a = np.asarray(feeds[t.name])
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise DTypeError(f"input '{t.name}': dtype {a.dtype} is not numeric")
        if a.shape != t.shape:
            if a.size != t.size or [s for s in a.shape if s != 1] != [s for s in t.shape if s != 1]:
                raise ShapeError(f"input '{t.name}': expected shape {list(t.shape)}, got {list(a.shape)}")
            a = a.reshape(t.shape)
        if t.dtype == "int32" and a.dtype.kind == "f":
            raise DTypeError(f"input '{t.name}' is int32; got floating-point data")
        out[t.name] = np.ascontiguousarray(a, dtype=_dt.to_numpy(t.dtype)) if a.ndim else a.astype(_dt.to_numpy(t.dtype))
    return out
