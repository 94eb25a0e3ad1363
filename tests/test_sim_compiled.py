"""The compiled route (sim/compiled.py, the `fast` extra) against the numpy route, bit for bit.

Every comparison runs the same call twice, with the compiled kernels switched off and on, on
hostile data: infinities, NaN (with odd payloads), fp16 subnormals, zeros of both signs,
values at 65504 and products at and past the 2**15 ceiling, K not a multiple of the tile,
empty arrays, broadcast batch axes, for every numerics profile. The numpy-route tests at the
end need no numba and check the fixes made while matching the two routes against an
independent reference (numpy's float16 cast).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from anekit.sim import FAMILY_PROFILES, compiled, fp16, mac

PROFILES = sorted(FAMILY_PROFILES)
# Profiles outside the table that the kernels still take: NaN kept, products unrounded, no
# flush, two-lane tiles with no guard bits.
CUSTOM = {
    "keep-nan": dataclasses.replace(FAMILY_PROFILES["h13"], name="keep-nan", indeterminate_to_zero=False),
    "raw-products": dataclasses.replace(FAMILY_PROFILES["h16"], name="raw-products", mac_round_products=False),
    "tile2-guard0": dataclasses.replace(FAMILY_PROFILES["h13"], name="tile2-guard0", mac_tile_lanes=2,
                                        mac_tile_guard_bits=0),
}
ALL_PROFILES = {**{k: FAMILY_PROFILES[k] for k in PROFILES}, **CUSTOM}

F16_SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 6e-8, -6e-8, 3.05e-5, -1e-6,
                         6.1e-5, 65504.0, -65504.0, 181.0, -181.0, 182.0, 256.0, 1024.0, 32768.0,
                         -32768.0, 2.0 ** -14, 1.0, -1.0], np.float16)


def hostile(rng, shape, scale=1.0, special=0.2) -> np.ndarray:
    """fp16-grid float32 values: scaled normals with a share of the specials above."""
    v = (rng.standard_normal(shape) * scale).astype(np.float16).reshape(-1)
    pick = rng.random(v.size) < special
    v[pick] = rng.choice(F16_SPECIALS, int(pick.sum()))
    return v.astype(np.float32).reshape(shape)


def raw_float32(rng, n) -> np.ndarray:
    """float32 values off the fp16 grid across the whole range, odd NaN payloads included."""
    bits = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    a = bits.view(np.float32).copy()
    a[: n // 2] = (rng.standard_normal(n // 2) * np.exp2(rng.integers(-30, 20, n // 2))).astype(np.float32)
    a[:8] = np.array([0x7FFFFFFF, 0xFFFFFFFF, 0x7FFFF000, 0xFFFFF000, 0x7FC00000, 0xFFC00000, 0x477FEFFF,
                      0x477FF000], np.uint32).view(np.float32)
    return a


def both(fn):
    """fn() on the numpy route and on the compiled route (the numpy route warns on inf * 0)."""
    previous = compiled.set_enabled(False)
    with np.errstate(invalid="ignore", over="ignore"):
        return _both(fn, previous)


def _both(fn, previous):
    try:
        ref = fn()
        compiled.set_enabled(True)
        assert compiled.kernels() is not None, "numba is installed, the compiled route must be on"
        got = fn()
    finally:
        compiled.set_enabled(previous)
    return ref, got


def assert_same_bits(ref, got, nan_payloads=True):
    """Identical float32 bits; with nan_payloads=False, NaN only has to meet NaN."""
    ref, got = np.asarray(ref), np.asarray(got)
    assert ref.dtype == got.dtype == np.float32 and ref.shape == got.shape
    if not nan_payloads:
        assert np.array_equal(np.isnan(ref), np.isnan(got))
        ref, got = np.where(np.isnan(ref), 0, ref), np.where(np.isnan(got), 0, got)
    diff = ref.view(np.uint32) != got.view(np.uint32)
    assert not diff.any(), f"{int(diff.sum())} of {diff.size} differ, first at {np.argwhere(diff)[0]}: " \
                           f"numpy {ref[diff][0]!r} compiled {got[diff][0]!r}"


@pytest.mark.numba
@pytest.mark.parametrize("nan", [None, 0.0, np.inf])
@pytest.mark.parametrize("limit", [None, 32768.0, 1000.7])
@pytest.mark.parametrize("flush", [False, True])
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("nan_free", [False, True])
def test_round_fp16_is_bit_identical(nan, limit, flush, dense, nan_free):
    """nan_free: arrays without a NaN take the hardware fp16 conversion where the host has
    one (an array holding a NaN is redone through the general rounding)."""
    rng = np.random.default_rng(1)
    a = raw_float32(rng, 20000)
    if nan_free:
        a[np.isnan(a)] = np.float32(1.0009765625) * np.sign(rng.standard_normal(int(np.isnan(a).sum())))
        edges = np.array([0x1000, 0x1001, 0x387FEFFF, 0x387FF000, 0x387FFFFF, 0x38800000, 0x33000000,
                          0x33000001, 0x477FF000, 0x46FFF000, 0x447A2CCD], np.uint32)     # flush, 2**15, 1000.7
        a[8:30] = np.concatenate([edges, edges | np.uint32(0x80000000)]).view(np.float32)
    if dense:      # mostly fp16 subnormals: the numpy route's branch-free addition path
        a[8:] = (rng.standard_normal(a.size - 8) * 2.0 ** -18).astype(np.float32)
        a[8:40] = [40000.0, -33000.0, 32768.0, 1000.7, 65519.0, 65520.0, np.inf, -np.inf] * 4
    ref, got = both(lambda: fp16.round_fp16(a.reshape(100, 200), nan=nan, limit=limit, flush=flush))
    assert_same_bits(ref, got)
    assert_same_bits(*both(lambda: fp16.round_fp16(a[::3], nan=nan, limit=limit, flush=flush)))


@pytest.mark.numba
def test_round_fp16_and_flush_of_empty_and_scalar_arrays():
    for a in (np.zeros((0, 3), np.float32), np.float32(7e-6), np.array(-1e-40, np.float32)):
        assert_same_bits(*both(lambda: fp16.round_fp16(a, nan=0.0)))
        assert_same_bits(*both(lambda: fp16.flush_subnormals(a)))


@pytest.mark.numba
@pytest.mark.parametrize("limit", [None, 32768.0])
def test_round_fp16_of_transposed_float64_and_list_inputs(limit):
    """The compiled wrapper's shortcuts (no copy of a C-contiguous float32 array, cached
    saturation limits) keep shapes and bits for every other kind of input, and never write
    into the caller's array."""
    rng = np.random.default_rng(5)
    a = raw_float32(rng, 600).reshape(20, 30)
    kept = a.copy()
    with np.errstate(invalid="ignore"):              # NaN payloads through float64 and back
        wide = a.astype(np.float64)
    for x in (a.T, wide, a[:2, :3].tolist(), a):
        with np.errstate(invalid="ignore"):
            ref, got = both(lambda: fp16.round_fp16(x, nan=0.0, limit=limit))
        assert got.shape == np.shape(x)
        assert_same_bits(ref, got)
    assert_same_bits(kept, a)
    assert_same_bits(fp16.round_fp16(a.T), fp16.round_fp16(a).T)


