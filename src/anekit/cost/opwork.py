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

# Ops that are descriptor edits, not data movement (guide ch. 4: "metadata edit").
FREE_OPS = frozenset({"reshape", "squeeze", "expand_dims", "identity"})
# MAC-array ops and the roof each uses (conv path vs matmul path, guide ch. 9, 12).
MAC_PATH = {"conv": "conv", "conv_transpose": "conv", "matmul": "matmul", "linear": "matmul",
            "scaled_dot_product_attention": "matmul"}
# Vector-engine passes over the data per op kind: a norm or softmax reads its input twice
# (statistics, then normalize); the rest stream once.
VECTOR_PASSES = {"elementwise": 1, "activation": 1, "reduction": 1, "pool": 1, "movement": 1,
                 "compare": 1, "norm": 2}
SOFTMAX_PASSES = 2
# Winograd F(2x2, 3x3): 36 multiplies per 2x2 output tile become 16 (guide ch. 13), taken by
# dense 3x3 stride-1 convs with enough channels (float work threshold 16, ch. 13 reference table).
WINOGRAD_GAIN = 2.25
WINOGRAD_MIN_CHANNELS = 16


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
    if op.spec.kind in ("const", "constexpr"):
        return OpWork("const")
    out_bytes = float(sum(_numel(t.shape) * FP16 for t in op.outputs))
    if op.type in FREE_OPS:
        return OpWork("free", act_out_bytes=out_bytes)
    wb, fmt, ab, largest = _split(op, streams)
    largest = max(largest, max((_numel(t.shape) * FP16 for t in op.outputs), default=0))
    w = OpWork("vector", weight_bytes=wb, weight_format=fmt, act_in_bytes=ab, act_out_bytes=out_bytes,
               largest_operand=float(largest))
    path = MAC_PATH.get(op.type)
    if path is None:
        w.passes = SOFTMAX_PASSES if op.type == "softmax" else VECTOR_PASSES.get(op.spec.kind, 1)
        w.flops = w.exec_flops = float(max(ab / FP16, out_bytes / FP16)) * w.passes
        return w
    w.path = path
    _mac(op, w)
    return w


def _mac(op, w: OpWork) -> None:
    out = op.outputs[0].shape
    if op.type in ("conv", "conv_transpose"):
        x, k = op.inputs["x"].shape, op.inputs["weight"].shape
        groups = int(op.attr("groups") or 1)
        taps = _numel(k[2:])
        if op.type == "conv":
            macs = _numel(out) * (x[1] // groups) * taps
        else:   # each input element scatters into Cout/groups x kernel outputs
            macs = _numel(x) * (k[1]) * taps
        w.out_channels, w.spatial = out[1], (out[-1] if len(out) > 2 else 1)
        w.winograd = (op.type == "conv" and len(k) == 4 and tuple(k[2:]) == (3, 3) and groups == 1
                      and tuple(op.attr("strides") or (1, 1)) == (1, 1)
                      and tuple(op.attr("dilations") or (1, 1)) == (1, 1)
                      and x[1] >= WINOGRAD_MIN_CHANNELS and out[1] >= WINOGRAD_MIN_CHANNELS)
    elif op.type == "scaled_dot_product_attention":
        q, kk, v = (op.inputs[n].shape for n in ("query", "key", "value"))
        batch = _numel(out[:-2])
        macs = batch * q[-2] * kk[-2] * (q[-1] + v[-1])
        w.out_channels, w.spatial = kk[-2], q[-2] * batch
    else:   # matmul, linear: out [..., M, N]
        if op.type == "linear":
            inner = op.inputs["weight"].shape[1]
        else:
            xs = op.inputs["x"].shape
            inner = xs[-2] if (op.attr("transpose_x") and len(xs) > 1) else xs[-1]
        macs = _numel(out) * inner
        w.out_channels = out[-1] if out else 1
        w.spatial = _numel(out[:-1]) if len(out) > 1 else 1
    w.flops = 2.0 * macs
    w.exec_flops = w.flops / WINOGRAD_GAIN if w.winograd else w.flops
