"""`anekit run` (execute a model on inputs) and `anekit demo` (the whole pipeline on a transformer block)."""
from __future__ import annotations

import os

import numpy as np

from ..errors import AnekitError, ShapeError, UsageError
from ._table import format_table, to_json


def register(sub) -> None:
    p = sub.add_parser("run", help="run a MIL folder, .mil file or Core ML package on inputs",
                       description="Run a model and print each output's shape, dtype and range.")
    p.add_argument("path", help="MIL folder, .mil file, .mlpackage or .mlmodelc")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input array (repeat for several inputs)")
    p.add_argument("--target", default=None, help="chip or compiler name, e.g. m1, m4max, h16g "
                                                  "(default: this Mac's chip, else m1)")
    p.add_argument("--backend", default="auto", choices=["auto", "sim", "ane", "coreml"])
    p.add_argument("--numerics", default="profile", choices=["profile", "strict", "exact"],
                   help="simulator numerics: the chip's fp16 profile; strict = the profile with the MAC "
                        "tile model on every reduction (slow); exact = fp32 reference")
    p.add_argument("--function", default=None, help="function to run (default: main)")
    p.add_argument("--out", metavar="DIR", help="write each output to DIR/NAME.npy")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="build, lower, parse back and run a Stories-style transformer block",
                       description="The whole pipeline on one transformer block (RMSNorm, causal attention, "
                                   "SiLU-gated FFN) in (1, C, 1, S) layout, checked against float64 numpy.")
    d.add_argument("--target", default=None, help="chip or compiler name (default: this Mac's chip, else m1)")
    d.add_argument("--backend", default="auto", choices=["auto", "sim", "ane", "coreml"])
    d.add_argument("--dim", type=int, default=288)
    d.add_argument("--hidden", type=int, default=768)
    d.add_argument("--heads", type=int, default=6)
    d.add_argument("--seq", type=int, default=128)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.epilog = "max err / max|ref| is the largest absolute error over the largest reference magnitude."
    d.set_defaults(func=cmd_demo)


def _read_inputs(specs: list[str]) -> dict:
    feeds = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--input '{spec}': expected NAME=FILE.npy")
        if name in feeds:
            raise UsageError(f"--input {name} is given twice")
        if not os.path.isfile(path):
            raise ShapeError(f"--input {name}: no such file '{path}'")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ShapeError(f"--input {name}: '{path}' is not a readable .npy file ({e})") from None
    return feeds


def cmd_run(args) -> int:
    import anekit as ak
    prog = ak.load(args.path)
    fn = prog.functions.get(args.function) if args.function else prog.main
    if fn is None:
        raise AnekitError(f"no function '{args.function}' (have {', '.join(prog.functions)})")
    feeds = _read_inputs(args.input)
    backend, options = args.backend, {}
    if args.numerics != "profile":   # these modes exist only on the simulator
        if backend not in ("auto", "sim"):
            raise UsageError(f"--numerics {args.numerics} runs on the simulator, not on --backend {backend}")
        backend, options = "sim", {"numerics": args.numerics}
    exe = ak.compile(prog, backend=backend, target=args.target, function=fn.name, **options)
    try:
        outs = exe(feeds)
    finally:
        exe.close()
    rows = []
    for name, arr in outs.items():
        a = np.asarray(arr)
        finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
        rows.append({"name": name, "shape": list(a.shape), "dtype": str(a.dtype),
                     "min": float(finite.min()) if finite.size else None,
                     "max": float(finite.max()) if finite.size else None,
                     "nonfinite": int(a.size - finite.size)})
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            np.save(os.path.join(args.out, f"{name}.npy"), a)
    if args.json:
        print(to_json({"backend": exe.backend, "target": exe.target.name, "outputs": rows}))
    else:
        print(format_table(["output", "shape", "dtype", "min", "max", "non-finite"],
                           [[r["name"], "x".join(map(str, r["shape"])) or "scalar", r["dtype"], r["min"], r["max"],
                             r["nonfinite"]] for r in rows],
                           title=f"backend {exe.backend}, target {exe.target.name}"))
        if args.out:
            print(f"wrote {len(rows)} array(s) to {args.out}")
    return 0


def cmd_demo(args) -> int:
    from ..demo import run_demo
    rep = run_demo(target=args.target, backend=args.backend, dim=args.dim, hidden=args.hidden,
                   heads=args.heads, seq=args.seq, seed=args.seed)
    if args.json:
        print(to_json(rep))
        return 0
    t = rep["seconds"]
    print(rep["model"])
    print(format_table(["item", "value"], [
        ["target", rep["target"]], ["backend", rep["backend"]], ["MIL dialect", rep["dialect"]],
        ["ops", rep["ops"]], ["weights (MB)", f"{rep['weight_mb']:.2f}"], ["MIL text (bytes)", rep["mil_bytes"]],
        ["emit -> parse -> emit", "byte-identical" if rep["roundtrip_identical"] else "DIFFERS"],
        ["time build / lower / parse (ms)", f"{t['build'] * 1e3:.1f} / {t['lower'] * 1e3:.1f} / {t['parse'] * 1e3:.1f}"],
        ["time compile / run (ms)", f"{t['compile'] * 1e3:.1f} / {t['run'] * 1e3:.1f}"],
    ]))
    print()
    print(format_table(["run", "max abs err", "max err / max|ref|", "finite"],
                       [[r["run"], r["max_abs_err"], r["max_rel_err"], "yes" if r["finite"] else "NO"]
                        for r in rep["errors"]], title="against a float64 numpy reference"))
    ok = rep["roundtrip_identical"] and all(r["finite"] for r in rep["errors"])
    return 0 if ok else 1
