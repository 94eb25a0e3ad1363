"""Compiled kernel modules for op kernels (sim/_compiled_*.py, the `fast` extra) against their
numpy routes, bit for bit, on hostile data: infinities, NaN with odd payloads, float32 and
fp16 subnormals, zeros of both signs, 65504, values at the edges of the tables' ranges,
empty and strided arrays. Without numba both calls take the numpy route (the `numba` marker
deselects these where it is missing)."""
from __future__ import annotations

import numpy as np
import pytest
from test_sim_compiled import assert_same_bits, both, raw_float32

from anekit.sim import _compiled_erf, compiled, functions, taylor32


def _taylor_inputs(rng) -> np.ndarray:
    """Whole-range float32 values, dense normals where gelu/erf are used, table edges."""
    edges = np.array([2.0 ** -30, -(2.0 ** -30), 8.0, -8.0, np.nextafter(np.float32(8), np.float32(0)),
                      2.0 ** -31, -3.5, np.nextafter(np.float32(-3.5), np.float32(0)), 65504.0, -65504.0,
                      1e-40, -1e-45, 0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    normals = (rng.standard_normal(30000) * 2).astype(np.float32)
    fp16_grid = (rng.standard_normal(5000) * 3).astype(np.float16).astype(np.float32)
    return np.concatenate([edges, raw_float32(rng, 20000), normals, fp16_grid])


@pytest.mark.numba
@pytest.mark.parametrize("name", ["GELU", "ERF"])
def test_taylor_expansion_is_bit_identical(name):
    t = getattr(taylor32, name)
    x = _taylor_inputs(np.random.default_rng(3))
    ref, got = both(lambda: t(x))
    assert_same_bits(ref, got)
    previous = compiled.set_enabled(True)           # (ANEKIT_NO_JIT=1 may have switched it off)
    try:
        assert _compiled_erf.kernels() is not None
    finally:
        compiled.set_enabled(previous)
    assert_same_bits(*both(lambda: t(x[::7].reshape(-1, 3)[:, 1:])))       # strided, 2-d


@pytest.mark.numba
@pytest.mark.parametrize("name", ["GELU", "ERF"])
def test_taylor_expansion_matches_the_float64_reference(name):
    """Independent of both routes: float32 of the float64 reference, element by element."""
    t = getattr(taylor32, name)
    ref_fn = functions.gelu_precise if name == "GELU" else functions.erf
    x = _taylor_inputs(np.random.default_rng(4))
    with np.errstate(all="ignore"):
        want = ref_fn(x.astype(np.float64)).astype(np.float32)
    _, got = both(lambda: t(x))
    assert_same_bits(want, got, nan_payloads=False)


DEPTHWISE = [   # x shape, weight shape, strides, pads, dilations, groups
    ((2, 6, 9, 7), (6, 1, 3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1), 6),
    ((1, 4, 12, 10), (8, 1, 5, 3), (2, 1), [(2, 2), (0, 1)], (1, 2), 4),      # channel multiplier 2
    ((1, 32, 8, 8), (32, 1, 7, 7), (1, 1), [(3, 3), (3, 3)], (1, 1), 32),     # ConvNeXt's 7x7
    ((3, 5, 40), (5, 1, 4), (3,), [(1, 2)], (2,), 5),                          # 1-d
]


@pytest.mark.numba
@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("numerics", ["exact", "m4", "m1"])
def test_depthwise_convolution_is_bit_identical(case, numerics):
    from test_sim_compiled import hostile

    from anekit.sim import profile_for
    from anekit.sim.kernels import conv
    from anekit.sim.numerics import Numerics
    xs, ws, strides, pads, dil, groups = case
    rng = np.random.default_rng(5)
    nx = Numerics(profile_for(numerics))
    x, w = hostile(rng, xs, 4.0, 0.05), hostile(rng, ws, 0.5, 0.05)
    x[..., :1] = (rng.standard_normal(x[..., :1].shape) * 1e-6).astype(np.float32)   # fp16 subnormal products
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    k = ws[2:]
    out_sp = tuple((s + a + b - d * (kk - 1) - 1) // st + 1
                   for s, (a, b), d, kk, st in zip(xs[2:], pads, dil, k, strides))
    wm = conv._weight_matrix(w, groups)
    with np.errstate(all="ignore"):
        ref, got = both(lambda: conv._depthwise(nx, x, xp, wm, groups, True, k, strides, dil, out_sp))
    if ref is None:                  # the ceiling could be reached: both leave it to the matmul route
        assert got is None
        return
    assert ref.shape == (xs[0], ws[0]) + out_sp
    assert_same_bits(ref, got)



@pytest.mark.numba
@pytest.mark.parametrize("case", [c for c in DEPTHWISE if c[1][0] == c[0][1]], ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("numerics", ["exact", "m4"])
def test_channels_last_depthwise_is_bit_identical(case, numerics):
    """The channels-innermost kernel (one input channel per output, operands without NaN)
    against the numpy loop on specials other than NaN: infinities (inf * 0 makes NaN inside
    the sum), signed zeros, fp16 subnormals and maxima."""
    from test_sim_compiled import hostile

    from anekit.sim import profile_for
    from anekit.sim.kernels import _compiled_conv, conv
    from anekit.sim.numerics import Numerics
    xs, ws, strides, pads, dil, groups = case
    rng = np.random.default_rng(6)
    nx = Numerics(profile_for(numerics))
    x, w = hostile(rng, xs, 4.0, 0.1), hostile(rng, ws, 0.5, 0.1)
    x[np.isnan(x)], w[np.isnan(w)] = np.inf, -0.0
    x.reshape(-1)[:3], w.reshape(-1)[:2] = [np.inf, -np.inf, -0.0], [0.0, -0.0]
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    k = ws[2:]
    out_sp = tuple((s + a + b - d * (kk - 1) - 1) // st + 1
                   for s, (a, b), d, kk, st in zip(xs[2:], pads, dil, k, strides))
    wm = conv._weight_matrix(w, groups)
    calls = []
    jit = _compiled_conv.kernel()
    if jit is not None:
        real = jit.channels_last
        jit.channels_last = lambda *a: (calls.append(1), real(*a))
    try:
        with np.errstate(all="ignore"):
            ref, got = both(lambda: conv._depthwise(nx, x, xp, wm, groups, False, k, strides, dil, out_sp))
    finally:
        if jit is not None:
            jit.channels_last = real
    assert calls and ref is not None
    if numerics == "exact":
        assert np.isnan(ref).any() and np.isinf(ref).any()       # the specials reach the sums
    assert_same_bits(ref, got)

@pytest.mark.numba
def test_depthwise_convolution_matches_float64():
    """Independent reference for the compiled route: finite data, exact numerics, float64 sums
    agree to float32 rounding of a 9-term sum."""
    from anekit.sim import profile_for
    from anekit.sim.kernels import conv
    from anekit.sim.numerics import Numerics
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    _, got = both(lambda: conv._depthwise(Numerics(profile_for("exact")), x, xp, conv._weight_matrix(w, 4), 4,
                                          True, (3, 3), (1, 1), (1, 1), (6, 6)))
    want = np.zeros((1, 4, 6, 6))
    for a in range(3):
        for b in range(3):
            want += w[None, :, 0, a, b, None, None].astype(np.float64) * xp[:, :, a:a + 6, b:b + 6]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.numba
@pytest.mark.parametrize("numerics", ["m4", "m1", "h13", "keep-nan", "raw-products"])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_chip_normalization_is_bit_identical(numerics, affine):
    from test_sim_compiled import ALL_PROFILES, hostile

    from anekit.sim.kernels import norm
    from anekit.sim.numerics import Numerics
    from anekit.sim import profile_for
    nx = Numerics(ALL_PROFILES.get(numerics) or profile_for(numerics))
    rng = np.random.default_rng(7)
    x = hostile(rng, (3, 17, 32), 8.0, 0.03)
    x[0, 0] = 65504.0                                  # a row whose variance overflows
    x[0, 1] = 0.0                                      # a constant row: 1 / sqrt(eps)
    x[1, 2, :5] = [np.inf, -np.inf, np.nan, 6e-8, -6e-8]
    gamma = hostile(rng, (32,), 1.0, 0.05) if affine[0] else None
    beta = hostile(rng, (32,), 1.0, 0.05) if affine[1] else None
    # A profile that keeps NaN takes the numpy stages on both routes; the MAC sums' compiled
    # route (sim/compiled.py) may give its NaN another payload there.
    payloads = nx.profile.indeterminate_to_zero
    with np.errstate(all="ignore"):
        ref, got = both(lambda: norm._normalize_last(nx, x, 1e-5, gamma, beta))
        assert_same_bits(ref, got, payloads)
        assert_same_bits(*both(lambda: norm._normalize_last(nx, x[:, ::2, 1:9], 1e-3)), payloads)   # strided
        assert_same_bits(*both(lambda: norm._normalize_last(nx, x[:, :0], 1e-3, gamma, beta)))     # no rows


@pytest.mark.numba
def test_chip_layer_norm_stays_near_float64():
    """Independent reference: on tame data the fp16 stages stay within a few fp16 ulps of the
    float64 formula."""
    from anekit.sim import profile_for
    from anekit.sim.kernels import norm
    from anekit.sim.numerics import Numerics
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 64)).astype(np.float16).astype(np.float32)
    _, got = both(lambda: norm._normalize_last(Numerics(profile_for("m4")), x, 1e-5))
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, want, atol=8e-3)


