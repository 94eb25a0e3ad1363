"""`anekit demo`: one Stories-style transformer block through the whole pipeline.

build graph -> MIL text + weight.bin -> parse back -> compile on the best backend -> run ->
compare with an independent float64 numpy reference.
"""
from __future__ import annotations

import time

import numpy as np

from . import ir, mil
from .errors import UsageError
from .models import stories
from .preflight.ane_route import pad_runtime_matmuls_for
from .runtime import compile as compile_program, resolve_target
from .sim.profiles import profile_for
from .errors import TargetError
from .targets import get as get_target, names


# Families whose numerics the simulator models from measurements (sim/profiles.py).
MEASURED_FAMILIES = ("h13", "h14", "h15", "h16", "m11", "ref")
MAX_DEMO_BYTES = 2 << 30          # working set the demo may use (the float64 reference dominates)
# Pass marks for max err / max|ref| against the float64 reference. A chip profile stores every
# op's output in fp16 (unit roundoff 2**-11); the block chains about ten such roundings plus
# table activations, so 20 x 2**-11 (~0.01) leaves room without hiding a wrong op (errors
# then are O(1)). The exact fp32 run still sees the program's fp16 constants (rope tables,
# mask, weights as stored), so it is held to 2**-10.
TOLERANCE_FP16 = 20 * 2.0 ** -11
TOLERANCE_EXACT = 2.0 ** -10


def run_demo(target: str | None = None, backend: str = "auto", dim: int = 288, hidden: int = 768, heads: int = 6,
             seq: int = 128, seed: int = 0) -> dict:
    for name, v in (("dim", dim), ("hidden", hidden), ("heads", heads), ("seq", seq)):
        if not isinstance(v, int) or v <= 0:
            raise UsageError(f"demo: {name} must be a positive integer, got {v!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UsageError(f"demo: seed must be a non-negative integer, got {seed!r}")
    if dim % heads or (dim // heads) % 2:
        raise UsageError(f"demo: dim {dim} must split into {heads} heads of an even size (rotary embeddings)")
    tgt = demo_target(target)
    _check_size(dim, hidden, heads, seq)
    t = {}
    t0 = time.perf_counter()
    weights = stories.random_weights(dim, hidden, 1, seed)[0]
    x = ir.input("x", (1, dim, 1, seq))
    # M1 takes the attention matmuls over head_dim / seq zero-padded to multiples of 32
    prog = ir.program(pad_runtime_matmuls_for({"y": stories.layer(x, weights, heads)}, tgt))
    t["build"] = time.perf_counter() - t0

    dialect = tgt.dialect
    t0 = time.perf_counter()
    text, files = mil.emit(prog, dialect=dialect)
    t["lower"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parsed = mil.parse(text, weights=files)
    t["parse"] = time.perf_counter() - t0
    identical = mil.emit(parsed, dialect=dialect) == (text, files)

    t0 = time.perf_counter()
    exe = compile_program(parsed, backend=backend, target=tgt)
    t["compile"] = time.perf_counter() - t0
    rng = np.random.default_rng(seed + 1)
    x_np = rng.standard_normal((1, dim, 1, seq)).astype(np.float32)
    t0 = time.perf_counter()
    y = exe({"x": x_np})["y"].astype(np.float64)
    t["run"] = time.perf_counter() - t0
    exe.close()

    # The reference sees what the program holds: fp16-rounded input and weights.
    w16 = {k: v.astype(np.float16) for k, v in weights.items()}
    ref = stories.reference_layer(x_np.astype(np.float16).astype(np.float64).reshape(dim, seq), w16, heads)
    ref = ref.reshape(y.shape)
    profile = profile_for(tgt.name)
    label = f"{exe.backend} ({tgt.name} numerics)" if exe.backend == "sim" else exe.backend
    rows = [_errors(label, y, ref, TOLERANCE_FP16)]
    if exe.backend == "sim":
        exact = compile_program(parsed, backend="sim", target=tgt, numerics="exact")
        rows.append(_errors("sim (exact fp32)", exact({"x": x_np})["y"].astype(np.float64), ref, TOLERANCE_EXACT))
    passed = identical and all(r["pass"] for r in rows)
    main_run = rows[0]
    verdict = (f"{'PASS' if passed else 'FAIL'} on {tgt.name}: max err / max|ref| {main_run['max_rel_err']:.3g} "
               f"{'<=' if main_run['pass'] else '>'} the {main_run['tolerance']:.3g} tolerance of fp16 numerics"
               + "".join(f"; {r['run']} {r['max_rel_err']:.3g} > {r['tolerance']:.3g}" for r in rows[1:] if not r["pass"])
               + ("" if identical else "; emit -> parse -> emit differs"))
    n_ops = sum(1 for o in prog.main.ops if o.type != "const")
    weight_bytes = sum(len(b) for b in files.values())
    return {
        "model": f"Stories-style block dim={dim} hidden={hidden} heads={heads} seq={seq}",
        "target": tgt.name, "backend": exe.backend, "dialect": dialect, "ops": n_ops,
        "weight_mb": weight_bytes / 2**20, "mil_bytes": len(text), "roundtrip_identical": identical,
        "numerics": f"{profile.name} profile: {_traits(profile)}", "errors": rows, "passed": passed, "verdict": verdict, "seconds": t,
    }


def _errors(label: str, y: np.ndarray, ref: np.ndarray, tolerance: float) -> dict:
    diff = np.abs(y - ref)
    finite = bool(np.isfinite(y).all())
    rel = float(diff.max() / max(np.abs(ref).max(), 1e-30)) if finite else float("inf")
    return {"run": label, "max_abs_err": float(diff.max()), "max_rel_err": rel, "tolerance": tolerance,
            "finite": finite, "pass": finite and rel <= tolerance}


def _traits(p) -> str:
    """What this family's numerics do that others' do not (sim/profiles.py)."""
    out = ["fp16 storage"]
    if p.mac_flush_subnormals:
        out.append("MAC flushes subnormals")
    if p.width_slice_gain != 1.0:
        out.append(f"width-slice gain {p.width_slice_gain:g}")
    return ", ".join(out)


def demo_target(name):
    """The chip record for `name`; unknown names and legacy (pre-A13) targets, whose numerics
    nobody measured, are refused with the names the demo takes."""
    try:
        tgt = resolve_target(name)
    except TargetError:
        tgt = None
    if tgt is None or tgt.family not in MEASURED_FAMILIES:
        known = [n for n in names() if get_target(n).family in MEASURED_FAMILIES]
        why = "is a legacy (pre-A13) target whose numerics are not modelled" if tgt is not None else "is unknown"
        raise UsageError(f"--target {name}: {why}; known targets: {', '.join(known)}")
    return tgt


def _check_size(dim: int, hidden: int, heads: int, seq: int) -> None:
    """Refuse sizes whose working set (the float64 reference's attention scores and weights
    dominate) would not fit the simulator's per-op memory limit, before allocating anything."""
    attention = 4 * heads * seq * seq * 8          # scores, exp, probabilities, mask (float64)
    weights = (4 * dim * dim + 3 * dim * hidden) * 8
    activations = (8 * dim + 3 * hidden) * seq * 8
    need = attention + weights + activations
    if need > MAX_DEMO_BYTES:
        raise UsageError(f"demo: dim={dim} hidden={hidden} heads={heads} seq={seq} needs about "
                         f"{need / 2**30:.3g} GiB (attention scores {attention / 2**30:.3g} GiB), over the "
                         f"{MAX_DEMO_BYTES / 2**30:g} GiB limit; lower --seq or --dim")