@pytest.mark.numba
def test_flush_subnormals_is_bit_identical():
    rng = np.random.default_rng(2)
    a = np.concatenate([raw_float32(rng, 5000), hostile(rng, 5000, 2.0 ** -15)])
    assert_same_bits(*both(lambda: fp16.flush_subnormals(a.reshape(50, 200))))


MATMUL_SHAPES = [   # x shape, w shape: lane route (N * K <= 2048) in every orientation
    ((5, 37), (37, 19)),             # K off the tile, vector over w's columns
    ((64, 9), (9, 3)),               # few columns: vector over x's rows
    ((300, 6), (6, 1)),              # matrix-vector, more than one block of rows
    ((3, 1), (1, 7)),                # K = 1
    ((2, 1, 4, 13), (3, 13, 16)),    # broadcast batch axes on both sides
    ((4, 64, 32), (4, 32, 64)),      # attention scores
    ((1, 70), (70, 1)),              # a dot product
]
FAST_SHAPES = [     # the fast route, whose ceiling and infinity entries go through the lane model
    ((6, 300), (300, 40)),
    ((2, 3, 128), (128, 33)),
]


@pytest.mark.numba
@pytest.mark.parametrize("profile", list(ALL_PROFILES))
@pytest.mark.parametrize("shapes", MATMUL_SHAPES + FAST_SHAPES, ids=str)
def test_matmul_is_bit_identical(profile, shapes):
    p = ALL_PROFILES[profile]
    rng = np.random.default_rng(sum(map(ord, profile + str(shapes))))
    for scale, special in ((1.0, 0.0), (1.0, 0.25), (150.0, 0.1), (2.0 ** -10, 0.1)):
        x, w = hostile(rng, shapes[0], scale, special), hostile(rng, shapes[1], scale, special)
        for ceiling in (True, False):
            ref, got = both(lambda: mac.matmul(x, w, p, ceiling))
            assert_same_bits(ref, got, nan_payloads=p.indeterminate_to_zero)


