"""PyTorch import through torch.export: an ExportedProgram's ATen graph as an anekit program.

Parameters, buffers and lifted constants become const tensors (the program's float type, fp16 by
default); user inputs become `ak.input`s named after the export's placeholders. A node whose
inputs are all constants is evaluated by PyTorch itself (position ids, masks built with arange,
weight transposes), so only ops on data reach the table in aten_table.py. The model's layout is
kept: NCHW convolutions stay NCHW (the simulator runs any rank).
"""
from __future__ import annotations

import operator

import numpy as np

from ..errors import AnekitError, DependencyError, ModelImportError, UnmappedOpError, UsageError
from ..ir import graph as _graph
from ..ir.graph import Tensor
from ._common import check_dtype, const_from_array, innermost_frame, input_dtype
from .aten_table import ATEN
from ..ir.builder import build


def _torch():
    try:
        import torch
        return torch
    except ImportError as e:
        raise DependencyError("ak.from_torch needs PyTorch: pip install 'anekit[torch]'") from e


def source_line(node) -> str:
    """'file:line in function: code' of the innermost frame of the node's stack trace, or ''."""
    return innermost_frame(node.meta.get("stack_trace") or "")


class Context:
    """What a rule sees: the program's float type and a way to turn any value into a Tensor."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self._consts: dict[int, tuple] = {}

    def t(self, v) -> Tensor:
        """A graph tensor for v: a Tensor as is, a torch tensor or number as a const."""
        if isinstance(v, Tensor):
            return v
        torch = _torch()
        if isinstance(v, torch.Tensor):
            hit = self._consts.get(id(v))
            if hit is None:   # keep v alive so its id stays unique while cached
                arr = v.detach().cpu()
                arr = (arr.float() if arr.is_floating_point() else arr).numpy()   # bf16 has no numpy type
                hit = self._consts[id(v)] = (v, const_from_array(arr, self.dtype))
            return hit[1]
        return const_from_array(np.asarray(v, dtype=np.float32 if isinstance(v, float) else None), self.dtype)


def _is_graph_value(v) -> bool:
    if isinstance(v, Tensor):
        return True
    if isinstance(v, (list, tuple)):
        return any(_is_graph_value(x) for x in v)
    return False


def _bind(target, args, kwargs) -> dict:
    """Arguments by schema name, defaults filled (`a["self"]`, `a["weight"]`, ...)."""
    out = {}
    for i, arg in enumerate(target._schema.arguments):
        if i < len(args):
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        else:
            out[arg.name] = arg.default_value if arg.has_default_value() else None
    return out


def op_name(target) -> str:
    """The table key of an ATen target: 'aten.conv2d' for aten.conv2d.default."""
    schema = getattr(target, "_schema", None)
    if schema is None:
        return str(target)
    return schema.name.replace("::", ".")


def from_torch(module, example_inputs, *, dtype: str = "fp16", decompose: bool = False):
    """Export `module` with `example_inputs` (a tuple of tensors) and convert it to a Program.

    dtype: the program's float type ("fp16", or "fp32" to keep weights in fp32).
    decompose: first lower to the Core ATen op set (run_decompositions) — for models using ops
    the table lacks but whose decompositions it has.
    """
    torch = _torch()
    check_dtype(dtype)
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"from_torch: module must be a torch.nn.Module, got {type(module).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise UsageError("from_torch: example_inputs must be a tuple of tensors")
    try:
        ep = torch.export.export(module, tuple(example_inputs))
    except Exception as e:
        raise ModelImportError(f"torch.export could not trace the module: {type(e).__name__}: {e}") from e
    if decompose:
        ep = ep.run_decompositions()
    return convert_exported(ep, dtype=dtype, decomposed=decompose)


def convert_exported(ep, *, dtype: str = "fp16", decomposed: bool = False):
    """An ExportedProgram as an anekit Program (`decomposed`: it was lowered to Core ATen)."""
    from torch.export.graph_signature import InputKind

    torch = _torch()
    check_dtype(dtype)
    cx = Context(dtype)
    consts = {**ep.state_dict, **ep.constants}
    env: dict = {}
    specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = specs[node.name]
            if spec.kind == InputKind.USER_INPUT:
                val = node.meta.get("val")
                if not isinstance(val, torch.Tensor):   # a non-tensor example input is baked in
                    env[node] = getattr(spec.arg, "value", None)
                    continue
                np_dtype = np.float32 if val.dtype.is_floating_point else torch.empty((), dtype=val.dtype).numpy().dtype
                env[node] = _graph.input(node.name, tuple(val.shape), input_dtype(np_dtype, dtype, node.name))
            elif spec.target in consts:
                env[node] = consts[spec.target]
            else:
                raise ModelImportError(f"input '{node.name}' ({spec.kind.name}) has no value in the export")
        elif node.op == "call_function":
            env[node] = _convert_node(node, env, cx, ATEN, torch, decomposed)
        elif node.op == "output":
            results = node.args[0]
            results = results if isinstance(results, (tuple, list)) else (results,)
            user = [env[r] if isinstance(r, torch.fx.Node) else r for r in results]
            user = user[len(user) - len(ep.graph_signature.user_outputs):]
            names = ["output"] if len(user) == 1 else [f"output_{i}" for i in range(len(user))]
            outs = {}
            for n, v in zip(names, user):
                if not isinstance(v, Tensor):
                    if not isinstance(v, torch.Tensor):
                        raise ModelImportError(f"output '{n}' is not a tensor ({type(v).__name__})")
                    v = cx.t(v)
                outs[n] = _identity(v) if v.op is None or v.is_const else v   # outputs come from ops
            return _graph.program(outs)
    raise ModelImportError("the exported graph has no output")


def _identity(t: Tensor) -> Tensor:
    return build("identity", t)


def _convert_node(node, env, cx, table, torch, decomposed):
    def resolve(a):
        if isinstance(a, torch.fx.Node):
            return env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(resolve(x) for x in a)
        return a

    args, kwargs = resolve(node.args), {k: resolve(v) for k, v in node.kwargs.items()}
    if node.target is operator.getitem:
        return args[0][args[1]]
    if not _is_graph_value(args) and not _is_graph_value(list(kwargs.values())):
        schema = getattr(node.target, "_schema", None)
        if schema is not None and schema.is_mutable:   # never write into the module's own weights
            args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
        with torch.no_grad():   # only constants in: PyTorch computes the value now
            return node.target(*args, **kwargs)
    name = op_name(node.target)
    rule = table.get(name)
    where = source_line(node)
    if rule is None:
        raise UnmappedOpError(f"ATen op '{node.target}' has no anekit mapping"
                              + (f" (at {where})" if where else "")
                              + ("; see docs/importers.md" if decomposed else
                                 "; try from_torch(..., decompose=True) or see docs/importers.md"),
                              op=str(node.target), source=where)
    try:
        return rule.convert(cx, _bind(node.target, args, kwargs))
    except UnmappedOpError:
        raise
    except (AnekitError, NotImplementedError) as e:
        raise ModelImportError(f"converting ATen op '{node.target}'"
                               + (f" (at {where})" if where else "") + f": {e}") from e
