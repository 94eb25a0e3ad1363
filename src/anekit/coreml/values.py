"""Core ML protobuf value types and values <-> anekit dtypes, shapes and numpy arrays.

How each dtype travels in a TensorValue follows coremltools' serializer (facts, docs/mil.md):
fp16, int8, uint8, uint32 and the sub-byte types as raw little-endian `bytes` (sub-byte
values bit-packed the way weight.bin packs them); fp32 as `floats`; int32, int16 and uint16
as `ints`; int64 / uint64 as `longInts`; fp64 as `doubles`; bool as `bools`; strings as
`strings`. The reader accepts any field that can hold the declared dtype, so a hand-written
model using `floats` for fp16 still loads. Every count is checked against the declared shape
before anything is allocated.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ModelFormatError
from ..ir import dtypes as _dt
from ..ir import subbyte

# MIL_pb2.DataType enum names -> anekit dtype names (fp8 is weight storage only: see weights.py).
PROTO_TO_DTYPE = {
    "BOOL": "bool", "STRING": "string", "FLOAT16": "fp16", "FLOAT32": "fp32", "FLOAT64": "fp64",
    "BFLOAT16": "bf16", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "INT4": "int4", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "UINT4": "uint4", "UINT2": "uint2", "UINT1": "uint1", "UINT6": "uint6", "UINT3": "uint3",
}
DTYPE_TO_PROTO = {v: k for k, v in PROTO_TO_DTYPE.items()}
_SUBBYTE = {"int4": 4, "uint1": 1, "uint2": 2, "uint3": 3, "uint4": 4, "uint6": 6}
_IN_BYTES = {"fp16", "int8", "uint8", "uint32", *_SUBBYTE}    # serialized as raw bytes
_IN_INTS = {"int32", "int16", "uint16"}

# Far more elements than any real constant; refuses absurd declared shapes before allocating.
MAX_ELEMENTS = 1 << 34
MAX_RANK = 64          # numpy's limit on array dimensions


def dtype_name(mil_pb2, code: int, where: str) -> str:
    try:
        name = mil_pb2.DataType.Name(code)
    except ValueError:
        raise ModelFormatError(f"{where}: unknown data type code {code}") from None
    if name not in PROTO_TO_DTYPE:
        raise ModelFormatError(f"{where}: data type {name} is not supported by anekit")
    return PROTO_TO_DTYPE[name]


def tensor_type(mil_pb2, value_type, where: str, flexible: bool = False) -> tuple[str, tuple]:
    """(dtype, static shape) of a ValueType holding a tensor; anything else is refused. With
    `flexible`, a dimension of unknown size (RangeDim, enumerated shapes) reads as None."""
    kind = value_type.WhichOneof("type")
    if kind != "tensorType":
        raise ModelFormatError(f"{where}: a {kind or 'missing'} type where a tensor is expected")
    tt = value_type.tensorType
    dtype = dtype_name(mil_pb2, tt.dataType, where)
    if tt.rank < 0 or tt.rank != len(tt.dimensions):
        raise ModelFormatError(f"{where}: rank {tt.rank} but {len(tt.dimensions)} dimensions")
    shape = []
    for i, d in enumerate(tt.dimensions):
        if flexible and d.WhichOneof("dimension") == "unknown":
            shape.append(None)
            continue
        if d.WhichOneof("dimension") != "constant":
            raise ModelFormatError(f"{where}: dimension {i} is not a constant size (flexible shapes are not supported)")
        if d.constant.size < 0:
            raise ModelFormatError(f"{where}: dimension {i} has negative size {d.constant.size}")
        if d.constant.size > MAX_ELEMENTS:    # checked per axis: [0, 2**63] has no elements but no array either
            raise ModelFormatError(f"{where}: dimension {i} has size {d.constant.size}: more elements than "
                                   f"anekit accepts on one axis ({MAX_ELEMENTS})")
        shape.append(int(d.constant.size))
    if len(shape) > MAX_RANK:
        raise ModelFormatError(f"{where}: rank {len(shape)} is over numpy's limit of {MAX_RANK}")
    if math.prod(s for s in shape if s is not None) > MAX_ELEMENTS:
        raise ModelFormatError(f"{where}: shape {shape} has more elements than anekit accepts ({MAX_ELEMENTS})")
    return dtype, tuple(shape)


def decode_immediate(mil_pb2, value, where: str):
    """An immediate tensor Value as a numpy array of the declared dtype and shape (str for a
    scalar string)."""
    dtype, shape = tensor_type(mil_pb2, value.type, where)
    imm = value.immediateValue
    if imm.WhichOneof("value") != "tensor":
        raise ModelFormatError(f"{where}: immediate {imm.WhichOneof('value') or 'empty'} values are not supported")
    tv = imm.tensor
    field = tv.WhichOneof("value")
    n = math.prod(shape)
    if dtype == "string":
        items = list(tv.strings.values) if field == "strings" else None
        if items is None or len(items) != n:
            raise ModelFormatError(f"{where}: string value does not hold {n} strings")
        return items[0] if shape == () else np.array(items, dtype=np.str_).reshape(shape)
    if field == "bytes":
        raw = tv.bytes.values
        return _from_bytes(raw, dtype, shape, where)
    if field is None:
        seq: list = []
    else:
        seq = getattr(tv, field).values
    if len(seq) != n:
        raise ModelFormatError(f"{where}: holds {len(seq)} values, shape {list(shape)} of {dtype} needs {n}")
    if field in ("floats", "doubles") and not _dt.get(dtype).is_float:
        raise ModelFormatError(f"{where}: floating-point values for a {dtype} tensor")
    if field == "strings":
        raise ModelFormatError(f"{where}: string values for a {dtype} tensor")
    arr = np.array(seq, dtype=np.float64 if field in ("floats", "doubles") else None)
    if arr.size == 0:
        arr = np.zeros(0)
    return _checked_cast(arr, dtype, where).reshape(shape)


def _checked_cast(arr: np.ndarray, dtype: str, where: str) -> np.ndarray:
    target = _dt.to_numpy(dtype)
    if dtype in _SUBBYTE:
        lo, hi = (-8, 7) if dtype == "int4" else (0, (1 << _SUBBYTE[dtype]) - 1)
    elif target.kind in "iu":
        info = np.iinfo(target)
        lo, hi = int(info.min), int(info.max)
    else:
        return arr.astype(target)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):   # Python ints: no overflow
        raise ModelFormatError(f"{where}: value out of range for {dtype}")
    return arr.astype(target)


def _from_bytes(raw: bytes, dtype: str, shape: tuple, where: str) -> np.ndarray:
    n = math.prod(shape)
    if dtype in _SUBBYTE:
        bits = _SUBBYTE[dtype]
        if len(raw) != subbyte.packed_size(n, bits):
            raise ModelFormatError(f"{where}: {len(raw)} bytes for {n} packed {dtype} values "
                                   f"(needs {subbyte.packed_size(n, bits)})")
        vals = subbyte.unpack_bits(np.frombuffer(raw, np.uint8), n, bits)
        if dtype == "int4":
            vals = ((vals.astype(np.int16) ^ 8) - 8).astype(np.int8)
        return vals.reshape(shape)
    stored = {"fp16": "<f2", "int8": "i1", "uint8": "u1", "uint32": "<u4", "int16": "<i2",
              "uint16": "<u2", "int32": "<i4", "fp32": "<f4", "bool": "u1"}.get(dtype)
    if stored is None:
        raise ModelFormatError(f"{where}: bytes cannot hold {dtype} values")
    size = np.dtype(stored).itemsize
    if len(raw) != n * size:
        raise ModelFormatError(f"{where}: {len(raw)} bytes, shape {list(shape)} of {dtype} needs {n * size}")
    arr = np.frombuffer(raw, dtype=stored)
    return (arr != 0 if dtype == "bool" else arr.astype(_dt.to_numpy(dtype))).reshape(shape)


# --- writing ---------------------------------------------------------------------------

def make_tensor_type(mil_pb2, dtype: str, shape) -> object:
    vt = mil_pb2.ValueType()
    tt = vt.tensorType
    tt.dataType = mil_pb2.DataType.Value(DTYPE_TO_PROTO[dtype])
    tt.rank = len(shape)
    for s in shape:
        tt.dimensions.add().constant.size = int(s)
    return vt


def encode_immediate(mil_pb2, arr, dtype: str) -> object:
    """A Value holding `arr` (or a str) inline, serialized the way coremltools does."""
    value = mil_pb2.Value()
    if isinstance(arr, str):
        value.type.CopyFrom(make_tensor_type(mil_pb2, "string", ()))
        value.immediateValue.tensor.strings.values.append(arr)
        return value
    arr = np.asarray(arr)
    value.type.CopyFrom(make_tensor_type(mil_pb2, dtype, arr.shape))
    tv = value.immediateValue.tensor
    flat = arr.reshape(-1)
    if dtype == "string":
        tv.strings.values.extend(str(s) for s in flat)
    elif dtype == "bool":
        tv.bools.values.extend(bool(b) for b in flat)
    elif dtype in _SUBBYTE:
        vals = (flat.astype(np.int16) & 0xF).astype(np.uint8) if dtype == "int4" else flat.astype(np.uint8)
        tv.bytes.values = subbyte.pack_bits(vals, _SUBBYTE[dtype]).tobytes()
    elif dtype in _IN_BYTES:
        stored = {"fp16": "<f2", "int8": "i1", "uint8": "u1", "uint32": "<u4"}[dtype]
        tv.bytes.values = np.ascontiguousarray(flat, dtype=stored).tobytes()
    elif dtype == "fp32":
        tv.floats.values.extend(flat.astype(np.float32).tolist())
    elif dtype == "fp64":
        tv.doubles.values.extend(flat.astype(np.float64).tolist())
    elif dtype in _IN_INTS:
        tv.ints.values.extend(int(v) for v in flat)
    elif dtype in ("int64", "uint64"):
        tv.longInts.values.extend(int(v) for v in flat)
    else:
        raise ModelFormatError(f"a {dtype} constant cannot be written inline in a Core ML program")
    return value
