"""Refusals before anything reaches the framework: the direct-route rules of
preflight/ane_route.py (the same functions `ak.check` reports), raised as errors, then the
I/O surface specs.
"""
from __future__ import annotations

from ...errors import DTypeError, ShapeError, UnsupportedOpError
from ...ir.graph import Function
from ...preflight import ane_route
from .layout import IORules, SurfaceSpec, surface_spec

# The exception each direct-route rule raises as.
_ERRORS = {"io-fp32-cast": DTypeError, "io-layout": ShapeError, "m1-runtime-matmul": ShapeError}


def refuse(fn: Function, rules: IORules) -> None:
    """Raise on the first direct-route finding that would make the program fail or go wrong."""
    for f in ane_route.findings(fn, rules.compiler):
        where = f"{f.op_type} '{f.op}'" if f.op_type not in ("input", "output") else f.op_type
        raise _ERRORS.get(f.rule, UnsupportedOpError)(f"{where}: {f.reason} ({f.source})")


def io_specs(fn: Function, rules: IORules) -> tuple[list[SurfaceSpec], list[SurfaceSpec]]:
    """Surface specs for the function's inputs and outputs (declared order), after `refuse`."""
    refuse(fn, rules)
    inputs = [surface_spec(t.name, t.shape, t.dtype, rules) for t in fn.inputs]
    outputs = [surface_spec(name, t.shape, t.dtype, rules) for name, t in zip(fn.output_names, fn.outputs)]
    return inputs, outputs
