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
    p.add_argument("--route", choices=("coreml", "direct"), default="coreml",
                   help="coreml (default): through Core ML; direct: anekit's ANE backend, which also needs "
                        "[1, C, 1, S] fp16 I/O (fp32 cast inside the program)")
    p.set_defaults(func=run_check)
    e = subparsers.add_parser("estimate", help="estimate a program's latency on one chip or across chips",
                              description="Per-op latency estimate (dispatch floor, compute and bandwidth roofs, "
                                          "weight streaming, working set) for a MIL program on a chip, with an "
                                          "interval from the model's validation residuals. Several targets "
                                          "(--target m1,m4,m4max) or --compare print one table across chips.")
    _common(e, several=True)
    e.add_argument("--compare", action="store_true", help="estimate on every chip (or on the --target list) "
                                                          "and print one table")
    # --dispatch, not --route: `check --route` chooses Core ML or anekit's backend, a different
    # question; --route stays accepted here for scripts written before the rename.
    e.add_argument("--dispatch", "--route", dest="route", default="standard",
                   choices=["standard", "e5rt", "host", "realtime"],
                   help="how each call is dispatched: standard evaluate (default), e5rt, host (I/O copied per "
                        "call) or realtime (_ANEClient real-time evaluate)")
    e.add_argument("--plot", metavar="FILE", help="also write a roofline plot to FILE.png or FILE.svg "
                                                  "(needs matplotlib; one target)")
    llm = e.add_argument_group("language models (PATH a llama2.c .bin or a Hugging Face folder: prefill and "
                               "decode tokens/s, from the checkpoint's shapes alone)")
    llm.add_argument("--prompt-tokens", type=int, default=128, metavar="N",
                     help="prompt length the prefill is priced for (default 128, capped at the context)")
    llm.add_argument("--quantize", choices=["int8", "lut4", "lut6"],
                     help="price the weights stored compressed, as `anekit generate --quantize` runs them")
    e.set_defaults(func=run_estimate)


