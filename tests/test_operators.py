"""Graph tensors read as the math: operators with numpy broadcasting, numpy-style indexing,
clear errors naming the op. Values are checked by simulating in exact mode against numpy."""
import numpy as np
import pytest

import anekit as ak
from anekit.errors import DTypeError, ShapeError
from anekit.sim import Simulator


def run(outputs: dict, feeds: dict) -> dict:
    return Simulator(ak.program(outputs), profile="exact").run(feeds)


def test_arithmetic_operators_broadcast_like_numpy(rng):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (3, 1)).astype(np.float32)
    x, y = ak.input("x", a.shape, dtype="fp32"), ak.input("y", b.shape, dtype="fp32")
    outs = {"add": x + y, "radd": 1.5 + x, "sub": x - y, "rsub": 2.0 - x, "mul": x * y, "div": x / y,
            "rdiv": 1.0 / y, "pow": y ** 2.0, "neg": -x, "abs": abs(x), "poly": x * x * y - 3.0 * x / y}
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    refs = {"add": a64 + b64, "radd": 1.5 + a64, "sub": a64 - b64, "rsub": 2.0 - a64, "mul": a64 * b64,
            "div": a64 / b64, "rdiv": 1.0 / b64, "pow": b64 ** 2, "neg": -a64, "abs": np.abs(a64),
            "poly": a64 * a64 * b64 - 3.0 * a64 / b64}
    got = run(outs, {"x": a, "y": b})
    for k, ref in refs.items():
        assert got[k].shape == ref.shape, k
        np.testing.assert_allclose(got[k], ref, rtol=1e-5, atol=1e-6, err_msg=k)


def test_matmul_and_comparisons(rng):
    a = rng.standard_normal((2, 5, 8)).astype(np.float32)
    w = rng.standard_normal((8, 3)).astype(np.float32)
    x = ak.input("x", a.shape, dtype="fp32")
    got = run({"mm": x @ w, "gt": x > 0.5, "le": x <= 0.0, "lt": 0.25 < x}, {"x": a})
    np.testing.assert_allclose(got["mm"], a.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
    assert got["gt"].dtype == np.bool_ and (got["gt"] == (a > 0.5)).all()
    assert (got["le"] == (a <= 0)).all() and (got["lt"] == (a > 0.25)).all()


def test_numpy_arrays_on_the_left_build_graph_ops(rng):
    a = rng.standard_normal((2, 4)).astype(np.float32)
    w = rng.standard_normal((4,)).astype(np.float32)
    x = ak.input("x", a.shape, dtype="fp32")
    y = w * x + w
    assert y.op.type == "add" and y.shape == (2, 4)
    np.testing.assert_allclose(run({"y": y}, {"x": a})["y"], w * a + w, rtol=1e-6)


def test_unary_minus_keeps_int32():
    i = ak.input("i", (4,), dtype="int32")
    n = -i
    assert n.dtype == "int32"
    assert run({"n": n}, {"i": np.array([1, -2, 0, 7], np.int32)})["n"].tolist() == [-1, 2, 0, -7]


def test_mismatched_shapes_name_the_op():
    x, y = ak.input("x", (2, 3)), ak.input("y", (4,))
    with pytest.raises(ShapeError, match=r"^add: .*\[2, 3\] and \[4\] do not broadcast"):
        x + y
    with pytest.raises(ShapeError, match=r"^matmul: .*inner dimensions differ"):
        x @ ak.input("z", (2, 3))
    with pytest.raises(DTypeError, match="mul"):
        -ak.input("b", (2,), dtype="bool")


@pytest.mark.parametrize("key", [
    (slice(1, None),), (slice(None, None, 2),), (0,), (-1, slice(1, 3)), (Ellipsis, 1), (slice(None, None, -1),),
    (slice(3, 0, -2), None), (None, 1, Ellipsis, slice(2, None)), (1, 2, 3), (slice(-3, -1),),
])
def test_indexing_matches_numpy(key, rng):
    a = rng.standard_normal((3, 4, 5)).astype(np.float32)
    x = ak.input("x", a.shape, dtype="fp32")
    y = x[key]
    ref = a[key]
    assert y.shape == ref.shape
    np.testing.assert_array_equal(run({"y": y}, {"x": a})["y"], ref)


def test_indexing_lowers_to_slice_by_index_then_squeeze():
    x = ak.input("x", (3, 4, 5))
    y = x[1, 1:3]
    assert y.op.type == "squeeze" and y.op.inputs["x"].op.type == "slice_by_index"
    assert x[:, :] is x and x[...] is x            # selecting everything adds no op


def test_bad_indices_are_shape_errors():
    x = ak.input("x", (3, 4))
    with pytest.raises(ShapeError, match="out of range for axis 0 of size 3"):
        x[3]
    with pytest.raises(ShapeError, match="3 indices for a tensor of rank 2"):
        x[0, 0, 0]
    with pytest.raises(ShapeError, match="selects nothing"):
        x[2:1]
    with pytest.raises(ShapeError, match="gather takes index tensors"):
        x[[0, 1]]
    with pytest.raises(TypeError, match="not iterable"):
        list(x)
