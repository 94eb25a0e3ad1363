"""The one-call compiled reductions (sim/kernels/_compiled_reduce.py) against the numpy route,
bit for bit: reduce_sum / reduce_mean over last and first axes, layer_norm's sums and softmax,
on hostile data (infinities, NaN, signed zeros, fp16 subnormals, 65504), odd shapes and
strided inputs, in every chip profile and in exact numerics. Each test also checks that the
compiled route was taken where it applies, so a silent fallback cannot pass for a speedup."""
from __future__ import annotations

import numpy as np
import pytest
from test_sim_compiled import ALL_PROFILES, assert_same_bits, both, hostile

from anekit.ir.builder import build as _op
from anekit.sim import EXACT, Simulator, compiled
from anekit.sim.fp16 import F32
from anekit.sim.kernels import reduce
from anekit.sim.numerics import Numerics

PLAIN = np.array([0.0, -0.0, 6e-8, -6e-8, 3.05e-5, -1e-6, 6.1e-5, 2.0 ** -14, 65504.0, -65504.0, 1024.0, 2049.0],
                 np.float32)
SHAPES = [((64, 128), (1,)), ((64, 128), (0,)), ((64, 128), None), ((4, 64, 64), (-1,)), ((3, 5, 7), (1,)),
          ((7, 13), (0,)), ((9, 1), (1,)), ((5, 2), (-1,)), ((5, 3), (0,)), ((2, 3, 6), (0, 2))]


def _lanes(rng, shape, scale, specials):
    """fp16-grid values; `specials` of them from PLAIN (or, hostile, infinities and NaN too)."""
    x = (rng.standard_normal(shape) * scale).astype(np.float16).astype(np.float32)
    pick = rng.random(shape) < 0.1
    x[pick] = rng.choice(specials, int(pick.sum()))
    x.reshape(-1, shape[-1])[0] = -0.0                     # a row of -0
    return x


def _numpy_sums(nx, lanes, mult):
    return nx.store(nx.wide_sum(lanes) * F32(mult))


@pytest.mark.numba
@pytest.mark.parametrize("profile", list(ALL_PROFILES))
def test_stored_sums_equal_the_accumulator_model(profile):
    nx = Numerics(ALL_PROFILES[profile])
    applies = nx.profile.mac_tile_lanes == 4
    rng = np.random.default_rng(3)
    compiled.warm_up()
    for shape, axes in SHAPES:
        for scale in (1.0, 2.0 ** -13, 3000.0):
            x = _lanes(rng, shape, scale, PLAIN)
            for view in (x, x[..., ::-1], np.swapaxes(x, 0, -1)):     # strided and transposed inputs
                lanes = reduce.lanes_last(view, axes)
                for mult in (1.0, 1.0 / lanes.shape[-1]):
                    got = reduce.stored_sums(nx, lanes, mult)
                    assert (got is not None) == applies
                    if got is not None:
                        compiled.set_enabled(False)
                        try:
                            ref = _numpy_sums(nx, lanes, mult)
                        finally:
                            compiled.set_enabled(True)
                        assert_same_bits(ref, got)
                        assert_same_bits(_numpy_sums(nx, lanes, mult), got)       # the compiled MAC model too
                        raw = reduce.stored_sums(nx, lanes, mult, store=False)
                        assert_same_bits(nx.wide_sum(lanes) * F32(mult), raw)
    lanes = _lanes(rng, (4, 40), 1.0, PLAIN)
    for odd in (65520.0, np.inf, np.nan):                  # not plain: left to mac.reduce_lanes
        lanes[2, 5] = odd
        assert reduce.stored_sums(nx, lanes, 1.0) is None


@pytest.mark.numba
@pytest.mark.parametrize("profile", ["h13", "h16", "keep-nan", "raw-products", "tile2-guard0", "exact"])
@pytest.mark.parametrize("op", ["reduce_sum", "reduce_mean", "reduce_sum_square", "reduce_log_sum_exp"])
def test_reduction_kernels_are_bit_identical(profile, op):
    """The kernels end to end (which now store their own results) on both routes, hostile data."""
    import anekit as ak
    p = EXACT if profile == "exact" else ALL_PROFILES[profile]
    rng = np.random.default_rng(5)
    for shape, axes in SHAPES:
        x = ak.input("x", shape)
        y = _op(op, x, axes=None if axes is None else list(axes), keep_dims=bool(len(shape) % 2))
        sim = Simulator(ak.program({"y": y}), profile=p)
        for data in (hostile(rng, shape, 30.0, 0.2), _lanes(rng, shape, 8.0, PLAIN)):
            ref, got = both(lambda: sim.run_stored({"x": data}))
            for k in ref:
                assert_same_bits(ref[k], got[k], nan_payloads=p.indeterminate_to_zero)


