"""MIL dtype names and their numpy storage types.

anekit names dtypes the way MIL text does (fp16, int32, ...). Sub-byte and exotic
dtypes (uint4, bf16, fp8) exist only as weight storage formats: arrays of them hold
one element per value in the numpy type given here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DTypeError


@dataclass(frozen=True)
class DType:
    name: str
    numpy: type          # numpy storage type of one element
    bits: int            # bits per element in storage (weight.bin)
    kind: str            # "float", "int", "uint", "bool", "string"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"


_ALL = [
    DType("fp16", np.float16, 16, "float"),
    DType("fp32", np.float32, 32, "float"),
    DType("fp64", np.float64, 64, "float"),
    DType("bf16", np.float32, 16, "float"),      # stored widened; bit pattern restored on write
    DType("int8", np.int8, 8, "int"),
    DType("int16", np.int16, 16, "int"),
    DType("int32", np.int32, 32, "int"),
    DType("int64", np.int64, 64, "int"),
    DType("uint8", np.uint8, 8, "uint"),
    DType("uint16", np.uint16, 16, "uint"),
    DType("uint32", np.uint32, 32, "uint"),
    DType("uint64", np.uint64, 64, "uint"),
    DType("int4", np.int8, 4, "int"),
    DType("uint1", np.uint8, 1, "uint"),
    DType("uint2", np.uint8, 2, "uint"),
    DType("uint3", np.uint8, 3, "uint"),
    DType("uint4", np.uint8, 4, "uint"),
    DType("uint6", np.uint8, 6, "uint"),
    DType("bool", np.bool_, 8, "bool"),
    DType("string", np.str_, 0, "string"),
]
DTYPES: dict[str, DType] = {d.name: d for d in _ALL}

# The dtypes a tensor flowing between ops may have (the rest are weight storage only).
COMPUTE = ("fp16", "fp32", "int32", "bool")
FLOATS = ("fp16", "fp32")

_FROM_NUMPY = {
    np.dtype(np.float16): "fp16", np.dtype(np.float32): "fp32", np.dtype(np.float64): "fp32",
    np.dtype(np.int8): "int8", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int32", np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16",
    np.dtype(np.uint32): "uint32", np.dtype(np.bool_): "bool",
}


# numpy spellings of anekit dtypes ("float16" for fp16); other numpy names equal anekit's.
_NUMPY_NAMES = {"float16": "fp16", "half": "fp16", "float32": "fp32", "single": "fp32", "float64": "fp64",
                "double": "fp64", "bfloat16": "bf16", "bool_": "bool"}


def canonical(dtype) -> str:
    """anekit's name for a dtype given as an anekit name ("fp16"), a numpy name ("float16"),
    a numpy dtype or scalar type (np.float16); DTypeError for anything else."""
    if isinstance(dtype, str):
        name = dtype.strip().lower()
        if name in DTYPES:
            return name
        if name in _NUMPY_NAMES:
            return _NUMPY_NAMES[name]
    elif dtype is not None and not isinstance(dtype, (bool, int, float)):
        try:
            np_name = np.dtype(dtype).name
        except (TypeError, ValueError):
            np_name = None
        if np_name is not None:
            name = _NUMPY_NAMES.get(np_name, np_name)
            if name in DTYPES:
                return name
    raise DTypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)}; numpy names such as "
                     f"'float16' and numpy dtypes are accepted too)")


def get(name) -> DType:
    try:
        return DTYPES[name]
    except (KeyError, TypeError):
        return DTYPES[canonical(name)]


def stored_bits(name) -> int:
    """Bits per element of a stored tensor of dtype `name`; a dtype the table lacks counts as
    fp16, the engine's storage type (weight-size accounting must not fail on it)."""
    try:
        return get(name).bits
    except Exception:
        return 16


def from_numpy(dtype) -> str:
    """The MIL dtype an array of this numpy dtype becomes (float64 -> fp32, int64 -> int32)."""
    dt = np.dtype(dtype)
    if dt.kind in "US":
        return "string"
    try:
        return _FROM_NUMPY[dt]
    except KeyError:
        raise DTypeError(f"numpy dtype {dt} has no MIL equivalent") from None


def to_numpy(name) -> np.dtype:
    return np.dtype(get(name).numpy)
