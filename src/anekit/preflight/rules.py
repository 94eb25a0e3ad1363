"""The preflight rules: each looks at one op (or the whole program) against a chip's limits
and returns findings naming the rule, the reason and the limit."""
from __future__ import annotations

import math

from ..targets import support
from . import ane_route
from .ranges import RangeResult, bounded, mag
from .training import runtime_weight_rule
from .report import Finding

# Axis roles in the engine's 5-D layout N, D, C, H, W (guide ch. 4): rank 4 is N, C, H, W,
# rank 3 C, H, W, rank 2 H, W. The role decides which cap an axis meets: spatial and
# contraction axes the family maximum, channels 65536 (ch. 4 envelope, ch. 12).
_ROLES_BY_RANK = {0: (), 1: ("W",), 2: ("H", "W"), 3: ("C", "H", "W"), 4: ("N", "C", "H", "W"),
                  5: ("N", "D", "C", "H", "W")}
_ROLE_LIMIT = {"W": "max_dim", "H": "max_dim", "C": "max_channels", "N": "max_batch", "D": "max_depth"}
SLICE_OPS = ("slice_by_index", "slice_by_size")
GATHER_OPS = ("gather", "gather_along_axis", "gather_nd")   # all share the M1 software envelope (Appendix A)


def _f(op, verdict, rule, reason, limit, value=None, source="") -> Finding:
    return Finding(op.name, op.type, verdict, rule, reason, limit, value, source)


def _tensors(op):
    """Non-scalar tensors an op reads and writes (scalar flags live in the op descriptor). A
    compressed weight's inputs (palette, indices, scales) are compile-time tables the compiler
    folds or streams, not engine tensors: only the weight it makes meets the layout limits."""
    ins = [] if op.spec.kind == "constexpr" else op.tensor_inputs()
    return [t for t in ins + list(op.outputs) if t.shape]


def axis_roles(rank: int) -> tuple[str, ...]:
    return _ROLES_BY_RANK.get(rank, ("?",) * rank)


def op_support(op, chip):
    st = chip.supports(op.type)
    if st == "native" or (op.spec.kind in ("const", "constexpr") and st != "unsupported"):
        return []   # a weight that folds or streams is not a finding
    why = support.reason(op.type) or ""
    first = support.native_from(op.type)
    src = support.source(chip.support_column)
    if st == "unsupported":
        limit = f"native from {first}" if first else "no engine path on any family"
        return [_f(op, "unsupported", "op-support", f"{op.type} does not run on the {chip.family} engine"
                   + (f": {why}" if why else ""), limit, chip.family, src)]
    return [_f(op, "decomposed", "op-support", f"{op.type} runs through a decomposed route on {chip.family}"
               + (f": {why}" if why else ""), f"native from {first}" if first else "never native",
               chip.family, src)]


def rank_rule(op, chip):
    lim = chip.limits.max_rank
    out = []
    for t in _tensors(op):
        if lim is not None and t.rank > lim:
            out.append(_f(op, "over_limit", "max-rank", f"tensor {t.name or '?'} {list(t.shape)} has rank {t.rank}; "
                          "the engine layout is N, D, C, H, W", lim, t.rank, chip.limits.source("max_rank")))
            break
    return out


def dim_rule(op, chip):
    out = []
    skip = set()
    if op.spec.path == "conv":   # kernels meet the kernel rules instead
        skip = {id(op.inputs["weight"])} | ({id(op.inputs["bias"])} if op.inputs.get("bias") is not None else set())
    for t in _tensors(op):
        if id(t) in skip:
            continue
        if t.rank > 5:
            continue   # the rank rule already refuses it
        for ax, (size, role) in enumerate(zip(t.shape, axis_roles(t.rank))):
            field = _ROLE_LIMIT[role]
            lim = getattr(chip.limits, field)
            if lim is not None and size > lim:
                out.append(_f(op, "over_limit", "max-dim",
                              f"tensor {t.name or '?'} {list(t.shape)}: axis {ax} ({role}) is {size}, over the "
                              f"{chip.family} maximum", lim, size, chip.limits.source(field)))
                return out   # one finding per op is enough to say it will not compile
    return out


