"""Graph facts the latency model shares with the program estimate: who consumes a tensor,
which epilogues fuse into the MAC op before them (guide ch. 13), and I/O surface bytes."""
from __future__ import annotations

from ..ir.weights import is_weight
from .opwork import FP16


def consumers(fn) -> dict[int, list]:
    uses: dict[int, list] = {}
    for op in fn.ops:
        for t in op.tensor_inputs():
            uses.setdefault(id(t), []).append(op)
    return uses


def fusable(op, work: dict, fused_root: dict, uses: dict, outputs: set) -> bool:
    """An activation or per-channel affine whose only activation input comes straight from a
    MAC op (or an op already fused into one) that feeds nothing else."""
    if not op.spec.mac_epilogue:   # guide ch. 13: per-channel scale, bias and nonlinearity fuse
        return False
    acts = [t for t in op.tensor_inputs() if not is_weight(t)]
    if len(acts) != 1 or acts[0].op is None:
        return False
    src = acts[0]
    if id(src) in outputs or len(uses.get(id(src), ())) != 1 or src.shape != op.outputs[0].shape:
        return False
    producer = src.op
    return work[id(producer)].path in ("conv", "matmul") or id(producer) in fused_root


def io_bytes(t) -> float:
    # fp32 surfaces carry 4 bytes per element across the boundary (cast to fp16 inside).
    return t.size * (4 if t.dtype == "fp32" else FP16)
