"""MIL round trip at Stories110M size: emit, save, load and parse, timed and memory-profiled.

    .venv/bin/python benchmarks/mil_roundtrip.py                 # 12 layers, dim 768, hidden 2048
    .venv/bin/python benchmarks/mil_roundtrip.py --layers 2 --json

Phases (each run `--repeat` times, best time kept):
  emit      anekit.mil.emit: MIL text plus weight.bin as bytes in memory
  save      anekit.mil.save: model.mil plus weight.bin streamed to a folder
  load      anekit.mil.load: parse the folder, weights as views of a memory-mapped weight.bin
  load+read load, then copy every weight once (what first use of the weights costs)
  parse     anekit.mil.parse(text, files): parse with weights given as bytes

Baseline, same process, same bytes: numpy `tofile` of one array holding the weight bytes,
into a new file renamed over the old one as save does (against save), and `fromfile` of that
file (against load+read). Memory: the tracemalloc peak
of each phase (numpy buffers included, memory maps excluded) over the weight bytes, measured
in a separate pass so that tracing does not slow the timed runs; the process's peak RSS; and
the peak RSS of fresh interpreters that only load+read, load+emit, or numpy-fromfile the model
(memory-mapped pages that are read count there).
The program's own weights (built before any phase) are not counted in the phase peaks.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc

import numpy as np

import anekit as ak
from anekit.models import stories


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def traced_peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del result
    return peak


def read_all_weights(prog) -> int:
    """Copy every weight once into fresh memory, as numpy's fromfile does with the whole file."""
    total = 0
    for fn in prog.functions.values():
        for op in fn.ops:
            val = op.attrs.get("val")
            if isinstance(val, np.ndarray):
                total += np.array(val, copy=True).nbytes
    return total


def tofile_replacing(flat: np.ndarray, path: str):
    """numpy's tofile into a new file renamed over the old one: the same file-system work
    as anekit.mil.save, which writes beside its destination and renames."""
    tmp = path + ".tmp"
    flat.tofile(tmp)
    os.replace(tmp, path)


_CHILD = """
import resource, sys
import numpy as np
import anekit as ak
import anekit.mil
from anekit.models import stories
mode, model, raw = sys.argv[1:4]
sys.path.insert(0, {here!r})
from mil_roundtrip import read_all_weights
if mode == "load+read":
    read_all_weights(ak.mil.load(model))
elif mode == "load+emit":
    text, files = ak.mil.emit(ak.mil.load(model))
elif mode == "fromfile":
    np.fromfile(raw, dtype=np.uint8)
try:   # VmHWM: this process image's own peak (ru_maxrss would inherit the parent's at fork)
    print(next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))
"""