def conv_kernel_rule(op, chip):
    if op.spec.path != "conv":
        return []
    k = op.inputs["weight"].shape[2:]
    L = chip.limits
    out = []
    if len(k) == 3:
        out.append(_f(op, "unsupported", "conv-3d", "3-D convolution has a capability bit but fails backend "
                      "lowering on every family", "2-D convolution", len(k), support.source("h13")))
    checks = (("max_kernel_width_fp16", k[-1] if k else 1, "kernel width (fp16)"),
              ("max_kernel_height", k[-2] if len(k) >= 2 else 1, "kernel height"),
              ("max_kernel_depth", k[-3] if len(k) >= 3 else 1, "kernel depth"))
    rules = {"max_kernel_width_fp16": "conv-kernel-width", "max_kernel_height": "conv-kernel-height",
             "max_kernel_depth": "conv-kernel-depth"}
    for field, size, what in checks:
        lim = getattr(L, field)
        if lim is not None and size > lim:
            out.append(_f(op, "over_limit", rules[field], f"{what} {size} is over the {chip.family} maximum "
                          f"(weight {list(op.inputs['weight'].shape)})", lim, size, L.source(field)))
    return out


def matmul_rule(op, chip):
    out = []
    if op.type == "matmul":
        lim = chip.limits.matmul_max_depth
        for t in (op.inputs["x"], op.inputs["y"]):
            if t.rank == 5 and lim is not None and t.shape[1] > lim:
                out.append(_f(op, "over_limit", "matmul-depth", f"operand {t.name or '?'} {list(t.shape)} has depth "
                              f"(axis 1 of N, D, C, H, W) {t.shape[1]}; matmul needs depth 1 on both operands",
                              lim, t.shape[1], chip.limits.source("matmul_max_depth")))
                break
    if op.type == "linear" and op.inputs["x"].rank >= 5:
        x = op.inputs["x"]
        out.append(_f(op, "over_limit", "linear-rank", f"input {list(x.shape)} has rank {x.rank}; the "
                      "fully-connected op rejects rank 5 or more", 4, x.rank, chip.limits.source("max_rank")))
    return out


def ane_route_rule(op, chip):
    """Compile-time inputs and the M1 runtime matmul (preflight/ane_route.py owns them)."""
    return ane_route.op_findings(op, chip.compiler)


def gather_rule(op, chip):
    if op.type not in GATHER_OPS or chip.features.texture_engine:
        return []
    x = op.inputs["x"]
    roles = axis_roles(x.rank)
    bad = [(r, s) for r, s in zip(roles, x.shape) if r in ("N", "D") and s != 1]
    if not bad:
        return []
    role, size = bad[0]
    return [_f(op, "unsupported", "gather-envelope", f"without the texture engine gather takes a software path "
               f"valid only for batch 1 and depth 1; x {list(x.shape)} has {role} = {size}", "batch 1, depth 1",
               size, "ANE guide ch. 4, 'Hard limits' (M1 software gather envelope)")]


def dtype_rule(op, chip):
    if op.spec.kind in ("const", "constexpr"):
        return []
    out = []
    if op.type == "cast":
        if op.attr("dtype") == "int32" and not chip.features.cast_to_int32:
            out.append(_f(op, "unsupported", "cast-int32", f"the {chip.family} compiler rejects a cast to int32",
                          "cast to fp16, fp32 or bool", "int32", chip.features.source("cast_to_int32")))
        return out
    wide = [t for t in op.tensor_inputs() + list(op.outputs) if t.dtype == "fp32" and t.const is None]
    if wide:
        t = wide[0]
        out.append(_f(op, "demoted", "fp32-compute", f"{op.type} computes in fp32 ({t.name or '?'} is fp32); the "
                      "engine's datapath is fp16, so fp32 is not honoured", "fp16", "fp32",
                      "ANE guide ch. 4, 'Type limits'"))
    return out


