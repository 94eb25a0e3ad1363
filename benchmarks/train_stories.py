"""Stories training speed: one step of Stories15M on the simulator against the same model in
PyTorch CPU fp32 in this process (one thread each), and the cost model's estimate of a
Stories110M step per chip beside the seed projects' published figures.

    PYTHONPATH=src python benchmarks/train_stories.py [--steps 3] [--numerics profile exact]
                                                      [--skip-measure] [--seq-len 256]

Step = forward + backward + AdamW update, batch of one sequence of seq_len tokens, random
token ids (speed does not depend on the text). The estimate sums `ak.estimate` of the six layer
kernels times n_layers (the engine's part of a step) and adds the host's part (embedding,
classifier, cross-entropy, AdamW) priced by anekit.cost.host_ms on the CPU roofline; the static
pipeline's per-step compiles are listed apart, as the published figures leave them out.
Nothing here runs on Apple hardware.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_v] = "1"        # one thread each, before numpy / torch load their BLAS

import argparse            # noqa: E402
import dataclasses         # noqa: E402
import statistics          # noqa: E402
import time                # noqa: E402

import numpy as np         # noqa: E402

from anekit.models import llama2c                                   # noqa: E402
from anekit.sim import compiled                                     # noqa: E402
import anekit as ak        # noqa: E402
from anekit.train.pipelines.stories import StoriesPipeline, estimate_step_ms, memory_per_step  # noqa: E402
from anekit.train.estimate import stories_step_ms  # noqa: E402
from anekit.train.pipelines.trainer import StoriesTrainer, init_params  # noqa: E402

# Seed projects (brief §9; seeds 001 / 004): Stories110M training step, ms.
PUBLISHED = {("m4", "dynamic"): (91.0, 91.0), ("m4", "static"): (106.7, 106.7), ("m4max", "dynamic"): (64.0, 64.0),
             ("m1pro", "dynamic"): (148.0, 163.0), ("m4", "dynamic+head"): (91.0, 91.0),
             ("m4max", "dynamic+head"): (64.0, 64.0)}
TARGETS = ("m4", "m4max", "m1pro", "m5")


def torch_step_ms(config, tokens, targets, steps: int) -> float:
    """Median ms of forward + backward + AdamW of the same llama2.c model in PyTorch fp32."""
    import torch
    torch.set_num_threads(1)
    c = config
    p = {k: torch.tensor(v, requires_grad=True) for k, v in init_params(c, 0).items()}
    opt = torch.optim.AdamW(p.values(), lr=1e-3, weight_decay=0.01)
    hs, S = c.dim // c.n_heads, c.seq_len
    freqs = 1.0 / 10000.0 ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs)
    ang = torch.outer(torch.arange(S, dtype=torch.float32), freqs)
    cos, sin = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
    mask = torch.triu(torch.full((S, S), float("-inf")), 1)
    tok, tgt = torch.tensor(tokens), torch.tensor(targets)

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w

    def rope(t):              # rotate-half, rows already in that order (as the pipeline holds them)
        t = t.reshape(S, c.n_heads, hs)
        lo, hi = t[..., :hs // 2], t[..., hs // 2:]
        return torch.cat([lo * cos - hi * sin, lo * sin + hi * cos], -1).transpose(0, 1)

    def step():
        x = p["embed"][tok]
        for i in range(c.n_layers):
            w = {n: p[f"l{i}_{n}"] for n in ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3")}
            h = rms(x, w["rms_att"])
            q, k = rope(h @ w["wq"].T), rope(h @ w["wk"].T)
            v = (h @ w["wv"].T).reshape(S, c.n_heads, hs).transpose(0, 1)
            att = torch.softmax(q @ k.transpose(1, 2) / hs ** 0.5 + mask, -1) @ v
            x = x + att.transpose(0, 1).reshape(S, c.dim) @ w["wo"].T
            h = rms(x, w["rms_ffn"])
            x = x + (torch.nn.functional.silu(h @ w["w1"].T) * (h @ w["w3"].T)) @ w["w2"].T
        loss = torch.nn.functional.cross_entropy(rms(x, p["rms_final"]) @ p["embed"].T, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def sim_step_ms(config, tokens, targets, steps: int, numerics: str, pipeline: str = "dynamic") -> float:
    """Median ms of a trainer step (kernels, host part, AdamW update; static: its recompiles)."""
    tr = StoriesTrainer(config, pipeline, "m4", steps=steps + 1, numerics=numerics, loss_scale=256.0)
    tr.train_step(lambda _step: (tokens, targets))            # compiles
    times = [tr.train_step(lambda _step: (tokens, targets))["step_ms"] for _ in range(steps)]
    return statistics.median(times)


def estimates(config) -> dict:
    """{(target, pipeline): anekit.train.estimate.stories_step_ms row}: the engine kernels by
    ak.estimate, the host's part by anekit.cost.host_ms, the static pipeline's compiles apart."""
    out = {}
    for pipeline in ("dynamic", "static"):
        for t in TARGETS:
            engine = estimate_step_ms(config, pipeline, t)["total"]
            compiles = 5 * config.n_layers if pipeline == "static" else 0   # re-baked every update
            out[(t, pipeline)] = stories_step_ms(config, pipeline, t, engine, compiles_per_step=compiles)
    for t in TARGETS:        # the classifier on the engine too, where its 32000-wide tensors fit
        prog = StoriesPipeline(config, "dynamic", t, head="engine").programs(None)["head"]
        if ak.check(prog, t).ok:
            engine = estimate_step_ms(config, "dynamic", t, "engine")["total"]
            out[(t, "dynamic+head")] = stories_step_ms(config, "dynamic", t, engine, head_on_host=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--numerics", nargs="+", default=["profile", "exact"], choices=["profile", "exact"])
    ap.add_argument("--pipelines", nargs="+", default=["dynamic", "static"], choices=["dynamic", "static"])
    ap.add_argument("--skip-measure", action="store_true", help="only the estimates")
    args = ap.parse_args()
    c15 = dataclasses.replace(llama2c.STORIES15M, seq_len=args.seq_len)
    if not args.skip_measure:
        rng = np.random.default_rng(0)
        ids = rng.integers(0, c15.vocab_size, c15.seq_len + 1)
        tokens, targets = ids[:-1], ids[1:]
        torch_ms = torch_step_ms(c15, tokens, targets, args.steps)
        print(f"Stories15M training step (seq {c15.seq_len}, one thread each, median of {args.steps}; "
              f"simulator fp16/MAC route: {compiled.route()}):")
        print(f"  PyTorch CPU fp32                 {torch_ms:9.1f} ms")
        for pipeline in args.pipelines:
            for numerics in args.numerics:
                ms = sim_step_ms(c15, tokens, targets, args.steps, numerics, pipeline)
                print(f"  simulator, {pipeline:<7}, {numerics:<8}    {ms:9.1f} ms   {ms / torch_ms:5.2f}x PyTorch")
    c110 = dataclasses.replace(llama2c.STORIES110M, seq_len=256)      # the seeds train at seq 256
    est = estimates(c110)
    print("\nStories110M training step, seq 256: ak.estimate of the engine kernels (6 per layer x 12; +head: the"
          " classifier kernel too, where it fits) plus the host's part priced by anekit.cost.host_ms (CPU roof,"
          " guide ch. 9); not fitted to the published figures")
    print(f"  {'target':<7} {'pipeline':<12} {'engine':>7} {'host':>6} {'step ms':>8} {'published':>10} {'ratio':>9}"
          f"  {'compiles/step':>13}")
    for (t, pipeline), r in est.items():
        ms = r["step"]
        pub = PUBLISHED.get((t, pipeline))
        pub_s = f"{pub[0]:g}" + (f"-{pub[1]:g}" if pub and pub[1] != pub[0] else "") if pub else "-"
        ratio = f"{ms / pub[0]:.2f}" if pub and pub[0] == pub[1] else (
            f"{ms / pub[1]:.2f}-{ms / pub[0]:.2f}" if pub else "")
        comp = f"{r['compile']:.0f} ms" if r["compile"] else "-"
        print(f"  {t:<7} {pipeline:<12} {r['engine']:7.1f} {ms - r['engine']:6.1f} {ms:8.1f} {pub_s:>10} {ratio:>9}"
              f"  {comp:>13}")
    print("  published ms/step leave compiles out (maderix/ANE training README lists compile time apart: "
          "7.6 s per restart of 72 kernels); the static pipeline's compiles per update are shown apart")
    for pipeline in ("dynamic", "static"):
        mem = memory_per_step(c110, pipeline)
        print(f"\nStories110M memory per step, {pipeline}: {sum(mem.values()) / 2**20:.0f} MiB")
        for k, v in mem.items():
            print(f"  {k:<55} {v / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
