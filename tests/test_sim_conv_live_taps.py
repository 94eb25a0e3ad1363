"""Convolutions on maps so small that some taps read only padding (SqueezeNet's 3x3 convs on
its 1x1 maps): the lane model runs over the live taps alone. The outputs must be the bits of
the full convolution, which runs when the shortcut is switched off; specials included, in
every chip profile, on the compiled and the numpy lane model."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.sim import Simulator, compiled
from anekit.sim.kernels import conv

CASES = [   # x shape, weight shape, pad, expected live taps
    ((1, 8, 1, 1), (12, 8, 3, 3), (1, 1, 1, 1), (4,)),                 # the centre only
    ((2, 16, 2, 1), (6, 16, 3, 3), (1, 1, 1, 1), (1, 4, 7)),           # one live column, batch 2
    ((1, 4, 1, 2), (5, 4, 5, 3), (2, 2, 1, 1), (6, 7, 8)),             # the middle row of a 5x3
]


def _program(xs, ws, pad, rng):
    w = (rng.standard_normal(ws) * 0.5).astype(np.float16)
    w.reshape(-1)[:3] = [0.0, -0.0, 65504.0]
    b = rng.standard_normal(ws[0]).astype(np.float16)
    x = ak.input("x", xs, "fp16")
    return ak.program({"y": ak.conv(x, w, bias=b, pad_type="custom", pad=list(pad))})


def _inputs(xs, rng):
    plain = (rng.standard_normal(xs) * 3).astype(np.float16)
    x = plain.copy()
    x.reshape(-1)[:4] = [np.inf, -0.0, 6e-8, -65504.0]
    return [plain, np.zeros(xs, np.float16), x, -np.abs(x)]


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("profile", ["m4", "m1", "m5"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_live_taps_give_the_full_convolution_bits(case, profile, jit, monkeypatch):
    xs, ws, pad, live = case
    rng = np.random.default_rng(3)
    prog = _program(xs, ws, pad, rng)
    feeds = _inputs(xs, rng)
    taken = []
    real = conv._live_only

    def spy(*a, **k):
        y = real(*a, **k)
        taken.append(y is not None)
        return y
    previous = compiled.set_enabled(jit)
    try:
        monkeypatch.setattr(conv, "_live_only", spy)
        fast = [Simulator(prog, profile=profile).run({"x": x})["y"] for x in feeds]
        monkeypatch.setattr(conv, "_live_only", lambda *a, **k: None)
        full = [Simulator(prog, profile=profile).run({"x": x})["y"] for x in feeds]
    finally:
        compiled.set_enabled(previous)
    op = next(o for o in prog.main.ops if o.type == "conv")
    out_sp = op.outputs[0].shape[2:]
    pads = [(pad[0], pad[1]), (pad[2], pad[3])]
    assert conv._live_taps(xs[2:], ws[2:], (1, 1), pads, (1, 1), out_sp) == live
    assert taken[0]                          # the shortcut ran
    assert taken[1] is False                 # all-zero input: outputs of zero send it back
    for a, b in zip(fast, full):
        assert a.tobytes() == b.tobytes()


def test_no_shortcut_where_it_could_change_bits(monkeypatch):
    """Exact numerics (BLAS sums: their order depends on K), channels per group that do not
    fill whole tiles, an infinite weight (0 * inf in the padding lanes), every tap live."""
    from anekit.sim import profile_for
    from anekit.sim.numerics import Numerics
    m4, exact = Numerics(profile_for("m4")), Numerics(profile_for("exact"))
    shape = ((1, 8, 1, 1), (12, 8, 3, 3))
    pads = [(1, 1), (1, 1)]
    assert conv._plan(m4, *shape, (1, 1), pads, (1, 1), 1, (1, 1))[3] == (4,)
    assert conv._plan(exact, *shape, (1, 1), pads, (1, 1), 1, (1, 1))[3] is None
    assert conv._plan(m4, (1, 6, 1, 1), (12, 6, 3, 3), (1, 1), pads, (1, 1), 1, (1, 1))[3] is None
    assert conv._plan(m4, (1, 8, 3, 3), (12, 8, 3, 3), (1, 1), pads, (1, 1), 1, (3, 3))[3] is None
    rng = np.random.default_rng(4)
    w = rng.standard_normal((12, 8, 3, 3)).astype(np.float16)
    w[0, 0, 0, 0] = np.inf
    prog = ak.program({"y": ak.conv(ak.input("x", (1, 8, 1, 1), "fp16"), w, pad_type="custom", pad=[1, 1, 1, 1])})
    taken, real = [], conv._live_only
    monkeypatch.setattr(conv, "_live_only", lambda *a, **k: taken.append(real(*a, **k)) or taken[-1])
    Simulator(prog, profile="m4").run({"x": np.ones((1, 8, 1, 1), np.float16)})
    assert taken == [None]
