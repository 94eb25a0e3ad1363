"""Where Core ML's protobuf spells an op differently from anekit's declarations.

Core ML ops and anekit ops share names and parameter names (both follow the MIL op set), so
the differences are few:

- Parameters Core ML emits that anekit's declaration does not take, each accepted only with
  values that match anekit's behaviour (anything else is refused, naming the op, rather than
  silently computing something different): the op's `coreml_ignored` fact.
- Narrow integer tensors. From iOS 17 the converter casts indices to int16 / uint16 before a
  gather (and argmax may return uint16); anekit computes integers in int32 (the dtypes a
  tensor may have between ops are fp16, fp32, int32, bool). Such values are widened to int32:
  a cast to a narrow type becomes a cast to int32 and narrow constants feeding a parameter
  that only takes int32 are widened. Index values fit either type, so results are identical
  wherever the narrow type could hold them. The parameter that names a result dtype is the
  op's `coreml_dtype_param` fact.
"""
from __future__ import annotations

import numpy as np

from ..ir.spec import REGISTRY

NARROW_INTS = ("int8", "uint8", "int16", "uint16")


def widened(dtype: str) -> str:
    """The dtype anekit computes a value of Core ML dtype `dtype` in."""
    return "int32" if dtype in NARROW_INTS else dtype


def ignorable(op_type: str, param: str, value) -> bool:
    """True if Core ML parameter `param` with compile-time `value` can be dropped for `op_type`."""
    spec = REGISTRY.get(op_type)
    allowed = None if spec is None else spec.coreml_ignored.get(param)
    if allowed is None or value is None:
        return False
    if isinstance(value, np.ndarray):
        if value.ndim:
            return False
        value = value.item()
    return any(value == a and type(value) is type(a) for a in allowed)


def dtype_argument(op_type: str, param: str, value):
    """`value` with a narrow integer dtype name replaced by int32, for dtype-naming parameters."""
    spec = REGISTRY.get(op_type)
    if spec is not None and spec.coreml_dtype_param == param and isinstance(value, str) and value in NARROW_INTS:
        return "int32"
    return value