@pytest.mark.numba
def test_grid_lookup_compiled_read_is_bit_identical():
    """fp16_grid.lookup's compiled check-and-read against numpy's take, on every fp16 value
    (NaN payloads, infinities, subnormals, both zeros) and strided views; an array with one
    value off the grid (or a NaN payload with low bits) is still refused on both routes."""
    from anekit.sim import fp16_grid

    grid = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    fn = lambda v: functions.gelu_precise(v).astype(np.float32)        # noqa: E731
    key = ("test-compiled-read",)
    fp16_grid.grid_table(key, fn)
    for x in (grid, grid.reshape(256, 256)[:, ::3], grid[::-1].copy().reshape(64, -1)):
        ref, got = both(lambda: fp16_grid.lookup(key, fn, x))
        assert_same_bits(ref, got)
        with np.errstate(all="ignore"):
            assert_same_bits(got, fn(x))                   # the table holds fn itself
    off = grid.copy()
    off.view(np.uint32)[12345] |= 1
    assert both(lambda: fp16_grid.lookup(key, fn, off)) == (None, None)
    previous = compiled.set_enabled(True)
    try:
        assert fp16_grid._take() is not None
    finally:
        compiled.set_enabled(previous)


@pytest.mark.numba
def test_all_finite_agrees_with_numpy_on_every_kind_of_value():
    """fp16.all_finite (the loss scaler's gradient check) against np.isfinite(a).all() on
    arrays with one inf, -inf, NaN of any payload, the largest finite float32, subnormals,
    at every position of a vector block, and on empty and strided arrays; both routes."""
    from anekit.sim.fp16 import all_finite

    rng = np.random.default_rng(8)
    base = raw_float32(rng, 300)
    base = base[np.isfinite(base)]
    specials = [np.inf, -np.inf, np.nan, np.float32(3.4028235e38), 1e-45, -0.0,
                np.array(0x7F800001, np.uint32).view(np.float32), np.array(0xFFC00000, np.uint32).view(np.float32)]
    cases = [base, base[:0], base[::3]]
    for v in specials:
        for pos in (0, 15, 16, 17, base.size - 1):
            a = base.copy()
            a[pos] = v
            cases.append(a)
    for a in cases:
        want = bool(np.isfinite(a).all())
        assert both(lambda: all_finite(a)) == (want, want)
