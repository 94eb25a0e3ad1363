"""`anekit selftest`: a fixed suite run on the ANE and on the simulator, as one JSON report.

The suite: single ops (relu, add of two inputs, sigmoid, softmax over channels, a 1x1 conv,
a runtime matmul), one Stories-style transformer block (anekit.models.stories), and a
128-deep chain of 1x1 convs (a throughput kernel: 512 channels at spatial 64).
Each case reports the largest difference between the ANE's output and the simulator's for
the same chip, and latency percentiles. On a machine without the ANE the suite runs through
FakeTransport, and the report says so ("transport": "fake"): its latencies are the
simulator's, not hardware's.
"""
from __future__ import annotations

import datetime
import platform
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import anekit as ak

from ... import ir
from ...errors import AnekitError
from ...models.stories import build_layer_program
from . import machine
from .fake import FakeTransport

CHAIN_DEPTH = 128


@dataclass(frozen=True)
class Case:
    name: str
    kind: str                          # "op", "block", "chain"
    build: Callable[[], object]        # -> Program
    note: str = ""


def _single(name, fn, *shapes):
    def make():
        xs = [ir.input(f"x{i}", s) for i, s in enumerate(shapes)]
        return ir.program({"y": fn(*xs)})
    return make


def _conv1x1(cin: int, cout: int, seed: int):
    def make():
        w = (np.random.default_rng(seed).standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float16)
        x = ir.input("x0", (1, cin, 1, 64))
        return ir.program({"y": ak.conv(x, w)})
    return make


def _runtime_matmul(k: int = 64, n: int = 32):
    def make():
        a, b = ir.input("x0", (1, k, 1, n)), ir.input("x1", (1, k, 1, n))
        prod = ak.matmul(a.reshape(1, 1, k, n), b.reshape(1, 1, k, n), transpose_x=True)   # [1, 1, n, n], inner k
        return ir.program({"y": prod.reshape(1, n, 1, n)})
    return make


def _block(dim: int, hidden: int, heads: int, seq: int):
    def make():
        return build_layer_program(dim=dim, hidden=hidden, heads=heads, seq=seq, seed=0)
    return make


def _chain(channels: int, spatial: int, depth: int = CHAIN_DEPTH, seed: int = 0):
    def make():
        rng = np.random.default_rng(seed)
        x = ir.input("x0", (1, channels, 1, spatial))
        h = x
        for _ in range(depth):
            w = (rng.standard_normal((channels, channels, 1, 1)) / np.sqrt(channels)).astype(np.float16)
            h = ak.conv(h, w)
        return ir.program({"y": h})
    return make


def suite(quick: bool = False) -> list[Case]:
    """The fixed suite; `quick` shrinks the block and the chain (not for hardware reports)."""
    c = 64
    chain = (64, 32) if quick else (512, 64)
    block = (64, 172, 2, 32) if quick else (128, 344, 4, 64)    # head dim 32: M1 runtime-matmul rule
    return [
        Case("relu", "op", _single("relu", ak.relu, (1, c, 1, 64))),
        Case("add", "op", _single("add", lambda x, y: x + y, (1, c, 1, 64), (1, c, 1, 64))),
        Case("sigmoid", "op", _single("sigmoid", ak.sigmoid, (1, c, 1, 64))),
        Case("softmax_channels", "op", _single("softmax", lambda x: ak.softmax(x, axis=1), (1, c, 1, 64))),
        Case("conv1x1_64to128", "op", _conv1x1(64, 128, seed=1)),
        Case("matmul_runtime_k64", "op", _runtime_matmul()),
        Case(f"transformer_block_d{block[0]}_s{block[3]}", "block", _block(*block),
             "Stories-style layer: RMSNorm, causal attention, SiLU-gated FFN"),
        Case(f"conv1x1_chain{CHAIN_DEPTH}_c{chain[0]}_s{chain[1]}", "chain", _chain(*chain),
             "1x1 conv throughput kernel" if not quick else "reduced size (--quick)"),
    ]


def _inputs(prog, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal(t.shape).astype(np.float16) for t in prog.main.inputs}


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {}
    a = np.asarray(samples) * 1e3
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)}


