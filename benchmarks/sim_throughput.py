"""Simulator throughput on a Stories15M-sized forward (dim 288, hidden 768, 6 layers, 6 heads,
seq 256) in exact and M1-profile numerics, against the same computation written directly in
numpy float32 and in PyTorch CPU float32 (when installed), all in this process.

    python benchmarks/sim_throughput.py [--repeat 5] [--json]

Times are the best of --repeat rounds after one warm-up run, the runs taking turns within a
round; ratios are simulator / baseline.
Goals (issue 3): exact within 1.5x of the baseline, M1 profile within 3x. Timings depend on
the machine and its load (BLAS threads, other processes): compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from anekit.models import stories
from anekit.sim import Simulator

DIM, HIDDEN, LAYERS, HEADS, SEQ = 288, 768, 6, 6, 256


def numpy_forward(x: np.ndarray, weights: list[dict], heads: int) -> np.ndarray:
    """The stories graph in float32 numpy, same (C, S) layout and op order, no simulator."""
    f32 = np.float32
    dim, seq = x.shape[1], x.shape[3]
    hd = dim // heads
    cos, sin = (t.astype(f32)[None] for t in stories.rope_tables(hd, seq))      # [1, hd, seq]
    mask = stories.causal_mask(seq).astype(f32)
    scale = f32(1.0 / math.sqrt(hd))

    def rms(h, w):
        return h * (f32(1.0) / np.sqrt(np.mean(h * h, axis=0, keepdims=True) + f32(stories.EPS))) * w[:, None]

    def rope(t):
        rot = np.concatenate([-t[:, hd // 2:], t[:, :hd // 2]], axis=1)
        return t * cos + rot * sin

    h = x.reshape(dim, seq).astype(f32)
    for w in weights:
        a = rms(h, w["rms_att"])
        q, k, v = ((w[n] @ a).reshape(heads, hd, seq) for n in ("wq", "wk", "wv"))
        q, k = rope(q), rope(k)
        s = np.matmul(q.transpose(0, 2, 1), k) * scale + mask
        e = np.exp(s - s.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        att = np.matmul(v, p.transpose(0, 2, 1)).reshape(dim, seq)
        h = h + w["wo"] @ att
        a = rms(h, w["rms_ffn"])
        g = w["w1"] @ a
        h = h + w["w2"] @ (g / (f32(1.0) + np.exp(-g)) * (w["w3"] @ a))
    return rms(h, np.ones(dim, f32)).reshape(x.shape)


def torch_forward_fn(weights: list[dict], heads: int):
    """The same forward in PyTorch CPU float32, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    tw = [{k: torch.from_numpy(v) for k, v in w.items()} for w in weights]
    cos_np, sin_np = stories.rope_tables(DIM // heads, SEQ)
    cos, sin = (torch.from_numpy(t.astype(np.float32))[None] for t in (cos_np, sin_np))
    mask = torch.from_numpy(stories.causal_mask(SEQ).astype(np.float32))
    hd = DIM // heads

    def rms(h, w):
        return h * torch.rsqrt((h * h).mean(0, keepdim=True) + stories.EPS) * w[:, None]

    def rope(t):
        return t * cos + torch.cat([-t[:, hd // 2:], t[:, :hd // 2]], 1) * sin

    @torch.inference_mode()
    def forward(x: np.ndarray) -> np.ndarray:
        h = torch.from_numpy(x.reshape(DIM, SEQ).astype(np.float32))
        for w in tw:
            a = rms(h, w["rms_att"])
            q, k, v = ((w[n] @ a).reshape(heads, hd, SEQ) for n in ("wq", "wk", "wv"))
            q, k = rope(q), rope(k)
            p = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(hd) + mask, -1)
            h = h + w["wo"] @ (v @ p.transpose(1, 2)).reshape(DIM, SEQ)
            a = rms(h, w["rms_ffn"])
            h = h + w["w2"] @ (torch.nn.functional.silu(w["w1"] @ a) * (w["w3"] @ a))
        return rms(h, torch.ones(DIM)).reshape(x.shape).numpy()
    return forward


def best_of_interleaved(fns: dict, repeat: int) -> dict:
    """Best time of each function over `repeat` rounds, the functions taking turns within a
    round so that a burst of load from other processes hits them alike."""
    for fn in fns.values():
        fn()                               # warm-up: caches, lazy imports, BLAS threads
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    weights = stories.random_weights(DIM, HIDDEN, LAYERS, args.seed)
    prog = stories.build_model_program(DIM, HIDDEN, HEADS, LAYERS, SEQ, args.seed, weights=weights)
    x = np.random.default_rng(args.seed + 1).standard_normal((1, DIM, 1, SEQ)).astype(np.float16).astype(np.float32)
    ref = stories.reference_forward(x.astype(np.float64), weights, HEADS)

    rows, fns = {}, {}
    baselines = {"numpy fp32": lambda: numpy_forward(x, weights, HEADS)}
    torch_fn = torch_forward_fn(weights, HEADS)
    if torch_fn is not None:
        baselines["torch fp32"] = lambda: torch_fn(x)
    for name, fn in baselines.items():
        rows[name] = {"max_abs_err": float(np.abs(fn() - ref).max())}
        fns[name] = fn
    for mode in ("exact", "m1"):
        t = time.perf_counter()
        sim = Simulator(prog, profile=mode)
        build = time.perf_counter() - t
        out = sim.run({"x": x})["y"].astype(np.float64)
        rows[f"sim {mode}"] = {"construct_seconds": build, "max_abs_err": float(np.abs(out - ref).max())}
        fns[f"sim {mode}"] = (lambda s: lambda: s.run({"x": x}))(sim)
    for name, seconds in best_of_interleaved(fns, args.repeat).items():
        rows[name]["seconds"] = seconds
    base = min(r["seconds"] for n, r in rows.items() if not n.startswith("sim"))
    for n, r in rows.items():
        r["ratio_to_fastest_baseline"] = r["seconds"] / base
        for b in baselines:
            r[f"ratio_to_{b.replace(' ', '_')}"] = r["seconds"] / rows[b]["seconds"]

    if args.json:
        print(json.dumps({"model": dict(dim=DIM, hidden=HIDDEN, layers=LAYERS, heads=HEADS, seq=SEQ),
                          "ops": len(prog.main.ops), "results": rows}, indent=2))
        return 0
    print(f"Stories15M-sized forward: dim {DIM}, hidden {HIDDEN}, {LAYERS} layers, {HEADS} heads, "
          f"seq {SEQ}; {len(prog.main.ops)} ops; best of {args.repeat}")
    names = list(baselines)
    print(f"{'run':12s} {'ms':>9s} " + " ".join(f"{'x ' + b:>12s}" for b in names) + f" {'max abs err':>12s}")
    for n, r in rows.items():
        ratios = " ".join(f"{r['ratio_to_' + b.replace(' ', '_')]:12.2f}" for b in names)
        print(f"{n:12s} {r['seconds'] * 1e3:9.1f} {ratios} {r['max_abs_err']:12.2e}")
    print("max abs err: against float64 with the float32 weights; the graph stores fp16 weights and fp16 I/O")
    print("goals: sim exact <= 1.5x, sim m1 <= 3x the baseline (machine load makes single runs noisy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
