"""The chip numerics profile against the guide's worked values and tables (guide ch. 3
"Numerics", tbl:c3-cancel-sweep, tbl:c3-constants; ch. 20 "Radix-4 reduction").

Every probe is a small anekit program run on the simulator, the way the guide ran it on the
engine. Where no consistent model reproduces a published figure, the test is an expected
failure whose reason names the gap (docs/numerics.md lists the same gaps).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import anekit as ak
from anekit.errors import TargetError
from anekit.sim import EXACT, FAMILY_PROFILES, NumericsProfile, Simulator, profile_for

INF = np.inf
TINY = 2.0 ** -24            # smallest fp16 subnormal


def run(outputs, feeds, profile="m1"):
    """Build a program from {name: tensor} and run it; outputs as float64 arrays."""
    out = Simulator(ak.program(outputs), profile=profile).run(feeds)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def dot_ones(v, profile="m1"):
    """The guide's reduce_via_matmul: v (fp16) against a ones vector through the MAC."""
    v = np.asarray(v, np.float32)
    x = ak.input("x", (1, v.size))
    return run({"y": ak.matmul(x, np.ones((v.size, 1), np.float16))}, {"x": v[None]}, profile)["y"][0, 0]


def rows_dot_ones(rows, profile="m1"):
    rows = np.asarray(rows, np.float32)
    x = ak.input("x", rows.shape)
    return run({"y": ak.matmul(x, np.ones((rows.shape[1], 1), np.float16))}, {"x": rows}, profile)["y"][:, 0]


def fp16_values(lo, hi):
    bits = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    return bits[(bits >= lo) & (bits <= hi)]


# --- wide accumulator with a 4-lane first stage ------------------------------------------

def test_worked_sum_4096_then_1024_ones_is_5116():
    v = [4096.0] + [1.0] * 1024
    naive = np.float16(0)
    for a in v:                                   # the narrow fp16 running sum the guide contrasts
        naive = np.float16(naive + np.float16(a))
    assert naive == 4096 and sum(v) == 5120       # so 5116 discriminates both alternatives
    assert dot_ones(v) == 5116.0


@pytest.mark.parametrize("magnitude,survivors", [(1024, 16), (3000, 16), (4090, 16), (4096, 4),
                                                 (8000, 4), (16000, 4), (30000, 4)])
@pytest.mark.parametrize("order", ["+B,-B,+1", "+B,+1,-B"])
def test_cancellation_sweep_table(magnitude, survivors, order):
    b = float(magnitude)
    triple = [b, -b, 1.0] if order == "+B,-B,+1" else [b, 1.0, -b]
    assert dot_ones(triple * 16) == survivors


def test_cancellation_sweep_holds_at_every_fp16_magnitude():
    """The model is not tuned to the table's seven rows: every fp16 magnitude from 1024 to
    30000 gives 16 survivors below 4096 and exactly 4 from 4096 on, in both lane orders."""
    mags = fp16_values(1024, 30000)
    for triple in ([1, -1, 0], [1, 0, -1]):
        pattern = np.array(triple * 16, np.float64)
        rows = np.where(pattern == 0, 1.0, pattern[None, :] * mags[:, None])
        got = rows_dot_ones(rows)
        np.testing.assert_array_equal(got, np.where(mags < 4096, 16.0, 4.0))


def test_sixteen_thousand_ones_sum_bit_exactly():
    assert dot_ones(np.ones(16000)) == 16000.0
    x = ak.input("x", (16000,))
    assert run({"y": ak.reduce_sum(x)}, {"x": np.ones(16000, np.float32)})["y"] == 16000.0


def test_sixteen_increments_survive_next_to_8192():
    assert dot_ones([8192.0] + [1.0] * 16) == 8208.0


def test_reduce_sum_uses_the_same_accumulator():
    x = ak.input("x", (1025,))
    assert run({"y": ak.reduce_sum(x)}, {"x": np.array([4096.0] + [1.0] * 1024, np.float32)})["y"] == 5116.0


def test_exact_mode_has_no_tile_stage():
    assert dot_ones([4096.0] + [1.0] * 1024, profile=EXACT) == 5120.0


# --- the 2**15 MAC output port --------------------------------------------------------------

def test_linear_k1_ceiling_is_pinned_to_the_bit():
    x = ak.input("x", (2, 1))
    out = run({"y": ak.linear(x, np.ones((1, 1), np.float16))}, {"x": np.array([[32752.0], [32768.0]], np.float32)})
    assert out["y"][0, 0] == 32752.0 and out["y"][1, 0] == INF


def test_matmul_k2_ceiling():
    out = rows_dot_ones([[16376.0, 16376.0], [16384.0, 16384.0]])
    assert out[0] == 32752.0 and out[1] == INF


def test_two_channel_conv_hits_the_ceiling_single_tap_conv_keeps_65504():
    two = ak.input("x", (1, 2, 1, 1))
    one = ak.input("z", (1, 1, 1, 1))
    out = run({"two": ak.conv(two, np.ones((1, 2, 1, 1), np.float16)),
               "one": ak.conv(one, np.ones((1, 1, 1, 1), np.float16))},
              {"x": np.full((1, 2, 1, 1), 16384.0, np.float32), "z": np.full((1, 1, 1, 1), 60000.0, np.float32)})
    assert out["two"].item() == INF
    assert out["one"].item() == 60000.0