@pytest.mark.numba
@pytest.mark.parametrize("profile", list(ALL_PROFILES))
@pytest.mark.parametrize("shapes", [((64, 128), (128, 512)), ((512, 64), (64, 128)), ((64, 40), (40, 33))], ids=str)
def test_transposed_operands_are_bit_identical(profile, shapes):
    """Operands read transposed (w.T, x.T: a backward pass's matmuls), large enough for the
    blocked transposed copy and with fp16 subnormals (the M1 flush of the operand's own copy),
    against the numpy route and against the same matmul of C-contiguous copies."""
    p = ALL_PROFILES[profile]
    rng = np.random.default_rng(sum(map(ord, profile + str(shapes))))
    for scale, special in ((1.0, 0.0), (2.0 ** -12, 0.01), (150.0, 0.002)):     # few inf rows: lane-model entries
        xt = hostile(rng, shapes[0][::-1], scale, special).T         # [M, K] views of [K, M]
        wt = hostile(rng, shapes[1][::-1], scale, special).T         # [K, N] views of [N, K]
        dense = both(lambda: mac.matmul(np.ascontiguousarray(xt), np.ascontiguousarray(wt), p))[1]
        for x, w in ((xt, wt), (np.ascontiguousarray(xt), wt)):
            ref, got = both(lambda: mac.matmul(x, w, p))
            assert_same_bits(ref, got, nan_payloads=p.indeterminate_to_zero)
            assert_same_bits(dense, got)
    big = rng.standard_normal((300, 70)).astype(np.float32)
    assert np.array_equal(mac._contiguous(big.T), big.T) and mac._contiguous(big.T).flags.c_contiguous


@pytest.mark.numba
@pytest.mark.parametrize("profile", PROFILES)
def test_constant_operand_reuses_its_layout_bit_identically(profile):
    """A cached constant weight (conv, linear) in matrix-vector products, called twice and with
    two different batches, as the decode program does."""
    p = FAMILY_PROFILES[profile]
    rng = np.random.default_rng(3)
    weight = hostile(rng, (1, 700, 40), 4.0, 0.05)
    for batch in ((1,), (3,)):
        v = hostile(rng, batch + (40, 1), 4.0, 0.05)
        ref = both(lambda: mac.matmul(weight, v, p))[0]
        const = mac.Operand(weight, p, -1, const=True)
        previous = compiled.set_enabled(True)
        try:
            got = [mac.matmul(const, v, p) for _ in range(2)]
        finally:
            compiled.set_enabled(previous)
        for g in got:
            assert_same_bits(ref, g)


