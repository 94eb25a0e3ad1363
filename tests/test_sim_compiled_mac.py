"""The four-lane MAC kernel (sim/_compiled_mac.py) against the numpy route, bit for bit.

It runs the lane route on plain operands (finite, products within 65504, in-tile partials
below the ceiling), so the data here stays plain while reaching every corner the kernel
handles differently from the general one: fp16 products that round to subnormals or that the
M1 flush zeroes, -0 products, K of every residue modulo the tile, several output blocks,
running sums that reach the 2**15 ceiling, and unrounded products (a custom profile).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from anekit.sim import FAMILY_PROFILES, _compiled_mac, compiled, mac

PROFILES = {**FAMILY_PROFILES,
            "raw-products": dataclasses.replace(FAMILY_PROFILES["h16"], name="raw-products", mac_round_products=False),
            "raw-flushed": dataclasses.replace(FAMILY_PROFILES["h13"], name="raw-flushed", mac_round_products=False),
            "guard3": dataclasses.replace(FAMILY_PROFILES["h13"], name="guard3", mac_tile_guard_bits=3)}

SHAPES = [((5, 8), (8, 40)),                  # K a multiple of the tile
          ((4, 64, 33), (4, 33, 62)),         # K = 1 mod 4, attention-like batch
          ((2, 3, 6), (6, 300)),              # K = 2 mod 4, two output blocks
          ((7, 3), (3, 17)),                  # K = 3 mod 4 (one short tile)
          ((1, 2), (2, 16)),                  # K = 2: only the short tile
          ((40, 11), (11, 5))]                # few columns: vectorised across the rows of x


def both(fn):
    previous = compiled.set_enabled(False)
    try:
        ref = fn()
        compiled.set_enabled(True)
        return ref, fn()
    finally:
        compiled.set_enabled(previous)


def fp16_values(rng, shape, scale):
    return (rng.standard_normal(shape) * scale).astype(np.float16).astype(np.float32)


def assert_same_bits(ref, got):
    assert ref.dtype == got.dtype == np.float32 and ref.shape == got.shape
    diff = ref.view(np.uint32) != got.view(np.uint32)
    assert not diff.any(), f"{int(diff.sum())} of {diff.size} differ: numpy {ref[diff][:3]} compiled {got[diff][:3]}"


@pytest.fixture(scope="module")
def four():
    previous = compiled.set_enabled(True)
    try:
        k = _compiled_mac.kernel()
    finally:
        compiled.set_enabled(previous)
    assert k is not None, "numba is installed: the four-lane kernel must build"
    if not k.HARDWARE_FP16:
        pytest.skip("the four-lane kernel needs a host with hardware fp16 conversion (F16C or arm64)")
    return k


@pytest.mark.numba
def test_hardware_product_rounding_is_round16(four):
    """The fp16 conversion instructions round as compiled._round16 does (with and without the
    M1 flush) on float32 values within 65504: random ones, ties, and the edges of the fp16
    subnormal range and of the flush. (All 2.3e9 such values were checked once offline.)"""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 0x477FE001, 4000, dtype=np.int64)
    edges = [0, 1, _compiled_mac._TINY_BITS, _compiled_mac._TINY_BITS + 1, _compiled_mac._FLUSH_BITS - 1,
             _compiled_mac._FLUSH_BITS, 0x38800000, 0x33000000, 0x33000001, 0x477FE000, 0x477FDFFF,
             0x3F801000, 0x3F803000, 0x38001000, 0x38003000]           # ties to even at 1 and 2**-15
    u = np.concatenate([bits, edges]).astype(np.uint32)
    values = np.concatenate([u, u | np.uint32(0x80000000)]).view(np.float32)
    one, top = np.float32(1.0), np.int64(compiled._F16_MAX_BITS)
    for flush in (False, True):
        want = np.array([compiled._round16(v, top, flush, True, np.float32(0)) for v in values], np.float32)
        got = np.array([_compiled_mac._product(v, one, True, flush) for v in values], np.float32)
        assert_same_bits(want, got)


@pytest.mark.numba
@pytest.mark.parametrize("limit", [None, 32768.0, 1000.7])
def test_fused_output_port_is_round16(four, limit):
    """The output port inside the kernel (_port) against compiled._round16 with the same
    saturation limit, on accumulator values: finite ones of every magnitude, infinities."""
    from anekit.sim import fp16
    rng = np.random.default_rng(1)
    u = rng.integers(0, 0x7F800001, 4000, dtype=np.int64).astype(np.uint32)
    values = np.concatenate([u, u | np.uint32(0x80000000)]).view(np.float32)
    values[:6] = [65519.0, 65520.0, 32767.0, 32768.0, 1000.7, np.inf]
    top_bits = mac._port_top(limit)
    top = np.array([top_bits], np.uint32).view(np.float32)[0]
    for flush in (False, True):
        want = np.array([compiled._round16(v, np.int64(top_bits), flush, True, np.float32(0)) for v in values],
                        np.float32)
        got = np.array([_compiled_mac._port(v, top, flush) for v in values], np.float32)
        assert_same_bits(want, got)
        assert_same_bits(fp16.round_fp16(values, limit=limit, flush=flush), want)


@pytest.mark.numba
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_plain_lane_route_is_bit_identical(four, profile, shapes):
    p = PROFILES[profile]
    rng = np.random.default_rng(sum(map(ord, profile + str(shapes))))
    k, n = shapes[0][-1], shapes[1][-1]
    assert mac.lane_route(k, n, p)
    for scale, ceiling in ((1.0, True), (2.0 ** -9, True), (2.0 ** -13, False), (12.0, True), (45.0, False)):
        x, w = fp16_values(rng, shapes[0], scale), fp16_values(rng, shapes[1], scale)
        x.reshape(-1)[::7] = -0.0
        limit = p.mac_output_ceiling if ceiling else None
        assert mac._plain(mac.Operand(x, p, -1), mac.Operand(w, p, -2), p, limit), "the data must stay plain"
        ref, got = both(lambda: mac.matmul(x, w, p, ceiling))
        assert_same_bits(ref, got)


@pytest.mark.numba
def test_saturation_and_negative_zero_rows():
    """Rows whose running sum reaches 2**15 (and later tiles cannot bring it back), and a row
    of -0 products, against their expected values on both routes."""
    p = FAMILY_PROFILES["h13"]
    x = np.zeros((3, 12), np.float32)
    x[0, :] = 64.0                       # 12 products of 64 * 64 = 4096: the sum passes 32768
    x[1, :8], x[1, 8:] = 64.0, -64.0     # reaches the ceiling, then negative tiles: stays inf
    x[2, :] = -1.0                       # -1 * +0: -0 products in the zero columns
    w = np.zeros((12, 20), np.float32)
    w[:, :10] = 64.0
    ref, got = both(lambda: mac.matmul(x, w, p))
    assert_same_bits(ref, got)
    assert np.all(ref[0, :10] == np.inf) and np.all(ref[1, :10] == np.inf)
    assert np.all(ref[2, :10] == -768.0) and np.all(ref[2, 10:] == 0) and np.all(np.signbit(ref[2, 10:]))


@pytest.mark.numba
def test_operand_stats_match_numpy():
    """mac.Operand's one-pass max/min/subnormal check gives the finiteness, peak and fast-route
    array of the numpy passes: NaN, infinities, fp16 subnormals, zeros of both signs."""
    p = FAMILY_PROFILES["h13"]
    rng = np.random.default_rng(4)
    cases = [fp16_values(rng, (6, 9), 1.0), fp16_values(rng, (3, 5), 2.0 ** -16),
             np.array([[-0.0, 0.0, 3.0, -7.5]], np.float32), np.array([[1.0, np.inf, -2.0]], np.float32),
             np.array([[1.0, -np.inf, np.nan, 6e-8]], np.float32), np.array([[np.nan, -5.0]], np.float32),
             np.array([[2.0 ** -14, -(2.0 ** -14), 1e-30]], np.float32)]
    for a in cases:
        ref, got = both(lambda: mac.Operand(a, p, -1))
        assert (ref.finite, np.isnan(ref.peak) or ref.peak) == (got.finite, np.isnan(got.peak) or got.peak)
        assert_same_bits(ref.fast(), got.fast())
        # Without fp16 subnormals (zeros are none) the flush is skipped: no copy.
        has_sub = bool(((np.abs(a) > 0) & (np.abs(a) < 2.0 ** -14)).any())
        assert (got.fast() is got.array) == (not has_sub)


@pytest.mark.numba
def test_operand_stats_on_every_boundary_and_length():
    """The compiled one-pass statistics (unsigned min/max: |bits| - 1 wraps a zero to the top)
    against numpy's max |bits| and subnormal test: each boundary value (zeros of both signs, the
    smallest subnormal, the largest subnormal, 2**-14, 65504, float32 max, infinities, NaN)
    alone, in pairs, and at every position of arrays of every length the vector loop splits
    into a body and a tail."""
    previous = compiled.set_enabled(True)
    try:
        kern = _compiled_mac.kernel()
    finally:
        compiled.set_enabled(previous)
    edge = np.array([0.0, -0.0, 1e-45, -1e-45, np.nextafter(np.float32(2.0 ** -14), np.float32(0)),
                     2.0 ** -14, -(2.0 ** -14), 1.0, 65504.0, 3.4e38, np.inf, -np.inf, np.nan], np.float32)

    def reference(a):
        mag = a.view(np.uint32) & np.uint32(0x7FFFFFFF)
        top = int(mag.max())
        peak = np.float32(np.array([top], np.uint32).view(np.float32)[0])
        return top < 0x7F800000, peak, bool(((mag != 0) & (mag <= 0x387FFFFF)).any())

    def check(a):
        finite, peak, sub = kern.operand_stats(a)
        rf, rp, rs = reference(a)
        assert (finite, sub) == (rf, rs)
        assert (np.isnan(peak) and np.isnan(rp)) or peak == rp

    for i in range(edge.size):
        for j in range(edge.size):
            check(edge[[i, j]])
    rng = np.random.default_rng(9)
    for n in range(1, 70):
        base = np.full(n, 1.0, np.float32)
        check(base)
        for v in edge:
            a = base.copy()
            a[rng.integers(n)] = v
            check(a)


def test_transposed_copies_in_column_blocks_match_numpy():
    """mac._contiguous copies a large transposed matrix in column blocks sized by its rows:
    the same values (bits, NaN and -0 included) and a C-contiguous layout, for row counts on
    both sides of every block size and columns that do not divide into whole blocks."""
    rng = np.random.default_rng(11)
    for rows, cols in ((64, 300), (128, 129), (130, 513), (512, 70), (2048, 17), (40, 1000)):
        a = fp16_values(rng, (cols, rows), 1.0)
        a[0, 0], a[-1, -1] = np.nan, -0.0
        view = a.T
        got = mac._contiguous(view)
        assert got.flags.c_contiguous and got.shape == view.shape
        assert_same_bits(np.ascontiguousarray(view), got)


def test_one_row_block_is_the_batched_call():
    """A [ROW_BLOCK, K] operand goes to BLAS as one 2-D matmul: the bits of the row-blocked
    batched call it replaced (odd K and N, K past a cache block, subnormal and large values)."""
    rng = np.random.default_rng(12)
    for k, n in ((7, 5), (128, 128), (513, 33), (64, 512)):
        x = fp16_values(rng, (mac.ROW_BLOCK, k), 1.0)
        x[0, :3] = (2.0 ** -20, -3e-5, 30000.0)
        w = fp16_values(rng, (k, n), 1.0)
        assert_same_bits(np.matmul(x[None], w[None])[0], mac._row_blocked(x, w))


@pytest.mark.numba
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("shapes", [((600, 288), (288, 1)),       # a decode 1x1 conv: the constant is the
                                    ((300, 257), (257, 3)),        # left operand, read through its transpose
                                    ((2, 5, 30), (30, 40)),        # a constant right operand (16+ columns)
                                    ((3, 7), (7, 290))],           # K = 3 mod 4, two blocks of columns
                         ids=str)
def test_constant_layout_read_as_fp16_bits_is_bit_identical(four, profile, shapes):
    """A constant operand's lane layout at or past _HALF_MIN lanes is read as fp16 bits (half the
    bytes): the same bits as the float32 layout and as the numpy route, subnormal and
    negative-zero weights included; an operand whose values are not all fp16 keeps float32."""
    p = PROFILES[profile]
    rng = np.random.default_rng(sum(map(ord, profile + str(shapes))))
    x, w = fp16_values(rng, shapes[0], 1.0), fp16_values(rng, shapes[1], 0.05)
    w.reshape(-1)[::11] = np.float32(2.0 ** -20)          # fp16 subnormals (the M1 flushes their products)
    w.reshape(-1)[::13] = -0.0
    left = shapes[1][-1] < 16 and shapes[0][-2] > shapes[1][-1]
    assert mac.lane_route(shapes[0][-1], shapes[1][-1], p)

    def run(half_min):
        previous = mac._HALF_MIN
        mac._HALF_MIN = half_min
        try:
            xo = mac.Operand(x, p, -1, const=left)
            wo = mac.Operand(w, p, -2, const=not left)
            y = mac.matmul(xo, wo, p)
            owner = xo if left else wo
            assert owner._t is None and owner._b is None or half_min > 1, "the bits replace the float32 layout"
            # a later call whose other operand is not plain (past 65504 products) takes the general
            # kernel, which rebuilds the float32 layout: the numpy route's bits there too
            lhs = mac.Operand(x * 2.0 ** 20, p, -1) if not left else xo
            rhs = wo if not left else mac.Operand(w * 2.0 ** 20, p, -2)
            assert not mac._plain(lhs, rhs, p, p.mac_output_ceiling)
            late = mac.matmul(lhs, rhs, p)
            return y, owner._h, late
        finally:
            mac._HALF_MIN = previous
    (ref, _, ref_late), (half, cached, half_late) = run(1 << 62), run(1)
    assert cached is not None and cached[1] is not None and cached[1].dtype == np.uint16, "the fp16 route ran"
    assert_same_bits(ref, half)
    assert_same_bits(ref_late, half_late)
    previous = compiled.set_enabled(False)
    try:
        assert_same_bits(mac.matmul(x, w, p), half)        # and the numpy route
    finally:
        compiled.set_enabled(previous)
    assert _compiled_mac.half_bits(np.array([[1.0, 1.0 + 2.0 ** -12]], np.float32)) is None   # not fp16: float32 kept


@pytest.mark.numba
@pytest.mark.parametrize("xs,ws", [((1, 48), (48, 256)),              # one query row against a cache
                                   ((1, 6, 1, 48), (1, 6, 48, 256)),  # per head, batched
                                   ((6, 3, 37), (37, 70)),            # a shared right operand, odd K and N
                                   ((2, 8, 300), (2, 300, 20)),       # the most rows the chain takes
                                   ((1, 768), (768, 288))])           # K past BLAS's K block: stays BLAS
def test_few_rows_through_the_chain_have_the_padded_blocks_bits(xs, ws, monkeypatch):
    """A few rows on the fast route take the compiled fused multiply-add chain where it gives
    the host BLAS's bits for the shape (checked once per shape), else the padded BLAS block.
    Either way every row equals the same row inside a full ROW_BLOCK block: -0 and subnormal
    products, large values, rows of zeros."""
    compiled.set_enabled(True)
    rng = np.random.default_rng(len(xs) * 31 + xs[-1])
    x, w = fp16_values(rng, xs, 8.0), fp16_values(rng, ws, 8.0)
    x.reshape(-1, xs[-1])[0, :3] = (2.0 ** -20, -3e-5, -0.0)
    w[..., 0] = 0.0
    taken = []
    monkeypatch.setattr(mac, "_chained", lambda f, a, b, real=mac._chained: (taken.append(1), real(f, a, b))[1])
    got = mac._row_blocked(x, w)
    previous = compiled.set_enabled(False)      # the kernels off (after a check said yes): BLAS, same bits
    try:
        assert_same_bits(got, mac._row_blocked(x, w))
    finally:
        compiled.set_enabled(previous)
    m, k = xs[-2], xs[-1]
    block = np.zeros(xs[:-2] + (mac.ROW_BLOCK, k), np.float32)
    block[..., :m, :] = x
    want = np.matmul(block, w)[..., :m, :]
    assert_same_bits(want, got)
    assert bool(taken) == mac._chain_is_blas(k, ws[-1])     # the route the check chose