@pytest.mark.numba
@pytest.mark.parametrize("profile", ["h13", "h16", "raw-products"])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_one_call_layer_norm_is_bit_identical(profile, affine):
    """_compiled_norm.normalize4 (both sums inside) on plain rows: signed zeros, subnormals,
    a constant row with epsilon 0 (1 / sqrt(0) = inf, then 0 * inf: the default NaN stored
    as +0), odd widths, strided rows; against the numpy route, and taken (not a fallback)."""
    from anekit.sim import _compiled_mac
    from anekit.sim.kernels import _compiled_norm, norm
    nx = Numerics(ALL_PROFILES[profile])
    p = nx.profile
    rng = np.random.default_rng(11)
    compiled.warm_up()
    for shape, eps in (((64, 128), 1e-5), ((5, 33), 0.0), ((3, 17, 7), 1e-3), ((2, 1), 1e-5)):
        x = _lanes(rng, shape, 4.0, PLAIN[np.abs(PLAIN) < 100])
        x.reshape(-1, shape[-1])[-1] = 3.0                          # a constant row
        gamma = _lanes(rng, shape[-1:], 1.0, PLAIN) if affine[0] else None
        beta = _lanes(rng, shape[-1:], 1.0, PLAIN) if affine[1] else None
        for view in (x, x[..., ::-1]):
            with np.errstate(divide="ignore"):
                ref, got = both(lambda: norm._normalize_last(nx, view, eps, gamma, beta))
            assert_same_bits(ref, got)
        rows = np.ascontiguousarray(x).reshape(-1, shape[-1])
        d, dd, out = (np.empty_like(rows) for _ in range(3))
        none = np.zeros(0, F32)
        four = _compiled_norm.kernels()[2]
        assert four(rows, F32(1.0 / shape[-1]), nx.const(eps), none if gamma is None else gamma,
                    none if beta is None else beta, p.mac_round_products,
                    _compiled_mac._SCALES[p.mac_tile_guard_bits], p.mac_flush_subnormals, d, dd, out)


@pytest.mark.numba
@pytest.mark.parametrize("plain", [True, False])
def test_layer_norm_of_a_constant_row_without_epsilon(plain):
    """var + eps = 0: 1 / sqrt(0) is inf on both routes (the compiled stages once raised
    ZeroDivisionError under numba's Python error model), and 0 * inf is stored as +0."""
    from anekit.sim import profile_for
    from anekit.sim.kernels import norm
    nx = Numerics(profile_for("m1"))
    x = np.full((3, 8), 3.0, np.float32)
    if not plain:
        x[2, 1] = np.inf                 # another row not plain: the stage kernels, not normalize4
    with np.errstate(all="ignore"):
        ref, got = both(lambda: norm._normalize_last(nx, x, 0.0))
    assert_same_bits(ref, got)
    assert (got[0] == 0).all() and not np.signbit(got[0]).any()


SOFTMAX_SHAPES = [(4, 64, 64), (3, 7), (2, 300), (5, 1), (2, 129), (1, 1000), (3, 8), (2, 3, 17)]