@pytest.mark.numba
def test_ceiling_saturates_inside_a_tile_and_in_the_accumulator():
    """Hand-made rows: an in-tile partial reaching 2**15, a running sum reaching it and then
    cancelled, inf - inf, and -0 products, on both routes and against the expected values."""
    p = FAMILY_PROFILES["h16"]
    x = np.array([[181.0, 181.0, 0, 0, 0, 0, 0, 0],           # 32768 + 32768 in one tile: saturates
                  [128.0, 0, 0, 0, 128.0, 0, 0, 0],           # 23168 + 16384 in the accumulator
                  [np.inf, -np.inf, 1.0, 0, 0, 0, 0, 0],      # inf - inf in a tile: +0
                  [-1.0] * 8],                                # -0 products throughout
                 np.float32)
    w = np.zeros((8, 2), np.float32)
    w[:5, 0] = [181.0, 181.0, 1.0, 0.0, 128.0]
    ref, got = both(lambda: mac.matmul(x, w, p))
    assert_same_bits(ref, got)
    assert ref[0, 0] == np.inf and ref[1, 0] == np.inf and ref[2, 0] == 1.0
    assert np.signbit(ref[3, 1]) and ref[3, 1] == 0       # a sum of -0 products stays -0


@pytest.mark.numba
@pytest.mark.parametrize("profile", list(ALL_PROFILES))
def test_reduce_lanes_is_bit_identical(profile):
    p = ALL_PROFILES[profile]
    rng = np.random.default_rng(4)
    for shape in ((7, 5), (3, 4, 33), (2, 1), (1, 4096)):
        lanes = hostile(rng, shape, 100.0, 0.15)
        for ceiling in (None, 32768.0):
            ref, got = both(lambda: mac.reduce_lanes(lanes, p, ceiling))
            assert_same_bits(ref, got, nan_payloads=p.indeterminate_to_zero)


@pytest.mark.numba
@pytest.mark.parametrize("profile", list(ALL_PROFILES))
def test_plain_reductions_are_bit_identical(profile):
    """Reductions whose lanes are all finite and within 65504 take the register-resident
    four-lane kernel (_compiled_mac._sums): against the numpy route on fp16 subnormals (the M1
    flush), signed zeros (rows of -0), 65504, cancelling pairs and K of every residue modulo the
    tile, one row (the loss mean) and several blocks of rows; a lane past 65504 or an infinity
    sends the call to the general kernel, with the same bits."""
    p = ALL_PROFILES[profile]
    rng = np.random.default_rng(12)
    plain = np.array([0.0, -0.0, 6e-8, -6e-8, 3.05e-5, -1e-6, 6.1e-5, 2.0 ** -14, -(2.0 ** -14), 65504.0, -65504.0, 1024.0, 2049.0, -4096.0],
                     np.float32)
    for shape in ((1, 8192), (1, 4097), (64, 128), (300, 66), (5, 3), (9, 1), (2, 3, 7)):
        for scale in (1.0, 2.0 ** -13, 3000.0):
            lanes = (rng.standard_normal(shape) * scale).astype(np.float16).astype(np.float32)
            pick = rng.random(lanes.shape) < 0.1
            lanes[pick] = rng.choice(plain, int(pick.sum()))
            lanes.reshape(-1, shape[-1])[0] = -0.0                      # a row of -0
            assert_same_bits(*both(lambda: mac.reduce_lanes(lanes, p)))
    lanes = hostile(rng, (4, 40), 1.0, 0.0)
    for odd in (65520.0, np.inf):
        lanes[2, 5] = odd
        assert_same_bits(*both(lambda: mac.reduce_lanes(lanes, p)))


