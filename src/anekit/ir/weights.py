"""Weights as the engine stores them: which tensors are compile-time, and how many bytes
their stored (possibly compressed) form takes. The checker (program size limit) and the cost
model (weight streaming) both read this, so they cannot count differently."""
from __future__ import annotations

import math

from . import dtypes as _dt
from .graph import Function, Op

FP16 = 2   # bytes: the engine stores dense weights as fp16, fp32 constants included (guide ch. 4)


def is_weight(t) -> bool:
    """A compile-time tensor: a const or a constexpr decompression of consts."""
    if t.op is None:
        return False
    if t.const is not None or t.op.type == "const":
        return True
    return t.op.spec.kind == "constexpr"


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def compressed(op: Op) -> tuple[str, float]:
    """(streaming format, stored bytes) of a constexpr op (guide ch. 7, 25): the op's
    `stored_weight` fact; a constexpr op without one is stored dense."""
    if op.spec.stored_weight is not None:
        return op.spec.stored_weight(op)
    return "fp16", float(_numel(op.outputs[0].shape) * FP16)


def const_bytes(op: Op) -> float:
    """Bytes a const occupies as stored: fp32 as fp16 (the engine has no fp32 weights), scalars free."""
    t = op.outputs[0]
    if not t.shape:
        return 0.0
    bits = 16 if t.dtype in ("fp32", "fp64") else _dt.stored_bits(t.dtype)
    return _numel(t.shape) * bits / 8.0


def program_weight_bytes(fn: Function) -> float:
    """Stored weight bytes of a function: each const once, counted through the constexpr it
    feeds (at its compressed size) when it feeds one."""
    packed = {id(t.op) for op in fn.ops if op.spec.kind == "constexpr"
              for t in op.tensor_inputs() if t.op is not None}
    total = 0.0
    for op in fn.ops:
        if op.spec.kind == "constexpr":
            total += compressed(op)[1]
        elif op.type == "const" and id(op) not in packed:
            total += const_bytes(op)
    return total
