"""Checks made before anything reaches the framework: I/O that can map to surfaces, and the
chip quirks that fail silently rather than with an error.
"""
from __future__ import annotations

from ...errors import DTypeError, ShapeError
from ...ir.graph import Function
from .layout import IORules, SurfaceSpec, compiler_generation, surface_spec

# Brief §2 (maderix/ANE issue 47): on M1 a matmul of two runtime tensors whose inner
# dimension is not a multiple of 32 returns zeros without an error.
M1_RUNTIME_MATMUL_MULTIPLE = 32


def io_specs(fn: Function, rules: IORules) -> tuple[list[SurfaceSpec], list[SurfaceSpec]]:
    """Surface specs for the function's inputs and outputs (declared order), after checking
    that fp32 I/O is cast inside the program (brief §2: the engine itself is fp16)."""
    consumers: dict[int, list] = {}
    for op in fn.ops:
        for t in op.tensor_inputs():
            consumers.setdefault(id(t), []).append(op)
    for t in fn.inputs:
        if t.dtype == "fp32":
            bad = [op for op in consumers.get(id(t), []) if op.type != "cast"]
            if bad:
                raise DTypeError(f"input '{t.name}' is fp32 but feeds {bad[0].type} '{bad[0].name}': fp32 I/O "
                                 f"must be cast to fp16 inside the program (brief §2)")
    outs = dict(zip(fn.output_names, fn.outputs))
    for name, t in outs.items():
        if t.dtype == "fp32" and (t.op is None or t.op.type != "cast"):
            raise DTypeError(f"output '{name}' is fp32 but is not produced by a cast: fp32 I/O must be "
                             f"cast from fp16 inside the program (brief §2)")
    inputs = [surface_spec(t.name, t.shape, t.dtype, rules) for t in fn.inputs]
    outputs = [surface_spec(name, t.shape, t.dtype, rules) for name, t in outs.items()]
    return inputs, outputs


def _is_constant(t) -> bool:
    return t.op is not None and (t.op.type == "const" or t.op.type.startswith("constexpr"))


def check_chip_quirks(fn: Function, rules: IORules) -> None:
    """Refuse what a chip would get silently wrong (with the fact it comes from)."""
    if compiler_generation(rules.compiler) != 13:
        return
    for op in fn.ops:
        if op.type != "matmul":
            continue
        x, y = op.inputs["x"], op.inputs["y"]
        if _is_constant(x) or _is_constant(y):
            continue
        inner = x.shape[-2] if op.attr("transpose_x") else x.shape[-1]
        if inner % M1_RUNTIME_MATMUL_MULTIPLE:
            raise ShapeError(f"matmul '{op.name}' multiplies two runtime tensors over an inner dimension of "
                             f"{inner}; on M1 (h13) that dimension must be a multiple of "
                             f"{M1_RUNTIME_MATMUL_MULTIPLE} or the outputs are silently zero (brief §2)")