@pytest.mark.numba
@pytest.mark.parametrize("profile", ["h13", "h16"])
def test_empty_operands(profile):
    p = FAMILY_PROFILES[profile]
    for xs, ws in (((0, 8), (8, 3)), ((2, 0, 8), (8, 3)), ((3, 8), (8, 0)), ((3, 0), (0, 5))):
        ref, got = both(lambda: mac.matmul(np.ones(xs, np.float32), np.ones(ws, np.float32), p))
        assert_same_bits(ref, got)
        assert ref.shape == np.broadcast_shapes(xs[:-2], ws[:-2]) + (xs[-2], ws[-1]) and not ref.any()
    for shape in ((3, 0), (0, 5)):
        assert_same_bits(*both(lambda: mac.reduce_lanes(np.ones(shape, np.float32), p)))


# --- the numpy route on its own (no numba needed) --------------------------------------------

@pytest.fixture
def numpy_route():
    previous = compiled.set_enabled(False)
    yield
    compiled.set_enabled(previous)


@pytest.mark.parametrize("limit", [None, 32768.0])
def test_many_subnormals_keep_the_limit_and_an_unsigned_nan_rule(numpy_route, limit):
    """The branch-free route numpy takes for subnormal-heavy arrays applied neither the
    saturation limit nor an unsigned NaN replacement; now it matches numpy's float16 cast."""
    a = np.full(64, 3e-6, np.float32)
    a[:4] = [40000.0, -40000.0, np.nan, 1.0]
    a[2:3].view(np.uint32)[0] = 0xFFC00000           # a negative NaN (as inf - inf makes)
    got = fp16.round_fp16(a, nan=0.0, limit=limit)
    want = a.astype(np.float16).astype(np.float32)
    want[2] = 0.0
    if limit is not None:
        want[:2] = [np.inf, -np.inf]
    assert_same_bits(want, got)


def test_a_rows_minus_zero_does_not_depend_on_infinities_elsewhere(numpy_route):
    p = FAMILY_PROFILES["h16"]
    row = np.full((1, 8), -1.0, np.float32)
    w = np.zeros((8, 4), np.float32)
    w[:, 1] = 1.0                        # the other row's infinity reaches a tile there
    alone = mac.matmul(row, w, p)
    other = np.full((1, 8), np.inf, np.float32)
    with np.errstate(invalid="ignore"):                  # inf * 0 in the other row
        batched = mac.matmul(np.concatenate([row, other]), w, p)
    assert_same_bits(alone, batched[:1])
    assert np.signbit(alone[0, [0, 2, 3]]).all() and batched[1, 1] == np.inf


def test_the_switch_reports_the_route(numpy_route):
    assert compiled.route() == "numpy" and compiled.kernels() is None


def test_a_numba_that_cannot_build_the_kernels_falls_back_to_numpy(monkeypatch):
    def broken():
        raise RuntimeError("no LLVM here")
    monkeypatch.setattr(compiled, "_compile", broken)
    monkeypatch.setitem(compiled._state, "tried", False)
    monkeypatch.setitem(compiled._state, "kernels", None)
    monkeypatch.setitem(compiled._state, "enabled", True)
    with pytest.warns(RuntimeWarning, match="no LLVM here"):
        assert compiled.route() == "numpy"
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    assert mac.matmul(x, x.T, FAMILY_PROFILES["h16"])[0, 0] == 14.0


def _elementwise_program(shape):
    """Every fused op (regions._FUSED) on full-shape operands and on one-element operands on
    either side, and a chain of them."""
    import anekit as ak
    x, y, s = ak.input("x", shape), ak.input("y", shape), ak.input("s", (1,))
    outs = {"add": ak.add(x, y), "sub": ak.sub(x, s), "mul": ak.mul(s, y), "div": ak.real_div(x, y),
            "div_s": ak.real_div(s, y), "div_by_s": ak.real_div(x, s), "square": ak.square(x),
            "sqrt": ak.sqrt(x), "chain": ak.sub(ak.mul(ak.add(x, y), ak.sqrt(ak.square(y))), s),
            "one": ak.mul(s, s)}
    return ak.program(outs)


