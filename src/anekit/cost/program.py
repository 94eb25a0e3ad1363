"""Walks a program: per-op work and time, fusion of epilogues into MAC ops, program I/O,
working-set spills, and one dispatch floor for the whole program."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import targets
from ..errors import AnekitError
from ..ir import Program
from ..ir.weights import is_weight
from .model import op_time
from .opwork import FP16, OpWork, op_work
from .params import CostParams, params_for



@dataclass
class OpRow:
    name: str
    type: str
    us: float
    flops: float
    bytes: float
    bound: str                  # "compute", "bandwidth", "fused" or "free"
    stream: str | None = None   # for bandwidth-bound ops: "weights" or "activations"
    compute_us: float = 0.0
    weights_us: float = 0.0
    spill_us: float = 0.0
    io_us: float = 0.0
    weight_bytes: float = 0.0
    weight_format: str = ""
    utilization: float = 1.0
    winograd: bool = False
    dram_bytes: float = 0.0     # what the model charges to DRAM: weights, program I/O, spills

    def __iter__(self):   # unpacks as (op name, type, us, flops, bytes, bound)
        return iter((self.name, self.type, self.us, self.flops, self.bytes, self.bound))

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, flops per byte moved (inf for ops that move nothing)."""
        return self.flops / self.bytes if self.bytes else float("inf")


@dataclass
class Estimate:
    target: str
    compiler: str
    total_us: float
    dispatch_us: float
    ops: list[OpRow]
    bound: str                  # program level: "dispatch", "compute" or "bandwidth"
    params: CostParams = field(repr=False)
    function: str = "main"

    @property
    def total_ms(self) -> float:
        return self.total_us / 1e3

    @property
    def flops(self) -> float:
        return sum(r.flops for r in self.ops if r.bound != "free")

    def to_dict(self) -> dict:
        p = self.params
        return {"target": self.target, "compiler": self.compiler, "function": self.function,
                "total_us": self.total_us, "dispatch_us": self.dispatch_us, "bound": self.bound,
                "params": {"anchor": p.anchor, "scale": p.scale, **{k: getattr(p, k) for k in _PARAM_FIELDS},
                           "streams": list(p.streams)},
                "ops": [asdict(r) for r in self.ops]}


_PARAM_FIELDS = ("dispatch_us", "conv_tflops", "matmul_tflops", "spill_factor", "io_gbs", "conv_weight_gbs",
                 "matmul_weight_gbs", "vector_gbs", "working_set_bytes")


def _consumers(fn) -> dict[int, list]:
    uses: dict[int, list] = {}
    for op in fn.ops:
        for t in op.tensor_inputs():
            uses.setdefault(id(t), []).append(op)
    return uses


def _fusable(op, work: dict, fused_root: dict, uses: dict, outputs: set) -> bool:
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


def estimate(prog, target, function: str | None = None) -> Estimate:
    """Latency estimate of one program function on a chip (name or anekit.targets.Chip)."""
    if not isinstance(prog, Program):
        raise AnekitError(f"estimate needs an anekit Program, got {type(prog).__name__}")
    chip = targets.get(target)
    p = params_for(chip)
    fn = prog.functions.get(function) if function else prog.main
    if fn is None:
        raise AnekitError(f"program has no function '{function}' (has {', '.join(prog.functions)})")
    uses = _consumers(fn)
    inputs = {id(t) for t in fn.inputs}
    outputs = {id(t) for t in fn.outputs}
    seen_inputs: set[int] = set()
    work: dict[int, OpWork] = {}
    fused_root: dict[int, object] = {}
    rows: list[OpRow] = []
    for op in fn.ops:
        w = op_work(op, p.streams)
        work[id(op)] = w
        if w.path == "const":
            continue
        if _fusable(op, work, fused_root, uses, outputs):
            fused_root[id(op)] = op
        io, spill = 0.0, 0.0
        for t in op.tensor_inputs():
            if id(t) in inputs and id(t) not in seen_inputs:   # each program input is copied in once
                seen_inputs.add(id(t))
                io += _io_bytes(t)
            elif not is_weight(t) and id(t) not in inputs and t.size * FP16 > p.working_set_bytes:
                spill += t.size * FP16
        for t in op.outputs:
            if id(t) in outputs:
                io += _io_bytes(t)
            elif t.size * FP16 > p.working_set_bytes and w.path != "free":
                spill += t.size * FP16
        if id(op) in fused_root:
            rows.append(_fused_row(op, w, io, p))
            continue
        t_op = op_time(w, p, io_bytes=io, spill_bytes=spill)
        bound, stream = t_op.bound
        rows.append(OpRow(op.name, op.type, t_op.us, w.flops, w.bytes, bound, stream, t_op.compute_us,
                          t_op.weights_us, t_op.spill_us, t_op.io_us, w.weight_bytes, w.weight_format,
                          t_op.utilization, w.winograd, w.weight_bytes + io + spill))
    total_ops = sum(r.us for r in rows)
    by_bound = {"dispatch": p.dispatch_us,
                "compute": sum(r.us for r in rows if r.bound == "compute"),
                "bandwidth": sum(r.us for r in rows if r.bound == "bandwidth")}
    return Estimate(chip.name, chip.compiler, p.dispatch_us + total_ops, p.dispatch_us, rows,
                    max(by_bound, key=by_bound.get), p, fn.name)


def _io_bytes(t) -> float:
    # fp32 surfaces carry 4 bytes per element across the boundary (cast to fp16 inside).
    return t.size * (4 if t.dtype == "fp32" else FP16)


def _fused_row(op, w: OpWork, io: float, p: CostParams) -> OpRow:
    """An epilogue riding on its MAC op's output pass: only program I/O it carries costs time."""
    io_us = io / (p.io_gbs * 1e3)
    return OpRow(op.name, op.type, io_us, w.flops, w.bytes, "fused", None, 0.0, 0.0, 0.0, io_us,
                 w.weight_bytes, w.weight_format, dram_bytes=io)
