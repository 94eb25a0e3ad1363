"""The simulator's per-run shortcuts give what the general paths give, bit for bit: float32
feeds of fp16 inputs rounded in one pass, run_stored outputs already in stored form, planned
reshapes, the constant pad, cached slice plans."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.sim import Simulator
from anekit.sim.fp16 import round_fp16
from anekit.sim.registry import Kernel

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, 6e-8, -6e-8, 3.0e-8, 2.9e-8, 3.05e-5, 65504.0, 65520.0,
                     -65519.0, 1e6, 2.0 ** -14, 2.0 ** -25, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11], np.float32)


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def _feed(rng, shape):
    v = (rng.standard_normal(shape) * 100).astype(np.float32).reshape(-1)
    v[: SPECIALS.size] = SPECIALS
    return v.reshape(shape)


@pytest.mark.parametrize("profile", ["m1", "m5", "exact"])
def test_float32_feeds_of_fp16_inputs_match_their_fp16_cast(profile):
    """A float32 feed takes the one-pass rounding; the same values fed as float16 take the
    general path (bind_inputs' cast, _ingest): the stored values agree bit for bit."""
    x = ak.input("x", (4, 32))
    sim = Simulator(ak.program({"y": x * 1.0, "z": ak.reshape(x, [128])}), profile=profile)
    rng = np.random.default_rng(1)
    a = _feed(rng, (4, 32))
    assert sim._quick_fp16({"x": a})              # the shortcut applies
    with np.errstate(over="ignore"):
        ref = sim.run_stored({"x": a.astype(np.float16)})
    got = sim.run_stored({"x": a})
    for name in ref:
        assert np.array_equal(_bits(ref[name]), _bits(got[name])), name
    a[0, 0] = np.nan                             # NaN: the general path (the NaN rule), as before
    assert not sim._quick_fp16({"x": a})
    with np.errstate(over="ignore", invalid="ignore"):
        ref, got = sim.run_stored({"x": a.astype(np.float16)}), sim.run_stored({"x": a})
    for name in ref:
        assert np.array_equal(_bits(ref[name]), _bits(got[name])), name


@pytest.mark.parametrize("profile", ["m1", "exact"])
def test_run_stored_outputs_equal_the_rounded_values(profile):
    """Outputs that run_stored hands back without rounding are exactly what the rounding
    would make of them."""
    x, w = ak.input("x", (8, 16)), ak.input("w", (16, 4))
    h = (x @ w) * 0.5
    sim = Simulator(ak.program({"h": h, "r": ak.reshape(h, [32]), "t": ak.transpose(h, perm=[1, 0])}),
                    profile=profile)
    kinds = {name: dtype for name, _, dtype in sim._stored_outputs}
    assert (kinds["h"], kinds["r"]) == (("stored", "stored") if profile == "m1" else ("fp16", "fp16"))
    rng = np.random.default_rng(2)
    out = sim.run_stored({"x": _feed(rng, (8, 16)), "w": rng.standard_normal((16, 4)).astype(np.float32)})
    for name, v in out.items():
        assert v.dtype == np.float32
        assert np.array_equal(_bits(v), _bits(round_fp16(v))), name


def test_planned_reshape_takes_and_gives_the_kernel_values():
    x = ak.input("x", (2, 3, 4), "fp32")
    sim = Simulator(ak.program({"y": ak.reshape(ak.reshape(x, [6, 4]) * 2.0, [24])}), profile="exact")
    views = [st for st in sim._steps if st.view is not None]
    assert len(views) == 2
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    want = sim.run({"x": a})["y"]
    assert np.array_equal(want, a.reshape(-1) * 2)

    def refuse(c, **kw):
        raise AssertionError("the planned reshape called its kernel")
    for st in views:
        st.kernel = Kernel(st.kernel.op, refuse, st.kernel.finish)
    assert np.array_equal(sim.run({"x": a})["y"], want)


@pytest.mark.parametrize("widths,value", [([1, 2, 0, 3], 0.0), ([0, 0, 2, 2], -0.0), ([3, 1], 1.5), ([], 0.0)])
def test_constant_pad_matches_numpy_pad(widths, value):
    x = ak.input("x", (2, 3, 4))
    sim = Simulator(ak.program({"y": ak.pad(x, pad=widths, mode="constant", constant_val=value)}), profile="m1")
    a = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float16).astype(np.float32)
    k = len(widths) // 2
    pads = [(0, 0)] * (3 - k) + [(widths[2 * i], widths[2 * i + 1]) for i in range(k)]
    want = np.pad(a, pads, constant_values=np.float32(value))
    assert np.array_equal(_bits(sim.run_stored({"x": a})["y"]), _bits(want))