def width_slice_rule(op, chip, ranges: RangeResult):
    if op.type not in SLICE_OPS or not chip.features.width_slice_saturates:
        return []
    x = op.inputs["x"]
    begin = op.attr("begin")
    if not begin:
        return []
    b = int(begin[-1])
    if op.type == "slice_by_index":
        mask = op.attr("begin_mask")
        if mask and mask[-1]:
            b = 0
    if b < 0:
        b += x.shape[-1]
    if b == 0:
        return []
    lim = chip.limits.width_slice_max_value
    iv = ranges.of(x)
    if bounded(iv) and mag(iv) <= lim:
        return []
    why = (f"values reach {mag(iv):.6g}" if bounded(iv) else "no declared input range bounds its values")
    return [_f(op, "risk", "width-slice-saturation", f"width-axis slice at offset {b} on {chip.family} goes through "
               f"the x16 fixed-point crop: values above {lim:g} become inf; {why}", lim,
               mag(iv) if bounded(iv) else None, chip.features.source("width_slice_saturates"))]


def range_rules(op, chip, ranges: RangeResult):
    """MAC ceiling, fp16 ceiling and exp-input rules from the propagated intervals."""
    L = chip.limits
    out = []
    if op.spec.kind in ("const", "constexpr"):
        return out
    if op.type in ("exp", "exp2"):
        x = ranges.of(op.inputs["x"])
        lim = L.exp_input_max if op.type == "exp" else math.log2(L.fp16_max)
        if lim is not None and math.isfinite(x[1]) and x[1] > lim:
            out.append(_f(op, "risk", "exp-overflow", f"{op.type} input can reach {x[1]:.6g}; the output "
                          f"overflows fp16 above {lim:.4g} (use softmax, which subtracts the max)",
                          round(lim, 4), x[1], L.source("exp_input_max")))
            return out
    partial = ranges.partials.get(id(op))
    if partial is not None and math.isfinite(partial) and L.mac_output_ceiling is not None:
        single_tap = ranges.taps.get(id(op), 2) <= 1
        lim = L.fp16_max if single_tap else L.mac_output_ceiling
        if partial >= lim:
            what = "Q K^T product" if op.type == "scaled_dot_product_attention" else "running sum"
            out.append(_f(op, "risk", "mac-overflow", f"the {what} can reach {partial:.6g}; the multiply-accumulate "
                          f"output saturates to inf at {lim:g} even if the final value would be smaller",
                          lim, partial, L.source("mac_output_ceiling")))
            return out
    for t in op.outputs:
        iv = ranges.of(t)
        if t.dtype in ("fp16", "fp32") and bounded(iv) and L.fp16_max is not None and mag(iv) > L.fp16_max:
            out.append(_f(op, "risk", "fp16-overflow", f"output {t.name or '?'} can reach {mag(iv):.6g}, beyond "
                          f"the fp16 maximum", L.fp16_max, mag(iv), L.source("fp16_max")))
            break
    return out


def clip_after_finding(op, ranges: RangeResult, fp16_max: float) -> None:
    """Once an op is flagged, pass on its bound clipped to fp16 so every op downstream is not
    flagged again for the same overflow."""
    for t in op.outputs:
        lo, hi = ranges.of(t)
        ranges.intervals[id(t)] = (max(lo, -fp16_max), min(hi, fp16_max))


OP_RULES = (op_support, rank_rule, dim_rule, conv_kernel_rule, matmul_rule, ane_route_rule, gather_rule,
            dtype_rule, runtime_weight_rule)
# Op names the rules above are keyed on (tests check them against REGISTRY and the support table).
KEYED_OPS = frozenset({"matmul", "linear", "cast", "exp", "exp2", "scaled_dot_product_attention",
                       *SLICE_OPS, *GATHER_OPS})

