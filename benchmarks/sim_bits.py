"""Bit-identity check for simulator speed work: every output of a few training steps of the
train_step.py models (digits CNN, transformer block) and of a small stories forward, on the
m1, m5 and exact profiles, saved once and compared bit for bit after each change.

    python benchmarks/sim_bits.py save ref.pkl      # before optimizing
    python benchmarks/sim_bits.py compare ref.pkl   # after each change: exit 1 on any mismatch
"""
from __future__ import annotations

import argparse
import pickle
import sys

import numpy as np

import train_step as ts
import anekit as ak
from anekit.models import digits, stories
from anekit.sim import Simulator
from anekit.train import Trainer, optim

CONFIGS = (("m1", "profile"), ("m5", "profile"), ("m1", "exact"))


def digits_trainer(target, numerics):
    loss, params, _ = digits.build(8, 32)
    return Trainer(loss, params, optim.Adam(params, lr=1e-2), target=target, numerics=numerics, progress=False)


def block_trainer(target, numerics):
    params = {k: ak.param(k, v) for k, v in ts.block_params().items()}
    x, y = ak.input("x", (ts.SEQ, ts.DIM)), ak.input("y", (ts.SEQ, ts.DIM))
    loss = (ts.block(params, x) - y).square().mean().reshape([1])
    opt = optim.AdamW(list(params.values()), lr=1e-3, weight_decay=0.5)
    return Trainer(loss, list(params.values()), opt, target=target, numerics=numerics, loss_scale=256,
                   progress=False)


def trained(make, target, numerics, batches, steps=4) -> dict:
    """Parameters and optimizer state after `steps` steps, the losses, and one more raw run of
    the training program (loss and every gradient)."""
    tr = make(target, numerics)
    tr.fit(batches, steps)
    out = {f"param_{k}": np.array(v) for k, v in tr.opt.params.items()}
    out.update({f"state_{k}": np.array(v) for k, v in tr.opt.state.items()})
    out["losses"] = np.array([r["loss"] for r in tr.history])
    feeds = dict(next(iter(batches)))
    feeds.update(tr.opt.params)
    feeds["loss_scale"] = np.full((1,), 256.0, np.float32)
    out.update({f"run_{k}": np.array(v) for k, v in tr.exe(feeds).items()})
    return out


def collect() -> dict:
    res = {}
    for target, numerics in CONFIGS:
        res[f"digits {target} {numerics}"] = trained(digits_trainer, target, numerics, ts.digits_batches())
        res[f"block {target} {numerics}"] = trained(block_trainer, target, numerics, ts.block_batches())
    dim, hidden, heads, layers, seq = 288, 768, 6, 2, 64      # sim_throughput.py's model, shorter
    weights = stories.random_weights(dim, hidden, layers, 0)
    prog = stories.build_model_program(dim, hidden, heads, layers, seq, 0, weights=weights)
    x = np.random.default_rng(1).standard_normal((1, dim, 1, seq)).astype(np.float16).astype(np.float32)
    for mode in ("exact", "m1", "m5"):
        res[f"stories {mode}"] = {k: np.array(v) for k, v in Simulator(prog, profile=mode).run({"x": x}).items()}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("save", "compare"))
    ap.add_argument("path")
    args = ap.parse_args()
    res = collect()
    if args.action == "save":
        with open(args.path, "wb") as f:
            pickle.dump(res, f)
        print(f"saved {sum(len(v) for v in res.values())} arrays to {args.path}")
        return 0
    with open(args.path, "rb") as f:
        ref = pickle.load(f)
    bad = [f"{case}: {name}" for case in ref for name in ref[case]
           if case not in res or name not in res[case]
           or ref[case][name].dtype != res[case][name].dtype or ref[case][name].shape != res[case][name].shape
           or ref[case][name].tobytes() != res[case][name].tobytes()]
    for line in bad:
        print("MISMATCH", line)
    print(f"{len(bad)} mismatches" if bad else f"all {sum(len(v) for v in ref.values())} arrays bit-identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
