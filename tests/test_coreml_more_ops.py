"""The ops of ir/ops/more.py (issue 15 audit): each simulator kernel against a float64 numpy
or PyTorch reference, and the ops the PyTorch converter emits for them run end to end
(torch module -> coremltools 9 -> ak.load -> simulator).

Tolerances: with numerics="exact" the kernels compute in float32 on fp32 inputs, so float
results match float64 to 1e-6 relative; movement and integer results are exact. Converted
models run fp16 weights and activations (M4 numerics): 2e-2 relative L2, as for the corpus.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import optional

import anekit as ak
from anekit.ir.declared import F as OPS   # the MIL quantize op (ak.quantize quantizes weights)
from anekit.errors import ShapeError

RTOL = 1e-6


def _run(outputs: dict, feeds: dict, numerics="exact"):
    with ak.compile(ak.program(outputs), backend="sim", target="m4", numerics=numerics) as exe:
        return exe(feeds)


def _scatter_ref(data, positions, updates, mode):
    out = data.astype(np.float64).copy()
    for pos, u in zip(positions, updates):
        if mode == "update":
            out[pos] = u
        elif mode == "add":
            out[pos] += u
        elif mode == "sub":
            out[pos] -= u
        elif mode == "mul":
            out[pos] *= u
        elif mode == "div":
            out[pos] /= u
        elif mode == "max":
            out[pos] = max(out[pos], u)
        else:
            out[pos] = min(out[pos], u)
    return out


@pytest.mark.parametrize("mode", ["update", "add", "sub", "mul", "div", "max", "min"])
def test_scatter_family_against_a_float64_loop(mode):
    rng = np.random.default_rng(1)
    data = rng.uniform(1, 2, (3, 5)).astype(np.float32)
    x = ak.input("d", (3, 5), "fp32")
    # scatter along axis 1 at columns [4, 1, 4] (a repeated index accumulates; update keeps the last)
    idx = np.array([4, 1, 4] if mode != "update" else [4, 1, 0], np.int32)
    upd = rng.uniform(1, 2, (3, 3)).astype(np.float32)
    ai = np.array([[0, 2, 2, 1, 0]], np.int32)
    upd_a = rng.uniform(1, 2, (1, 5)).astype(np.float32)
    nd = np.array([[0, 1], [2, 3], [0, 1]] if mode != "update" else [[0, 1], [2, 3], [1, 1]], np.int32)
    upd_n = rng.uniform(1, 2, (3,)).astype(np.float32)
    out = _run({"s": ak.scatter(x, idx, upd, axis=1, mode=mode),
                "a": ak.scatter_along_axis(x, ai, upd_a, axis=0, mode=mode),
                "n": ak.scatter_nd(x, nd, upd_n, mode=mode)}, {"d": data})
    flat = [((r, c), upd[r, k]) for k, c in enumerate(idx) for r in range(3)]
    flat.sort(key=lambda e: list(idx).index(e[0][1]))          # apply in index order
    want_s = _scatter_ref(data, [p for p, _ in flat], [u for _, u in flat], mode)
    want_a = _scatter_ref(data, [(ai[0, c], c) for c in range(5)], upd_a[0], mode)
    want_n = _scatter_ref(data, [tuple(r) for r in nd], upd_n, mode)
    for name, want in (("s", want_s), ("a", want_a), ("n", want_n)):
        np.testing.assert_allclose(out[name], want, rtol=RTOL, err_msg=name)


def test_scatter_index_out_of_range_names_the_op():
    x = ak.input("d", (3, 5), "fp32")
    i = ak.input("i", (2,), "int32")
    with pytest.raises(ShapeError, match=r"scatter .*index 7 is out of range for axis 1 of size 5"):
        _run({"y": ak.scatter(x, i, np.ones((3, 2), np.float32), axis=1)},
             {"d": np.zeros((3, 5), np.float32), "i": np.array([0, 7], np.int32)})



@pytest.mark.parametrize("axis,index", [(0, 2), (0, -1), (1, 0), (1, -4)])
def test_scatter_of_one_index_against_numpy(axis, index):
    """One index (a converted GRU's per-step scatter-add of h): taken as it is when in range
    (no moveaxis on axis 0), wrapped when negative, refused when out of range."""
    rng = np.random.default_rng(2)
    data = rng.uniform(1, 2, (3, 4)).astype(np.float32)
    upd = rng.uniform(1, 2, (1, 4) if axis == 0 else (3, 1)).astype(np.float32)
    x, i = ak.input("d", (3, 4), "fp32"), ak.input("i", (1,), "int32")
    out = _run({"u": ak.scatter(x, i, upd, axis=axis), "a": ak.scatter(x, i, upd, axis=axis, mode="add")},
               {"d": data, "i": np.array([index], np.int32)})
    want_u, want_a = data.astype(np.float64), data.astype(np.float64)
    sel = (index % 3, slice(None)) if axis == 0 else (slice(None), index % 4)
    want_u[sel] = upd.reshape(-1)
    want_a[sel] += upd.reshape(-1)
    np.testing.assert_array_equal(out["u"], want_u.astype(np.float32))
    np.testing.assert_allclose(out["a"], want_a, rtol=RTOL)
    with pytest.raises(ShapeError, match=rf"index {3 if axis == 0 else 4} is out of range for axis {axis}"):
        _run({"u": ak.scatter(x, i, upd, axis=axis)}, {"d": data, "i": np.array([3 if axis == 0 else 4], np.int32)})

def test_construction_ops_against_numpy():
    x = ak.input("x", (2, 3, 4), "fp32")
    idx = ak.input("i", (2, 3), "int32")
    m = ak.input("m", (4, 6), "fp32")
    out = _run({"fill": ak.fill(shape=[2, 3], value=np.float32(2.5)), "shape": ak.shape(x),
                "range": ak.range_1d(end=np.float32(2.0), start=np.float32(-1.0), step=np.float32(0.75)),
                "onehot": ak.one_hot(idx, one_hot_vector_size=5, axis=1),
                "tril": ak.band_part(m, lower=-1, upper=0), "band": ak.band_part(m, lower=1, upper=2),
                "triu": ak.band_part(m, lower=0, upper=-1)},
               {"x": np.zeros((2, 3, 4), np.float32), "i": np.array([[0, 4, 2], [1, 1, 3]], np.int32),
                "m": np.arange(24, dtype=np.float32).reshape(4, 6)})
    mm = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert out["fill"].tolist() == np.full((2, 3), 2.5).tolist() and out["shape"].tolist() == [2, 3, 4]
    np.testing.assert_array_equal(out["range"], np.arange(-1.0, 2.0, 0.75))
    np.testing.assert_array_equal(out["onehot"], np.moveaxis(np.eye(5, dtype=np.int32)[[[0, 4, 2], [1, 1, 3]]], -1, 1))
    np.testing.assert_array_equal(out["tril"], np.tril(mm))
    np.testing.assert_array_equal(out["triu"], np.triu(mm))
    np.testing.assert_array_equal(out["band"], np.triu(np.tril(mm, 2), -1))


def test_argsort_is_stable_both_ways():
    v = np.array([[3, 1, 3, 2, 1, 3]], np.float32)
    x = ak.input("x", v.shape, "fp32")
    out = _run({"up": ak.argsort(x, ascending=True), "down": ak.argsort(x)}, {"x": v})
    np.testing.assert_array_equal(out["up"], np.argsort(v, kind="stable"))
    np.testing.assert_array_equal(out["down"], [[0, 2, 5, 3, 1, 4]])   # ties keep their order


def test_activations_and_math_against_float64():
    rng = np.random.default_rng(2)
    v = rng.uniform(-3, 3, (2, 4, 3, 5)).astype(np.float32)
    u = rng.uniform(-0.95, 0.95, v.shape).astype(np.float32)
    alpha, beta = rng.uniform(0.1, 2, 4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    x, y = ak.input("x", v.shape, "fp32"), ak.input("u", v.shape, "fp32")
    out = _run({"prelu": ak.prelu(x, alpha=alpha), "spp": ak.softplus_parametric(x, alpha=alpha, beta=beta),
                "thr": ak.threshold(x, alpha=0.5), "sinh": ak.sinh(x), "cosh": ak.cosh(x), "asinh": ak.asinh(x),
                "acosh": ak.acosh(ak.abs(x) + 1.0), "asin": ak.asin(y), "acos": ak.acos(y), "atanh": ak.atanh(y)},
               {"x": v, "u": u})
    d, e = v.astype(np.float64), u.astype(np.float64)
    a4, b4 = alpha.reshape(1, 4, 1, 1).astype(np.float64), beta.reshape(1, 4, 1, 1).astype(np.float64)
    want = {"prelu": np.where(d >= 0, d, a4 * d), "spp": a4 * np.log1p(np.exp(b4 * d)), "thr": np.maximum(d, 0.5),
            "sinh": np.sinh(d), "cosh": np.cosh(d), "asinh": np.arcsinh(d),
            "acosh": np.arccosh(np.abs(d) + 1.0), "asin": np.arcsin(e), "acos": np.arccos(e), "atanh": np.arctanh(e)}
    for name, w in want.items():
        np.testing.assert_allclose(out[name], w, rtol=2e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("equation, xs, ys", [("nchw,nwhu->nchu", (2, 3, 4, 5), (1, 5, 4, 6)),
                                              ("chw,whu->chu", (3, 1, 5), (5, 4, 2))])
def test_einsum_against_float64(equation, xs, ys):
    rng = np.random.default_rng(3)
    xv, yv = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ys).astype(np.float32)
    x, y = ak.input("x", xs, "fp32"), ak.input("y", ys, "fp32")
    got = _run({"o": ak.einsum((x, y), equation=equation)}, {"x": xv, "y": yv})["o"]
    # out[..., c, h, u] = sum_w x[..., c, h, w] y[..., w, h, u], batch and h broadcast
    xb, yb = xv.astype(np.float64), yv.astype(np.float64)
    h = max(xs[-2], ys[-2])
    xb = np.broadcast_to(xb, xs[:-2] + (h, xs[-1])) if len(xs) == 3 else xb
    want = np.einsum("...chw,...whu->...chu", np.broadcast_to(xb, np.broadcast_shapes(xb.shape, xs[:-2] + (h,) + xs[-1:])),
                     np.broadcast_to(yb, np.broadcast_shapes(yb.shape, ys[:-2] + (h,) + ys[-1:])))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match="MIL einsum takes"):
        ak.einsum((x, y), equation="nchw,nuhw->nchu" if len(xs) == 4 else "chw,hwu->chu")


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [True, False])
def test_resample_and_affine_against_torch_grid_sample(mode, padding, align_corners):
    torch = optional("torch")
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    grid = rng.uniform(-1.4, 1.4, (2, 4, 6, 2)).astype(np.float32)      # some samples fall outside
    theta = rng.uniform(-1, 1, (2, 2, 3)).astype(np.float32)
    tx = torch.tensor(xv).double()
    f = torch.nn.functional
    want = f.grid_sample(tx, torch.tensor(grid).double(), mode=mode, padding_mode=padding,
                         align_corners=align_corners).numpy()
    # the converter's mapping: zeros -> constant, reflection without align_corners -> symmetric
    pad = {"zeros": "constant", "border": "border", "reflection": "reflection" if align_corners else "symmetric"}[padding]
    x, c, t = ak.input("x", xv.shape, "fp32"), ak.input("c", grid.shape, "fp32"), ak.input("t", (2, 6), "fp32")
    common = dict(sampling_mode=mode, padding_mode=pad, padding_value=np.float32(0.0),
                  coordinates_mode="normalized_minus_one_to_one", align_corners=align_corners)
    outs = {"r": ak.resample(x, c, **common), "a": ak.affine(x, t, output_height=4, output_width=6, **common)}
    got = _run(outs, {"x": xv, "c": grid, "t": theta.reshape(2, 6)})
    np.testing.assert_allclose(got["r"], want, rtol=1e-6, atol=1e-6)
    affine_grid = f.affine_grid(torch.tensor(theta).double(), (2, 3, 4, 6), align_corners=align_corners)
    want_a = f.grid_sample(tx, affine_grid, mode=mode, padding_mode=padding, align_corners=align_corners).numpy()
    np.testing.assert_allclose(got["a"], want_a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("vector", [1, 2])
def test_joint_compression_ops_match_their_dense_forms(vector):
    """constexpr_lut_to_sparse / constexpr_sparse_blockwise_shift_scale followed by
    constexpr_sparse_to_dense equal the dense op on the densified data, masked (float64)."""
    from anekit.ir.builder import make_const
    rng = np.random.default_rng(vector)
    mask = rng.random((4, 6)) < 0.5
    nnz = int(mask.sum())
    q = rng.integers(-8, 8, nnz).astype(np.int8)
    scale = rng.uniform(0.1, 1, (4, 2)).astype(np.float32)
    idx = rng.integers(0, 4, nnz).astype(np.uint8)
    lut = rng.standard_normal((2, 1, 4, vector)).astype(np.float32)
    m, v = ak.constexpr_sparse_blockwise_shift_scale(make_const(mask.astype(np.uint8), "uint1"), make_const(q, "int4"), scale)
    m2, v2 = ak.constexpr_lut_to_sparse(make_const(mask.astype(np.uint8), "uint1"), make_const(idx, "uint2"), lut,
                                        vector_axis=1 if vector > 1 else None)
    dense_idx = np.zeros((4, 6), np.uint8)
    dense_idx[mask] = idx
    ref2 = ak.constexpr_lut_to_dense(make_const(dense_idx, "uint2"), lut, vector_axis=1 if vector > 1 else None)
    x = ak.input("x", (1,), "fp32")
    out = _run({"w": x * ak.constexpr_sparse_to_dense(v, m), "w2": x * ak.constexpr_sparse_to_dense(v2, m2),
                "ref2": x * ref2, "m2": ak.cast(x * ak.constexpr_sparse_to_dense(v2 * 0.0 + 1.0, m2), "fp32")},
               {"x": np.ones(1, np.float32)})
    dense_q = np.zeros((4, 6))
    dense_q[mask] = q
    np.testing.assert_allclose(out["w"], dense_q * np.repeat(scale.astype(np.float64), 3, axis=1), rtol=1e-6)
    wide = np.repeat(mask, vector, axis=1)                      # the mask widened along vector_axis
    np.testing.assert_array_equal(out["m2"], wide.astype(np.float32))
    np.testing.assert_array_equal(out["w2"], np.where(wide, out["ref2"], 0.0))


def test_older_activations_log_sum_and_flatten2d_against_float64():
    rng = np.random.default_rng(6)
    v = rng.uniform(-4, 4, (2, 3, 4)).astype(np.float32)
    x = ak.input("x", v.shape, "fp32")
    out = _run({"cr": ak.clamped_relu(x, alpha=0.25, beta=2.0), "st": ak.scaled_tanh(x, alpha=1.5, beta=0.5),
                "ls": ak.reduce_log_sum(ak.abs(x), axes=[0, 2]), "f": ak.flatten2d(x, axis=2)}, {"x": v})
    d = v.astype(np.float64)
    np.testing.assert_allclose(out["cr"], np.minimum(np.where(d >= 0, d, 0.25 * d), 2.0), rtol=RTOL)
    np.testing.assert_allclose(out["st"], 1.5 * np.tanh(0.5 * d), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(out["ls"], np.log(np.abs(d).sum(axis=(0, 2))), rtol=2e-6)
    np.testing.assert_array_equal(out["f"], v.reshape(6, 4))


def test_pixel_unshuffle_inverts_pixel_shuffle():
    v = np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 3, 4, 6)
    x = ak.input("x", v.shape, "fp32")
    down = ak.pixel_unshuffle(x, downscale_factor=2)
    out = _run({"d": down, "back": ak.pixel_shuffle(down, upscale_factor=2)}, {"x": v})
    np.testing.assert_array_equal(out["back"], v)
    # space to depth, channel c*4 + i*2 + j holds x[c, 2h + i, 2w + j] (PyTorch's order)
    np.testing.assert_array_equal(out["d"][0, 1 * 4 + 1 * 2 + 0], v[0, 1, 1::2, 0::2])


def test_quantize_dequantize_against_float64():
    v = np.array([[0.26, -20.0, 1.0, 3.3], [0.07, 0.13, -0.27, 7.0]], np.float32)   # no ties at .5
    x = ak.input("x", v.shape, "fp32")
    q = OPS.quantize(x, scale=np.float32(0.1), zero_point=np.int8(3), output_dtype="int8")
    qu = OPS.quantize(x, scale=np.array([0.1, 0.2, 0.3, 0.01], np.float32), zero_point=np.array([0, 9, 128, 255], np.uint8),
                     axis=1, output_dtype="uint8")
    out = _run({"q": q, "qu": qu, "d": ak.dequantize(q, scale=np.float32(0.1), zero_point=np.int8(3))}, {"x": v})
    want_q = np.clip(np.round(v.astype(np.float64) / 0.1) + 3, -128, 127)
    sc, zp = np.array([0.1, 0.2, 0.3, 0.01]), np.array([0, 9, 128, 255])
    np.testing.assert_array_equal(out["q"], want_q)
    np.testing.assert_array_equal(out["qu"], np.clip(np.round(v / sc.astype(np.float32)) + zp, 0, 255))
    np.testing.assert_allclose(out["d"], (want_q - 3) * 0.1, rtol=RTOL)


@pytest.mark.torch
def test_rnn_kernel_against_torch():
    torch = optional("torch")
    torch.manual_seed(0)
    cell = torch.nn.RNN(4, 3, nonlinearity="tanh")
    v = torch.randn(5, 2, 4)
    w_ih, w_hh = cell.weight_ih_l0.detach().numpy(), cell.weight_hh_l0.detach().numpy()
    bias = (cell.bias_ih_l0 + cell.bias_hh_l0).detach().numpy()
    x = ak.input("x", (5, 2, 4), "fp32")
    y, h = ak.rnn(x, np.zeros((2, 3), np.float32), w_ih, w_hh, bias=bias, output_sequence=True)
    out = _run({"y": y, "h": h}, {"x": v.numpy()})
    with torch.no_grad():
        ry, rh = cell(v)
    np.testing.assert_allclose(out["y"], ry.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["h"], rh[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.coremltools
def test_converted_module_using_the_new_ops_matches_pytorch(tmp_path):
    """scatter_ / index_put / tril / argsort / one_hot / arange / PReLU / pixel_unshuffle /
    hyperbolic math / nn.RNN, converted by coremltools 9 and run on the simulator."""
    torch = optional("torch")
    import coremltools as ct
    torch.manual_seed(4)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.prelu = torch.nn.PReLU(4)
            with torch.no_grad():
                self.prelu.weight.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))     # per channel: not a leaky_relu
            self.rnn = torch.nn.RNN(8, 6, batch_first=True)

        def forward(self, x, idx):
            a = self.prelu(x)                                                      # [1, 4, 4, 4]
            b = torch.nn.functional.pixel_unshuffle(a, 2)                          # [1, 16, 2, 2]
            c = torch.tril(b.reshape(1, 16, 4)[:, :4, :]) + torch.sinh(x[:, 0, 0, :]).unsqueeze(1)
            s = torch.zeros(1, 4, 4).scatter_add(2, idx, c)
            order = torch.argsort(x[0, 0, 0, :], descending=True).to(torch.int32)
            onehot = torch.nn.functional.one_hot(idx[0, 0].long(), 4).to(torch.float32)
            ar = torch.arange(4, dtype=torch.float32)
            r, _ = self.rnn(torch.cat([s, onehot.unsqueeze(0)], 1).reshape(1, 4, 8))  # [1, 4, 6]
            return s * ar, order, r

    net = Net().eval()
    x = torch.randn(1, 4, 4, 4)
    idx = torch.tensor([[[3, 0, 1, 1], [2, 2, 0, 3], [1, 3, 3, 0], [0, 1, 2, 2]]])
    ml = ct.convert(torch.jit.trace(net, (x, idx)), inputs=[ct.TensorType("x", shape=x.shape),
                                                             ct.TensorType("idx", shape=idx.shape, dtype=np.int32)],
                    outputs=[ct.TensorType(n) for n in ("s", "order", "r")], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS18, compute_precision=ct.precision.FLOAT16)
    ml.save(str(tmp_path / "more.mlpackage"))
    prog = ak.load(tmp_path / "more.mlpackage")
    types = {op.type for op in prog.main.ops}
    assert {"scatter_along_axis", "band_part", "argsort", "prelu", "pixel_unshuffle", "sinh", "rnn"} <= types, types
    with ak.compile(prog, backend="sim", target="m4") as exe:
        got = exe({"x": x.numpy(), "idx": idx.numpy().astype(np.int32)})
    with torch.no_grad():
        s, order, r = net(x, idx)
    for name, ref in (("s", s), ("r", r)):
        ref = ref.double().numpy()
        assert np.linalg.norm(got[name] - ref) / np.linalg.norm(ref) < 2e-2, name
    np.testing.assert_array_equal(got["order"], order.numpy())


@pytest.mark.torch
@pytest.mark.coremltools
def test_converted_grid_sample_and_affine_grid_match_pytorch(tmp_path):
    """F.grid_sample converts to resample (reflection without align_corners -> symmetric) and
    F.affine_grid + F.grid_sample to affine; fp32 compute, so 1e-5 absolute."""
    torch = optional("torch")
    import coremltools as ct
    f = torch.nn.functional

    class Net(torch.nn.Module):
        def forward(self, x, g, th):
            a = f.grid_sample(x, g, mode="bilinear", padding_mode="reflection", align_corners=False)
            b = f.grid_sample(x, f.affine_grid(th, (2, 3, 4, 6), align_corners=True), align_corners=True)
            return a, b
    torch.manual_seed(0)
    x, g, th = torch.randn(2, 3, 5, 7), torch.rand(2, 4, 6, 2) * 2.4 - 1.2, torch.randn(2, 2, 3) * 0.5
    ml = ct.convert(torch.jit.trace(Net().eval(), (x, g, th)),
                    inputs=[ct.TensorType(n, shape=t.shape) for n, t in (("x", x), ("g", g), ("th", th))],
                    outputs=[ct.TensorType("a"), ct.TensorType("b")], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS18, compute_precision=ct.precision.FLOAT32)
    ml.save(str(tmp_path / "gs.mlpackage"))
    prog = ak.load(tmp_path / "gs.mlpackage")
    assert {"resample", "affine"} <= {op.type for op in prog.main.ops}
    with ak.compile(prog, backend="sim", target="m4", numerics="exact") as exe:
        got = exe({"x": x.numpy(), "g": g.numpy(), "th": th.numpy()})
    with torch.no_grad():
        a, b = Net()(x, g, th)
    np.testing.assert_allclose(got["a"], a.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["b"], b.numpy(), atol=1e-5)