def test_slice_plans_are_made_once_per_op():
    x = ak.input("x", (4, 10))
    y = ak.slice_by_index(x, begin=[1, 2], end=[3, 9], stride=[1, 2])
    sim = Simulator(ak.program({"y": y}), profile="m1")
    a = np.arange(40, dtype=np.float32).reshape(4, 10)
    for _ in range(2):
        assert np.array_equal(sim.run_stored({"x": a})["y"], a[1:3, 2:9:2])
    step = sim._steps[0]
    assert list(step.call.cache) == [("slices", (4, 10))]


@pytest.mark.parametrize("profile", ["m1", "m4", "m5", "h11"])
def test_float_casts_of_stored_values_pass_them_on_with_the_kernel_bits(profile):
    """A float-to-float cast of a stored value (a graph input, a rounded op's output) is the
    identity in a chip profile that stores NaN as 0: the executor passes the value on without
    the call (identity_when), with the bits the kernel and its storage step give, hostile values
    included. A cast of a constant keeps the kernel."""
    x = ak.input("x", (4, 32), "fp32")
    h = ak.cast(x, dtype="fp16")                           # a graph input: stored (NaN came in as inf)
    y = ak.cast(h * 3.0, dtype="fp32")                     # a rounded op's output
    z = ak.cast(ak.cast(y, dtype="fp16"), dtype="fp32")    # a cast of a passed-on value
    c = ak.cast(ak.const(np.array([np.nan, 1e6, 1e-9], np.float32)), dtype="fp16")
    sim = Simulator(ak.program({"y": y, "z": z, "h": h, "c": c * 1.0}), profile=profile)
    casts = [st for st in sim._steps if st.call.op.type == "cast"]
    assert casts and all(st.view is not None for st in casts)
    rng = np.random.default_rng(7)
    a = _feed(rng, (4, 32))
    a[0, :3] = [np.nan, -np.nan, 1e-30]
    got = sim.run({"x": a})
    for st in casts:                                       # the kernel route
        st.view = None
    want = sim.run({"x": a})
    for name in want:
        assert np.array_equal(_bits(got[name]), _bits(want[name])), name
    assert not np.isnan(got["h"]).any() and np.isinf(got["h"][0, :2]).all()


@pytest.mark.parametrize("profile", ["m1", "m5"])
def test_matmul_outputs_are_stored_form_on_hostile_operands(profile):
    """matmul declares finish="stored": its port rounds with the NaN rule, so its outputs are
    run_stored's stored form as they leave the kernel. Operands that make inf - inf and 0 * inf
    in the accumulator still give no NaN, on the grid."""
    x, w = ak.input("x", (8, 16)), ak.input("w", (16, 4))
    sim = Simulator(ak.program({"y": x @ w}), profile=profile)
    assert dict((n, d) for n, _, d in sim._stored_outputs)["y"] == "stored"
    rng = np.random.default_rng(3)
    a, b = _feed(rng, (8, 16)), rng.standard_normal((16, 4)).astype(np.float32)
    a[0, :2], b[:2, 0] = [np.inf, np.inf], [1.0, -1.0]      # inf - inf in row 0, column 0
    a[1, 0], b[0, 1] = 0.0, np.inf                         # 0 * inf
    y = sim.run_stored({"x": a, "w": b})["y"]
    assert not np.isnan(y).any()
    assert np.array_equal(_bits(y), _bits(round_fp16(y)))