def _common(p, several: bool = False) -> None:
    p.add_argument("path", help="model: .mlpackage, .mlmodelc, MIL folder or .mil file"
                                + ("; or a language model: llama2.c .bin, Hugging Face folder" if several else ""))
    p.add_argument("--target", "-t", help="chip or compiler target, e.g. m1, 'M4 Max', 'Apple M5 Pro', Mac16,12, "
                                          "h16g" + (", or a comma list m1,m4,m4max" if several else "")
                                          + " (default: this Mac's chip, else m1)")
    p.add_argument("--function", help="function to check (default: main)")
    add_shape_option(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_shape_option(p) -> None:
    p.add_argument("--shape", metavar="INPUT=D0,D1,...", action="append", default=[],
                   help="pin a flexible input (RangeDim / enumerated shapes) of a Core ML model to one "
                        "shape (repeatable)")


def parse_shapes(specs: list[str]) -> dict | None:
    """{input: shape} from INPUT=D0,D1,... strings (None when there are none)."""
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise UsageError(f"--shape '{spec}': expected INPUT=D0,D1,... with positive sizes")
        if name in shapes:
            raise UsageError(f"--shape {name} is given twice")
        shapes[name] = shape
    return shapes or None


def _load(path: str, shapes=None):
    from ..io import load    # every format ak.load reads (MIL folder or file, Core ML packages)
    return load(path, shapes=shapes)


def _prepare(args):
    from ..runtime import resolve_target
    chip = resolve_target(args.target)   # bad names fail before any file is read
    return chip, _load(args.path, parse_shapes(args.shape))


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
    rep = check(prog, chip, function=args.function, route=args.route)
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


def _targets_of(args) -> list:
    """The chips an estimate runs on: the --target list (resolved before any file is read),
    every chip for a bare --compare, or the default target."""
    from .. import targets
    from ..runtime import resolve_target
    if args.target and "," in args.target:
        return [targets.get(n) for n in split_targets(args.target)]
    if args.compare and not args.target:
        return list(targets.all_chips())
    return [resolve_target(args.target)]


def split_targets(text: str) -> list[str]:
    """'m1,m4,Mac16,12' -> ['m1', 'm4', 'Mac16,12']: a Mac model identifier keeps its comma
    (a piece that is only digits belongs to the piece before it)."""
    out: list[str] = []
    for piece in (x.strip() for x in text.split(",")):
        if piece.isdigit() and out:
            out[-1] += "," + piece
        elif piece:
            out.append(piece)
    return out


def run_estimate(args) -> int:
    from ..cost import estimate, plot_roofline
    from ..cost.roofline import PLOT_FORMATS
    if args.plot and os.path.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
        raise UsageError(f"--plot {args.plot}: the file name must end in {' or '.join(PLOT_FORMATS)}")
    chips = _targets_of(args)
    if args.plot and len(chips) > 1:
        raise AnekitError("--plot draws one chip's roofline: give a single --target")
    model = _language_model(args)
    if model is not None:
        return _print_generation(model, chips, args)
    if args.quantize:
        raise UsageError("--quantize applies to language models (a llama2.c .bin or a Hugging Face folder); "
                         "for a program, write it with ak.quantize first")
    prog = _load(args.path, parse_shapes(args.shape))
    ests = [estimate(prog, c, function=args.function, route=args.route) for c in chips]
    if len(ests) > 1 or args.compare:
        return _print_compare(ests, args)
    chip, est = chips[0], ests[0]
    if args.plot:
        plot_roofline(est, args.plot)
    if args.json:
        d = est.to_dict()
        if args.plot:
            d["plot"] = args.plot
        print(to_json(d))
        return 0
    p = est.params
    print(f"target {chip.name} (compiler {chip.compiler}), function {est.function}; constants of generation "
          f"{p.generation} ({p.anchor}" + (f" x {p.scale:.3g}" if p.scale != 1.0 else "") + ")"
          + ("" if p.measured else "; UNMEASURED generation, extrapolated"))
    rows = [[r.name + ("" if r.on_engine else " *"), r.type, round(r.us, 2) if r.on_engine else "off-ANE",
             round(r.flops / 1e9, 4), round(r.bytes / 1e6, 3),
             r.bound + (f" ({r.stream})" if r.stream else "")] for r in est.ops]
    print(format_table(["op", "type", "us", "GFLOP", "MB", "bound"], rows))
    split = (f" + split {est.split_us:.1f} us ({est.segments} engine segments)" if est.off_engine else "")
    print(f"\ndispatch floor {est.dispatch_us:.0f} us + ops {est.total_us - est.dispatch_us - est.split_us:.1f} us"
          f"{split} = {est.total_us:.1f} us ({est.bound}-bound); likely {est.low_us:.0f}-{est.high_us:.0f} us "
          f"(10th-90th percentile of the validation residuals)")
    for r in est.off_engine:
        print(f"* {r.name} ({r.type}) runs off the ANE, not in the total: {r.off_engine_reason}")
    if args.plot:
        print(f"roofline plot written to {args.plot}")
    return 0


def _print_compare(ests, args) -> int:
    if args.json:
        print(to_json({"function": ests[0].function, "route": args.route,
                       "estimates": [e.to_dict() for e in ests]}))
        return 0
    rows = []
    for e in ests:
        p = e.params
        rows.append([e.target, e.compiler, p.generation, round(e.total_us, 1), round(e.low_us, 1), round(e.high_us, 1),
                     round(e.dispatch_us, 1), e.bound, len(e.off_engine), "yes" if p.measured else "no (extrapolated)"])
    print(format_table(["chip", "compiler", "gen", "us", "low us", "high us", "floor us", "bound", "off-ANE ops",
                        "measured gen"],
                       rows, title=f"function {ests[0].function}, dispatch {args.route}"))
    return 0


def _language_model(args):
    """A shapes-only decoder when PATH is a llama2.c .bin or a Hugging Face folder (config.json,
    no MIL program or Core ML manifest), else None."""
    path = args.path
    if os.path.isfile(path) and path.endswith(".bin"):
        from ..models import llama2c
        return llama2c.skeleton(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")) and not any(
            os.path.exists(os.path.join(path, n)) for n in ("model.mil", "Manifest.json", "coremldata.bin")):
        from ..models import hf
        return hf.skeleton(path)
    return None


def _print_generation(model, chips, args) -> int:
    """Prefill and decode tokens/s of a language model on each chip (anekit.models.speed)."""
    for flag, given in (("--plot", args.plot), ("--function", args.function), ("--shape", args.shape)):
        if given:
            raise UsageError(f"{flag} does not apply to a language model checkpoint")
    if args.prompt_tokens < 1:
        raise UsageError(f"--prompt-tokens must be >= 1, got {args.prompt_tokens}")
    a = model.arch
    model.quantize = args.quantize
    n = min(args.prompt_tokens, a.seq_len)
    ests = [model.estimate(c, prompt_tokens=n, route=args.route) for c in chips]
    weights = args.quantize or "fp16"
    if args.json:
        print(to_json({"model": args.path, "arch": {"dim": a.dim, "hidden_dim": a.hidden_dim, "layers": a.n_layers,
                                                    "heads": a.n_heads, "kv_heads": a.n_kv_heads,
                                                    "vocab": a.vocab_size, "context": a.seq_len},
                       "weights": weights, "route": args.route, "estimates": [e.to_dict() for e in ests]}))
        return 0
    rows = []
    for e in ests:
        d, p = e.decode, e.decode.program.params
        rows.append([e.target, p.generation, round(d.tokens_per_s, 1), round(d.low_tokens_per_s, 1),
                     round(d.high_tokens_per_s, 1), round(d.ms_per_token, 3), round(e.prefill_tokens_per_s),
                     round(e.prefill_ms, 2), "yes" if p.measured else "no (extrapolated)"])
    title = (f"{os.path.basename(os.path.normpath(args.path))}: dim {a.dim}, {a.n_layers} layers, vocab "
             f"{a.vocab_size}, context {a.seq_len}; {weights} weights; prompt {n} tokens; dispatch {args.route}")
    print(format_table(["chip", "gen", "decode tok/s", "low", "high", "ms/token", "prefill tok/s", "prefill ms",
                        "measured gen"], rows, title=title))
    print("\nCost-model estimates, not measurements: one program per token (KV cache on the engine), the "
          "embedding and sampling on the host unpriced; low-high is the 10th-90th percentile band of the "
          "validation residuals.")
    return 0
