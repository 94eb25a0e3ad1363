"""The rules of the direct (private framework) ANE route, owned here once: `ak.check` reports
them as findings and the ANE backend refuses a program with the same functions
(runtime/ane/preflight.py), so the two cannot disagree.

- Program I/O is one IOSurface per tensor in the engine's [1, C, 1, S] channel-first layout,
  fp16, or fp32 declared on the function and cast to fp16 inside (the engine computes in
  fp16; guide ch. 4, "Type limits").
- Inputs an op declares as compile-time (`OpSpec.const_inputs`) must be constants where the
  op's rule says a runtime tensor cannot run (dynamic-weight conv above batch one, ch. 19).
- On M1 (h13) a matmul of two runtime tensors whose inner dimension is not a multiple of 32
  returns zeros without an error. The guide's capability chapter (ch. 4) lists matmul as
  native from M1 and does not state this limit; it is reported by public reverse-engineering
  of the direct route and not measured by anekit (docs/hardware.md). `runtime_matmul_multiple`
  is the one place that says which targets need it; `pad_runtime_matmuls_for` zero-pads the
  contraction axis for them (anekit.ir.passes; the training lowering, the decoder and the
  demo build their programs through it).
"""
from __future__ import annotations

import re

from .. import targets
from ..ir.passes import pad_runtime_matmuls
from ..ir.weights import is_weight
from .report import Finding

M1_RUNTIME_MATMUL_MULTIPLE = 32
IO_DTYPES = ("fp16", "fp32")
SOURCE_IO = "ANE guide ch. 4, 'Type limits' and the [1, C, 1, S] IOSurface layout of the direct route"
SOURCE_M1_MATMUL = "direct-route reports for M1 (h13), not in the guide; docs/hardware.md"


def compiler_generation(compiler: str) -> int | None:
    """13 for "h13g", 17 for "h17s"; None for names that are not hNN targets."""
    m = re.match(r"h(\d+)", (compiler or "").lower())
    return int(m.group(1)) if m else None


def runtime_matmul_multiple(target) -> int | None:
    """The multiple a runtime-operand matmul's inner dimension must be on `target` (a chip
    record, a chip or compiler name, e.g. "m1", "h13g"), or None where any size runs."""
    if isinstance(target, str):
        target = targets.get(target)
    return _multiple_for(target.compiler)


def pad_runtime_matmuls_for(outputs, target):
    """The graph behind `outputs` (a tensor, a list or a {name: tensor} dict) as `target` runs
    it: unchanged, or with its runtime-operand matmuls zero-padded to the multiple that target
    needs (anekit.ir.passes.pad_runtime_matmuls; outputs unchanged)."""
    multiple = runtime_matmul_multiple(target)
    return outputs if multiple is None else pad_runtime_matmuls(outputs, multiple)


def _multiple_for(compiler: str) -> int | None:
    return M1_RUNTIME_MATMUL_MULTIPLE if compiler_generation(compiler) == 13 else None


def io_findings(fn) -> list[Finding]:
    """Program inputs and outputs that cannot map to the route's I/O surfaces."""
    consumers: dict[int, list] = {}
    for op in fn.ops:
        for t in op.tensor_inputs():
            consumers.setdefault(id(t), []).append(op)
    out = []
    ports = [(t.name, t, "input") for t in fn.inputs] + [(n, t, "output") for n, t in zip(fn.output_names, fn.outputs)]
    for name, t, role in ports:
        if t.dtype not in IO_DTYPES:
            continue   # the input-dtype rule reports other dtypes
        shape = tuple(t.shape)
        if len(shape) != 4 or shape[0] != 1 or shape[2] != 1:
            out.append(Finding(name, role, "unsupported", "io-layout",
                               f"{role} {name} has shape {list(shape)}; the direct ANE route maps each program "
                               "input and output to an IOSurface of shape [1, C, 1, S]: reshape inside the program",
                               "[1, C, 1, S]", list(shape), SOURCE_IO))
        if t.dtype != "fp32":
            continue
        if role == "input":
            bad = [op for op in consumers.get(id(t), []) if op.type != "cast"]
            if bad:
                out.append(Finding(name, role, "unsupported", "io-fp32-cast",
                                   f"input {name} is fp32 but feeds {bad[0].type} '{bad[0].name}': fp32 I/O must be "
                                   "cast to fp16 inside the program (the engine computes in fp16)",
                                   "cast to fp16 first", "fp32", SOURCE_IO))
        elif t.op is None or t.op.type != "cast":
            out.append(Finding(name, role, "unsupported", "io-fp32-cast",
                               f"output {name} is fp32 but is not produced by a cast: fp32 I/O must be cast from "
                               "fp16 inside the program (the engine computes in fp16)",
                               "cast from fp16 last", "fp32", SOURCE_IO))
    return out


def const_input_findings(op) -> list[Finding]:
    """Runtime tensors where the op's declaration needs a compile-time constant."""
    out = []
    for param, fact in op.spec.const_inputs.items():
        t = op.inputs.get(param)
        if t is None or isinstance(t, tuple) or is_weight(t):
            continue
        refused = fact.why(op)
        if refused:
            reason, value = refused
            out.append(Finding(op.name, op.type, "unsupported", fact.rule, reason, fact.limit, value, fact.source))
    return out


def m1_matmul_findings(op, compiler: str) -> list[Finding]:
    """The M1 runtime-operand matmul whose outputs come back silently zero."""
    multiple = _multiple_for(compiler)
    if op.type != "matmul" or multiple is None:
        return []
    x, y = op.inputs["x"], op.inputs["y"]
    if is_weight(x) or is_weight(y):
        return []
    inner = x.shape[-2] if op.attr("transpose_x") and x.rank > 1 else x.shape[-1]
    if inner % multiple == 0:
        return []
    return [Finding(op.name, op.type, "unsupported", "m1-runtime-matmul",
                    f"matmul multiplies two runtime tensors over an inner dimension of {inner}; on M1 (h13) that "
                    f"dimension must be a multiple of {multiple} or the outputs are silently zero "
                    "(anekit.ir.passes.pad_runtime_matmuls zero-pads it)",
                    f"multiple of {multiple}", inner, SOURCE_M1_MATMUL)]


def op_findings(op, compiler: str) -> list[Finding]:
    return const_input_findings(op) + m1_matmul_findings(op, compiler)


def findings(fn, compiler: str) -> list[Finding]:
    """Every direct-route finding of a function, program I/O first."""
    out = io_findings(fn)
    for op in fn.ops:
        if op.type != "const":
            out.extend(op_findings(op, compiler))
    return out
