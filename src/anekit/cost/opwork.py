"""Op-level quantities the latency model needs: flops, weight bytes by format, activation
bytes, which engine path runs the op, and how well it fills the multiply array.

Everything here is a function of one IR op and the chip's streaming formats; the latency
formula (model.py) never looks at an op again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..ir.weights import compressed, is_weight

FP16 = 2   # bytes per element on the engine: storage and I/O are fp16 (guide ch. 3)

# Winograd F(2x2, 3x3): 36 multiplies per 2x2 output tile become 16 (guide ch. 13); which
# convs take it is a fact of conv's declaration (MacWork.winograd).
WINOGRAD_GAIN = 2.25


@dataclass
class OpWork:
    path: str                 # "conv", "matmul", "vector", "free", "const"
    flops: float = 0.0        # 2 x multiply-accumulates for MAC ops, elements touched otherwise
    exec_flops: float = 0.0   # flops the array actually runs (after Winograd)
    weight_bytes: float = 0.0
    weight_format: str = ""   # "fp16", "int8", "lut", "sparse", "blockwise"; "+fold" when it folds to fp16
    act_in_bytes: float = 0.0
    act_out_bytes: float = 0.0
    out_channels: int = 0     # lanes the array fills (conv Cout, matmul N)
    spatial: int = 0          # innermost streamed extent (conv output width, matmul rows)
    winograd: bool = False
    largest_operand: float = 0.0
    passes: int = 1           # vector-engine passes over the data
    rows: int = 0             # output rows streamed against one weight (output elements / lanes)
    taps: int = 1             # kernel elements per output channel (conv path)

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.act_in_bytes + self.act_out_bytes


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def weight_bytes(t, streams: tuple[str, ...]) -> tuple[float, str]:
    """Bytes a weight tensor moves from DRAM, and its format. Compressed forms stream at their
    stored size only where the family streams them; elsewhere they fold to dense fp16 in DRAM
    (guide ch. 7, 35)."""
    dense = _numel(t.shape) * FP16
    op = t.op
    if op is None or op.type == "const" or op.spec.kind != "constexpr":
        return float(dense), "fp16"
    kind, stored = compressed(op)
    if kind in streams:
        return float(stored), kind
    return float(dense), kind + "+fold"


def _split(op, streams):
    """Weight bytes/format and activation bytes of an op's tensor inputs."""
    wb, fmts, ab, largest = 0.0, [], 0.0, 0.0
    for t in op.tensor_inputs():
        if t.dtype == "string" or (t.const is not None and not t.shape):
            continue   # scalars and flags live in the op descriptor
        if is_weight(t) and t.dtype not in ("fp16", "fp32"):
            continue   # integer parameter lists (strides, pads, axes) are descriptor fields too
        if is_weight(t):
            b, f = weight_bytes(t, streams)
            wb += b
            if _numel(t.shape) > 1:
                fmts.append(f)
        else:
            b = _numel(t.shape) * FP16
            ab += b
        largest = max(largest, b)
    return wb, "/".join(sorted(set(fmts))), ab, largest


def op_work(op, streams: tuple[str, ...]) -> OpWork:
    """The op's work on its engine path (`OpSpec.path`, `vector_passes`, `mac_work`)."""
    spec = op.spec
    if spec.path == "const":
        return OpWork("const")
    out_bytes = float(sum(_numel(t.shape) * FP16 for t in op.outputs))
    if spec.path == "free":
        return OpWork("free", act_out_bytes=out_bytes)
    wb, fmt, ab, largest = _split(op, streams)
    largest = max(largest, max((_numel(t.shape) * FP16 for t in op.outputs), default=0))
    w = OpWork("vector", weight_bytes=wb, weight_format=fmt, act_in_bytes=ab, act_out_bytes=out_bytes,
               largest_operand=float(largest))
    if spec.path == "vector":
        w.passes = spec.vector_passes
        w.flops = w.exec_flops = float(max(ab / FP16, out_bytes / FP16)) * w.passes
        return w
    w.path = spec.path
    m = spec.mac_work(op)
    w.out_channels, w.spatial, w.winograd = m.lanes, m.spatial, m.winograd
    w.rows = int(max(1, _numel(op.outputs[0].shape) // max(1, m.lanes)))
    k = op.inputs.get("weight") if spec.path == "conv" else None
    if k is not None and len(k.shape) > 2:
        w.taps = _numel(k.shape[2:])
    w.flops = 2.0 * m.macs
    w.exec_flops = w.flops / WINOGRAD_GAIN if w.winograd else w.flops
    return w
