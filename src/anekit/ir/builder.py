"""Turns a call like `conv(x, W, strides=(2, 2))` into an Op, using only its declaration.

Literals become const ops (numpy arrays take the op's float type), declared defaults are
materialized as named consts the way coremltools writes them, dtypes are checked against
the declaration, and the shape rule gives the outputs. Errors name the op and argument.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AnekitError, DTypeError, ShapeError
from . import dtypes as _dt
from .graph import Op, Tensor, python_value
from .spec import REGISTRY, REQUIRED, Args, OpSpec, Param, lookup


def make_const(value, dtype: str | None = None, name: str | None = None, copy: bool = True) -> Tensor:
    """A const op holding `value` (cast to `dtype` when given) and its output tensor. With
    `copy=False` a read-only C-contiguous array already of the right type is kept as it is (the
    Core ML loader hands out views of the memory-mapped weight.bin); anything else is copied."""
    if isinstance(value, Tensor):
        raise ShapeError("const: value is already a graph tensor")
    if isinstance(value, str):
        arr, dtype = value, "string"
        shape: tuple = ()
    else:
        src = np.asarray(value)
        if src.dtype == object:
            raise DTypeError(f"const: cannot make a constant from {type(value).__name__}")
        dtype = _dt.canonical(dtype) if dtype is not None else _dt.from_numpy(src.dtype)
        target = _dt.to_numpy(dtype)
        if not copy and src.dtype == target and src.flags.c_contiguous and not src.flags.writeable:
            arr = src
        else:
            arr = np.array(src, dtype=target, order="C")
            arr.flags.writeable = False
        shape = arr.shape
    op = Op(REGISTRY["const"], {}, {"val": arr}, name)
    out = Tensor(dtype, shape, op, 0, None, arr)
    op.outputs.append(out)
    return out


def _literal_dtype(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int32"
    if isinstance(value, float):
        return "fp16"
    return _dt.from_numpy(np.asarray(value).dtype)


def _fits(dtype: str, allowed: Any, T: str | None) -> bool:
    if allowed == "T":
        return dtype == T
    if allowed is None:
        return True
    return dtype == allowed if isinstance(allowed, str) else dtype in allowed


def _infer_T(spec: OpSpec, bound: dict) -> str | None:
    """The op's type variable: the dtype of the first graph tensor bound to a T parameter."""
    literal = None
    for p in spec.params:
        if p.dtypes != "T" or p.name not in bound:
            continue
        v = bound[p.name]
        for item in (v if p.kind == "tensors" else (v,)):
            if isinstance(item, Tensor):
                return item.dtype
            if literal is None and p.kind in ("tensor", "tensors"):
                literal = _literal_dtype(item)
    return literal


def _const_value(spec: OpSpec, p: Param, value, T: str | None):
    """Check and normalize a const/attr value: (python value for shape rules, array, dtype).

    A const tensor must already have a dtype of the declared kind (a float parameter takes
    fp16 or fp32 — MIL from iOS 17 writes fp32 alpha/epsilon on fp16 ops —, an int32 one any
    integer dtype, bool and string only themselves); Python literals are converted, ints may
    stand for floats, and floats with integral values for ints.
    """
    dtype = T if p.dtypes == "T" else (p.dtypes if isinstance(p.dtypes, str) else None)
    given = None                       # dtype of a const tensor, None for a Python literal
    if isinstance(value, Tensor):
        if value.const is None:
            raise _arg_error(ShapeError, spec, p.name, "must be a compile-time constant, "
                             f"got the computed tensor {value.name or value}")
        given, value = value.dtype, value.const
    if given is None and p.choices and not isinstance(value, str) and _dtype_choice(value, p.choices):
        value = _dtype_choice(value, p.choices)     # a numpy dtype where a dtype name is chosen
    given_text = value
    if dtype == "string" or isinstance(value, str):
        if dtype not in (None, "string") or not isinstance(value, str):
            raise _arg_error(DTypeError, spec, p.name, f"must be {dtype or 'a string'}, got {value!r}")
        if p.choices and value not in p.choices:
            value = _dtype_choice(value, p.choices)    # cast(dtype="float16") means fp16
            if value is None:
                raise _arg_error(ShapeError, spec, p.name, f"= '{given_text}' is not one of {list(p.choices)}")
        return value, value, "string"
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise _arg_error(DTypeError, spec, p.name, f"has an unusable value {value!r}")
    if p.rank is not None and arr.ndim != p.rank:
        what = "a scalar" if p.rank == 0 else f"rank {p.rank}"
        raise _arg_error(ShapeError, spec, p.name, f"must be {what}, got shape {arr.shape}")
    if dtype is None:
        dtype = given or _dt.from_numpy(arr.dtype)
        if isinstance(p.dtypes, tuple) and dtype not in p.dtypes:
            raise _arg_error(DTypeError, spec, p.name, f"has dtype {dtype}, expected one of {list(p.dtypes)}")
    want = _dt.get(dtype).kind
    have = _dt.get(given).kind if given else {"f": "float", "b": "bool"}.get(arr.dtype.kind, "int")
    ok = (have == want or {have, want} <= {"int", "uint"}
          or (given is None and ((want == "float" and have in ("int", "uint"))
                                 or (want in ("int", "uint") and have == "float")
                                 or (want == "bool" and have in ("int", "uint")))))
    if not ok:
        raise _arg_error(DTypeError, spec, p.name, f"must be {dtype}, got {given or 'a ' + have} value {value!r}")
    if want in ("int", "uint") and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise _arg_error(DTypeError, spec, p.name, f"must be integers, got {value!r}")
    if want == "bool" and arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all():
        raise _arg_error(DTypeError, spec, p.name, f"must be bool, got {value!r}")
    arr = np.array(arr, dtype=_dt.to_numpy(dtype), order="C")
    return python_value(arr), arr, dtype