@pytest.mark.parametrize("profile", ["m1", "m5"])
@pytest.mark.parametrize("build", [lambda x: ak.reduce_sum(x, axes=[1]), lambda x: ak.reduce_mean(x, axes=[0]),
                                   lambda x: ak.softmax(x, axis=-1)], ids=["sum", "mean", "softmax"])
def test_reductions_and_softmax_are_stored_form_on_hostile_rows(profile, build):
    """The reduce-sum family and softmax store their results (finish="stored"): +inf and -inf
    in one row (inf - inf in the sum, and in softmax's shift), NaN fed in (made +inf), fp16
    extremes: no NaN comes out, every value on the grid."""
    x = ak.input("x", (8, 16))
    sim = Simulator(ak.program({"y": build(x)}), profile=profile)
    assert dict((n, d) for n, _, d in sim._stored_outputs)["y"] == "stored"
    a = _feed(np.random.default_rng(5), (8, 16))
    a[1, :3] = [np.inf, -np.inf, np.nan]
    a[2, :] = 65504.0
    y = sim.run_stored({"x": a})["y"]
    assert not np.isnan(y).any()
    assert np.array_equal(_bits(y), _bits(round_fp16(y)))


def test_resident_outputs_skip_the_nan_pass_only_when_they_are_run_stored_outputs():
    """run_stored's own stored outputs come back read-only and, fed back as resident inputs,
    are taken without the NaN rule's pass; any other resident array still has NaN made +inf,
    and a caller's array passed through to an output is neither registered nor frozen."""
    from anekit.sim import executor

    x, w = ak.input("x", (8, 16)), ak.input("w", (16, 16))
    sim = Simulator(ak.program({"y": x @ w, "x_out": ak.reshape(x, [8, 16])}), profile="m1")
    rng = np.random.default_rng(4)
    a, b = round_fp16(_feed(rng, (8, 16))), round_fp16(rng.standard_normal((16, 16)).astype(np.float32))
    out = sim.run_stored({"w": b}, resident={"x": a})
    y = out["y"]
    assert not y.flags.writeable and executor._NAN_FREE.get(id(y)) is y
    with pytest.raises(ValueError):
        y[0, 0] = np.nan                                     # what would break the trust
    assert a.flags.writeable and executor._NAN_FREE.get(id(a)) is None
    assert executor._NAN_FREE.get(id(out["x_out"])) is None   # the caller's data, passed on
    checked = []
    real = executor.has_nan
    try:
        executor.has_nan = lambda v: checked.append(v) or real(v)
        again = sim.run_stored({"w": b}, resident={"x": y})
        assert not any(v is y for v in checked)              # the registered array: no pass
        bad = a.copy()
        bad[0, 0] = np.nan
        got = sim.run_stored({"w": b}, resident={"x": bad})
        assert any(v is bad for v in checked)
    finally:
        executor.has_nan = real
    assert np.isinf(got["x_out"][0, 0]) and np.array_equal(_bits(again["y"]), _bits(sim.run_stored(
        {"w": b}, resident={"x": y.copy()})["y"]))


def test_inputs_that_are_not_a_mapping_get_the_binding_error():
    """A bare array (or list) where {name: array} belongs is bind_inputs' clear error, not a
    crash in the shortcuts before it (an array's truth value is ambiguous)."""
    from anekit.errors import ShapeError

    x = ak.input("x", (4, 8))
    sim = Simulator(ak.program({"y": x * 2.0}), profile="m1")
    for bad in (np.ones((4, 8), np.float32), [np.ones((4, 8), np.float32)]):
        with pytest.raises(ShapeError, match="inputs must be a mapping"):
            sim.run(bad)
