"""Ops added for coremltools' converter output (anekit.ir.ops.extra, anekit.sim.kernels_extra).

Each kernel is checked against PyTorch's implementation of the layer the converter lowers to
that op (an independent reference), under exact numerics with a float32 tolerance, and under
an M4 profile with the fp16 tolerance of the corpus. Shape rules are checked for the shapes
and the errors they promise.
"""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.errors import AnekitError, ShapeError

torch = pytest.importorskip("torch", reason="the references are PyTorch's layers")
F = torch.nn.functional

# Inputs hold fp16-representable values but are declared fp32, so exact numerics compute and
# return float32 (fp16 I/O would round the result) and chip numerics store fp16 as always.
EXACT_TOL = 1e-5      # float32 compute of the same formula
FP16_TOL = 4e-3       # relative to max |ref|: a few fp16 ulps at unit scale


def run(prog, feeds, numerics="exact"):
    exe = ak.compile(prog, backend="sim", target="m4", numerics=numerics)
    return exe(feeds)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float16).astype(np.float32)


def fin(name, shape):
    return ak.input(name, shape, dtype="fp32")


def assert_matches(got, ref, tol):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(got - ref).max())
    assert err <= tol * scale, f"max error {err} > {tol} x {scale}"


@pytest.mark.parametrize("numerics,tol", [("exact", EXACT_TOL), ("profile", FP16_TOL)])
def test_thresholded_relu(numerics, tol):
    x = rand((2, 3, 5))
    xi = fin("x", x.shape)
    out = run(ak.program({"y": ak.thresholded_relu(xi, alpha=0.25)}), {"x": x}, numerics)["y"]
    ref = F.threshold(torch.from_numpy(x.astype(np.float32)), 0.25, 0.0).numpy()
    # torch.threshold keeps x > 0.25; MIL keeps x >= alpha: they differ only at x == 0.25
    assert not np.any(x == np.float16(0.25))
    assert_matches(out, ref, tol)


@pytest.mark.parametrize("numerics,tol", [("exact", EXACT_TOL), ("profile", FP16_TOL)])
# sizes whose scale factors are exact binary fractions (the op takes factors, and
# floor(size * factor) must give the size)
@pytest.mark.parametrize("size,align", [((8, 10), False), ((8, 10), True), ((7, 6), True), ((10, 20), False),
                                        ((6, 12), True)])
def test_upsample_bilinear_matches_torch_interpolate(numerics, tol, size, align):
    x = rand((1, 2, 4, 8), seed=1)
    sh, sw = size[0] / 4, size[1] / 8
    xi = fin("x", x.shape)
    y = ak.upsample_bilinear(xi, scale_factor_height=sh, scale_factor_width=sw, align_corners=align)
    assert y.shape == (1, 2) + size
    out = run(ak.program({"y": y}), {"x": x}, numerics)["y"]
    ref = F.interpolate(torch.from_numpy(x.astype(np.float32)), size=size, mode="bilinear",
                        align_corners=align).numpy()
    assert_matches(out, ref, tol)


def test_crop_matches_slicing():
    x = rand((1, 3, 6, 7))
    xi = ak.input("x", x.shape)
    y = ak.crop(xi, crop_height=[1, 2], crop_width=[0, 3])
    assert y.shape == (1, 3, 3, 4)
    out = run(ak.program({"y": y}), {"x": x}, "profile")["y"]
    np.testing.assert_array_equal(out, x[:, :, 1:4, 0:4])


def test_crop_that_leaves_nothing_is_a_shape_error():
    with pytest.raises(ShapeError, match="crop_height"):
        ak.crop(ak.input("x", (1, 1, 4, 4)), crop_height=[2, 2], crop_width=[0, 0])


def test_pixel_shuffle_matches_torch():
    x = rand((2, 12, 3, 4))
    xi = ak.input("x", x.shape)
    y = ak.pixel_shuffle(xi, upscale_factor=2)
    assert y.shape == (2, 3, 6, 8)
    out = run(ak.program({"y": y}), {"x": x}, "profile")["y"]
    np.testing.assert_array_equal(out, F.pixel_shuffle(torch.from_numpy(x.astype(np.float32)), 2).numpy())


def test_pixel_shuffle_needs_divisible_channels():
    with pytest.raises(ShapeError, match="must divide"):
        ak.pixel_shuffle(ak.input("x", (1, 6, 2, 2)), upscale_factor=2)


