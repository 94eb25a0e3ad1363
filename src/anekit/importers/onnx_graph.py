"""ONNX import: an ONNX model file (or ModelProto) as an anekit program.

Initializers and Constant nodes become const tensors (the program's float type, fp16 by default;
int64 becomes int32); graph inputs become `ak.input`s. A node whose inputs are all constants is
evaluated by onnx's reference evaluator (shape arithmetic, folded masks), so only ops on data
reach the table in onnx_table.py. The model's layout (NCHW) is kept.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import AnekitError, DependencyError, ModelImportError, UnmappedOpError, UsageError
from ..ir import graph as _graph
from ..ir.builder import build
from ..ir.graph import Tensor
from ._common import check_dtype, const_from_array, innermost_frame, input_dtype
from .onnx_table import ONNX


def _onnx():
    try:
        import onnx
        return onnx
    except ImportError as e:
        raise DependencyError("ak.from_onnx needs the onnx package: pip install 'anekit[onnx]'") from e


def _ident(name: str) -> str:
    """A MIL identifier for an ONNX value name ('input.1' -> 'input_1')."""
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else "v_" + s


class Context:
    """What a rule sees: the float type, tensors for any value, constants where one is needed."""

    def __init__(self, dtype: str, node):
        self.dtype, self.node = dtype, node
        self._cache: dict[int, tuple] = {}

    def t(self, v) -> Tensor:
        if isinstance(v, Tensor):
            return v
        hit = self._cache.get(id(v))
        if hit is None:
            hit = self._cache[id(v)] = (v, const_from_array(np.asarray(v), self.dtype))
        return hit[1]

    def const(self, v, what: str):
        """A compile-time value (an initializer, a Constant or a folded value) as numpy."""
        if v is None:
            return None
        if isinstance(v, Tensor):
            if v.const is None:
                raise ModelImportError(f"{self.node.op_type} '{self.node.name}': input '{what}' must be "
                                       "a constant (shapes and axes are static in anekit)")
            return np.asarray(v.const)
        return np.asarray(v)


def _attrs(onnx, node) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _fold(onnx, node, values):
    """Evaluate a node whose inputs are all constants with onnx's reference implementation."""
    from onnx.reference import ReferenceEvaluator
    feeds = {n: v for n, v in zip(node.input, values) if n}
    try:
        return ReferenceEvaluator(node).run(None, feeds)
    except Exception as e:
        raise ModelImportError(f"ONNX op '{node.op_type}' ('{node.name}'): could not fold its constant inputs: {e}") from e


def _where(node) -> str:
    """The model line torch.onnx recorded for a node (its stack trace metadata), else its name."""
    meta = {p.key: p.value for p in node.metadata_props}
    return innermost_frame(meta.get("pkg.torch.onnx.stack_trace", "")) or node.name


def from_onnx(path, *, dtype: str = "fp16"):
    """Load an ONNX model (a path or a ModelProto) and convert its main graph to a Program.

    dtype: the program's float type ("fp16", or "fp32" to keep weights in fp32).
    """
    onnx = _onnx()

    check_dtype(dtype)
    if isinstance(path, onnx.ModelProto):
        model = path
    else:
        if not isinstance(path, (str, os.PathLike)):
            raise UsageError(f"from_onnx: give a path or an onnx.ModelProto, got {type(path).__name__}")
        try:
            model = onnx.load(os.fspath(path))
        except FileNotFoundError:
            raise ModelImportError(f"{path}: no such ONNX file") from None
        except Exception as e:
            raise ModelImportError(f"{path}: not a readable ONNX model: {e}") from e
    g = model.graph
    env: dict = {"": None}
    for init in g.initializer:
        env[init.name] = onnx.numpy_helper.to_array(init)
    for inp in g.input:
        if inp.name in env:
            continue
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if any(d is None or d <= 0 for d in dims):
            raise ModelImportError(f"input '{inp.name}' has a dynamic shape {dims}; export with static shapes")
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        env[inp.name] = _graph.input(_ident(inp.name), tuple(dims), input_dtype(np_dtype, dtype, inp.name))
    for node in g.node:
        values = [env[n] for n in node.input]
        if node.domain not in ("", "ai.onnx"):
            raise UnmappedOpError(f"ONNX op '{node.domain}::{node.op_type}' ('{node.name}') has no anekit mapping",
                                  op=f"{node.domain}::{node.op_type}", source=node.name)
        if node.op_type == "Constant" or not any(isinstance(v, Tensor) for v in values):
            outs = _fold(onnx, node, values)
        else:
            rule = ONNX.get(node.op_type)
            if rule is None:
                where = _where(node)
                raise UnmappedOpError(f"ONNX op '{node.op_type}' ('{node.name}') has no anekit mapping"
                                      + (f" (at {where})" if where != node.name else "")
                                      + "; see docs/importers.md", op=node.op_type, source=where)
            cx = Context(dtype, node)
            try:
                outs = rule.convert(cx, values, _attrs(onnx, node))
            except UnmappedOpError:
                raise
            except AnekitError as e:
                raise ModelImportError(f"converting ONNX op '{node.op_type}' ('{node.name}', at {_where(node)}): "
                                       f"{e}") from e
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        for name, v in zip(node.output, outs):
            env[name] = v
    outputs = {}
    for o in g.output:
        v = env[o.name]
        if not isinstance(v, Tensor):
            v = const_from_array(np.asarray(v), dtype)
        if v.op is None or v.is_const:
            v = build("identity", v)   # an output must be computed by an op
        outputs[_ident(o.name)] = v
    return _graph.program(outputs)
