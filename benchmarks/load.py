"""ak.load of a 110M-parameter .mlpackage: time and peak memory of a fresh process, against
coremltools reading the same package.

    .venv/bin/python benchmarks/load.py                  # 110M parameters, fp16 (220 MB of weights)
    .venv/bin/python benchmarks/load.py --layers 2 --json
    .venv/bin/python benchmarks/load.py --before /tmp/old/src   # also an older anekit tree

The package is a Stories110M-shaped stack of linears (12 layers of dim 768, hidden 2048, a
768 x 32000 classifier: 109.5M fp16 weights), saved once with ak.save (coremltools' writer)
and cached in the temp dir. Each measurement runs in a fresh interpreter that imports numpy,
notes its peak RSS (VmHWM), then imports the reader and loads the package:

  anekit            import anekit; ak.load(path)     (anekit's protobuf modules, weight.bin mapped)
  anekit+touch      the same, then sum every constant (maps every weight page into RSS)
  coremltools       import coremltools; MLModel(path, skip_model_load=True).get_spec()
                    (protobuf only: coremltools reads no weights here)
  coremltools+blobs the same, then every weight.bin blob through coremltools' blob reader
  before            `--before SRC`: the `anekit` mode with that source tree first on the path

Reported: seconds from after numpy's import to the end of the load (`load_s`), the whole
process wall time including interpreter start (`process_s`), peak RSS above the numpy baseline
over the weight bytes (`rss_over_weights`), and whether coremltools or torch got imported.
Also, warm in this process (both libraries imported): best of 3 of ak.load against get_spec.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")

_CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import numpy as np

def peak():
    try:   # VmHWM: this process image's own peak (ru_maxrss may carry the parent's after fork)
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

mode, path = sys.argv[1:3]
base = peak()
t1 = time.perf_counter()
if mode in ("anekit", "anekit+touch", "before"):
    import anekit as ak
    prog = ak.load(path)
    if mode == "anekit+touch":
        total = sum(float(np.sum(op.attrs["val"], dtype=np.float32)) for fn in prog.functions.values()
                    for op in fn.ops if op.type == "const" and isinstance(op.attrs["val"], np.ndarray))
else:
    import logging
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct
    spec = ct.models.MLModel(path, skip_model_load=True).get_spec()
    if mode == "coremltools+blobs":
        from coremltools.libmilstoragepython import _BlobStorageReader
        reader = _BlobStorageReader(os.path.join(path, "Data", "com.apple.CoreML", "weights", "weight.bin"))
        fn = spec.mlProgram.functions["main"]
        blobs = [np.asarray(reader.read_fp16_data(op.attributes["val"].blobFileValue.offset))
                 for op in fn.block_specializations[fn.opset].operations
                 if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue"]
t2 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"coremltools", "torch"})
print(json.dumps({"load_s": t2 - t1, "rss_extra": peak() - base, "heavy": heavy}))
"""


def build(path: str, layers: int, dim: int, hidden: int, vocab: int) -> int:
    """Save the linear stack to `path` unless it is there; returns the parameter count."""
    rng = np.random.default_rng(0)

    def weight(rows, cols):
        return (rng.standard_normal((rows, cols), np.float32) / np.sqrt(rows)).astype(np.float16)
    count = layers * (4 * dim * dim + 3 * dim * hidden) + dim * vocab
    if os.path.isdir(path):
        return count
    import anekit as ak
    x = ak.input("x", (1, dim), "fp16")
    for _ in range(layers):
        q, k, v = (ak.matmul(x, ak.const(weight(dim, dim))) for _ in range(3))
        x = ak.matmul(q + k + v, ak.const(weight(dim, dim)))
        gate = ak.matmul(x, ak.const(weight(dim, hidden)))
        up = ak.matmul(x, ak.const(weight(dim, hidden)))
        x = ak.matmul(ak.silu(gate) * up, ak.const(weight(hidden, dim)))
    logits = ak.matmul(x, ak.const(weight(dim, vocab)))
    tmp = path[:-len(".mlpackage")] + ".partial.mlpackage"
    ak.save(ak.program({"logits": logits}), tmp)
    os.replace(tmp, path)
    return count


def child(mode: str, path: str, src: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, path], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{mode}: child failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def best_time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(args) -> dict:
    sys.path.insert(0, SRC)
    name = f"anekit_load_bench_l{args.layers}_d{args.dim}_h{args.hidden}_v{args.vocab}.mlpackage"
    path = os.path.join(tempfile.gettempdir(), name)
    params = build(path, args.layers, args.dim, args.hidden, args.vocab)
    weight_bytes = os.path.getsize(os.path.join(path, "Data", "com.apple.CoreML", "weights", "weight.bin"))
    modes = ["anekit", "anekit+touch", "coremltools", "coremltools+blobs"] + (["before"] if args.before else [])
    fresh = {}
    for mode in modes:
        runs = [child(mode, path, args.before if mode == "before" else SRC) for _ in range(args.repeat)]
        r = min(runs, key=lambda r: r["load_s"])
        fresh[mode] = {"load_s": r["load_s"], "process_s": min(x["process_s"] for x in runs),
                       "rss_over_weights": max(x["rss_extra"] for x in runs) / weight_bytes, "imports": r["heavy"]}
    import logging
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct

    import anekit as ak
    warm_anekit = best_time(lambda: ak.load(path))
    warm_ct = best_time(lambda: ct.models.MLModel(path, skip_model_load=True).get_spec())
    return {"model": f"linear stack: layers={args.layers} dim={args.dim} hidden={args.hidden} vocab={args.vocab}",
            "parameters": params, "weight_bytes": weight_bytes, "fresh": fresh,
            "warm_load_s": {"anekit": warm_anekit, "coremltools_get_spec": warm_ct},
            "warm_anekit_over_get_spec": warm_anekit / warm_ct}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per mode (best time, worst memory)")
    ap.add_argument("--before", metavar="SRC", help="an older anekit source tree to measure as well")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['model']}: {result['parameters'] / 1e6:.1f}M parameters, "
          f"weight.bin {result['weight_bytes'] / 2**20:.0f} MiB")
    print(f"{'fresh process':20s} {'load s':>8s} {'process s':>10s} {'peak RSS / weights':>19s}  imports")
    for mode, r in result["fresh"].items():
        print(f"{mode:20s} {r['load_s']:8.3f} {r['process_s']:10.3f} {r['rss_over_weights']:19.3f}  "
              f"{', '.join(r['imports']) or '-'}")
    w = result["warm_load_s"]
    print(f"warm, this process: ak.load {w['anekit']:.3f} s, coremltools get_spec {w['coremltools_get_spec']:.3f} s "
          f"({result['warm_anekit_over_get_spec']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
