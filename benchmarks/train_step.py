"""Training-step time on the simulator against the same model in PyTorch CPU float32, in this
process: the digits CNN (8x8, batch 32, Adam) and one pre-norm transformer block (seq 64,
dim 128, 4 heads, hidden 512, AdamW). A step is forward + backward + optimizer update.

    python benchmarks/train_step.py [--steps 20] [--json]

Times are medians over --steps steps after 3 warm-up steps, with one BLAS thread on both
sides (torch.set_num_threads(1), threadpoolctl for numpy); ratios are simulator / PyTorch.
Goals (issue 12): default (chip profile) numerics within 2x of PyTorch, exact within 1.2x.
The last rows are the cost model's estimate of the same step on each chip's ANE (ak.estimate
of the forward+backward and update programs; nothing measured on hardware).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

import anekit as ak
from anekit.ir.builder import build as _op
from anekit.models import digits
from anekit.sim import compiled
from anekit.train import Trainer, data, optim
from anekit.train.estimate import estimate_step

SEQ, DIM, HEADS, HIDDEN = 64, 128, 4, 512


# --- the transformer block, in anekit and in torch -------------------------------------------

def block_params(seed=0):
    rng = np.random.default_rng(seed)
    lin = lambda i, o: (rng.standard_normal((i, o)) / math.sqrt(i)).astype(np.float32)
    return {"ln1_g": np.ones(DIM, np.float32), "ln1_b": np.zeros(DIM, np.float32),
            "wq": lin(DIM, DIM), "wk": lin(DIM, DIM), "wv": lin(DIM, DIM), "wo": lin(DIM, DIM),
            "ln2_g": np.ones(DIM, np.float32), "ln2_b": np.zeros(DIM, np.float32),
            "w1": lin(DIM, HIDDEN), "w2": lin(HIDDEN, DIM)}


def block(p, x):
    """h = x + attention(ln(x)); out = h + gelu(ln(h) @ w1) @ w2, on x [SEQ, DIM]."""
    hd = DIM // HEADS

    def heads(t):                                      # [SEQ, DIM] -> [HEADS, SEQ, hd]
        return t.reshape(SEQ, HEADS, hd).transpose(1, 0, 2)
    a = _op("layer_norm", x, axes=[-1], gamma=p["ln1_g"], beta=p["ln1_b"], epsilon=1e-5)
    q, k, v = heads(a @ p["wq"]), heads(a @ p["wk"]), heads(a @ p["wv"])
    att = _op("softmax", _op("matmul", q, k, transpose_y=True) * (1.0 / math.sqrt(hd)), axis=-1)
    h = x + (att @ v).transpose(1, 0, 2).reshape(SEQ, DIM) @ p["wo"]
    f = _op("layer_norm", h, axes=[-1], gamma=p["ln2_g"], beta=p["ln2_b"], epsilon=1e-5)
    return h + _op("gelu", f @ p["w1"]) @ p["w2"]


def block_trainer(numerics):
    params = {k: ak.param(k, v) for k, v in block_params().items()}
    x, y = ak.input("x", (SEQ, DIM)), ak.input("y", (SEQ, DIM))
    loss = (block(params, x) - y).square().mean().reshape([1])
    opt = optim.AdamW(list(params.values()), lr=1e-3, weight_decay=0.5)   # lr * wd above fp16 resolution
    return Trainer(loss, list(params.values()), opt, target="m1", numerics=numerics, loss_scale=256,
                   progress=False)


def block_batches(seed=0):
    rng = np.random.default_rng(seed)
    while True:
        yield {"x": rng.standard_normal((SEQ, DIM)).astype(np.float32),
               "y": rng.standard_normal((SEQ, DIM)).astype(np.float32) * 0.5}


def torch_block_step(torch):
    P = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in block_params().items()}
    opt = torch.optim.AdamW(P.values(), lr=1e-3, weight_decay=0.5)
    F = torch.nn.functional
    hd = DIM // HEADS

    def step(b):
        x, y = torch.from_numpy(b["x"]), torch.from_numpy(b["y"])
        a = F.layer_norm(x, (DIM,), P["ln1_g"], P["ln1_b"], 1e-5)
        q, k, v = ((a @ P[n]).reshape(SEQ, HEADS, hd).transpose(0, 1) for n in ("wq", "wk", "wv"))
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), -1)
        h = x + (att @ v).transpose(0, 1).reshape(SEQ, DIM) @ P["wo"]
        out = h + F.gelu(F.layer_norm(h, (DIM,), P["ln2_g"], P["ln2_b"], 1e-5) @ P["w1"]) @ P["w2"]
        loss = ((out - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


# --- digits -----------------------------------------------------------------------------------

def digits_trainer(numerics):
    loss, params, _ = digits.build(8, 32)
    return Trainer(loss, params, optim.Adam(params, lr=1e-2), target="m1", numerics=numerics, progress=False)


def digits_batches():
    ds = data.load_digits()
    return data.Batches(ds.train_x, ds.train_y, 32, seed=0)


def torch_digits_step(torch):
    P = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in digits.init_params(8).items()}
    opt = torch.optim.Adam(P.values(), lr=1e-2)
    F = torch.nn.functional

    def step(b):
        x, y = torch.from_numpy(b["x"]), torch.from_numpy(b["y"])
        h = F.avg_pool2d(F.relu(F.conv2d(x, P["conv1_w"], P["conv1_b"], padding=1)), 2)
        logits = h.reshape(h.shape[0], -1) @ P["fc_w"] + P["fc_b"]
        loss = -(y * F.log_softmax(logits, 1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


# --- timing -----------------------------------------------------------------------------------

def time_trainer(make, batches, steps):
    tr = make()
    tr.fit(batches, 3)
    return tr.fit(batches, 3 + steps).step_ms, tr


def time_torch(step, batches, steps):
    for _ in range(3):
        step(next(batches))
    ms = []
    for _ in range(steps):
        b = next(batches)
        t0 = time.perf_counter()
        step(b)
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(1)          # one thread each side: compare like with like
    except ImportError:
        torch = None
    try:                                  # numpy's BLAS too (threads spinning on a loaded machine
        from threadpoolctl import threadpool_limits   # made the simulator's matmuls 10-40x slower)
        threadpool_limits(1)
    except ImportError:
        pass
    rows = []
    cases = (("digits CNN 8x8 b32 Adam", digits_trainer, digits_batches, torch_digits_step),
             (f"transformer block s{SEQ} d{DIM} AdamW", block_trainer, block_batches, torch_block_step))
    for name, make, batches, torch_step in cases:
        ref = time_torch(torch_step(torch), iter(batches()), args.steps) if torch else None
        row = {"model": name, "torch_ms": ref}
        for numerics in ("profile", "exact"):
            ms, tr = time_trainer(lambda: make(numerics), batches(), args.steps)
            row[f"sim_{numerics}_ms"] = ms
            row[f"ratio_{numerics}"] = ms / ref if ref else None
        row["estimate_us"] = {chip: round(estimate_step(tr, chip)["total_us"], 1) for chip in ("m1", "m4", "m5")}
        rows.append(row)
    if args.json:
        print(json.dumps({"route": compiled.route(), "rows": rows}, indent=2))
        return
    print(f"{'model':<36} {'torch ms':>9} {'sim m1 ms':>10} {'ratio':>6} {'sim exact ms':>13} {'ratio':>6}")
    for r in rows:
        f = lambda v, spec: format(v, spec) if v is not None else "-"
        print(f"{r['model']:<36} {f(r['torch_ms'], '9.2f')} {r['sim_profile_ms']:>10.2f} "
              f"{f(r['ratio_profile'], '6.2f')} {r['sim_exact_ms']:>13.2f} {f(r['ratio_exact'], '6.2f')}")
    print("goals: profile ratio <= 2, exact ratio <= 1.2 (torch CPU fp32, 1 thread); "
          f"simulator fp16/MAC route: {compiled.route()} (ANEKIT_NO_JIT=1: numpy)")
    for r in rows:
        est = ", ".join(f"{c} {us / 1000:.3f} ms" for c, us in r["estimate_us"].items())
        print(f"estimated ANE step (cost model, not measured), {r['model']}: {est}")


if __name__ == "__main__":
    main()
