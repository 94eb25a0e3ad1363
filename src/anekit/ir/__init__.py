"""The typed graph IR: tensors, ops declared once in `ir.ops`, functions and programs."""
from . import ops
from .builder import build, make_builder, make_const
from .graph import Function, Op, Program, Tensor, input, program, topo_order
from .spec import REGISTRY, OpSpec, Param, lookup

__all__ = ["ops", "build", "make_builder", "make_const", "Function", "Op", "Program", "Tensor",
           "input", "program", "topo_order", "REGISTRY", "OpSpec", "Param", "lookup"]
