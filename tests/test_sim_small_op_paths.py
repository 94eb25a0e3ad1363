"""The shortcuts small models take through the simulator (ViT's [17, 32] activations, where
per-call overhead dominates) give the same values as the general code they skip: tile of
length-1 axes, a cast to fp16 whose rounding is left to the store, reduce_max/min/prod by
their ufuncs, and the MAC's batch shapes. References are numpy's own functions."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.sim import Simulator, mac
from anekit.sim.profiles import profile_for


def run(outputs: dict, feeds: dict, profile: str) -> dict:
    return Simulator(ak.program(outputs), profile=profile).run(feeds)


@pytest.mark.parametrize("profile", ["m4", "exact"])
@pytest.mark.parametrize("shape, reps", [((1, 2, 5, 1), (1, 1, 1, 7)), ((1, 3, 1), (4, 1, 2)),
                                         ((2, 3), (1, 1)), ((2, 3), (2, 2))])
def test_tile_matches_np_tile(profile, shape, reps):
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 2.5
    y = run({"y": ak.tile(ak.input("x", shape), reps=list(reps))}, {"x": a}, profile)["y"]
    ref = np.tile(a, reps)
    assert y.shape == ref.shape and np.array_equal(y, ref)


def test_tile_of_bool_mask_matches_np_tile():
    m = np.array([[True], [False], [True]])[None]                       # [1, 3, 1]
    x = ak.input("m", m.shape, dtype="bool")
    y = run({"y": ak.cast(ak.tile(x, reps=[2, 1, 5]), dtype="fp16")}, {"m": m}, "m4")["y"]
    assert np.array_equal(y, np.tile(m, (2, 1, 5)).astype(np.float32))


@pytest.mark.parametrize("profile", ["m4", "m1", "exact"])
def test_cast_to_fp16_rounds_like_float16(profile):
    # Off-grid values, ties both ways, fp16 subnormals, overflow to inf and the largest finite.
    a = np.array([0.1, -1.0 / 3, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 2.0 ** -20, -3e-6, 65519.0, 65520.0,
                  -1e6, 0.0, -0.0, 7.0], np.float32)
    y = run({"y": ak.cast(ak.input("x", a.shape), dtype="fp16")}, {"x": a}, profile)["y"]
    with np.errstate(over="ignore"):
        ref = a.astype(np.float16).astype(np.float32)
    assert np.array_equal(np.asarray(y, np.float32).view(np.uint32), ref.view(np.uint32))   # -0 kept


def test_cast_of_ints_and_bools_to_fp16():
    i = np.array([0, 1, -7, 2049, 70000], np.int32)
    b = np.array([True, False, True])
    out = run({"fi": ak.cast(ak.input("i", i.shape, dtype="int32"), dtype="fp16"),
               "fb": ak.cast(ak.input("b", b.shape, dtype="bool"), dtype="fp16")}, {"i": i, "b": b}, "m4")
    with np.errstate(over="ignore"):
        ref = i.astype(np.float16).astype(np.float32)
    assert np.array_equal(np.asarray(out["fi"], np.float32), ref)     # 2049 -> 2048, 70000 -> inf
    assert np.array_equal(np.asarray(out["fb"], np.float32), b.astype(np.float32))


@pytest.mark.parametrize("op, ref", [("reduce_max", np.max), ("reduce_min", np.min), ("reduce_prod", np.prod)])
def test_reduce_other_matches_numpy(op, ref):
    a = np.array([[1.5, -2.0, 0.25], [np.nan, 3.0, -1.0], [-0.0, 0.0, 2.0]], np.float32)
    fn = getattr(ak, op)
    y = run({"y": fn(ak.input("x", a.shape), axes=[-1])}, {"x": a}, "exact")["y"]
    r = ref(a, axis=-1)
    assert np.array_equal(y, r, equal_nan=True)


@pytest.mark.parametrize("xs, ws", [((2, 3, 8, 16), (16, 12)), ((8, 16), (2, 16, 12)), ((3, 1, 8, 16), (1, 2, 16, 12)),
                                    ((2, 8, 16), (2, 16, 12)), ((1, 32), (32, 40))])
@pytest.mark.parametrize("name", ["m4", "m1"])
def test_matmul_batch_shapes_match_explicit_broadcast(xs, ws, name):
    """Each batch entry of a broadcast matmul has the bits of that entry's own 2-D product."""
    p = profile_for(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float16).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float16).astype(np.float32)
    y = mac.matmul(x, w, p)
    batch = np.broadcast_shapes(xs[:-2], ws[:-2])
    assert y.shape == batch + (xs[-2], ws[-1])
    xb, wb = np.broadcast_to(x, batch + xs[-2:]), np.broadcast_to(w, batch + ws[-2:])
    for idx in np.ndindex(*batch):
        assert np.array_equal(y[idx], mac.matmul(np.ascontiguousarray(xb[idx]), np.ascontiguousarray(wb[idx]), p))
