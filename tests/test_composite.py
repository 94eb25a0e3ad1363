"""Layers built from declared ops (anekit.ir.composite) against float64 numpy references, in
exact numerics (1e-5 relative) and on the m1 profile (fp16 storage: 2e-2 relative)."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.errors import ShapeError


def _rms(x, axes, g):
    return x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + 1e-5) * g


def _group(x, groups, g, b):
    n, c = x.shape[:2]
    v = x.reshape(n, groups, -1)
    v = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return v.reshape(x.shape) * g.reshape(shape) + b.reshape(shape)


def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# name -> (anekit build on inputs, float64 reference on their values, input shapes)
CASES = {
    "rms_norm": (lambda x, g: ak.rms_norm(x, axes=[-1], gamma=g), lambda x, g: _rms(x, -1, g), [(2, 5, 16), (16,)]),
    "rms_norm_axes": (lambda x: ak.rms_norm(x, axes=[1, 2]), lambda x: _rms(x, (1, 2), 1.0), [(3, 4, 16)]),
    "group_norm": (lambda x, g, b: ak.group_norm(x, 4, g, b), lambda x, g, b: _group(x, 4, g, b),
                   [(2, 8, 3, 5), (8,), (8,)]),
    "l2_norm": (lambda x: ak.l2_norm(x, axes=[-1]),
                lambda x: x / np.sqrt(np.maximum((x * x).sum(-1, keepdims=True), 1e-12)), [(4, 16)]),
    "log_softmax": (lambda x: ak.log_softmax(x, axis=1), lambda x: _log_softmax(x, 1), [(4, 10, 3)]),
}


@pytest.mark.parametrize("numerics, dtype, rel", [("exact", "fp32", 1e-5), ("profile", "fp16", 2e-2)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_composite_matches_float64(name, numerics, dtype, rel):
    fn, ref, shapes = CASES[name]
    rng = np.random.default_rng(7)
    np_dt = np.float16 if dtype == "fp16" else np.float32
    values = [(rng.standard_normal(s) * 3).astype(np_dt) for s in shapes]
    ins = [ak.input(f"in{i}", s, dtype) for i, s in enumerate(shapes)]
    exe = ak.compile(ak.program({"y": fn(*ins)}), backend="sim", target="m1", numerics=numerics)
    got = exe({t.name: v for t, v in zip(ins, values)})["y"].astype(np.float64)
    want = ref(*(v.astype(np.float64) for v in values))
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= rel, f"{name} {numerics}: max error {err:.2e} of the largest value"


def test_group_norm_needs_groups_that_divide_channels():
    with pytest.raises(ShapeError, match="3 groups"):
        ak.group_norm(ak.input("x", (1, 8, 2, 2)), 3)