@pytest.mark.parametrize("axes", [None, [0], [-1, 1]])
def test_reverse_matches_torch_flip(axes):
    x = rand((2, 3, 4))
    xi = ak.input("x", x.shape)
    out = run(ak.program({"y": ak.reverse(xi, axes=axes)}), {"x": x}, "profile")["y"]
    dims = list(range(3)) if axes is None else axes
    np.testing.assert_array_equal(out, torch.flip(torch.from_numpy(x.astype(np.float32)), dims).numpy())


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum_matches_torch(exclusive, reverse):
    x = rand((3, 9), seed=2)
    xi = fin("x", x.shape)
    out = run(ak.program({"y": ak.cumsum(xi, axis=1, exclusive=exclusive, reverse=reverse)}), {"x": x})["y"]
    t = torch.from_numpy(x.astype(np.float64))
    if reverse:
        t = torch.flip(t, [1])
    ref = torch.cumsum(t, 1)
    if exclusive:
        ref = ref - t
    if reverse:
        ref = torch.flip(ref, [1])
    assert_matches(out, ref.numpy(), EXACT_TOL)


def test_cumsum_int32():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    xi = ak.input("x", x.shape, dtype="int32")
    out = run(ak.program({"y": ak.cumsum(xi, axis=0)}), {"x": x}, "profile")["y"]
    np.testing.assert_array_equal(out, np.cumsum(x, 0))


def test_gather_along_axis_matches_torch_gather():
    x = rand((3, 5))
    idx = np.array([[4, 0], [1, -1], [2, 2]], dtype=np.int32)
    xi, ii = ak.input("x", x.shape), ak.input("i", idx.shape, dtype="int32")
    out = run(ak.program({"y": ak.gather_along_axis(xi, ii, axis=1)}), {"x": x, "i": idx}, "profile")["y"]
    ref = torch.gather(torch.from_numpy(x.astype(np.float32)), 1, torch.from_numpy(idx % 5).long())
    np.testing.assert_array_equal(out, ref.numpy())


def test_gather_along_axis_index_out_of_range_names_the_op():
    xi, ii = ak.input("x", (2, 3)), ak.input("i", (2, 1), dtype="int32")
    prog = ak.program({"y": ak.gather_along_axis(xi, ii, axis=1)})
    with pytest.raises(AnekitError, match=r"gather_along_axis .*\[-3, 3\)"):
        run(prog, {"x": np.zeros((2, 3), np.float16), "i": np.array([[0], [3]], np.int32)})


@pytest.mark.parametrize("ascending", [False, True])
def test_topk_matches_torch(ascending):
    x = np.random.default_rng(3).permutation(40).reshape(4, 10).astype(np.float16)   # no ties
    xi = ak.input("x", x.shape)
    values, indices = ak.topk(xi, k=3, axis=-1, ascending=ascending)
    out = run(ak.program({"v": values, "i": indices}), {"x": x}, "profile")
    ref_v, ref_i = torch.topk(torch.from_numpy(x.astype(np.float32)), 3, dim=-1, largest=not ascending)
    np.testing.assert_array_equal(out["v"], ref_v.numpy())
    np.testing.assert_array_equal(out["i"], ref_i.numpy())
    assert out["i"].dtype == np.int32


def test_topk_k_larger_than_axis_is_a_shape_error():
    with pytest.raises(ShapeError, match="'k'"):
        ak.topk(ak.input("x", (2, 3)), k=4)


def test_state_ops_write_then_read_within_a_call():
    s = ak.input("s", (1, 4))
    x = ak.input("x", (1, 4))
    updated = ak.coreml_update_state(s, ak.add(ak.read_state(s), x))   # s += x, returns new s
    prog = ak.program({"y": ak.mul(updated, 2.0)})
    prog.main.states = ("s",)          # how a function marks its state inputs
    state0 = np.array([[1, 2, 3, 4]], np.float16)
    xv = np.array([[0.5, 0.5, 1, -1]], np.float16)
    out = run(prog, {"s": state0, "x": xv}, "profile")["y"]
    np.testing.assert_array_equal(out, (state0 + xv) * 2)
    np.testing.assert_array_equal(state0, [[1, 2, 3, 4]])        # the caller's array is untouched


def test_write_state_shape_must_match():
    s, x = ak.input("s", (1, 4)), ak.input("x", (1, 3))
    with pytest.raises(ShapeError, match="state's"):
        ak.write_state(s, x)