def child_rss(mode: str, model: str, raw: str) -> int:
    """Peak RSS (bytes) of a fresh interpreter doing one thing: isolates a phase's memory from
    the float32 weights this process built the program from."""
    import subprocess
    code = _CHILD.format(here=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, mode, model, raw], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def run(args) -> dict:
    t0 = time.perf_counter()
    prog = stories.build_model_program(dim=args.dim, hidden=args.hidden, heads=args.heads, layers=args.layers,
                                       seq=args.seq, seed=0)
    build_s = time.perf_counter() - t0
    n_ops = sum(len(fn.ops) for fn in prog.functions.values())
    folder = tempfile.mkdtemp(prefix="anekit_mil_bench_")
    model = os.path.join(folder, "model")
    d = args.dialect

    emit_s, (text, files) = best_time(lambda: ak.mil.emit(prog, d), args.repeat)
    weight_bytes = len(files["weights/weight.bin"])
    save_s, _ = best_time(lambda: ak.mil.save(prog, model, d), args.repeat)
    load_s, loaded = best_time(lambda: ak.mil.load(model), args.repeat)
    load_read_s, _ = best_time(lambda: read_all_weights(ak.mil.load(model)), args.repeat)
    parse_s, _ = best_time(lambda: ak.mil.parse(text, files), args.repeat)
    identical = ak.mil.emit(loaded, d) == (text, files)
    del loaded

    # Baseline: the same number of bytes through numpy's own file I/O.
    flat = np.frombuffer(files["weights/weight.bin"], dtype=np.uint8).copy()
    raw_path = os.path.join(folder, "raw.bin")
    tofile_s, _ = best_time(lambda: tofile_replacing(flat, raw_path), args.repeat)
    fromfile_s, _ = best_time(lambda: np.fromfile(raw_path, dtype=np.uint8), args.repeat)
    del flat

    peaks = {}
    if not args.no_memory:
        peaks["emit"] = traced_peak(lambda: ak.mil.emit(prog, d))
        peaks["save"] = traced_peak(lambda: ak.mil.save(prog, model, d))
        peaks["load"] = traced_peak(lambda: ak.mil.load(model))
        peaks["parse"] = traced_peak(lambda: ak.mil.parse(text, files))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    child = {}
    if not args.no_memory:
        bare = child_rss("import", model, raw_path)
        child = {mode: (child_rss(mode, model, raw_path) - bare) / weight_bytes
                 for mode in ("load+read", "load+emit", "fromfile")}

    return {
        "model": f"Stories-style stack: layers={args.layers} dim={args.dim} hidden={args.hidden} "
                 f"heads={args.heads} seq={args.seq}, dialect {d}",
        "ops": n_ops, "text_bytes": len(text.encode()), "weight_bytes": weight_bytes,
        "build_s": build_s, "emit_s": emit_s, "save_s": save_s, "load_s": load_s, "load_read_s": load_read_s,
        "parse_s": parse_s, "tofile_s": tofile_s, "fromfile_s": fromfile_s,
        "save_over_tofile": save_s / tofile_s, "load_read_over_fromfile": load_read_s / fromfile_s,
        "peak_over_weights": {k: v / weight_bytes for k, v in peaks.items()},
        "max_rss_bytes": rss, "fresh_process_rss_over_weights": child, "roundtrip_identical": identical,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--dialect", default="ios18", choices=sorted(ak.mil.DIALECTS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return 0 if r["roundtrip_identical"] else 1
    mb = r["weight_bytes"] / 1e6
    print(r["model"])
    print(f"{r['ops']} ops, model.mil {r['text_bytes'] / 1e6:.2f} MB, weight.bin {mb:.1f} MB "
          f"(build {r['build_s']:.2f} s, not part of the round trip)")
    peaks = r["peak_over_weights"]
    rows = [("emit", r["emit_s"], peaks.get("emit")), ("save", r["save_s"], peaks.get("save")),
            ("load", r["load_s"], peaks.get("load")), ("load+read", r["load_read_s"], None),
            ("parse (bytes)", r["parse_s"], peaks.get("parse")),
            ("numpy tofile", r["tofile_s"], None), ("numpy fromfile", r["fromfile_s"], None)]
    print(f"{'phase':<16}{'seconds':>9}{'MB/s':>9}{'peak/weights':>14}")
    for name, secs, peak in rows:
        print(f"{name:<16}{secs:>9.3f}{mb / secs:>9.0f}{'' if peak is None else f'{peak:.3f}':>14}")
    print(f"ratio save / numpy tofile:          {r['save_over_tofile']:.2f}")
    print(f"ratio load+read / numpy fromfile:   {r['load_read_over_fromfile']:.2f}")
    print(f"process peak RSS: {r['max_rss_bytes'] / 1e6:.0f} MB ({r['max_rss_bytes'] / r['weight_bytes']:.2f}x "
          f"weights; includes building the program from float32 weights)")
    for mode, ratio in r["fresh_process_rss_over_weights"].items():
        print(f"fresh process, {mode:<10} peak RSS above a bare `import anekit`: {ratio:.2f}x weights")
    print(f"emit(load(save(p))) == emit(p): {r['roundtrip_identical']}")
    return 0 if r["roundtrip_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
