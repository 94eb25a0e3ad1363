"""Preflight checks: will this program run on the ANE of chip X, and if not, why.

    rep = anekit.check(prog, "m1")     # also anekit.preflight.check
    rep.ok                                   # False if any op would not run on the engine
    for op, verdict, reason, limit in rep.findings: ...
    rep.to_dict()                            # JSON-ready

Verdicts, worst first: over_limit (a shape/kernel/size limit the compiler rejects),
unsupported (no engine path on this family), risk (runs, but can produce inf: fp16 range
analysis, width-slice saturation), demoted (fp32 requested, fp16 delivered), decomposed
(runs through a decomposition or bridge route), native.
"""
from __future__ import annotations

from .. import targets
from ..errors import AnekitError, UsageError
from ..ir import Program
from ..ir.weights import program_weight_bytes
from . import ane_route, ranges, train_risk
from .report import OFF_ENGINE, VERDICTS, CheckReport, Finding, OpVerdict
from .rules import OP_RULES, clip_after_finding, range_rules, width_slice_rule

# "direct": anekit's own route through the private framework (backend="ane"), which also
# needs [1, C, 1, S] fp16 I/O (preflight/ane_route.py); "coreml": through Core ML, which
# lays out and casts I/O itself. The engine's own limits apply to both.
ROUTES = ("direct", "coreml")

__all__ = ["check", "off_engine_ops", "CheckReport", "Finding", "OpVerdict", "VERDICTS", "OFF_ENGINE", "ranges", "analyze_ranges"]


def analyze_ranges(prog, function: str | None = None) -> dict[str, tuple[float, float]]:
    """Tensor name -> (lo, hi) bound from the declared input ranges (unbounded: +-inf)."""
    fn = _function(prog, function)
    res = ranges.propagate(fn)
    out = {t.name: res.of(t) for t in fn.inputs}
    for op in fn.ops:
        if op.type != "const":
            for t in op.outputs:
                out[t.name] = res.of(t)
    return out


def check(prog, target, function: str | None = None, route: str = "coreml") -> CheckReport:
    """Check one program function against a chip (name or anekit.targets.Chip), for the
    direct route (the ANE backend) or the Core ML route."""
    if route not in ROUTES:
        raise UsageError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    chip = targets.get(target)
    fn = _function(prog, function)
    res = ranges.start(fn)
    program_findings = _program_rules(fn, chip) + train_risk.findings(fn, chip)
    if route == "direct":
        program_findings += ane_route.io_findings(fn)
    verdicts = []
    for op in fn.ops:
        ranges.step(op, res)
        if op.type == "const":
            continue
        v = OpVerdict(op.name, op.type)
        for rule in OP_RULES:
            for f in rule(op, chip):
                v.add(f)
        for f in width_slice_rule(op, chip, res) + range_rules(op, chip, res):
            v.add(f)
            if f.rule in ("mac-overflow", "fp16-overflow", "exp-overflow"):
                clip_after_finding(op, res, chip.limits.fp16_max or 65504.0)
        verdicts.append(v)
    return CheckReport(chip.name, chip.compiler, chip.family, verdicts, program_findings, fn.name)


def off_engine_ops(fn, chip) -> dict[str, str]:
    """Op name -> why `check` puts it off the engine (an over_limit or unsupported finding),
    from the op rules alone: the range rules only ever report risks, so they are skipped here
    (the cost model asks this for every estimate)."""
    out = {}
    for op in fn.ops:
        if op.type == "const":
            continue
        for rule in OP_RULES:
            for f in rule(op, chip):
                if f.verdict in OFF_ENGINE and op.name not in out:
                    out[op.name] = f.reason
    return out


def _function(prog, function):
    if not isinstance(prog, Program):
        raise AnekitError(f"check needs an anekit Program, got {type(prog).__name__}")
    if function is None:
        return prog.main
    if function not in prog.functions:
        raise AnekitError(f"program has no function '{function}' (has {', '.join(prog.functions)})")
    return prog.functions[function]


def _program_rules(fn, chip) -> list[Finding]:
    out = []
    L = chip.limits
    total = program_weight_bytes(fn)
    if L.max_weight_bytes is not None and total > L.max_weight_bytes:
        out.append(Finding("(program)", "program", "over_limit", "weights-total",
                           f"the program holds {total / 2**30:.2f} GiB of weights; a single program holds "
                           f"about {L.max_weight_bytes / 2**30:.0f} GiB at most", L.max_weight_bytes, total,
                           L.source("max_weight_bytes")))
    for t in fn.inputs:
        if t.dtype in ("int32", "bool"):
            out.append(Finding(t.name, "input", "unsupported", "input-dtype", f"program input {t.name} is {t.dtype}; "
                               "engine inputs are fp16 (or uint8 image data)", "fp16", t.dtype,
                               "ANE guide ch. 4, compile-legal envelope (input dtypes)"))
        elif t.dtype == "fp32":
            out.append(Finding(t.name, "input", "demoted", "input-dtype", f"program input {t.name} is fp32; the engine "
                               "computes in fp16, so the values are rounded to fp16 inside", "fp16", t.dtype,
                               "ANE guide ch. 4, 'Type limits'"))
        if t.range is not None and max(abs(t.range[0]), abs(t.range[1])) > (L.fp16_max or 65504.0):
            out.append(Finding(t.name, "input", "risk", "fp16-overflow", f"declared range {t.range} of input "
                               f"{t.name} exceeds the fp16 maximum", L.fp16_max, max(map(abs, t.range)),
                               L.source("fp16_max")))
    return out