def _dtype_choice(value, choices) -> str | None:
    """anekit's name for `value` when it spells a dtype among `choices` another way, else None."""
    try:
        name = _dt.canonical(value)
    except DTypeError:
        return None
    return name if name in choices else None


def build(op_type: str, *args, name: str | None = None, **kwargs):
    """Make an op from a Python call: literals become consts of the op's type, then `bind`."""
    spec = lookup(op_type)
    if op_type == "const":
        return make_const(*args, name=name, **kwargs)
    if len(args) > len(spec.params):
        raise ShapeError(f"{spec.name}: takes {len(spec.params)} arguments ({_names(spec)}), got {len(args)}")
    given: dict[str, Any] = {p.name: a for p, a in zip(spec.params, args)}
    for k, v in kwargs.items():
        if spec.param(k) is None:
            raise ShapeError(f"{spec.name}: unknown argument '{k}' (parameters: {_names(spec)})")
        if k in given:
            raise _arg_error(ShapeError, spec, k, "given twice")
        given[k] = v
    given = {k: v for k, v in given.items() if v is not None}
    for p in spec.params:   # variadic arguments: any non-empty iterable of tensors (generators too)
        v = given.get(p.name)
        if p.kind == "tensors" and v is not None:
            if isinstance(v, (Tensor, np.ndarray, str)) or not hasattr(v, "__iter__") or not (v := tuple(v)):
                raise _arg_error(ShapeError, spec, p.name, "must be a non-empty list of tensors")
            given[p.name] = v
    T = _infer_T(spec, given)
    inputs: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for p in spec.params:
        if p.name not in given:
            continue
        v = given[p.name]
        if p.kind == "tensor":
            inputs[p.name] = _as_tensor(spec, p, v, T)
        elif p.kind == "tensors":
            inputs[p.name] = tuple(_as_tensor(spec, p, item, T) for item in v)
        elif p.kind == "const":
            inputs[p.name] = v if isinstance(v, Tensor) else make_const(*_const_value(spec, p, v, T)[1:])
        else:
            attrs[p.name] = v
    b = bind(spec, inputs, attrs)
    op = Op(spec, b.inputs, b.attrs, name)
    for i, (dtype, shape) in enumerate(b.outputs):
        op.outputs.append(Tensor(dtype, shape, op, i))
    return op.outputs[0] if len(op.outputs) == 1 else tuple(op.outputs)


@dataclass
class Bound:
    """An op's arguments checked against its declaration, defaults added, outputs inferred."""
    inputs: dict            # param -> Tensor | tuple, declaration order, defaults included
    attrs: dict             # param -> array (attribute-block literals)
    outputs: list           # [(dtype, shape)] from the shape rule
    T: str | None           # the op's type variable
    defaulted: list         # params filled from declared defaults (new const tensors)


