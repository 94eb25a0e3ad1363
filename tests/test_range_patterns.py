"""Range analysis patterns (issue 16 item 7): norms and softmax keep their bounds, the bundled
Stories block raises no false overflow alarm, real overflows are still found, and every
bound holds on simulated values."""
from __future__ import annotations

import math

import numpy as np
import pytest

import anekit as ak
from anekit import ir
from anekit.models import stories
from anekit.preflight import check, ranges


def risks(prog, target="m4"):
    rep = check(prog, target)
    return [f for f in rep.findings if f.verdict == "risk"]


def bound(y):
    """(interval, MAC partial bound) of y, the last op of a one-output program."""
    fn = ir.program({"y": y}).main
    res = ranges.propagate(fn)
    last = [o for o in fn.ops if o.type != "const"][-1]
    return res.of(last.outputs[0]), res.partials.get(id(last))


def _stories(dim=288, hidden=768, heads=6, seq=128, rng=(-4.0, 4.0)):
    w = stories.random_weights(dim, hidden, 1, 0)[0]
    x = ir.input("x", (1, dim, 1, seq), range=rng)
    return x, ir.program({"y": stories.layer(x, w, heads)})


def test_stories_block_with_input_in_minus4_4_has_no_risk():
    _, prog = _stories()
    assert risks(prog) == []


def test_rms_norm_bounded_by_sqrt_n():
    n = 64
    x = ak.input("x", (1, n, 1, 8), range=(-1000.0, 1000.0))
    y = x * ak.rsqrt(x.square().mean(axes=[1], keep_dims=True), epsilon=1e-5)
    lo, hi = bound(y)[0]
    assert hi <= math.sqrt(n) * 1.05 and lo >= -math.sqrt(n) * 1.05
    # the composite (reduce_sum_square * 1/n) is recognised too
    z = ak.rms_norm(x, axes=[1])
    lo, hi = bound(z)[0]
    assert hi <= math.sqrt(n) * 1.05


def test_a_rsqrt_of_something_else_is_not_taken_for_a_norm():
    x = ak.input("x", (1, 64, 1, 8), range=(-1000.0, 1000.0))
    s = ak.input("s", (1, 1, 1, 8), range=(1e-4, 1.0))
    y = x * ak.rsqrt(s)
    lo, hi = bound(y)[0]
    assert hi >= 1000.0 * 99   # 1000 / sqrt(1e-4)


def test_softmax_then_large_matmul_is_still_flagged():
    """A softmax average of values up to 6e4 really reaches 6e4 per term: running sums over
    a constant weight of many large taps still overflow the MAC port."""
    s = ak.input("s", (1, 1, 8, 16), range=(-5.0, 5.0))
    p = ak.softmax(s, axis=-1)
    w = np.full((16, 4096), 8.0, np.float32)          # every probability times 8, 16 taps
    y = ak.matmul(p, w) @ np.full((4096, 8), 4.0, np.float32)   # 4096 taps of up to 4 * 8
    found = {f.rule for f in risks(ir.program({"y": y}))}
    assert "mac-overflow" in found


def test_softmax_average_keeps_the_values_bound():
    v = ak.input("v", (1, 2, 16, 32), range=(-3.0, 2.0))
    s = ak.input("s", (1, 2, 32, 32), range=(-50.0, 50.0))
    att = ak.matmul(v, ak.softmax(s, axis=-1), transpose_y=True)
    (lo, hi), partial = bound(att)
    assert -3.1 <= lo and hi <= 2.1
    assert partial <= 3.1
    # averaging along the wrong axis is no average: the plain bound stays
    att2 = ak.matmul(v, ak.softmax(s, axis=-2), transpose_y=True)
    assert bound(att2)[0][1] > 30


def test_bounds_hold_on_simulated_values():
    """Every non-constant tensor of a small Stories block, for random and adversarial inputs
    in the declared range, lies inside its computed interval."""
    dim, hidden, heads, seq = 32, 64, 2, 8
    x, prog = _stories(dim, hidden, heads, seq)
    fn = prog.main
    res = ranges.propagate(fn)
    tensors = {f"t{i}": o.outputs[0] for i, o in enumerate(fn.ops)
               if o.type != "const" and o.outputs[0].dtype in ("fp16", "fp32")}
    probe = ir.program(tensors)
    exe = ak.compile(probe, backend="sim", target="m4")
    gen = np.random.default_rng(1)
    inputs = [gen.uniform(-4, 4, (1, dim, 1, seq)), np.full((1, dim, 1, seq), 4.0),
              np.where(gen.random((1, dim, 1, seq)) < 0.5, -4.0, 4.0)]
    onehot = np.zeros((1, dim, 1, seq))
    onehot[0, 3] = 4.0                      # one large channel: the RMS norm's extreme
    inputs.append(onehot)
    checked = 0
    for xv in inputs:
        out = exe({"x": xv.astype(np.float32)})
        for name, t in tensors.items():
            lo, hi = res.of(t)
            v = np.asarray(out[name], np.float64)
            # The intervals bound exact values; the simulator rounds each result to fp16
            # (half an ulp, 2^-11 relative), so allow that much around the bound.
            slack = 2.0 ** -10 * max(abs(lo), abs(hi)) + 1e-7
            assert np.all(v >= lo - slack) and np.all(v <= hi + slack), (name, t.op.type, (lo, hi), v.min(), v.max())
            checked += 1
    exe.close()
    assert checked >= 4 * 40
