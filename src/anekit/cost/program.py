"""The estimate of one program: its op features (model.walk: per-op work, fusion of epilogues
into MAC ops, program I/O, working-set spills), their times (model.op_times), one dispatch
floor for the whole program, and the interval (uncertainty)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import targets
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
                "params": {"anchor": p.anchor, "generation": p.generation, "scale": p.scale,
                           "fitted": p.fitted, "measured": p.measured,
                           **{k: getattr(p, k) for k in _PARAM_FIELDS}, "streams": list(p.streams)},
                "ops": [asdict(r) for r in self.ops]}


_PARAM_FIELDS = ("dispatch_us", "conv_tflops", "matmul_tflops", "spill_factor", "cliff_factor", "io_gbs",
                 "weight_gbs", "vector_gbs", "working_set_bytes", "weight_sram_bytes")


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
    feats = walk(prog, fn, p.streams, p.working_set_bytes, p.weight_sram_bytes, p.resident_bytes)
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
    total = dispatch + sum(r.us for r in rows)
    by_bound = {"dispatch": dispatch,
                "compute": sum(r.us for r in rows if r.bound == "compute"),
                "bandwidth": sum(r.us for r in rows if r.bound == "bandwidth")}
    bound = max(by_bound, key=by_bound.get)
    low, high = interval(total, p, bound)
    return Estimate(chip.name, chip.compiler, total, dispatch, rows, bound, p, fn.name, low, high, route)
