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


def run_demo(target: str | None = None, backend: str = "auto", dim: int = 288, hidden: int = 768, heads: int = 6,
             seq: int = 128, seed: int = 0) -> dict:
    for name, v in (("dim", dim), ("hidden", hidden), ("heads", heads), ("seq", seq)):
        if not isinstance(v, int) or v <= 0:
            raise UsageError(f"demo: {name} must be a positive integer, got {v!r}")
    if dim % heads or (dim // heads) % 2:
        raise UsageError(f"demo: dim {dim} must split into {heads} heads of an even size (rotary embeddings)")
    tgt = resolve_target(target)
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
    rows = [_errors(f"{exe.backend} ({tgt.name} numerics)" if exe.backend == "sim" else exe.backend, y, ref)]
    if exe.backend == "sim":
        exact = compile_program(parsed, backend="sim", target=tgt, numerics="exact")
        rows.append(_errors("sim (exact fp32)", exact({"x": x_np})["y"].astype(np.float64), ref))
    n_ops = sum(1 for o in prog.main.ops if o.type != "const")
    weight_bytes = sum(len(b) for b in files.values())
    return {
        "model": f"Stories-style block dim={dim} hidden={hidden} heads={heads} seq={seq}",
        "target": tgt.name, "backend": exe.backend, "dialect": dialect, "ops": n_ops,
        "weight_mb": weight_bytes / 2**20, "mil_bytes": len(text), "roundtrip_identical": identical,
        "errors": rows, "seconds": t,
    }


def _errors(label: str, y: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(y - ref)
    return {"run": label, "max_abs_err": float(diff.max()),
            "max_rel_err": float(diff.max() / max(np.abs(ref).max(), 1e-30)),
            "finite": bool(np.isfinite(y).all())}