def test_interior_partial_overflow_is_not_undone_by_cancellation():
    big = 20000.0
    in_tile = [big, big, -big, -big]                                    # one tile
    across = [big, 0, 0, 0, big, 0, 0, 0, -big, 0, 0, 0, -big, 0, 0, 0]  # across tiles
    assert dot_ones(in_tile) == INF and dot_ones(across) == INF
    assert dot_ones(in_tile, profile=EXACT) == 0.0


def test_interior_ceiling_is_checked_on_the_fast_route():
    """A matmul too big to emulate lane by lane still saturates the one row whose running
    partial crosses 2**15, and leaves the others equal to the wide-accumulator sum."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((256, 512)).astype(np.float16).astype(np.float32)
    rows[7, :4] = [20000.0, 20000.0, -20000.0, -20000.0]
    x = ak.input("x", rows.shape)
    w = np.ones((512, 512), np.float16)
    profile = profile_for("m1")
    assert 256 * 512 * 512 > profile.tile_emulation_max_products
    y = run({"y": ak.matmul(x, w)}, {"x": rows}, profile)["y"]
    assert np.all(y[7] == INF)
    expect = np.float16(rows.astype(np.float64) @ np.ones((512, 512))).astype(np.float64)
    others = np.delete(np.arange(256), 7)
    np.testing.assert_allclose(y[others], expect[others], rtol=2.0 ** -10)


def test_infinities_in_a_big_matmul_follow_the_lane_rules():
    """On the fast route the rows holding an infinity are recomputed lane by lane: inf times a
    weight stays inf, inf - inf inside a tile gives +0 and the other lanes still count; every
    other row is the plain wide-accumulator result."""
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((256, 512)).astype(np.float16).astype(np.float32)
    rows[5, 3] = np.inf
    rows[9, :4] = [np.inf, -np.inf, 1.0, 2.0]                    # one tile: inf - inf = +0, then 1, 2
    x = ak.input("x", rows.shape)
    w = np.ones((512, 64), np.float16)
    fast = run({"y": ak.matmul(x, w)}, {"x": rows})["y"]
    lanes = dataclasses.replace(profile_for("m1"), tile_emulation_max_products=1 << 30)
    every = run({"y": ak.matmul(x, w)}, {"x": rows}, lanes)["y"]
    assert np.all(fast[5] == INF)
    np.testing.assert_array_equal(fast[[5, 9]], every[[5, 9]])
    expect9 = 3.0 + rows[9, 4:].astype(np.float64).sum()
    assert np.all(np.abs(fast[9] - expect9) <= 2.0 ** -10 * np.abs(rows[9, 4:]).sum() + 0.02)
    others = np.setdiff1d(np.arange(256), [5, 9])
    assert np.all(np.isfinite(fast[others]))
    np.testing.assert_allclose(fast[others], every[others], rtol=2.0 ** -9, atol=0.02)


def test_negative_outputs_saturate_symmetrically():
    assert dot_ones([-16384.0, -16384.0]) == -INF


def test_reduce_sum_and_elementwise_keep_the_fp16_range():
    x = ak.input("x", (2,))
    out = run({"y": ak.reduce_sum(x)}, {"x": np.array([65504.0, 8.0], np.float32)})
    assert out["y"] == 65504.0                                     # rounds to 65504 first
    out = run({"y": ak.reduce_sum(x)}, {"x": np.array([65504.0, 16.0], np.float32)})
    assert out["y"] == INF                                         # then overflows
    a, b = ak.input("a", (2,)), ak.input("b", (2,))
    out = run({"y": ak.mul(a, b)}, {"a": np.array([256.0, 256.0], np.float32), "b": np.array([255.875, 256.0], np.float32)})
    np.testing.assert_array_equal(out["y"], [65504.0, INF])


# --- width-axis slice gain (H13, H14) ------------------------------------------------------

def _slices(values):
    x = ak.input("x", (1, 2, 2, 4))
    return ({"w_offset": ak.slice_by_size(x, begin=[0, 0, 0, 1], size=[1, 2, 2, 2]),
             "w_index": ak.slice_by_index(x, begin=[0, 0, 0, 2], end=[1, 2, 2, 4]),
             "w_zero": ak.slice_by_size(x, begin=[0, 0, 0, 0], size=[1, 2, 2, 2]),
             "h_offset": ak.slice_by_size(x, begin=[0, 0, 1, 0], size=[1, 2, 1, 4]),
             "c_offset": ak.slice_by_size(x, begin=[0, 1, 0, 0], size=[1, 1, 2, 4]),
             "crop": ak.crop(x, crop_height=[0, 0], crop_width=[1, 1])},
            {"x": np.full((1, 2, 2, 4), values, np.float32)})


@pytest.mark.parametrize("target", ["m1", "m2", "a14"])
def test_width_slice_with_offset_saturates_above_4094_on_h13_h14(target):
    outputs, feeds = _slices(4094.0)
    for name, v in run(outputs, feeds, target).items():
        assert np.all(v == 4094.0), name                            # passes bit-exactly
    outputs, feeds = _slices(4096.0)
    out = run(outputs, feeds, target)
    for name in ("w_offset", "w_index", "crop"):
        assert np.all(out[name] == INF), name
    for name in ("w_zero", "h_offset", "c_offset"):                 # controls stay finite
        assert np.all(out[name] == 4096.0), name


@pytest.mark.parametrize("target", ["m3", "m4", "m5", "a17pro"])
def test_width_slice_is_clean_from_a15_on(target):
    outputs, feeds = _slices(30000.0)
    for name, v in run(outputs, feeds, target).items():
        assert np.all(v == 30000.0), name


# --- NaN, indeterminate forms, zeros -------------------------------------------------------

def test_nan_input_becomes_plus_inf_everywhere():
    x = ak.input("x", (4,))
    nan_in = np.array([np.nan, 1.0, 2.0, 3.0], np.float32)
    outs = {"echo": ak.add(x, 0.0), "relu": ak.relu(x), "sigmoid": ak.sigmoid(x), "tanh": ak.tanh(x),
            "erf": ak.erf(x), "exp": ak.exp(x), "max": ak.maximum(x, 1.0), "softmax": ak.softmax(x, axis=0)}
    out = Simulator(ak.program(outs), profile="m1").run({"x": nan_in})
    inf_out = Simulator(ak.program(outs), profile="m1").run({"x": np.array([np.inf, 1, 2, 3], np.float32)})
    assert out["echo"].view(np.uint16)[0] == np.float16(np.inf).view(np.uint16)   # same bits as +inf
    for name in outs:
        np.testing.assert_array_equal(out[name], inf_out[name], err_msg=name)
        assert not np.isnan(out[name]).any(), name
    assert out["relu"][0] == INF and out["exp"][0] == INF and out["max"][0] == INF
    assert out["sigmoid"][0] == 1.0 and out["tanh"][0] == 1.0 and out["erf"][0] == 1.0
    np.testing.assert_array_equal(out["softmax"], [1.0, 0.0, 0.0, 0.0])
    exact = Simulator(ak.program(outs), profile=EXACT).run({"x": nan_in})
    assert np.isnan(exact["echo"][0])                               # IEEE in exact mode


def test_indeterminate_forms_give_plus_zero():
    a, b = ak.input("a", (1,)), ak.input("b", (1,))
    outs = {"inf_minus_inf": ak.sub(a, a), "zero_times_inf": ak.mul(a, b), "sqrt": ak.sqrt(ak.mul(b, -1.0)),
            "rsqrt": ak.rsqrt(ak.sub(b, 1.0)), "log": ak.log(ak.sub(b, 1.0))}
    feeds = {"a": np.array([np.inf], np.float32), "b": np.array([0.0], np.float32)}
    # b - 1 = -1 feeds rsqrt(-1) and log(-1); sqrt sees -0 * ... = -0 so use -1 explicitly below
    out = run(outs, feeds)
    for name, v in out.items():
        assert v[0] == 0.0 and not np.signbit(v[0]), name
    neg = run({"sqrt": ak.sqrt(b)}, {"b": np.array([-1.0], np.float32)})["sqrt"][0]
    assert neg == 0.0 and not np.signbit(neg)
    exact = run(outs, feeds, EXACT)
    assert all(np.isnan(exact[n][0]) for n in ("inf_minus_inf", "zero_times_inf", "rsqrt", "log"))


def test_log_of_plus_zero_is_the_minus_45440_sentinel():
    x = ak.input("x", (2,))
    out = run({"y": ak.log(x)}, {"x": np.array([0.0, 1.0], np.float32)})["y"]
    np.testing.assert_array_equal(out, [-45440.0, 0.0])


def test_zero_loses_its_sign_before_the_reciprocal():
    x = ak.input("x", (1,))
    outs = {"div": ak.real_div(1.0, x), "inverse": ak.inverse(x, epsilon=0.0), "rsqrt": ak.rsqrt(x, epsilon=0.0),
            "sqrt": ak.sqrt(x)}
    out = run(outs, {"x": np.array([-0.0], np.float32)})
    assert out["div"][0] == INF and out["inverse"][0] == INF and out["rsqrt"][0] == INF
    assert out["sqrt"][0] == 0.0 and not np.signbit(out["sqrt"][0])
    assert run(outs, {"x": np.array([-0.0], np.float32)}, EXACT)["div"][0] == -INF


def test_softplus_and_softsign_collapse_plus_inf_to_zero():
    x = ak.input("x", (2,))
    out = run({"sp": ak.softplus(x), "ss": ak.softsign(x)}, {"x": np.array([np.inf, 1.0], np.float32)})
    assert out["sp"][0] == 0.0 and out["ss"][0] == 0.0
    assert out["sp"][1] == pytest.approx(np.log1p(np.e), abs=1e-3) and out["ss"][1] == 0.5


# --- subnormals ------------------------------------------------------------------------------

def test_subnormals_survive_elementwise():
    x = ak.input("x", (3,))
    v = np.array([TINY, 3 * TINY, 1000 * TINY], np.float32)
    out = run({"add": ak.add(x, 0.0), "mul": ak.mul(x, 1.0), "half": ak.mul(x, 0.5)}, {"x": v})
    np.testing.assert_array_equal(out["add"], v)
    np.testing.assert_array_equal(out["mul"], v)
    np.testing.assert_array_equal(out["half"], [0.0, 2 * TINY, 500 * TINY])   # 0.5 ulp ties to even


def test_subnormal_pair_in_a_matmul_flushes_on_m1_only():
    pair = [3 * TINY, 5 * TINY]
    assert dot_ones(pair, "m1") == 0.0
    assert dot_ones(pair, "m5") == 8 * TINY


def test_a_subnormal_product_of_normal_operands_flushes_on_m1():
    x = ak.input("x", (1, 2))
    w = np.full((2, 1), 2.0 ** -8, np.float16)                 # normal operands, 2**-16 products
    feed = {"x": np.full((1, 2), 2.0 ** -8, np.float32)}
    assert run({"y": ak.matmul(x, w)}, feed, "m1")["y"].item() == 0.0
    assert run({"y": ak.matmul(x, w)}, feed, "m5")["y"].item() == 2.0 ** -15


# --- softmax and exp --------------------------------------------------------------------------

def test_softmax_subtracts_the_max_and_bare_exp_overflows():
    x = ak.input("x", (4,))
    out = run({"sm": ak.softmax(x, axis=0), "exp": ak.exp(x)}, {"x": np.array([1000.0, 1, 2, 3], np.float32)})
    np.testing.assert_array_equal(out["sm"], [1.0, 0.0, 0.0, 0.0])
    assert out["exp"][0] == INF
    eq = run({"sm": ak.softmax(x, axis=0)}, {"x": np.full(4, 7.5, np.float32)})["sm"]
    np.testing.assert_array_equal(eq, [0.25] * 4)


def test_exp_first_overflows_at_11_094():
    v = fp16_values(10.0, 12.0)
    x = ak.input("x", v.shape)
    out = run({"y": ak.exp(x)}, {"x": v.astype(np.float32)})["y"]
    first = v[np.argmax(np.isinf(out))]
    assert first == 11.09375 and np.all(np.isfinite(out[v < first]))
    assert abs(first - np.log(65504.0)) < 0.005


def test_square_first_overflows_at_256():
    v = fp16_values(250.0, 260.0)
    x = ak.input("x", v.shape)
    out = run({"y": ak.square(x)}, {"x": v.astype(np.float32)})["y"]
    assert v[np.argmax(np.isinf(out))] == 256.0 and np.all(np.isfinite(out[v < 256.0]))


# --- rounding ------------------------------------------------------------------------------

def test_output_rounding_is_half_to_even():
    assert dot_ones(np.ones(2049)) == 2048.0                      # a 2049 partial on a grid of 2
    a = ak.input("a", (3,))
    out = run({"y": ak.add(a, 1.0)}, {"a": np.array([2048.0, 2050.0, 2046.0], np.float32)})["y"]
    np.testing.assert_array_equal(out, [2048.0, 2052.0, 2047.0])


@pytest.mark.xfail(strict=True, reason="gap: the M5 returns 2050 for a 2049 partial where the M1 returns "
                                       "2048; the guide leaves the cause unresolved, so every profile "
                                       "rounds half to even")
def test_m5_rounds_a_2049_partial_up():
    assert dot_ones(np.ones(2049), "m5") == 2050.0


# --- activation tables ------------------------------------------------------------------------
# Guide ch. 3 "Activation functions": the engine's table value "matches the fp16-rounded exact
# function to about half a unit in the last place"; the origin biases of gelu and swish were
# measured at x = 0 only, and the sigmoid table clamps past [-9.938, 8.320] (tbl:c3-constants).

def _worst_table_error(op, reference):
    v = fp16_values(-60000, 60000)
    v = np.concatenate([-v[v > 0], v])
    x = ak.input("x", v.shape)
    out = run({"y": op(x)}, {"x": v.astype(np.float32)})["y"]
    return float(np.max(np.abs(out - reference(v))))


def _sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(v, np.float64)))   # overflow-free form


def _gelu(v):
    from math import erfc
    return 0.5 * v * np.vectorize(erfc)(-np.asarray(v, np.float64) / np.sqrt(2.0))   # no cancellation


def _silu(v):
    return np.asarray(v, np.float64) * _sigmoid(v)


def _ulp_errors(op, reference, v, profile="m1"):
    """|sim - float64 reference| in fp16 ulps of the reference, over the fp16 inputs v."""
    x = ak.input("x", v.shape)
    out = run({"y": op(x)}, {"x": v.astype(np.float32)}, profile)["y"]
    ref = reference(v)
    ulp = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64)   # the grid step at ref
    ulp = np.where(np.abs(ref) >= 65504, np.inf, np.maximum(ulp, TINY))
    return np.abs(out - ref) / ulp


@pytest.mark.parametrize("name,op,reference", [("gelu", ak.gelu, _gelu), ("silu", ak.silu, _silu),
                                               ("sigmoid", ak.sigmoid, _sigmoid), ("tanh", ak.tanh, np.tanh)])
def test_activations_are_the_rounded_function_away_from_the_origin(name, op, reference):
    """Every fp16 input with 2**-10 <= |x| <= 8 (the measured domain for sigmoid): within half
    an ulp (plus float32 slack) of the float64 function, as the guide measures. The former
    table model was 10-13 ulp off at the median for gelu and silu."""
    v = fp16_values(2.0 ** -10, 8.0)
    v = np.concatenate([-v, v])
    err = _ulp_errors(op, reference, v)
    assert np.median(err) <= 0.26, name
    assert err.max() <= 0.5 + 2.0 ** -8, name


def test_gelu_and_silu_origin_biases_only_at_the_origin():
    v = np.float16([0.0, -0.0, 2 * TINY, -2 * TINY, 2.0 ** -10, -2.0 ** -10, 0.1, -0.1, 1.0, -1.0]).astype(np.float64)
    x = ak.input("x", v.shape)
    out = run({"gelu": ak.gelu(x), "silu": ak.silu(x)}, {"x": v.astype(np.float32)})
    assert out["gelu"][0] == out["gelu"][1] == float(np.float16(-0.000543))     # measured (ch. 3)
    assert out["silu"][0] == out["silu"][1] == float(np.float16(-0.001259))
    # everywhere else the rounded function (the bias was measured at x = 0 only)
    np.testing.assert_array_equal(out["gelu"][2:], np.float16(_gelu(v[2:])).astype(np.float64))
    np.testing.assert_array_equal(out["silu"][2:], np.float16(_silu(v[2:])).astype(np.float64))
    exact = run({"gelu": ak.gelu(x), "silu": ak.silu(x)}, {"x": np.zeros(v.shape, np.float32)}, EXACT)
    assert np.all(exact["gelu"] == 0.0) and np.all(exact["silu"] == 0.0)


def test_origin_bias_width_tapers_the_bias_like_a_biased_knot():
    tapered = dataclasses.replace(profile_for("m1"), origin_bias_width=0.5)
    v = np.array([0.0, 0.25, -0.25, 0.5, 1.0])
    x = ak.input("x", v.shape)
    out = run({"y": ak.silu(x)}, {"x": v.astype(np.float32)}, tapered)["y"]
    expect = np.float16(_silu(v) + -0.001259 * np.maximum(1.0 - np.abs(v) / 0.5, 0.0)).astype(np.float64)
    np.testing.assert_allclose(out, expect, atol=2.0 ** -13)


def test_sigmoid_clamps_to_its_published_domain():
    x = ak.input("x", (4,))
    out = run({"y": ak.sigmoid(x)}, {"x": np.array([8.3203125, 50.0, -9.9453125, -50.0], np.float32)})["y"]
    assert out[0] == out[1] == 1.0
    assert out[2] == out[3] == float(np.float16(_sigmoid(-9.938)))
    chip = run({"y": ak.sigmoid(x)}, {"x": np.array([0.0, 0.0, -12.0, -11.0], np.float32)})["y"]
    assert chip[2] == chip[3] == out[2]                               # held past the domain
    exact = run({"y": ak.sigmoid(x)}, {"x": np.array([0.0, 0.0, -12.0, -11.0], np.float32)}, EXACT)["y"]
    np.testing.assert_array_equal(exact[2:], np.float16(_sigmoid([-12.0, -11.0])).astype(np.float64))


def test_sigmoid_worst_error_is_the_storage_floor_plus_the_clamp():
    err = _worst_table_error(ak.sigmoid, _sigmoid)
    assert err <= 2.0 ** -12 + 1e-6           # half an ulp just below 1.0; the clamp adds < 5e-5


def test_an_opt_in_knot_table_interpolates_between_fp16_knots():
    """The 33-knot mechanism (ch. 3, ch. 25) as a study profile: at the knots it returns the
    fp16 knot values, between them the fp16 linear interpolation, past the domain the end knot."""
    from anekit.sim.tables import TableSpec
    spec = TableSpec(-8.0, 8.0)
    knotted = dataclasses.replace(profile_for("m1"), sigmoid_table=spec)
    knots = np.linspace(-8.0, 8.0, 33)
    mids = (knots[:-1] + knots[1:]) / 2
    v = np.concatenate([knots, mids, [-20.0, 20.0]])
    x = ak.input("x", v.shape)
    out = run({"y": ak.sigmoid(x)}, {"x": v.astype(np.float32)}, knotted)["y"]
    kv = np.float16(_sigmoid(knots)).astype(np.float64)
    np.testing.assert_array_equal(out[:33], kv)
    np.testing.assert_allclose(out[33:65], (kv[:-1] + kv[1:]) / 2, atol=2.0 ** -12)
    assert out[65] == kv[0] and out[66] == kv[-1]
    # interpolation error of sigmoid (|f''| <= 0.0962) on a 0.5 step: h**2 / 8 * 0.0962 = 0.003
    assert 0.002 < np.max(np.abs(out[33:65] - _sigmoid(mids))) < 0.0035


@pytest.mark.xfail(strict=True, reason="gap: the guide's worst sigmoid error 0.0034 (tbl:c3-constants) "
                                       "contradicts its own statement that the table matches the "
                                       "fp16-rounded function to half an ulp (2.4e-4 below 1.0); the "
                                       "input set and where the worst case sits are not published, so "
                                       "the simulator follows the half-ulp measurement")
def test_sigmoid_worst_error_matches_the_guide():
    assert _worst_table_error(ak.sigmoid, _sigmoid) == pytest.approx(0.0034, rel=0.1)


@pytest.mark.xfail(strict=True, reason="gap: the guide's worst gelu error 0.0059 is not reproduced; the "
                                       "half-ulp model errs by at most half an ulp of gelu(x) (0.0039 "
                                       "below 16, up to 16 near 65504); the input set is not published")
def test_gelu_worst_error_matches_the_guide():
    v = fp16_values(-16, 16)
    x = ak.input("x", v.shape)
    out = run({"y": ak.gelu(x)}, {"x": v.astype(np.float32)})["y"]
    assert np.max(np.abs(out - _gelu(v))) == pytest.approx(0.0059, rel=0.1)


@pytest.mark.xfail(strict=True, reason="gap: the guide's worst tanh error 0.0017 is not reproduced: the "
                                       "half-ulp model gives 2.4e-4, and no uniform 33-knot table "
                                       "interpolating tanh reaches 0.0017 (the best domain gives about "
                                       "0.0045); the knot values are not published")
def test_tanh_worst_error_matches_the_guide():
    assert _worst_table_error(ak.tanh, np.tanh) == pytest.approx(0.0017, rel=0.1)


@pytest.mark.xfail(strict=True, reason="gap: sin/cos/atan err by 0.04 to 0.12 near their argument-"
                                       "reduction seams on the engine; the seam positions are not "
                                       "published, so trig is the exact function rounded to fp16")
def test_trig_seam_error_near_pi():
    v = np.linspace(3.0, 3.3, 200).astype(np.float16).astype(np.float32)
    x = ak.input("x", v.shape)
    out = run({"y": ak.sin(x)}, {"x": v})["y"]
    assert np.max(np.abs(out - np.sin(v.astype(np.float64)))) >= 0.04


@pytest.mark.xfail(strict=True, reason="gap: inside layer_norm a NaN enters the variance as a large finite "
                                       "value, not as +inf; the simulator coerces NaN to +inf at the input")
def test_layer_norm_treats_nan_unlike_inf():
    x = ak.input("x", (1, 4))
    prog = {"y": ak.layer_norm(x, axes=[1])}
    nan = run(prog, {"x": np.array([[np.nan, 1, 2, 3]], np.float32)})["y"]
    inf = run(prog, {"x": np.array([[np.inf, 1, 2, 3]], np.float32)})["y"]
    assert not np.array_equal(nan, inf)


# --- determinism and association ----------------------------------------------------------

def test_bit_deterministic_across_runs_and_simulators():
    rng = np.random.default_rng(3)
    x = ak.input("x", (1, 32, 1, 16))
    y = ak.softmax(ak.conv(x, rng.standard_normal((24, 32, 1, 1)).astype(np.float32)), axis=1)
    prog = ak.program({"y": y})
    feed = {"x": rng.standard_normal((1, 32, 1, 16)).astype(np.float32)}
    a = Simulator(prog, profile="m1").run(feed)["y"]
    sim = Simulator(prog, profile="m1")
    for _ in range(3):
        assert sim.run(feed)["y"].tobytes() == a.tobytes()


def test_association_order_changes_the_bits():
    rng = np.random.default_rng(4)
    a, b, c = (ak.input(n, (4096,)) for n in "abc")
    feeds = {n: rng.standard_normal(4096).astype(np.float32) for n in "abc"}
    out = run({"left": ak.add(ak.add(a, b), c), "right": ak.add(a, ak.add(b, c))}, feeds)
    differ = out["left"] != out["right"]
    assert 0.2 < differ.mean() < 0.45          # the guide measures about 31%
    scale = sum(np.abs(np.float16(feeds[n])).astype(np.float64) for n in "abc")
    ulp = np.spacing(scale.astype(np.float16)).astype(np.float64)   # an ulp at the operands' magnitude
    gap = np.abs(out["left"] - out["right"])
    assert np.all(gap <= 2 * ulp)              # two roundings each way: at most two ulps apart


def test_dot_as_matmul_equals_mul_then_reduce_sum():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((8, 64)).astype(np.float16).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float16).astype(np.float32)
    x = ak.input("x", a.shape)
    out = run({"mm": ak.matmul(x, b.reshape(64, 1)), "red": ak.reduce_sum(ak.mul(x, b), axes=[1])}, {"x": a})
    assert out["mm"][:, 0].tobytes() == out["red"].tobytes()


def test_a_row_computes_the_same_alone_or_in_a_batch():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((48, 16)).astype(np.float32)
    rows = rng.standard_normal((16, 48)).astype(np.float32)
    x1, xb = ak.input("x", (1, 48)), ak.input("x", (16, 48))
    alone = run({"y": ak.matmul(x1, w)}, {"x": rows[3:4]})["y"][0]
    batch = run({"y": ak.matmul(xb, w)}, {"x": rows})["y"][3]
    assert alone.tobytes() == batch.tobytes()


@pytest.mark.parametrize("k,n", [(256, 256), (48, 16), (513, 33), (100, 7), (1024, 1)])
def test_a_rows_bits_do_not_depend_on_the_batch_size(k, n):
    """Guide ch. 3 "Determinism": a row alone, at any position of a batch, and across batch
    sizes 1 to 128 gives the same bytes. Covers both MAC routes (48 x 16 and 1024 x 1 run the
    lane model, the others the fast route) and shapes where float32 BLAS itself changes a
    row's bits with the number of rows (513 x 33, 100 x 7)."""
    rng = np.random.default_rng(k + n)
    w = rng.standard_normal((k, n)).astype(np.float16)
    row = rng.standard_normal(k).astype(np.float16).astype(np.float32)
    alone = None
    for m in (1, 2, 7, 8, 16, 17, 33, 64, 128):
        rows = rng.standard_normal((m, k)).astype(np.float16).astype(np.float32)
        for pos in sorted({0, m // 2, m - 1}):
            rows[pos] = row
        x = ak.input("x", rows.shape)
        y = run({"y": ak.matmul(x, w)}, {"x": rows})["y"]
        alone = y[0] if alone is None else alone
        for pos in sorted({0, m // 2, m - 1}):
            assert y[pos].tobytes() == alone.tobytes(), (m, pos)
    stacked = np.stack([rng.standard_normal((5, k)), rng.standard_normal((5, k))]).astype(np.float16).astype(np.float32)
    stacked[1, 3] = row
    x = ak.input("x", stacked.shape)
    assert run({"y": ak.matmul(x, w)}, {"x": stacked})["y"][1, 3].tobytes() == alone.tobytes()


def test_float64_fallback_keeps_rows_batch_invariant(monkeypatch):
    """For a BLAS that fails the one-time row check the fast route sums in float64: still
    independent of the batch, and within the float32 route's tolerance of the float64 sum."""
    from anekit.sim import mac
    monkeypatch.setattr(mac, "_blocks_are_row_stable", lambda: False)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((513, 33)).astype(np.float16)
    rows = rng.standard_normal((70, 513)).astype(np.float16).astype(np.float32)
    ys = [run({"y": ak.matmul(ak.input("x", (m, 513)), w)}, {"x": rows[:m]})["y"] for m in (1, 2, 70)]
    for y in ys[1:]:
        assert y[0].tobytes() == ys[0][0].tobytes()
    exact = np.float16(rows.astype(np.float64) @ w.astype(np.float64)).astype(np.float64)
    assert np.mean(ys[2] == exact) >= 0.99


@pytest.mark.parametrize("size", [4, 24])
def test_conv_linear_and_attention_outputs_do_not_depend_on_the_batch(size):
    """An image (a token block) computes the same bytes alone and inside a batch of three:
    convolution (lane model at 4 x 4, fast route at 24 x 24), linear and attention."""
    rng = np.random.default_rng(size)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float16)
    lw = rng.standard_normal((24, size * 8)).astype(np.float16)
    batch = rng.standard_normal((3, 8, size, size)).astype(np.float16).astype(np.float32)

    def outputs(n):
        x = ak.input("x", (n, 8, size, size))
        tokens = ak.reshape(x, [n, 8 * size, size])                  # [n, seq, dim]
        tokens = ak.transpose(tokens, [0, 2, 1])                        # [n, size, 8 * size]
        q = ak.linear(tokens, lw)                                       # [n, size, 24]
        return run({"conv": ak.conv(x, w, pad_type="same"), "linear": q,
                    "attention": ak.scaled_dot_product_attention(q, q, q)}, {"x": batch[:n]})

    alone, together = outputs(1), outputs(3)
    for name in alone:
        assert alone[name][0].tobytes() == together[name][0].tobytes(), name


@pytest.mark.parametrize("k", [256, 1024, 2048])
def test_long_dot_products_as_matmul_equal_mul_then_reduce_sum(k):
    """ch. 3: a dot product as matmul and as mul + reduce_sum return identical bytes, however
    many rows are batched (the fast route used to take over at 2**18 products per call)."""
    rng = np.random.default_rng(k)
    a = rng.standard_normal((1024 * 256 // k + 64, k)).astype(np.float16).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float16).astype(np.float32)
    x = ak.input("x", a.shape)
    out = run({"mm": ak.matmul(x, b.reshape(k, 1)), "red": ak.reduce_sum(ak.mul(x, b), axes=[1])}, {"x": a})
    assert out["mm"][:, 0].tobytes() == out["red"].tobytes()


def test_fast_route_is_the_wide_sum_rounded_once_to_fp16():
    """Rows too long for the lane model: against the exact sum of the fp16 products
    (math.fsum, an independent reference), each output is within half an fp16 ulp plus the
    float32 accumulator's bound K * 2**-24 * sum|products|, and almost every output is the
    exact sum rounded once to fp16 (the float32 sum only moves near-ties)."""
    import math
    rng = np.random.default_rng(21)
    a = rng.standard_normal((24, 600)).astype(np.float16).astype(np.float64)
    w = rng.standard_normal((600, 40)).astype(np.float16).astype(np.float64)
    assert 600 * 40 > profile_for("m1").tile_emulation_max_products
    x = ak.input("x", a.shape)
    got = run({"y": ak.matmul(x, w.astype(np.float16))}, {"x": a.astype(np.float32)})["y"]
    exact = np.array([[math.fsum(a[i] * w[:, j]) for j in range(40)] for i in range(24)])
    rounded = np.float16(exact).astype(np.float64)
    ulp = np.spacing(np.abs(rounded).astype(np.float16)).astype(np.float64)
    accumulator = 600 * 2.0 ** -24 * (np.abs(a) @ np.abs(w))
    assert np.all(np.abs(got - exact) <= ulp / 2 + accumulator)
    assert np.mean(got == rounded) >= 0.99


# --- profiles -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,family", [("m1", "h13"), ("M1 Max", "h13"), ("h13g", "h13"), ("a13", "h13"),
                                         ("m2pro", "h14"), ("a14", "h14"), ("m3", "h15"), ("m4", "h16"),
                                         ("m4max", "h16"), ("m5", "h16"), ("a17pro", "h16"), ("h16g", "h16"),
                                         ("a12", "h11")])
def test_profile_for_maps_chips_and_compilers_to_families(name, family):
    p = profile_for(name)
    assert p.family == family and p is FAMILY_PROFILES[family]


def test_chip_dependent_behaviour_lives_in_profile_fields():
    m1, m2, m3, m5 = (profile_for(n) for n in ("m1", "m2", "m3", "m5"))
    assert m1.mac_flush_subnormals and not m2.mac_flush_subnormals and not m5.mac_flush_subnormals
    assert m1.width_slice_gain == m2.width_slice_gain == 16.0 and m3.width_slice_gain == m5.width_slice_gain == 1.0
    assert profile_for("exact") is EXACT and profile_for(EXACT) is EXACT and EXACT.exact


def test_width_slice_gain_follows_the_target_feature():
    """The checker and the simulator agree on which families saturate width slices."""
    from anekit import targets
    for key, fam in targets.families().items():
        assert (FAMILY_PROFILES[key].width_slice_gain == 16.0) == fam.features.width_slice_saturates, key
    assert profile_for("a12").width_slice_gain == 1.0       # measured on M1, M2, A14 only


def test_a_modified_profile_changes_the_simulation():
    no_flush = dataclasses.replace(profile_for("m1"), mac_flush_subnormals=False, name="m1-noflush")
    assert isinstance(no_flush, NumericsProfile)
    assert dot_ones([3 * TINY, 5 * TINY], no_flush) == 8 * TINY
    wide = dataclasses.replace(profile_for("m1"), mac_tile_lanes=0)
    assert dot_ones([4096.0] + [1.0] * 1024, wide) == 5120.0


def test_unknown_target_is_a_target_error():
    with pytest.raises(TargetError, match="m99"):
        profile_for("m99")
    with pytest.raises(TargetError):
        profile_for(42)


# --- the elementwise datapath is correctly rounded fp16 ------------------------------------

@pytest.mark.parametrize("op", ["add", "sub", "mul", "real_div"])
def test_elementwise_arithmetic_is_correctly_rounded_fp16(op):
    """Random fp16 bit patterns (normals, subnormals, zeros, infinities): the profile equals the
    float64 result rounded once to fp16, with the engine's rules for NaN (+0) and for the
    sign of a zero divisor."""
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 0x10000, 40000).astype(np.uint16)
    vals = bits.view(np.float16)
    vals = vals[~np.isnan(vals)].astype(np.float64)
    a, b = vals[: vals.size // 2], vals[vals.size // 2: 2 * (vals.size // 2)]
    with np.errstate(all="ignore"):
        if op == "real_div":
            ref = a / np.where(b == 0, 0.0, b)          # the divisor's zero loses its sign
        else:
            ref = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](a, b)
        ref = np.where(np.isnan(ref), 0.0, np.float16(ref).astype(np.float64))
    x, y = ak.input("x", a.shape), ak.input("y", b.shape)
    got = run({"z": getattr(ak, op)(x, y)}, {"x": a.astype(np.float32), "y": b.astype(np.float32)})["z"]
    same = (got == ref) & (np.signbit(got) == np.signbit(ref))
    assert same.all(), (a[~same][:5], b[~same][:5], got[~same][:5], ref[~same][:5])


# --- a whole transformer block ------------------------------------------------------------------

def test_stories_block_profile_and_exact_against_float64():
    from anekit.models import stories
    dim, hidden, heads, seq = 64, 172, 4, 32
    weights = stories.random_weights(dim, hidden, 1, seed=2)
    prog = stories.build_layer_program(dim=dim, hidden=hidden, heads=heads, seq=seq, seed=2)
    x = np.random.default_rng(3).standard_normal((1, dim, 1, seq)).astype(np.float16).astype(np.float32)
    w16 = {k: v.astype(np.float16).astype(np.float64) for k, v in weights[0].items()}   # the graph holds fp16 weights
    ref = stories.reference_layer(x.reshape(dim, seq).astype(np.float64), w16, heads)
    scale = np.abs(ref).max()
    exact = Simulator(prog, profile="exact").run({"x": x})["y"].reshape(dim, seq).astype(np.float64)
    chip = Simulator(prog, profile="m1").run({"x": x})["y"].reshape(dim, seq).astype(np.float64)
    # exact: float32 compute, output rounded to the declared fp16
    assert np.max(np.abs(exact - ref)) <= 2.0 ** -10 * scale
    # profile: every op rounds to fp16; a block of ~60 ops stays within a few output ulps
    assert np.max(np.abs(chip - ref)) <= 2.0 ** -7 * scale
    assert np.mean(np.abs(chip - ref)) <= 2.0 ** -11 * scale
