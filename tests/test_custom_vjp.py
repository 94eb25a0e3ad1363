"""Composites' own VJPs (ir/custom_vjp.py): the reverse walk uses the rule instead of the ops
inside, and rms_norm's normalized rule keeps an fp16 backward finite where rsqrt' overflows."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.errors import GradientError
from anekit.ir.custom_vjp import custom_vjp


def _run(outs, feeds, target="m1", numerics="exact"):
    return ak.compile(ak.program(outs), backend="sim", target=target, numerics=numerics)(feeds)


def test_the_walk_takes_the_marked_rule_not_the_ops_inside():
    """y = x^2 marked with the rule g -> 3x g: the gradient is 3x, not 2x."""
    x = ak.input("x", (3,), "fp32")
    y = custom_vjp(x * x, {"x": x}, lambda g: {"x": g * x * 3.0}, "triple")
    (gx,) = ak.grad(ak.reduce_sum(y), [x])
    out = _run({"gx": gx}, {"x": np.array([1.0, 2.0, -5.0], np.float32)})["gx"]
    np.testing.assert_array_equal(out, [3.0, 6.0, -15.0])


def test_an_inner_tensor_used_elsewhere_keeps_its_own_cotangent():
    """inner = 2x also feeds the loss directly: that use still flows (d/dx = 2), the marked
    output contributes through its rule (g -> g x): total 2 + x per element."""
    x = ak.input("x", (4,), "fp32")
    inner = x * 2.0
    y = custom_vjp(inner * inner, {"x": x}, lambda g: {"x": g * x}, "plain")
    (gx,) = ak.grad(ak.reduce_sum(y) + ak.reduce_sum(inner), [x])
    out = _run({"gx": gx}, {"x": np.arange(4, dtype=np.float32)})["gx"]
    np.testing.assert_array_equal(out, [2.0, 3.0, 4.0, 5.0])


def test_a_rule_that_omits_an_input_is_an_error():
    x = ak.input("x", (3,), "fp32")
    w = ak.input("w", (3,), "fp32")
    y = custom_vjp(x * w, {"x": x, "w": w}, lambda g: {"x": g * w}, "half")
    with pytest.raises(GradientError, match="custom VJP of 'half' gives nothing for its input 'w'"):
        ak.grad(ak.reduce_sum(y), [w])


def test_custom_vjp_rejects_a_graph_input_as_output():
    x = ak.input("x", (3,), "fp32")
    with pytest.raises(GradientError, match="computed by an op"):
        custom_vjp(x, {"x": x}, lambda g: {"x": g})


def test_rms_norm_backward_in_fp16_at_a_small_residual_stream():
    """x of rms 0.03 (a Stories residual stream at init), loss scale 256, the M4 profile (fp16
    storage): the walk through rsqrt put -ms^-1.5/2 ~ -2e4 times 256 times the cotangent into
    fp16 (inf); the normalized rule stays finite and matches PyTorch float64 on the same fp16
    inputs to cosine >= 0.9999 and relative error <= 1e-2 (fp16 storage of a 64-term mean)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    dim, seq, scale = 64, 16, 256.0
    xv = (rng.standard_normal((1, dim, 1, seq)) * 0.03).astype(np.float16)
    wv = (1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float16)
    rv = rng.standard_normal((1, dim, 1, seq)).astype(np.float16)
    x, w = ak.input("x", xv.shape, "fp16"), ak.input("w", wv.shape, "fp16")
    loss = ak.reduce_sum(ak.rms_norm(x, axes=[1], gamma=w) * rv)
    gx, gw = ak.grad(loss, [x, w], seed=scale)
    got = _run({"gx": gx, "gw": gw}, {"x": xv, "w": wv}, "m4", "profile")

    tx = torch.tensor(xv, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(wv, dtype=torch.float64, requires_grad=True)
    y = tx * (tx.pow(2).mean(1, keepdim=True) + 1e-5).rsqrt() * tw[:, None, None]
    ((y * torch.tensor(rv, dtype=torch.float64)).sum() * scale).backward()
    for name, ref in (("gx", tx.grad.numpy()), ("gw", tw.grad.numpy())):
        g = np.asarray(got[name], np.float64)
        assert np.isfinite(g).all(), f"{name}: inf/NaN in the fp16 backward"
        cos = g.ravel() @ ref.ravel() / (np.linalg.norm(g) * np.linalg.norm(ref))
        rel = np.linalg.norm(g - ref) / np.linalg.norm(ref)
        assert cos >= 0.9999 and rel <= 1e-2, f"{name}: cosine {cos:.6f}, relative error {rel:.2e}"