@pytest.mark.numba
@pytest.mark.parametrize("profile", ["h13", "h16", "keep-nan", "exact"])
def test_softmax_is_bit_identical(profile):
    """reduce.softmax_along on both routes: the compiled passes (max by ordered keys, numpy's
    pairwise sum, rows shorter than a block, of one block and split in halves) against numpy's
    own; rows with infinities (chip: inf - inf stored as +0; exact: left to numpy), NaN, rows
    of -inf, signed zeros, subnormals, 65504, strided and transposed inputs, another axis."""
    p = EXACT if profile == "exact" else ALL_PROFILES[profile]
    nx = Numerics(p)
    applies = p.exact or p.indeterminate_to_zero
    rng = np.random.default_rng(8)
    compiled.warm_up()
    for shape in SOFTMAX_SHAPES:
        tame = (rng.standard_normal(shape) * 4).astype(np.float16).astype(np.float32)
        tame.reshape(-1, shape[-1])[0] = -0.0
        wild = hostile(rng, shape, 30.0, 0.2)
        wild.reshape(-1, shape[-1])[-1] = -np.inf                        # a row of -inf
        for x in (tame, _lanes(rng, shape, 3.0, PLAIN), wild):
            for view, axis in ((x, -1), (x[..., ::-1], -1), (np.swapaxes(x, 0, -1), -1), (x, 0)):
                ref, got = both(lambda: reduce.softmax_along(nx, view, axis))
                assert_same_bits(ref, got)
        assert (reduce._compiled_softmax(nx, tame) is not None) == applies
    for odd in (np.nan, np.inf):
        x = np.zeros((3, 9), np.float32)
        x[1, 4] = odd
        taken = reduce._compiled_softmax(nx, x) is not None
        assert taken == (not p.exact and odd == np.inf and applies)


@pytest.mark.numba
@pytest.mark.parametrize("k", [1, 7, 8, 9, 15, 16, 17, 64, 100, 127, 128, 129, 136, 255, 256, 257, 1000, 4099, 8192])
def test_pairwise_sum_is_numpys(k):
    """_compiled_reduce._pairwise from +0 against np.add.reduce, rows of every kind of length
    (numpy's blocks of eight and of 128, the split in halves), wide dynamic range."""
    from anekit.sim.kernels import _compiled_reduce
    compiled.warm_up()
    rng = np.random.default_rng(k)
    a = (rng.standard_normal((5, k)) * np.exp2(rng.integers(-12, 12, (5, k)))).astype(np.float32)
    want = np.add.reduce(a, axis=-1)
    flat = a.reshape(-1)
    got = np.array([F32(0.0) + _compiled_reduce._pairwise(flat, r * k, k) for r in range(5)], np.float32)
    assert_same_bits(want, got)
    rows = np.empty(5, np.float32)
    _compiled_reduce.numpy_row_sums(a, rows)          # the vectorised form for one block of eights
    assert_same_bits(want, rows)


@pytest.mark.numba
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_exact_layer_norm_is_bit_identical(affine):
    """_compiled_norm.normalize_exact against numpy's formula: odd widths (numpy's mean divides
    in float64), widths past one summation block, signed zeros, subnormals, large values,
    constant rows with epsilon 0 (0 / 0); infinities, NaN and strided rows stay with numpy."""
    from anekit.sim.kernels import norm
    nx = Numerics(EXACT)
    rng = np.random.default_rng(13)
    compiled.warm_up()
    for shape, eps in (((64, 128), 1e-5), ((17, 33), 1e-3), ((3, 5, 7), 0.0), ((2, 300), 1e-5), ((4, 1), 1e-5)):
        x = (rng.standard_normal(shape) * np.exp2(rng.integers(-20, 20, shape))).astype(np.float32)
        x.reshape(-1, shape[-1])[0] = -0.0
        x.reshape(-1, shape[-1])[-1] = 1e-40                            # a constant subnormal row
        gamma = rng.standard_normal(shape[-1:]).astype(np.float32) if affine[0] else None
        beta = rng.standard_normal(shape[-1:]).astype(np.float32) if affine[1] else None
        assert norm._exact_compiled(x, eps, gamma, beta) is not None
        wild = hostile(rng, shape, 100.0, 0.2)
        for data in (x, x[..., ::-1], wild):
            with np.errstate(all="ignore"):
                ref, got = both(lambda: norm._normalize_last(nx, data, eps, gamma, beta))
            assert_same_bits(ref, got)


def test_lanes_last_is_moveaxis_then_reshape():
    """reduce.lanes_last (one transpose) gives np.moveaxis's view, flattened, for every set of
    axes of a 4-D array, negative and repeated axes, None, and no axes."""
    import itertools
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    sets = [None, [], [-1, 3], [0, 0]] + [list(c) for n in range(1, 5) for c in itertools.combinations(range(4), n)]
    for axes in sets:
        ax = list(range(4)) if axes is None else sorted({a % 4 for a in axes})
        moved = np.moveaxis(x, ax, list(range(4 - len(ax), 4)))
        want = moved.reshape(moved.shape[:4 - len(ax)] + (-1,))
        got = reduce.lanes_last(x, axes)
        assert got.shape == want.shape and np.array_equal(got, want), axes
