"""`anekit check` and `anekit estimate`: preflight a MIL program against a chip, estimate its latency."""
from __future__ import annotations

import os

from ..errors import AnekitError, UsageError
from ._table import format_table, to_json


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="will this program run on the ANE of a chip, and if not, why",
                              description="Check every op of a MIL program against a chip's limits, op support "
                                          "and fp16 ranges. Exit 0: everything runs on the ANE; 1: something "
                                          "does not; 2: bad input.")
    _common(p)
    p.add_argument("--range", metavar="INPUT=LO,HI", action="append", default=[],
                   help="declare the values an input carries, for the fp16 range checks (repeatable); "
                        "MIL files do not store ranges")
    p.set_defaults(func=run_check)
    e = subparsers.add_parser("estimate", help="estimate a program's latency on a chip",
                              description="Per-op latency estimate (dispatch floor, compute and bandwidth roofs, "
                                          "weight streaming, working set) for a MIL program on a chip.")
    _common(e)
    e.add_argument("--plot", metavar="FILE", help="also write a roofline plot to FILE.png or FILE.svg "
                                                  "(needs matplotlib)")
    e.set_defaults(func=run_estimate)


def _common(p) -> None:
    p.add_argument("path", help="model: .mlpackage, .mlmodelc, MIL folder or .mil file")
    p.add_argument("--target", "-t", help="chip or compiler target, e.g. m1, 'M4 Max', h16g "
                                          "(default: this Mac's chip, else m1)")
    p.add_argument("--function", help="function to check (default: main)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _load(path: str):
    from ..io import load    # every format ak.load reads (MIL folder or file, Core ML packages)
    return load(path)


def _prepare(args):
    from ..runtime import resolve_target
    chip = resolve_target(args.target)   # bad names fail before any file is read
    return chip, _load(args.path)


def _apply_ranges(prog, specs, function) -> None:
    """Set `range` on the named inputs from INPUT=LO,HI strings."""
    fn = prog.functions.get(function) if function else prog.main
    if fn is None:
        raise UsageError(f"--function {function}: no such function (functions: {', '.join(prog.functions)})")
    by_name = {t.name: t for t in fn.inputs}
    for spec in specs:
        name, sep, bounds = spec.partition("=")
        parts = bounds.split(",")
        if not sep or len(parts) != 2:
            raise AnekitError(f"--range {spec!r}: expected INPUT=LO,HI, e.g. x=-4,4")
        if name not in by_name:
            raise AnekitError(f"--range {spec!r}: no input '{name}' (inputs: {', '.join(by_name)})")
        try:
            lo, hi = float(parts[0]), float(parts[1])
        except ValueError:
            raise AnekitError(f"--range {spec!r}: LO and HI must be numbers") from None
        if not lo <= hi:
            raise AnekitError(f"--range {spec!r}: LO must not exceed HI")
        by_name[name].range = (lo, hi)


def run_check(args) -> int:
    from ..preflight import OFF_ENGINE, check
    chip, prog = _prepare(args)
    _apply_ranges(prog, args.range, args.function)
    rep = check(prog, chip, function=args.function)
    if args.json:
        print(to_json(rep.to_dict()))
        return 0 if rep.ok else 1
    print(f"target {chip.name} (compiler {chip.compiler}, family {chip.family}), function {rep.function}")
    rows = []
    for f in rep.program_findings:
        rows.append([f.op, f.op_type, f.verdict, f.rule, str(f.limit), f.reason])
    for o in rep.ops:
        if not o.findings:
            rows.append([o.name, o.type, o.verdict, "", "", ""])
        for f in o.findings:
            rows.append([o.name, o.type, f.verdict, f.rule, str(f.limit), f.reason])
    print(format_table(["op", "type", "verdict", "rule", "limit", "reason"], rows))
    counts: dict[str, int] = {}
    for o in rep.ops:
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    blocking = [f for f in rep.program_findings if f.verdict in OFF_ENGINE]
    program = f"; program: {', '.join(f'{f.op} {f.verdict} ({f.rule})' for f in blocking)}" if blocking else ""
    print(f"\n{len(rep.ops)} ops: {summary}{program}. "
          + ("Everything runs on the ANE." if rep.ok else "Not everything runs on the ANE."))
    return 0 if rep.ok else 1


def run_estimate(args) -> int:
    from ..cost import estimate, plot_roofline
    from ..cost.roofline import PLOT_FORMATS
    if args.plot and os.path.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
        raise UsageError(f"--plot {args.plot}: the file name must end in {' or '.join(PLOT_FORMATS)}")
    chip, prog = _prepare(args)
    est = estimate(prog, chip, function=args.function)
    if args.plot:
        plot_roofline(est, args.plot)
    if args.json:
        d = est.to_dict()
        if args.plot:
            d["plot"] = args.plot
        print(to_json(d))
        return 0
    p = est.params
    print(f"target {chip.name} (compiler {chip.compiler}), function {est.function}; constants from {p.anchor}"
          + (f" x {p.scale:.3g}" if p.scale != 1.0 else ""))
    rows = [[r.name, r.type, round(r.us, 2), round(r.flops / 1e9, 4), round(r.bytes / 1e6, 3),
             r.bound + (f" ({r.stream})" if r.stream else "")] for r in est.ops]
    print(format_table(["op", "type", "us", "GFLOP", "MB", "bound"], rows))
    print(f"\ndispatch floor {est.dispatch_us:.0f} us + ops {est.total_us - est.dispatch_us:.1f} us = "
          f"{est.total_us:.1f} us ({est.bound}-bound)")
    if args.plot:
        print(f"roofline plot written to {args.plot}")
    return 0

