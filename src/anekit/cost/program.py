"""The estimate of one program: its op features (model.walk: per-op work, fusion of epilogues
into MAC ops, program I/O, working-set spills), their times (model.op_times), one dispatch
floor for the whole program, and the interval (uncertainty).

Ops that `ak.check` puts off the engine (unsupported or over a limit on this chip) are not
priced as engine ops: their row says `on_engine=False` with the checker's reason, their time
is left out of the total (the guide gives no CPU throughput figure to price them with), and
the program pays what the split itself costs: each engine segment after the first is its own
dispatch (the per-dispatch floor, guide ch. 9: fusing into one program is what removes it;
ch. 5: the framework's placement charges a launch penalty per segment), and every tensor
crossing between engine and host is copied at the host copy rate (`host_copy_gbs`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .. import targets
from ..preflight import off_engine_ops
from .opwork import FP16 as ENGINE_BYTES
from ..errors import AnekitError
from ..ir import Program
from .model import features_array, op_times, param_arrays, walk
from .params import HOST_COPY_ROUTES, ROUTE_FLOOR, CostParams, params_for
from .uncertainty import interval



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
    on_engine: bool = True      # False: ak.check puts it off the ANE; not priced, not in the total
    off_engine_reason: str = ""

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
    low_us: float = 0.0         # interval from validation residuals of similar programs on this
    high_us: float = 0.0        # generation (anekit.cost.uncertainty); equal to total when unknown
    route: str = "standard"
    segments: int = 1           # engine segments the off-engine ops split the program into
    split_us: float = 0.0       # their extra dispatches and host copies (in total_us)

    @property
    def off_engine(self) -> list[OpRow]:
        return [r for r in self.ops if not r.on_engine]

    @property
    def total_ms(self) -> float:
        return self.total_us / 1e3

    @property
    def flops(self) -> float:
        return sum(r.flops for r in self.ops if r.bound != "free")

    def to_dict(self) -> dict:
        p = self.params
        return {"target": self.target, "compiler": self.compiler, "function": self.function,
                "total_us": self.total_us, "low_us": self.low_us, "high_us": self.high_us,
                "dispatch_us": self.dispatch_us, "bound": self.bound, "route": self.route,
                "segments": self.segments, "split_us": self.split_us,
                "off_engine": [r.name for r in self.off_engine],
                "params": {"anchor": p.anchor, "generation": p.generation, "scale": p.scale,
                           "fitted": p.fitted, "measured": p.measured,
                           **{k: getattr(p, k) for k in _PARAM_FIELDS}, "streams": list(p.streams)},
                "ops": [asdict(r) for r in self.ops]}


_PARAM_FIELDS = ("dispatch_us", "conv_tflops", "matmul_tflops", "spill_factor", "cliff_factor", "io_gbs",
                 "weight_gbs", "gemv_gbs", "vector_gbs", "working_set_bytes", "weight_sram_bytes", "ocg_channels")


def estimate(prog, target, function: str | None = None, route: str = "standard") -> Estimate:
    """Latency estimate of one program function on a chip (name or anekit.targets.Chip), with
    an interval from the validation residuals (see anekit.cost.model and docs/targets.md)."""
    if not isinstance(prog, Program):
        raise AnekitError(f"estimate needs an anekit Program, got {type(prog).__name__}")
    chip = targets.get(target)
    p = params_for(chip)
    if route not in ROUTE_FLOOR:
        raise AnekitError(f"unknown dispatch route '{route}' (known: {', '.join(ROUTE_FLOOR)})")
    fn = prog.functions.get(function) if function else prog.main
    if fn is None:
        raise AnekitError(f"program has no function '{function}' (has {', '.join(prog.functions)})")
    feats = walk(prog, fn, p.streams, p.working_set_bytes, p.weight_sram_bytes, p.resident_bytes, p.ocg_channels, p.smooth_crossing)
    t = op_times(features_array(feats), param_arrays(p))
    rows: list[OpRow] = []
    for i, f in enumerate(feats):
        w = f.work
        c, wt, sp, io = (float(t[k][i]) for k in ("compute", "weights", "spill", "io"))
        if f.path == "io":
            bound, stream = ("fused" if w.path != "free" else "free"), None
        else:
            parts = {"compute": c, "weights": wt, "activations": sp + io}
            top = max(parts, key=parts.get)
            bound, stream = (("free", None) if max(parts.values()) <= 0 else
                             ("compute", None) if top == "compute" else ("bandwidth", top))
        rows.append(OpRow(f.name, f.type, float(t["us"][i]), w.flops, w.bytes, bound, stream, c, wt, sp, io,
                          w.weight_bytes, w.weight_format, f.fill, w.winograd,
                          (w.weight_bytes if f.path != "io" else 0.0) + f.io_bytes + f.spill_bytes))
    dispatch = p.dispatch_us * ROUTE_FLOOR[route]
    if route in HOST_COPY_ROUTES:     # the host copies program I/O in and out on this route
        dispatch += sum(f.io_bytes for f in feats) / (p.host_copy_gbs * 1e3)
    # Only ops the model prices at run time; a constexpr op (weight decompression) is part of
    # its consumer's weights, never a segment boundary.
    priced = {r.name for r in rows}
    off = {k: v for k, v in off_engine_ops(fn, chip).items() if k in priced}
    segments, split_us = 1, 0.0
    if off:
        for r in rows:
            if r.name in off:
                r.on_engine, r.off_engine_reason = False, off[r.name]
                r.us = r.compute_us = r.weights_us = r.spill_us = r.io_us = 0.0
                r.bound, r.stream = "off-engine", None
        segments, crossing = _split(fn, off)
        split_us = (segments - 1) * dispatch + crossing / (p.host_copy_gbs * 1e3)
    total = dispatch + split_us + sum(r.us for r in rows)
    by_bound = {"dispatch": dispatch,
                "compute": sum(r.us for r in rows if r.bound == "compute"),
                "bandwidth": sum(r.us for r in rows if r.bound == "bandwidth")}
    bound = max(by_bound, key=by_bound.get)
    low, high = interval(total, p, bound)
    return Estimate(chip.name, chip.compiler, total, dispatch, rows, bound, p, fn.name, low, high, route,
                    segments, split_us)


def _split(fn, off: dict) -> tuple[int, int]:
    """(engine segments, bytes crossing engine <-> host) when the ops in `off` leave the engine:
    a segment is a run of engine ops in program order; a crossing is a tensor made on one
    side and read on the other (each counted once)."""
    segments, in_run, crossing = 0, False, 0
    side = {}                                   # id(tensor) -> True when made on the engine
    crossed = set()
    for op in fn.ops:
        if op.type == "const" or op.spec.kind == "constexpr":
            continue            # weights: each side reads its own copy, nothing crosses
        here = op.name not in off
        if here and not in_run:
            segments += 1
        in_run = here
        for t in (v for vs in op.inputs.values() for v in (vs if isinstance(vs, tuple) else (vs,))):
            made = side.get(id(t))
            if made is not None and made != here and id(t) not in crossed:
                crossed.add(id(t))
                crossing += int(np.prod(t.shape)) * ENGINE_BYTES
        for t in op.outputs:
            side[id(t)] = here
    return max(segments, 1), crossing
