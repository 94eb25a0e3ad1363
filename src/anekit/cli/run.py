"""`anekit run` (execute a model on inputs) and `anekit demo` (the whole pipeline on a transformer block)."""
from __future__ import annotations

import math
import os
import sys

import numpy as np

from .._files import confined_child, open_new, open_regular
from ..errors import AnekitError, UsageError
from ._table import format_table, to_json
from .check import add_shape_option, parse_shapes


def register(sub) -> None:
    p = sub.add_parser("run", help="run a MIL folder, .mil file or Core ML package on inputs",
                       description="Run a model and print each output's shape, dtype and range.")
    p.add_argument("path", help="MIL folder, .mil file, .mlpackage or .mlmodelc")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input array (repeat for several inputs)")
    p.add_argument("--target", "-t", default=None, help="chip or compiler name, e.g. m1, m4max, h16g "
                                                        "(default: this Mac's chip, else m1)")
    p.add_argument("--backend", default="auto", choices=["auto", "sim", "ane", "coreml"])
    p.add_argument("--numerics", default="profile", choices=["profile", "strict", "exact"],
                   help="simulator numerics: the chip's fp16 profile; strict = the profile with the MAC "
                        "tile model on every reduction (slow); exact = fp32 reference")
    p.add_argument("--function", default=None, help="function to run (default: main)")
    add_shape_option(p)
    p.add_argument("--cast", action="store_true",
                   help="convert inputs to the model's dtypes (default: refuse a dtype mismatch or "
                        "values out of the dtype's range)")
    p.add_argument("--out", metavar="DIR", help="write each output to DIR/NAME.npy")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="build, lower, parse back and run a Stories-style transformer block",
                       description="The whole pipeline on one transformer block (RMSNorm, causal attention, "
                                   "SiLU-gated FFN) in (1, C, 1, S) layout, checked against float64 numpy.")
    d.add_argument("--target", "-t", default=None, help="chip or compiler name (default: this Mac's chip, else m1)")
    d.add_argument("--backend", default="auto", choices=["auto", "sim", "ane", "coreml"])
    d.add_argument("--dim", type=int, default=288)
    d.add_argument("--hidden", type=int, default=768)
    d.add_argument("--heads", type=int, default=6)
    d.add_argument("--seq", type=int, default=128)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.epilog = "max err / max|ref| is the largest absolute error over the largest reference magnitude."
    d.set_defaults(func=cmd_demo)


# .npy inputs are read whole; refuse more than the simulator would accept for one tensor.
MAX_NPY_BYTES = 4 << 30


def _read_inputs(specs: list[str]) -> dict:
    feeds = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--input '{spec}': expected NAME=FILE.npy")
        if name in feeds:
            raise UsageError(f"--input {name} is given twice")
        if not os.path.lexists(path):
            raise UsageError(f"--input {name}: no such file '{path}'")
        feeds[name] = load_npy(path, f"--input {name}")
    return feeds


def load_npy(path: str, what: str) -> np.ndarray:
    """One array from a regular .npy file whose header agrees with its size (no pickles, no
    FIFO or device, nothing allocated beyond what the file holds)."""
    handle, size = open_regular(path, UsageError, f"{what}: file", MAX_NPY_BYTES)
    with handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError("it holds Python objects (pickles are refused)")
            need = math.prod(shape) * dtype.itemsize
            have = size - handle.tell()
            if need != have:
                raise ValueError(f"the header declares {list(shape)} {dtype} ({need} bytes) "
                                 f"but {have} data bytes follow")
            handle.seek(0)
            return np.lib.format.read_array(handle, allow_pickle=False)
        except AnekitError:
            raise
        except Exception as e:    # numpy parses the header with ast/tokenize: any of their errors
            raise UsageError(f"{what}: '{path}' is not a readable .npy file ({_why(e)})") from None


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# What each input dtype accepts without --cast: the numpy kinds and the finite range.
_ACCEPTS = {"fp16": ("f", 65504.0), "fp32": ("f", float(np.finfo(np.float32).max)),
            "int32": ("iu", float(2 ** 31 - 1)), "bool": ("b", None)}


def check_input_dtypes(fn, feeds: dict, cast: bool) -> dict:
    """Refuse an input whose dtype does not match the declared one (int data for an fp16
    input) or whose values the declared dtype cannot hold; with `cast`, convert instead."""
    declared = {t.name: t for t in fn.inputs}
    out = {}
    for name, arr in feeds.items():
        t = declared.get(name)
        if t is None or t.dtype not in _ACCEPTS:
            out[name] = arr
            continue
        kinds, limit = _ACCEPTS[t.dtype]
        if cast:
            with np.errstate(all="ignore"):
                out[name] = arr.astype(np.dtype({"fp16": np.float16, "fp32": np.float32, "int32": np.int32,
                                                 "bool": np.bool_}[t.dtype]))
            continue
        if arr.dtype.kind not in kinds:
            raise UsageError(f"--input {name}: the model declares {t.dtype}, the file holds {arr.dtype} data; "
                             f"convert it or pass --cast")
        if limit is not None and arr.size and arr.dtype.kind in "fiu":
            finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
                low = -limit - 1 if t.dtype == "int32" else -limit
                if lo < low or hi > limit:
                    raise UsageError(f"--input {name}: values {lo:g}..{hi:g} are outside {t.dtype}'s range "
                                     f"[{low:g}, {limit:g}]; pass --cast to convert anyway")
        out[name] = arr
    return out


