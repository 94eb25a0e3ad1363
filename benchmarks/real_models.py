"""Simulator speed on real Core ML models (issue 15 item 4): torchvision networks converted by
coremltools (FLOAT16 compute precision, iOS 18), loaded with ak.load and run on the simulator in
the default (chip profile) and exact numerics, against the same module in PyTorch CPU float32,
one thread each side, in this process.

    python benchmarks/real_models.py [--models resnet18,convnext_tiny,...] [--size 224]
                                     [--cache DIR] [--profile exact] [--json]

Times are the best of --repeat runs after one warm-up, in CPU time of this process (one thread
each side, so other load on the machine barely moves them); ratios are simulator / PyTorch. Goals:
default numerics within 2x, exact within 1.3x. `--profile MODE` adds the time per op type in
that mode. Needs torch, torchvision and coremltools (converted packages are cached in --cache).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"        # one thread each, before numpy / torch load their BLAS

import argparse            # noqa: E402
import collections         # noqa: E402
import json                # noqa: E402
import pathlib             # noqa: E402
import tempfile            # noqa: E402
import time                # noqa: E402
import warnings            # noqa: E402

import numpy as np         # noqa: E402

import anekit as ak        # noqa: E402
from anekit.sim import Simulator, executor  # noqa: E402


def _torchvision(torch):
    # PyPI's torchvision is built against CUDA torch; its Python models load once the two
    # operator schemas its import registers exist (ENV-NOTES.md).
    try:
        import torchvision
    except RuntimeError:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision.keep = lib
        import torchvision
    return torchvision


def convert(torch, name: str, size: int, cache: pathlib.Path):
    import coremltools as ct
    tv = _torchvision(torch)
    torch.manual_seed(0)
    module = getattr(tv.models, name)().eval()
    x = torch.randn(1, 3, size, size)
    path = cache / f"{name}_{size}.mlpackage"
    if not path.exists():
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (x,))
            ml = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
                            compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS18)
        ml.save(str(path))
    return module, x, ak.load(str(path))


def best(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def per_op_type(sim: Simulator, feeds) -> list[tuple[str, int, float]]:
    spent, count = collections.Counter(), collections.Counter()
    plain = executor.Simulator._execute

    def timed(self, step, env, compile_time=False):
        t0 = time.process_time()
        plain(self, step, env, compile_time)
        spent[step.call.op.type] += time.process_time() - t0
        count[step.call.op.type] += 1
    executor.Simulator._execute = timed
    try:
        sim.run(feeds)
    finally:
        executor.Simulator._execute = plain
    return [(k, count[k], v) for k, v in spent.most_common(8)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v3_small,efficientnet_b0,convnext_tiny,swin_t")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "anekit_real_models"))
    ap.add_argument("--profile", choices=("m4", "exact"), help="time per op type in this mode")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    cache = pathlib.Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        try:
            module, x, prog = convert(torch, name, args.size, cache)
        except Exception as e:          # noqa: BLE001 (a converter failure skips the model, said why)
            print(f"{name:16s} not converted: {type(e).__name__}: {str(e).splitlines()[0][:100]}", flush=True)
            continue
        with torch.no_grad():
            ref = module(x).numpy()
            torch_s = best(lambda: module(x), args.repeat)
        row = {"model": name, "ops": len(prog.main.ops), "torch_ms": torch_s * 1e3}
        feeds = {"x": x.numpy()}
        for mode in ("m4", "exact"):
            sim = Simulator(prog, profile=mode)
            y = np.asarray(next(iter(sim.run(feeds).values())), np.float32)
            row[f"{mode}_ms"] = best(lambda: sim.run(feeds), args.repeat) * 1e3
            row[f"{mode}_ratio"] = row[f"{mode}_ms"] / row["torch_ms"]
            row[f"{mode}_rel_l2"] = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
            if args.profile == mode:
                row["by_op"] = [(k, n, round(s * 1e3, 2)) for k, n, s in per_op_type(sim, feeds)]
        rows.append(row)
        if not args.json:
            print(f"{name:16s} ops {row['ops']:4d}  torch {row['torch_ms']:8.1f} ms  "
                  f"m4 {row['m4_ms']:8.1f} ms x{row['m4_ratio']:5.2f} (err {row['m4_rel_l2']:.1e})  "
                  f"exact {row['exact_ms']:8.1f} ms x{row['exact_ratio']:5.2f} (err {row['exact_rel_l2']:.1e})",
                  flush=True)
            for k, n, ms in row.get("by_op", ()):
                print(f"    {k:24s} {n:4d} ops {ms:9.2f} ms")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("goals: default (m4) ratio <= 2, exact ratio <= 1.3 (PyTorch CPU fp32, 1 thread)")


if __name__ == "__main__":
    main()
