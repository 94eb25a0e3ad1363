"""Bit-identity check for simulator speed work: every output of a few training steps of the
train_step.py models (digits CNN, transformer block) and of a small stories forward, on the
m1, m5 and exact profiles, plus max/avg pooling windows, small convolutions, norms, gelu, erf
and an LSTM (the Core ML corpus's kernels), and one step of the tiny Stories config through
the dynamic pipeline, saved once and compared bit for bit after each change.

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
    res.update(pools())
    res.update(conv_norm_kernels())
    res.update(stories_steps())
    return res


def pools() -> dict:
    """max_pool and avg_pool over a few window shapes, exact and m1."""
    a = (np.random.default_rng(2).standard_normal((2, 8, 23, 21)) * 30).astype(np.float32)
    x = ak.input("x", a.shape)
    outs = {}
    for i, (k, s, pad) in enumerate((((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1)),
                                     ((3, 2), (1, 2), (0, 1, 1, 0)), ((2, 9), (1, 1), (0, 0, 0, 0)))):
        kw = dict(kernel_sizes=list(k), strides=list(s), pad_type="custom", pad=list(pad))
        outs[f"max{i}"] = ak.max_pool(x, **kw)
        outs[f"avg{i}"] = ak.avg_pool(x, **kw, exclude_padding_from_average=bool(i % 2))
    prog = ak.program(outs)
    return {f"pools {mode}": {k: np.array(v) for k, v in Simulator(prog, profile=mode).run({"x": a}).items()}
            for mode in ("exact", "m1")}


def conv_norm_kernels() -> dict:
    """Small convolutions (depthwise 7x7 and 3x3 with a channel multiplier, grouped and dense
    3x3 with padding and stride, 1-d depthwise), layer and instance norms, gelu and erf on
    small activations, and a peephole LSTM, with a share of large and special values, on the
    exact, m1 and m4 profiles: the kernels of the Core ML corpus that the models above do not
    reach."""
    rng = np.random.default_rng(4)

    def f(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float16).astype(np.float32)
    a = f(2, 16, 9, 9, scale=3.0)
    a[0, 0, 0, :4] = [np.inf, -np.inf, 60000.0, 1e-6]
    seq = f(5, 2, 8)
    x, s = ak.input("x", a.shape), ak.input("s", seq.shape)
    w = lambda *shape: ak.const(f(*shape, scale=0.5).astype(np.float16))         # noqa: E731
    outs = {
        "dw7": ak.conv(x, w(16, 1, 7, 7), w(16), pad_type="same", groups=16),
        "dw3x2": ak.conv(x, w(32, 1, 3, 3), strides=[2, 2], pad_type="custom", pad=[1, 0, 0, 1], groups=16),
        "grouped": ak.conv(x, w(8, 4, 3, 3), strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1], groups=4),
        "dense": ak.conv(x, w(12, 16, 3, 3), w(12), pad_type="same", dilations=[2, 2]),
        "dw1d": ak.conv(ak.reshape(x, [2, 16, 81]), w(16, 1, 5), strides=[2], pad_type="same", groups=16),
        "ln": ak.layer_norm(x, [-1], w(9), w(9)),
        "ln_c": ak.layer_norm(x, [1]),
        "in": ak.instance_norm(x, w(16), w(16)),
        "gelu_big": ak.gelu(ak.concat([x, x], axis=0)), "erf_big": ak.erf(ak.concat([x, x], axis=0)),
        "gelu": ak.gelu(x), "erf": ak.erf(x),        # small: after the big ones built their tables
    }
    hidden = 6
    lstm = ak.lstm(s, ak.const(f(2, hidden).astype(np.float16)), ak.const(f(2, hidden).astype(np.float16)), w(4 * hidden, 8), w(4 * hidden, hidden),
                   w(4 * hidden), peephole=w(3 * hidden), output_sequence=True, clip=2.0)
    outs.update({f"lstm{i}": t for i, t in enumerate(lstm)})
    prog = ak.program(outs)
    return {f"kernels {mode}": {k: np.array(v) for k, v in Simulator(prog, profile=mode).run({"x": a, "s": seq}).items()}
            for mode in ("exact", "m1", "m4")}


def stories_steps() -> dict:
    """Loss and gradients of one step of the tiny Stories config through the dynamic pipeline."""
    from anekit.train.pipelines.stories import StoriesPipeline
    from anekit.train.pipelines.trainer import TINY, init_params
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, TINY.vocab_size, TINY.seq_len)
    targets = rng.integers(0, TINY.vocab_size, TINY.seq_len)
    res = {}
    for numerics in ("exact", "profile"):
        pipe = StoriesPipeline(TINY, "dynamic", "m4", numerics)
        loss, grads = pipe.loss_and_grads(init_params(TINY, 0), tokens, targets, 256.0)
        res[f"stories-step {numerics}"] = {"loss": np.array(loss), **{k: np.array(v) for k, v in grads.items()}}
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