def bind(spec: OpSpec, inputs: dict, attrs: dict) -> Bound:
    """The one place arguments meet a declaration (the builder and the MIL parser both call it).

    `inputs` maps tensor, tensors and const parameters to graph tensors (const parameters to
    const tensors); `attrs` maps attribute parameters to literals. Errors name the op and the
    argument, and carry `.param` so a parser can point at it.
    """
    T = _infer_T(spec, inputs)
    if T is not None and T not in spec.T and any(p.dtypes == "T" for p in spec.params):
        first = next(p.name for p in spec.params if p.dtypes == "T" and p.name in inputs)
        raise _arg_error(DTypeError, spec, first, f"has dtype {T}; {spec.name} accepts {', '.join(spec.T)}")
    inputs, attrs = dict(inputs), dict(attrs)
    values: dict[str, Any] = {}
    for p in spec.params:
        if p.kind == "attr" and p.name in attrs:
            _, attrs[p.name], _ = _const_value(spec, p, attrs[p.name], T)
            values[p.name] = attrs[p.name]     # shape rules get the array: a scalar's dtype matters
        elif p.name in inputs:
            v = inputs[p.name]
            values[p.name] = _const_value(spec, p, v, T)[0] if p.kind == "const" else v
        elif p.default is REQUIRED:
            raise _arg_error(ShapeError, spec, p.name, "missing required argument", prefix=True)
    # Defaults that depend on other arguments (e.g. strides = 1 per spatial axis) come last.
    defaulted = []
    for p in spec.params:
        if p.name in values or p.default is None or p.default is REQUIRED:
            continue
        d = p.default(Args(spec, values, T)) if callable(p.default) else p.default
        values[p.name], arr, dtype = _const_value(spec, p, d, T)
        if p.kind == "attr":
            attrs[p.name] = values[p.name] = arr
        else:
            inputs[p.name] = make_const(arr, dtype)
            defaulted.append(p.name)
    # Declaration order, so emitted text and graphs do not depend on call style.
    inputs = {p.name: inputs[p.name] for p in spec.params if p.name in inputs}
    return Bound(inputs, attrs, infer(spec, values, T), T, defaulted)


def _arg_error(cls, spec: OpSpec, param: str, message: str, prefix: bool = False):
    text = f"{spec.name}: {message} '{param}'" if prefix else f"{spec.name}: argument '{param}' {message}"
    err = cls(text)
    err.param = param
    return err


def infer(spec: OpSpec, values: dict, T: str | None) -> list[tuple[str, tuple]]:
    """Run the shape rule and check what it returns (also used by the MIL parser)."""
    for p in spec.params:
        v = values.get(p.name)
        if v is None or p.kind not in ("tensor", "tensors"):
            continue
        for t in (v if isinstance(v, tuple) else (v,)):
            if not _fits(t.dtype, p.dtypes, T):
                want = T if p.dtypes == "T" else p.dtypes
                raise _arg_error(DTypeError, spec, p.name, f"has dtype {t.dtype}, expected {want}")
    try:
        outs = spec.infer(Args(spec, values, T))
    except AnekitError:
        raise
    except (ArithmeticError, ValueError, IndexError, TypeError, OverflowError) as e:
        # Shape rules see untrusted values (a zero-entry palette divides by zero): report them.
        shapes = ", ".join(f"{p.name} {list(v.shape)}" for p in spec.params
                           if isinstance(v := values.get(p.name), Tensor))
        raise ShapeError(f"{spec.name}: the shape rule cannot handle these arguments ({shapes}): "
                         f"{type(e).__name__}: {e}") from None
    result = []
    for dtype, shape in outs:
        shape = tuple(int(s) for s in shape)
        if any(s <= 0 for s in shape):   # MIL has no zero-size tensors; the engine rejects them (ch. 4)
            raise ShapeError(f"{spec.name}: these arguments give an empty or invalid output shape {list(shape)}")
        result.append((dtype, shape))
    return result


def _as_tensor(spec: OpSpec, p: Param, v, T: str | None) -> Tensor:
    if isinstance(v, Tensor):
        return v
    if isinstance(v, (str, bytes)):
        raise _arg_error(DTypeError, spec, p.name, "must be a tensor, got a string")
    if p.dtypes == "T":
        dtype = T
    elif isinstance(p.dtypes, str):
        dtype = p.dtypes
    else:
        dtype = _literal_dtype(v)
    arr = np.asarray(v)
    if arr.dtype == object:
        raise _arg_error(DTypeError, spec, p.name, f"has an unusable value of type {type(v).__name__}")
    if dtype in ("int32", "bool") and arr.dtype.kind == "f":
        raise _arg_error(DTypeError, spec, p.name, f"must be {dtype}, got floats")
    return make_const(arr, dtype)


def _names(spec: OpSpec) -> str:
    return ", ".join(p.name for p in spec.params)


def make_builder(spec: OpSpec):
    """The public function for an op: `ak.<name>(...)`, with a real signature for help()."""
    def fn(*args, name: str | None = None, **kwargs):
        return build(spec.name, *args, name=name, **kwargs)

    params, kind = [], inspect.Parameter.POSITIONAL_OR_KEYWORD
    for p in spec.params:
        default = inspect.Parameter.empty if p.default is REQUIRED else (None if callable(p.default) else p.default)
        if default is inspect.Parameter.empty and params and params[-1].default is not inspect.Parameter.empty:
            kind = inspect.Parameter.KEYWORD_ONLY   # a required parameter after optional ones
        params.append(inspect.Parameter(p.name, kind, default=default))
    params.append(inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None))
    fn.__signature__ = inspect.Signature(params)
    fn.__name__ = fn.__qualname__ = spec.name
    fn.__doc__ = spec.doc or f"MIL op `{spec.name}`."
    return fn


Tensor._build = staticmethod(build)   # operators on graph tensors (graph.py cannot import us back)