def _max_diff(got: dict, ref: dict) -> tuple[float, float, bool]:
    """Largest |ane - sim| over all outputs, the same relative to max |sim|, all finite."""
    worst = rel = 0.0
    finite = True
    for name, r in ref.items():
        g = np.asarray(got[name], dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        finite &= bool(np.isfinite(g).all())
        both = np.isfinite(g) & np.isfinite(r)
        same_inf = (g == r) & ~both
        mismatch = ~(both | same_inf)
        d = float(np.abs(g[both] - r[both]).max()) if both.any() else 0.0
        if mismatch.any():
            d = float("inf")
        scale = float(np.abs(r[both]).max()) if both.any() else 0.0
        worst = max(worst, d)
        rel = max(rel, d / scale if scale else (0.0 if d == 0 else float("inf")))
    return worst, rel, finite


def run_case(case: Case, backend_options: dict, target: str, iterations: int, warmup: int, seed: int) -> dict:
    row = {"name": case.name, "kind": case.kind, "note": case.note, "ok": False}
    exe = None
    try:
        prog = case.build()
        feeds = _inputs(prog, seed)
        row["inputs"] = {k: list(v.shape) for k, v in feeds.items()}
        t0 = time.perf_counter()
        exe = ak.compile(prog, backend="ane", target=target, **backend_options)
        row["compile_ms"] = (time.perf_counter() - t0) * 1e3
        for k in ("compile_s", "load_s"):
            if exe.compile_info.get(k):
                row[f"framework_{k[:-2]}_ms"] = exe.compile_info[k] * 1e3
        out = exe(feeds)
        ref = ak.compile(prog, backend="sim", target=target)(feeds)
        row["max_abs_diff"], row["max_rel_diff"], row["finite"] = _max_diff(out, ref)
        for _ in range(warmup):
            exe(feeds)
        calls, evals = [], []
        for _ in range(iterations):
            t0 = time.perf_counter()
            exe(feeds)
            calls.append(time.perf_counter() - t0)
            if exe.last_evaluate_s is not None:
                evals.append(exe.last_evaluate_s)
        row["iterations"] = iterations
        row["latency_ms"] = _percentiles(calls)          # the whole call: copies, IPC, evaluate
        row["evaluate_ms"] = _percentiles(evals)         # -evaluateWithQoS:... alone
        row["ok"] = True
    except AnekitError as e:
        row["error"] = f"{type(e).__name__}: {e}"
    finally:
        if exe is not None:
            exe.close()
    return row


def run(target: str | None = None, iterations: int | None = None, warmup: int = 3, quick: bool = False,
        force_fake: bool = False, progress=None, seed: int = 0) -> dict:
    """Run the suite; returns the report dict. `progress(line)` receives one line per step."""
    say = progress or (lambda line: None)
    avail = machine.ane_availability()
    hardware = avail.available and not force_fake
    if hardware:
        target = target or machine.chip_target() or "m1"
        options, transport = {}, "objc"
        iterations = 100 if iterations is None else iterations
    else:
        target = target or "m4"
        options, transport = {"transport": FakeTransport(chip=target)}, "fake"
        iterations = 3 if iterations is None else iterations
    cases = suite(quick)
    report = {
        "anekit": ak.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "transport": transport,
        "hardware": hardware,
        "chip": machine.chip_brand() if hardware else None,
        "target": ak.targets.get(target).name,
        "os": machine.os_version(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "quick": quick,
        "note": ("ran on the Neural Engine through AppleNeuralEngine.framework" if hardware else
                 f"no ANE here ({avail.reason}); ran through FakeTransport, so differences are 0 by "
                 f"construction and latencies are the simulator's"),
        "cases": [],
    }
    for i, case in enumerate(cases, 1):
        say(f"[{i}/{len(cases)}] {case.name} ...")
        row = run_case(case, options, target, iterations, warmup if hardware else 0, seed)
        report["cases"].append(row)
        if row["ok"]:
            p50 = row["latency_ms"].get("p50", float("nan"))
            say(f"[{i}/{len(cases)}] {case.name}: max diff {row['max_abs_diff']:.3g}, p50 {p50:.3f} ms")
        else:
            say(f"[{i}/{len(cases)}] {case.name}: FAILED {row['error']}")
    report["summary"] = {"cases": len(cases), "ok": sum(r["ok"] for r in report["cases"]),
                         "failed": [r["name"] for r in report["cases"] if not r["ok"]]}
    return report
