"""Runtime (trainable) weights: conv / conv_transpose / linear rewritten as matmuls the engine
compiles, equal to the original ops, and `ak.check` saying which form each took and why."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.ir import topo_order
from anekit.preflight.training import lowered_form
from anekit.train.lowering import lower_runtime_weights

CASES = [
    ("conv", (2, 4, 9, 8), (6, 2, 3, 3), dict(strides=[2, 1], pad_type="same", groups=2)),
    ("conv", (3, 3, 7, 7), (4, 3, 3, 2), dict(pad_type="custom", pad=[1, 2, 0, 1], dilations=[2, 1])),
    ("conv", (2, 3, 11), (4, 3, 3), dict(strides=[2])),
    ("conv_transpose", (2, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2])),
    ("conv_transpose", (2, 4, 4, 5), (4, 1, 3, 2), dict(strides=[2, 3], groups=2, pad_type="custom", pad=[1, 0, 0, 1])),
    ("conv_transpose", (2, 4, 4, 5), (4, 1, 3, 3), dict(strides=[2, 2], pad_type="same")),
    ("linear", (2, 3, 5), (4, 5), {}),
]


def _types(t):
    return {o.type for o in topo_order([t])[0]}


@pytest.mark.parametrize("kind, xs, ws, kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_lowered_form_equals_the_op(kind, xs, ws, kw):
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal(xs), rng.standard_normal(ws)
    cout = ws[1] * kw.get("groups", 1) if kind == "conv_transpose" else ws[0]
    x, w = ak.input("x", xs, "fp32"), ak.param("w", wv, "fp32")
    bias = ak.param("bias", rng.standard_normal(cout), "fp32")
    y = getattr(ak, kind)(x, w, bias=bias, **kw)
    low = lower_runtime_weights({"y": y})["y"]
    assert kind not in _types(low) and "matmul" in _types(low)
    feeds = {"x": xv.astype(np.float32), "w": wv.astype(np.float32), "bias": bias.init}
    ref = ak.compile(ak.program({"y": y}), backend="sim", numerics="exact")(feeds)["y"]
    got = ak.compile(ak.program({"y": low}), backend="sim", numerics="exact")(feeds)["y"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_constant_weights_and_batch_one_convs_are_kept():
    x1, x4 = ak.input("x1", (1, 2, 5, 5)), ak.input("x4", (4, 2, 5, 5))
    w = ak.param("w", np.ones((3, 2, 3, 3)))
    kept = [ak.conv(x1, w), ak.conv(x4, np.ones((3, 2, 3, 3), np.float16))]
    assert lower_runtime_weights(kept) == kept


def test_check_reports_the_form_chosen_and_why():
    rng = np.random.default_rng(1)
    x = ak.input("x", (4, 1, 8, 8))
    w, f = ak.param("w", rng.standard_normal((3, 1, 3, 3))), ak.param("f", rng.standard_normal((10, 108)))
    logits = ak.linear(ak.reshape(ak.relu(ak.conv(x, w, name="c1")), shape=[4, -1]), f, name="fc")
    loss = ak.reduce_sum(logits * logits)
    outs = {"loss": loss, **dict(zip(("dw", "df"), ak.grad(loss, [w, f])))}

    before = ak.check(ak.program(outs), "m1")
    assert not before.ok
    # the refusal comes from conv's declared compile-time weight (guide ch. 19), naming the fix
    (refused,) = [fd for fd in before.findings if fd.rule == "dynamic-weight-conv" and fd.op == "c1"]
    assert refused.verdict == "unsupported" and "lower_runtime_weights" in refused.reason

    # lowered without a target, runtime matmuls (the lowered forms' and the backward graph's)
    # keep inner dimensions M1 returns as zeros; lowered for M1 they are zero-padded to 32s
    unpadded = ak.check(ak.program(lower_runtime_weights(outs)), "m1")
    assert {"c1__patch_matmul", "fc__weight_matmul"} <= {fd.op for fd in unpadded.findings
                                                          if fd.rule == "m1-runtime-matmul"}
    after = ak.check(ak.program(lower_runtime_weights(outs, "m1")), "m1")
    assert after.ok, [f for f in after.findings if f.verdict in ("unsupported", "over_limit")]
    forms = {fd.op: fd for fd in after.findings if fd.rule == "runtime-weight"}
    assert forms["c1__patch_matmul"].verdict == "decomposed" and "batch 4" in forms["c1__patch_matmul"].reason
    assert "fails to compile above batch one" in forms["c1__patch_matmul"].reason
    assert "weights as inputs" in forms["fc__weight_matmul"].reason


def test_check_notes_a_batch_one_dynamic_conv_as_kept():
    x = ak.input("x", (1, 2, 6, 6))
    y = ak.conv(x, ak.param("w", np.ones((2, 2, 3, 3))), name="dyn")
    rep = ak.check(ak.program({"y": y}), "m1")
    (f,) = [f for f in rep.findings if f.rule == "runtime-weight"]
    assert f.verdict == "native" and f.reason.startswith("kept")


def test_lowered_form_parses_names():
    assert lowered_form("c1__patch_matmul") == "patch_matmul"
    assert lowered_form("up__tap_matmul3") == "tap_matmul"
    assert lowered_form("plain_matmul") is None and lowered_form(None) is None and lowered_form("__weight_matmul") is None


def test_lowered_28x28_training_graph_passes_check_on_m1():
    """A digits-sized conv net at batch 32: every runtime-weight op lowered, no axis over the
    engine's limits (the weight gradient contracts positions per sample), and no loss-scaled
    width-offset slice (the padded conv_transpose crops on the height axis of a transpose)."""
    rng = np.random.default_rng(2)
    x, y = ak.input("x", (32, 1, 28, 28)), ak.input("y", (32, 10))
    w1, w2 = ak.param("w1", rng.standard_normal((8, 1, 3, 3))), ak.param("w2", rng.standard_normal((16, 8, 3, 3)))
    fc = ak.param("fc", rng.standard_normal((10, 16 * 7 * 7)) * 0.01)
    h = ak.max_pool(ak.relu(ak.conv(x, w1, pad_type="same")), kernel_sizes=[2, 2], strides=[2, 2])
    h = ak.avg_pool(ak.relu(ak.conv(h, w2, pad_type="same")), kernel_sizes=[2, 2], strides=[2, 2])
    logits = ak.linear(ak.reshape(h, shape=[32, -1]), fc)
    loss = -ak.reduce_mean(ak.reduce_sum(ak.log_softmax(logits, axis=1) * y, axes=[1]))
    grads = ak.grad(loss, [w1, w2, fc], seed=ak.input("loss_scale", loss.shape))
    prog = ak.program(lower_runtime_weights({"loss": loss, "g1": grads[0], "g2": grads[1], "gf": grads[2]}, "m1"))
    rep = ak.check(prog, "m1")
    assert rep.ok, [f for f in rep.findings if f.verdict in ("unsupported", "over_limit")][:3]
    # conv2's data gradient is lowered without a width-offset slice of the loss-scaled cotangent
    assert not [f for f in rep.findings if f.rule == "train-width-slice-saturation"]
    from anekit.ir.weights import is_weight
    assert not [o for o in prog.main.ops if o.type in ("conv", "conv_transpose", "linear")
                and not is_weight(o.inputs["weight"])]


def test_check_flags_runtime_weight_linear_and_conv_transpose_until_lowered():
    x = ak.input("x", (1, 2, 4, 4))
    w = ak.param("wt", np.ones((2, 3, 2, 2)))
    up = ak.conv_transpose(x, w, name="up")
    fc = ak.linear(ak.reshape(up, shape=[1, -1]), ak.param("wl", np.ones((4, 75))), name="fc")
    out = {"y": ak.relu(fc)}
    before = {f.op: f for f in ak.check(ak.program(out), "m1").findings if f.rule == "runtime-weight"}
    assert before["up"].verdict == before["fc"].verdict == "unsupported"
    assert "constant weight" in before["fc"].reason and "iOS 17" in before["up"].reason
    after = ak.check(ak.program(lower_runtime_weights(out, "m1")), "m1")
    names = sorted(f.op for f in after.findings if f.rule == "runtime-weight")
    assert names == ["fc__weight_matmul"] + [f"up__tap_matmul{t}" for t in range(4)] and after.ok