def _numerics_notes(exe) -> list[str]:
    """The simulator profile's stated gaps (anekit.sim.profiles: e.g. h11, whose numerics nobody
    measured), for a run in a chip's numerics; none for other backends or exact numerics."""
    profile = getattr(exe, "profile", None) if exe.backend == "sim" else None
    if profile is None or not profile.fp16_storage:
        return []
    return list(profile.notes)


def cmd_run(args) -> int:
    import anekit as ak
    if args.out and args.out.endswith(".npy") and not os.path.isdir(args.out):
        # --out names a folder; `--out y.npy` would otherwise create a folder y.npy/ holding y.npy
        raise UsageError(f"--out {args.out}: --out is a folder (each output is written to DIR/NAME.npy), "
                         "not a .npy file name")
    prog = ak.load(args.path, shapes=parse_shapes(args.shape))
    fn = prog.functions.get(args.function) if args.function else prog.main
    if fn is None:
        raise UsageError(f"--function {args.function}: {args.path} has no such function "
                         f"(functions: {', '.join(prog.functions)})")
    feeds = check_input_dtypes(fn, _read_inputs(args.input), args.cast)
    _check_input_names(fn, feeds, args.path)
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
            _save_output(args.out, name, a)
    notes = _numerics_notes(exe)
    if args.json:
        print(to_json({"backend": exe.backend, "target": exe.target.name, "outputs": rows,
                       **({"numerics_notes": notes} if notes else {})}))
    else:
        for note in notes:      # what the simulated numbers rest on where the guide measured nothing
            print(f"note: {exe.target.name} numerics ({exe.profile.name} profile): {note}", file=sys.stderr)
        print(format_table(["output", "shape", "dtype", "min", "max", "non-finite"],
                           [[r["name"], "x".join(map(str, r["shape"])) or "scalar", r["dtype"], r["min"], r["max"],
                             r["nonfinite"]] for r in rows],
                           title=f"backend {exe.backend}, target {exe.target.name}"))
        if args.out:
            print(f"wrote {len(rows)} array(s) to {args.out}")
    return 0


def _check_input_names(fn, feeds: dict, path: str) -> None:
    """Missing or unknown inputs, said in terms of the command line."""
    states = set(getattr(fn, "states", ()) or ())
    takes = ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in fn.inputs)
    missing = [t.name for t in fn.inputs if t.name not in feeds and t.name not in states]
    if missing:
        raise UsageError(f"{path} takes inputs {takes}: give " + " ".join(f"--input {n}=FILE.npy" for n in missing))
    unknown = [n for n in feeds if n not in {t.name for t in fn.inputs}]
    if unknown:
        raise UsageError(f"--input {unknown[0]}: {path} has no input of that name (inputs: {takes or 'none'})")


def _save_output(folder: str, name: str, a: np.ndarray) -> None:
    """folder/NAME.npy; output names come from the model, so one that is not a plain file
    name (`../../x`, `a/b`) is refused rather than written elsewhere."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {folder}: cannot create the folder ({e.strerror or e})") from None
    path = confined_child(folder, name, ".npy", what=f"--out {folder}: output")
    with open_new(path, UsageError) as f:
        np.save(f, a, allow_pickle=False)


def cmd_demo(args) -> int:
    from ..demo import run_demo
    rep = run_demo(target=args.target, backend=args.backend, dim=args.dim, hidden=args.hidden,
                   heads=args.heads, seq=args.seq, seed=args.seed)
    if args.json:
        print(to_json(rep))
        return 0 if rep["passed"] else 1
    t = rep["seconds"]
    print(rep["model"])
    print(format_table(["item", "value"], [
        ["target", rep["target"]], ["backend", rep["backend"]], ["numerics", rep["numerics"]],
        ["MIL dialect", rep["dialect"]],
        ["ops", rep["ops"]], ["weights (MB)", f"{rep['weight_mb']:.2f}"], ["MIL text (bytes)", rep["mil_bytes"]],
        ["emit -> parse -> emit", "byte-identical" if rep["roundtrip_identical"] else "DIFFERS"],
        ["time build / lower / parse (ms)", f"{t['build'] * 1e3:.1f} / {t['lower'] * 1e3:.1f} / {t['parse'] * 1e3:.1f}"],
        ["time compile / run (ms)", f"{t['compile'] * 1e3:.1f} / {t['run'] * 1e3:.1f}"],
    ]))
    print()
    print(format_table(["run", "max abs err", "max err / max|ref|", "tolerance", "verdict"],
                       [[r["run"], r["max_abs_err"], r["max_rel_err"], r["tolerance"],
                         "pass" if r["pass"] else ("FAIL" if r["finite"] else "FAIL (non-finite)")]
                        for r in rep["errors"]], title="against a float64 numpy reference"))
    print()
    print(rep["verdict"])
    return 0 if rep["passed"] else 1