@pytest.mark.numba
@pytest.mark.parametrize("profile", sorted(ALL_PROFILES))
@pytest.mark.parametrize("shape", [(6, 40), (3,), (1,)])
def test_fused_elementwise_rounding_is_bit_identical(profile, shape):
    """The executor's fused regions (sim/regions.py: the tape kernel) against the kernels
    plus the separate rounding (the numpy route), on fp16 specials: inf, NaN, zeros of
    both signs, subnormals, 65504, 2**15; run and run_stored alike."""
    from anekit.sim import Simulator
    from anekit.sim.regions import Region
    p = ALL_PROFILES[profile]
    rng = np.random.default_rng(7)
    feeds = {"x": hostile(rng, shape, 300.0, 0.3), "y": hostile(rng, shape, 2.0 ** -10, 0.3),
             "s": np.array([-0.0 if shape == (1,) else 3.0e-5], np.float32)}
    sim = Simulator(_elementwise_program(shape), profile=p)
    fused = sum(len(u.members) for u in sim._units if isinstance(u, Region))
    assert fused == (14 if p.indeterminate_to_zero or not p.fp16_storage else 0)
    for run in (sim.run, sim.run_stored):
        ref, got = both(lambda: run(feeds))
        for name in ref:
            assert_same_bits(np.asarray(ref[name], np.float32), np.asarray(got[name], np.float32))


@pytest.mark.numba
def test_fused_elementwise_kernel_on_raw_float32_and_zero_divisors():
    """compiled.elementwise_round itself against numpy float32 arithmetic + fp16.round_fp16,
    on values off the fp16 grid (every NaN payload, huge and tiny magnitudes) and signed zero
    divisors, for both zero-sign rules."""
    compiled.set_enabled(True)
    jit = compiled.kernels()
    rng = np.random.default_rng(9)
    x, y = raw_float32(rng, 4000), raw_float32(rng, 4000)
    y[::7], y[1::7] = 0.0, -0.0
    _elementwise_round_cases(jit, x, y)
    # Without a NaN in any result: the hardware fp16 conversion's route, where the host has one.
    x, y = raw_float32(rng, 4000), raw_float32(rng, 4000)
    x[~np.isfinite(x) | (x == 0)], y[~np.isfinite(y) | (y == 0)] = np.float32(3.0), np.float32(-0.5)
    x[:8] = [65504.0, 65519.0, 65520.0, 6e-8, 2.0 ** -25, 2.0 ** -14, -1e-9, -3.0e38]
    _elementwise_round_cases(jit, np.abs(x), y)


def _elementwise_round_cases(jit, x, y):
    ops = {compiled.ADD: np.add, compiled.SUB: np.subtract, compiled.MUL: np.multiply}
    with np.errstate(all="ignore"):
        for unsigned_zero in (False, True):
            d = y + np.float32(0.0) if unsigned_zero else y
            expect = {**{c: f(x, y) for c, f in ops.items()}, compiled.DIV: x / d,
                      compiled.SQRT: np.sqrt(x) + np.float32(0.0)}
            for code, ref in expect.items():
                for xa, ya, want in ((x, y, ref), (x[:1], y, None), (x, y[:1], None)):
                    if want is None:       # one-element operand: numpy's broadcast as the reference
                        f = {**ops, compiled.DIV: lambda a, b: a / ((b + np.float32(0.0)) if unsigned_zero else b),
                             compiled.SQRT: lambda a, b: np.sqrt(np.broadcast_to(a, b.shape) if a.size == 1
                                                                 else a) + np.float32(0.0)}[code]
                        want = f(xa, ya) if code != compiled.SQRT else f(xa, ya if xa.size == 1 else xa)
                    out = np.empty(max(xa.size, ya.size), np.float32)
                    jit.elementwise_round(code, xa, ya, out, unsigned_zero, 0x477FE000, False, 0.0)
                    assert_same_bits(fp16.round_fp16(np.asarray(want, np.float32).reshape(-1), nan=0.0), out)
                for xa, ya in ((x[:0], y[:0]), (x[:1], y[:0]), (x[:0], y[:1])):      # empty results
                    out = np.empty(0, np.float32)
                    jit.elementwise_round(code, xa, ya, out, unsigned_zero, 0x477FE000, False, 0.0)


