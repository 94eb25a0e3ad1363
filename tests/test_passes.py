"""pad_runtime_matmuls: M1's runtime-operand matmuls zero-padded along the contraction axis.

On M1 (h13) a matmul of two runtime tensors over an inner dimension that is not a multiple
of 32 returns zeros (preflight/ane_route.py). The pass pads both operands with zeros there;
zero lanes add nothing, so the outputs are the original matmul's, bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.errors import UsageError
from anekit.ir import topo_order
from anekit.ir.passes import pad_runtime_matmuls
from anekit.preflight.ane_route import M1_RUNTIME_MATMUL_MULTIPLE, runtime_matmul_multiple

# (x shape, y shape, transpose_x, transpose_y): every transpose pairing, ranks 2 to 4, batch
# broadcasting, inner dimensions 6, 20 and 48. Each output row is small enough (N * padded K
# at most 2048) that the M1 simulator takes its lane model before and after padding: the
# simulator picks the lane model or its float32 fast route by N * K (sim/mac.py), and the
# two routes round differently, so a larger row can move routes when K grows (a simulator
# effect: the zero lanes themselves change nothing).
CASES = [
    ((5, 48), (48, 7), False, False),
    ((48, 5), (48, 7), True, False),
    ((5, 20), (7, 20), False, True),
    ((2, 20, 5), (2, 7, 20), True, True),
    ((3, 4, 6), (1, 6, 9), False, False),
    ((1, 2, 48, 5), (1, 2, 48, 24), True, False),     # attention scores: q^T k over head_dim
    ((1, 2, 8, 24), (1, 2, 5, 24), False, True),       # probs . v over the positions
]
IDS = [f"{'T' if tx else 'N'}{'T' if ty else 'N'}-{len(xs)}d-k{xs[-2] if tx else xs[-1]}"
       for xs, ys, tx, ty in CASES]


def _matmul(xs, ys, tx, ty, dtype):
    x, y = ak.input("x", xs, dtype), ak.input("y", ys, dtype)
    return {"z": ak.matmul(x, y, transpose_x=tx, transpose_y=ty, name="mm")}


def _run(outs, feeds, numerics):
    return ak.compile(ak.program(outs), backend="sim", target="m1", numerics=numerics)(feeds)["z"]


def _m1_findings(outs):
    return [f for f in ak.check(ak.program(outs), "m1").findings if f.rule == "m1-runtime-matmul"]


@pytest.mark.parametrize("xs, ys, tx, ty", CASES, ids=IDS)
def test_padding_clears_the_m1_finding_and_keeps_the_outputs_bit_for_bit(xs, ys, tx, ty):
    outs = _matmul(xs, ys, tx, ty, "fp16")
    padded = pad_runtime_matmuls(outs)
    inner = xs[-2] if tx else xs[-1]
    (f,) = _m1_findings(outs)
    assert f.value == inner and f.op_type == "matmul"
    assert ak.check(ak.program(padded), "m1").ok and not _m1_findings(padded)
    mm = padded["z"].op
    assert mm.type == "matmul" and mm.name == "mm"
    assert [mm.inputs[k].op.type for k in ("x", "y")] == ["pad", "pad"]
    k_axes = (len(xs) - (2 if tx else 1), len(ys) - (1 if ty or len(ys) == 1 else 2))
    assert mm.inputs["x"].shape[k_axes[0]] == mm.inputs["y"].shape[k_axes[1]] == M1_RUNTIME_MATMUL_MULTIPLE * -(-inner // 32)
    rng = np.random.default_rng(sum(xs) + sum(ys))
    feeds = {"x": rng.standard_normal(xs).astype(np.float16), "y": rng.standard_normal(ys).astype(np.float16)}
    ref, got = _run(outs, feeds, "profile"), _run(padded, feeds, "profile")
    assert got.dtype == ref.dtype == np.float16 and got.shape == ref.shape
    assert np.array_equal(got.view(np.uint16), ref.view(np.uint16))     # the M1 MAC model, bit for bit
    # and both are the product itself: within the fp16 output rounding of a float64 matmul
    want = np.matmul(np.swapaxes(feeds["x"], -1, -2) if tx else feeds["x"],
                     np.swapaxes(feeds["y"], -1, -2) if ty else feeds["y"], dtype=np.float64)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=2e-2)


@pytest.mark.parametrize("xs, ys, tx, ty", CASES, ids=IDS)
def test_padding_is_exact_in_float32(xs, ys, tx, ty):
    """Exact numerics, fp32 graph: small-integer operands make every partial sum exact, so any
    summation order gives the float64 product's bits; random operands agree to float32
    summation order (BLAS orders a longer K differently)."""
    outs = _matmul(xs, ys, tx, ty, "fp32")
    padded = pad_runtime_matmuls(outs)
    rng = np.random.default_rng(7)
    x, y = rng.integers(-8, 9, xs).astype(np.float32), rng.integers(-8, 9, ys).astype(np.float32)
    want = np.matmul(np.swapaxes(x, -1, -2) if tx else x, np.swapaxes(y, -1, -2) if ty else y, dtype=np.float64)
    got, ref = _run(padded, {"x": x, "y": y}, "exact"), _run(outs, {"x": x, "y": y}, "exact")
    assert got.dtype == np.float32
    assert got.tobytes() == ref.tobytes() == want.astype(np.float32).tobytes()
    x, y = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ys).astype(np.float32)
    want = np.matmul(np.swapaxes(x, -1, -2) if tx else x, np.swapaxes(y, -1, -2) if ty else y, dtype=np.float64)
    np.testing.assert_allclose(_run(padded, {"x": x, "y": y}, "exact"), want, rtol=1e-5, atol=1e-5)


def test_matmuls_that_need_no_padding_are_shared():
    x, y = ak.input("x", (4, 64)), ak.input("y", (64, 5))
    w = np.ones((6, 3), np.float16)
    kept = [ak.matmul(x, y), ak.matmul(ak.input("a", (2, 6)), w), ak.relu(x)]   # K = 64; a constant operand
    assert pad_runtime_matmuls(kept) == kept
    assert pad_runtime_matmuls(kept[0]) is kept[0]
    assert pad_runtime_matmuls(kept, multiple=128)[0] is not kept[0]           # 64 is not a multiple of 128


def test_consumers_are_rewired_and_the_structure_kept():
    x, y = ak.input("x", (3, 10), "fp32"), ak.input("y", (10, 4), "fp32")
    z = ak.relu(ak.matmul(x, y)) + 1.0
    out = pad_runtime_matmuls({"z": z, "x2": x * 2.0})
    assert list(out) == ["z", "x2"] and out["x2"].op.inputs["x"] is x
    (mm,) = [o for o in topo_order([out["z"]])[0] if o.type == "matmul"]
    assert mm.inputs["x"].shape == (3, 32) and mm.inputs["y"].shape == (32, 4)
    (lst,) = pad_runtime_matmuls([z], multiple=16)
    (mm16,) = [o for o in topo_order([lst])[0] if o.type == "matmul"]
    assert mm16.inputs["x"].shape == (3, 16)


@pytest.mark.parametrize("bad", [0, -32, 2.5, True, "32"])
def test_multiple_must_be_a_positive_integer(bad):
    with pytest.raises(UsageError, match="multiple"):
        pad_runtime_matmuls(ak.input("x", (2, 2)), multiple=bad)


def test_only_the_m1_family_needs_padding():
    for name in ("m1", "M1 Max", "m1ultra", "h13g"):
        assert runtime_matmul_multiple(name) == M1_RUNTIME_MATMUL_MULTIPLE
    assert runtime_matmul_multiple(ak.targets.get("m1 pro")) == M1_RUNTIME_MATMUL_MULTIPLE
    for name in ("m2", "m3", "m4", "m5", "a14", "a17pro"):
        assert runtime_matmul_multiple(name) is None


def test_lowering_pads_for_the_target_it_is_given():
    """lower_runtime_weights pads on M1 only; the Trainer passes its target (the sim run of a
    padded training step equals the unpadded one bit for bit on the M1 profile)."""
    from anekit.train.lowering import lower_runtime_weights
    rng = np.random.default_rng(3)
    x = ak.input("x", (2, 6), "fp16")
    w = ak.param("w", rng.standard_normal((5, 6)) * 0.5)
    loss = ak.reduce_sum(ak.square(ak.linear(x, w)))
    outs = {"loss": loss, "dw": ak.grad(loss, [w])[0]}
    plain, m4, m1 = lower_runtime_weights(outs), lower_runtime_weights(outs, "m4"), lower_runtime_weights(outs, "m1")
    assert _m1_findings(plain) and _m1_findings(m4) and not _m1_findings(m1)
    assert ak.check(ak.program(m1), "m1").ok and not ak.check(ak.program(plain), "m1").ok
    pads = [o for o in topo_order(list(m1.values()))[0] if o.type == "pad"]
    assert pads and not [o for o in topo_order(list(m4.values()))[0] if o.type == "pad"]
    feeds = {"x": rng.standard_normal((2, 6)).astype(np.float16), "w": w.init.astype(np.float16)}
    a = ak.compile(ak.program(plain), backend="sim", target="m1", numerics="profile")(feeds)
    b = ak.compile(ak.program(m1), backend="sim", target="m1", numerics="profile")(feeds)
    for k in outs:
        assert np.array_equal(np.asarray(a[k]).view(np.uint16), np.asarray(b[k]).view(np.uint16)), k


def test_the_ane_backend_takes_the_padded_attention_block_it_refuses_unpadded():
    """A Stories block with head_dim 48 (the demo's default geometry): the direct route's
    preflight refuses it on M1 and compiles it once padded for M1 (the fake transport stands
    in for the framework); the demo builds its block this way."""
    from anekit.models import stories
    from anekit.preflight.ane_route import pad_runtime_matmuls_for
    from anekit.runtime.ane import FakeTransport
    x = ak.input("x", (1, 96, 1, 16))
    outs = {"y": stories.layer(x, stories.random_weights(96, 64, 1, 0)[0], 2)}
    assert pad_runtime_matmuls_for(outs, "m4") is outs

    def compile_m1(o):
        return ak.compile(ak.program(o), backend="ane", transport=FakeTransport(chip="m1"), target="m1")
    with pytest.raises(ak.errors.ShapeError, match="inner dimension of 48"):
        compile_m1(outs)
    padded = pad_runtime_matmuls_for(outs, "m1")
    assert ak.check(ak.program(padded), "m1", route="direct").ok
    assert compile_m1(padded).backend == "ane"