PLAIN_PROFILES = {**ALL_PROFILES, "no-ceiling": dataclasses.replace(FAMILY_PROFILES["h16"], name="no-ceiling",
                                                                    mac_output_ceiling=None)}


def _plain_operands(rng, xs, ws, xpeak, wpeak, tiny=False):
    """Finite fp16-grid operands with exactly the given peaks, zeros of both signs, and (tiny)
    products in the fp16 subnormal range."""
    x = (rng.uniform(-1, 1, xs) * xpeak).astype(np.float16)
    w = (rng.uniform(0, 1, ws) * wpeak).astype(np.float16)      # mostly one sign: partials grow
    if tiny:
        x[..., ::3] = (x[..., ::3] * np.float16(2.0 ** -12)).astype(np.float16)
    x.reshape(-1)[:3], w.reshape(-1)[:3] = (0.0, -0.0, xpeak), (-0.0, 0.0, wpeak)
    x[..., -1, :] = xpeak                  # one row of peaks: its sums run past 2**15
    return x.astype(np.float32), w.astype(np.float32)


@pytest.mark.numba
@pytest.mark.parametrize("profile", list(PLAIN_PROFILES))
@pytest.mark.parametrize("shapes", [((3, 64), (64, 300)), ((300, 64), (64, 1)), ((4, 16, 32), (4, 32, 24))], ids=str)
def test_lane_kernel_plain_loop_is_bit_identical_at_its_bounds(profile, shapes):
    """The lane kernel's plain loop (finite operands, products within 65504, in-tile partials
    below the ceiling: mac._plain) at the edges of what it takes: products up to 255 * 256,
    in-tile partials just under the bound with the accumulator past 2**15, subnormal products;
    against the numpy route."""
    p = dataclasses.replace(PLAIN_PROFILES[profile], tile_emulation_max_products=1 << 62)
    rng = np.random.default_rng(11)
    cases = [(255.0, 256.0, False), (89.0, 90.0, False), (2.0, 2.0 ** -4, True)]
    for xpeak, wpeak, tiny in cases:
        x, w = _plain_operands(rng, *shapes, xpeak, wpeak, tiny)
        for ceiling in (True, False):
            limit = p.mac_output_ceiling if ceiling else None
            plain = mac._plain(mac.Operand(x, p, -1), mac.Operand(w, p, -2), p, limit)
            assert plain == (limit is None or xpeak * wpeak * p.mac_tile_lanes * 1.02 < limit)
            ref, got = both(lambda: mac.matmul(x, w, p, ceiling))
            assert_same_bits(ref, got, nan_payloads=p.indeterminate_to_zero)
            if (xpeak, wpeak) == (89.0, 90.0) and limit is not None and p.mac_tile_lanes:
                assert np.isinf(got).any()          # the accumulator's ceiling still fires


def test_plain_lane_loop_refuses_what_it_does_not_model():
    p = FAMILY_PROFILES["h16"]
    ok = np.ones((2, 8), np.float32)
    op = lambda a, axis: mac.Operand(a, p, axis)      # noqa: E731
    assert mac._plain(op(ok, -1), op(ok.T, -2), p, 32768.0)
    assert not mac._plain(op(np.where(ok > 0, np.inf, 0).astype(np.float32), -1), op(ok.T, -2), p, 32768.0)
    assert not mac._plain(op(ok * 256, -1), op(ok.T * 256, -2), p, None)       # a product past 65504
    assert not mac._plain(op(ok * 91, -1), op(ok.T * 91, -2), p, 32768.0)      # in-tile partials near 2**15
