"""Elementwise regions (sim/regions.py, sim/_compiled_tape.py): runs of elementwise ops run
as one compiled call, with the bits of the op-by-op numpy route.

Each comparison runs a Simulator twice, with the compiled kernels off (every op through its
numpy kernel and the separate storage rounding) and on, on fp16 specials, and asserts
identical float32 bits for every output, NaN payloads included.
"""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.sim import FAMILY_PROFILES, Simulator, compiled, fp16, profile_for, regions
from anekit.train import optim
from compiled_routes import both_routes

PROFILES = {"exact": profile_for("exact"), "m1": profile_for("m1"), **FAMILY_PROFILES}
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, -6e-8, 3.05e-5, 65504.0, -65504.0,
                     1024.0, 2.0 ** -14, 1.0, -1.0], np.float16)


def _hostile(rng, shape, scale=1.0, special=0.2, nan=True) -> np.ndarray:
    v = (rng.standard_normal(shape) * scale).astype(np.float16).reshape(-1)
    pick = rng.random(v.size) < special
    v[pick] = rng.choice(SPECIALS if nan else SPECIALS[~np.isnan(SPECIALS)], int(pick.sum()))
    return v.astype(np.float32).reshape(shape)


def _same_bits(ref, got):
    for name in ref:
        r, g = np.asarray(ref[name], np.float32), np.asarray(got[name], np.float32)
        assert r.shape == g.shape, name
        diff = r.view(np.uint32) != g.view(np.uint32)
        assert not diff.any(), f"{name}: {int(diff.sum())} of {diff.size} differ, e.g. {r[diff][0]!r} vs {g[diff][0]!r}"


def _regions(sim):
    return [u for u in sim._units if isinstance(u, regions.Region)]


def _mixed_program():
    """Chains on several element counts: broadcasts along inner, outer and middle axes, a
    scalar chain feeding a large one, a transpose (a non-contiguous operand), values read
    both inside and outside the region, and an op (relu) that is not fused."""
    x, y = ak.input("x", (4, 6, 5)), ak.input("y", (4, 6, 5))
    col, row, mid = ak.input("col", (4, 1, 1)), ak.input("row", (5,)), ak.input("mid", (6, 1))
    s, t = ak.input("s", (1,)), ak.input("t", (5, 6, 4))
    k = (s * s + 1.0).sqrt()                          # a one-element chain
    a = (x * col + row) / (mid - y * k)
    b = a.square() + ak.transpose(t, perm=[2, 1, 0]) * 0.5
    c = ak.relu(b) * a - x                            # a and b read after the relu
    return ak.program({"a": a, "c": c, "k": k, "d": (b - row).sqrt() * s})


def _mixed_feeds(rng, nan=True):
    shapes = {"x": (4, 6, 5), "y": (4, 6, 5), "col": (4, 1, 1), "row": (5,), "mid": (6, 1), "s": (1,),
              "t": (5, 6, 4)}
    return {n: _hostile(rng, sh, 4.0, nan=nan) for n, sh in shapes.items()}


@pytest.mark.numba
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_regions_have_the_op_by_op_bits(profile):
    p = PROFILES[profile]
    sim = Simulator(_mixed_program(), profile=p)
    fused = sum(len(r.members) for r in _regions(sim))
    assert fused >= (0 if p.fp16_storage and not p.indeterminate_to_zero else 10)
    rng = np.random.default_rng(3)
    for nan in (False, True):
        for _ in range(3):
            _same_bits(*both_routes(sim, _mixed_feeds(rng, nan)))


@pytest.mark.numba
def test_an_exact_region_that_meets_a_nan_runs_again_op_by_op(monkeypatch):
    """numba need not keep numpy's NaN payloads, so an exact-numerics region whose output
    holds a NaN is redone through the kernels; without NaN the compiled result stands."""
    sim = Simulator(_mixed_program(), profile="exact")
    calls = []
    original = Simulator._execute
    monkeypatch.setattr(Simulator, "_execute", lambda self, step, env, compile_time=False:
                        (calls.append(step.call.op.type), original(self, step, env, compile_time)))
    rng = np.random.default_rng(5)
    feeds = _mixed_feeds(rng, nan=False)
    compiled.set_enabled(True)
    sim.run_stored(feeds)
    clean = len(calls)
    feeds["x"].reshape(-1)[7] = np.array(0x7FC01234, np.uint32).view(np.float32)   # a NaN with a payload
    calls.clear()
    _same_bits(*both_routes(sim, feeds))
    op_by_op = len(sim._steps)
    assert clean < op_by_op and len(calls) > op_by_op + clean    # numpy route + compiled route with a redo


def test_broadcast_layouts_read_what_numpy_broadcasts():
    out = (3, 4, 5, 2)
    for shape in [(5, 2), (2,), (1, 4, 1, 1), (4, 5, 1), (3, 1, 1, 1), (1, 1, 5, 1), (3, 4, 5, 2), (1,), (4, 5, 2)]:
        r, m = regions._broadcast(shape, out)
        src = np.arange(int(np.prod(shape))).reshape(shape)
        want = np.broadcast_to(src, out).reshape(-1)
        if r == 0:
            assert src.size in (1, want.size)
            continue
        assert np.array_equal((np.arange(want.size) // r) % m, want), shape
    for shape in [(3, 1, 5, 1), (3, 4, 1, 2), (2, 2), (1, 3, 4, 5, 2)]:      # split kept axes, not broadcastable
        assert regions._broadcast(shape, out) is None


@pytest.mark.numba
@pytest.mark.parametrize("numerics", ["m1", "exact"])
def test_an_adam_update_is_one_region_with_the_op_by_op_bits(numerics):
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((33, 17)).astype(np.float32), "b": rng.standard_normal(17).astype(np.float32)}
    opt = optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    sim = Simulator(opt.update_program(), profile=numerics)
    assert len(_regions(sim)) == 1 and len(sim._units) == 1
    feeds = {t.name: _hostile(rng, t.shape, 0.5, special=0.05, nan=False) for t in sim.function.inputs}
    feeds.update({n: np.array([v], np.float32) for n, v in opt._scalars(1e-2, 256.0, 3).items() if n in feeds})
    feeds["grad_mul"] = np.array([1.0], np.float32)
    _same_bits(*both_routes(sim, feeds))


def _long_chain_program():
    """A chain of 30 elementwise ops on one element count whose values are read again up to
    ten ops later, some twice by one op (v * v), with two outputs taken from its middle."""
    x, y = ak.input("x", (37, 41)), ak.input("y", (37, 41))
    vals = [x, y]
    for i in range(30):
        a, b = vals[-1], vals[-1 - (i % 10) - 1]
        vals.append([a * b, a + b, a - b, a * a, (a * a + 1.0).sqrt(), a / (b * b + 0.5)][i % 6] * 0.75)
    return ak.program({"mid": vals[12], "wide": vals[20], "out": vals[-1]})


@pytest.mark.numba
@pytest.mark.parametrize("profile", ["m1", "exact", "m5"])
def test_scratch_rows_are_reused_without_changing_a_bit(profile):
    """Region.finish gives a scratch row back once the last member reading its value has
    run: a long chain needs a few rows, not one per member, with the op-by-op bits (specials,
    NaN payloads, values read far downstream and twice by one op)."""
    sim = Simulator(_long_chain_program(), profile=profile)
    (region,) = _regions(sim)
    assert len(region.tape) > 30 and region.rows <= 16
    rng = np.random.default_rng(17)
    for nan in (False, True, True):
        feeds = {n: _hostile(rng, (37, 41), 2.0, nan=nan) for n in ("x", "y")}
        _same_bits(*both_routes(sim, feeds))


@pytest.mark.numba
@pytest.mark.parametrize("profile", ["m4", "exact"])
def test_a_step_listed_far_from_its_one_reader_joins_the_readers_region(profile):
    """A decode step's cache write, `old * keep + new * onehot`: the program lists `old * keep`
    before the ops that make `new` (relu here stands for the projection), which used to leave
    it a region of its own whose [.., T] result was written out and read back. Planning moves
    it to its one reader: one region of all three, with the op-by-op bits."""
    old, y = ak.input("old", (6, 8, 32)), ak.input("y", (6, 8, 1))
    keep, onehot = ak.input("keep", (1, 1, 32)), ak.input("onehot", (1, 1, 32))
    kept = old * keep
    new = ak.relu(y * 2.0) - 1.0
    prog = ak.program({"cache": kept + new * onehot})
    sim = Simulator(prog, profile=profile)
    def is_kept(op):
        return any(getattr(t, "name", None) == "old" for t in op.inputs.values())
    types = [st.call.op.type for st in sim._steps]
    assert [is_kept(st.call.op) for st in sim._steps].index(True) < types.index("relu")   # listed first
    (region,) = [r for r in _regions(sim) if any(is_kept(st.call.op) for st in r.members)]
    assert [st.call.op.type for st in region.members][-3:] == ["mul", "mul", "add"]   # kept joined new * onehot
    rng = np.random.default_rng(9)
    for nan in (False, True):
        feeds = {t.name: _hostile(rng, t.shape, 3.0, nan=nan) for t in sim.function.inputs}
        _same_bits(*both_routes(sim, feeds))


def test_short_exact_runs_and_lone_ops_stay_op_by_op():
    x, y = ak.input("x", (8,)), ak.input("y", (8,))
    prog = ak.program({"z": ak.relu(x * y) + y})
    assert not _regions(Simulator(prog, profile="exact"))
    m1 = Simulator(prog, profile="m1")
    assert not _regions(m1) and sum(st.fused is not None for st in m1._steps) == 2


def test_regions_run_without_numba_as_op_by_op():
    """With the compiled route off, a region runs its members through their kernels: the
    values are the plain numpy ones."""
    x, y = ak.input("x", (6,), "fp32"), ak.input("y", (6,), "fp32")
    sim = Simulator(ak.program({"z": (x * y + y) * x - 1.0}), profile="exact")
    assert len(_regions(sim)) == 1
    xv, yv = np.linspace(-2, 2, 6).astype(np.float32), np.linspace(1, 3, 6).astype(np.float32)
    previous = compiled.set_enabled(False)
    try:
        z = sim.run({"x": xv, "y": yv})["z"]
    finally:
        compiled.set_enabled(previous)
    assert np.array_equal(z, (xv * yv + yv) * xv - np.float32(1.0))


@pytest.mark.numba
def test_exact_fp16_outputs_leave_the_tape_in_stored_form():
    """In exact numerics the tape rounds an fp16 output to the fp16 grid as it writes it (a
    copy row where members read the float32 value too): run_stored returns it as it is, with
    the bits of the numpy route's separate rounding; a NaN redo rounds the usual way."""
    x, y = ak.input("x", (40, 30)), ak.input("y", (40, 30))
    m = x * 0.9 + y * 0.1                  # read by members too: a copy row
    v = m * m + y
    out = (v / (m + 2.0)).sqrt()           # read by nothing else
    sim = Simulator(ak.program({"m": m, "out": out}), profile="exact")
    (region,) = _regions(sim)
    assert len(region.stores) == 2 and _copy_rows(region) == 1
    rng = np.random.default_rng(11)
    for nan in (False, False, True):
        feeds = {n: _hostile(rng, (40, 30), 3.0, nan=nan) for n in ("x", "y")}
        ref, got = both_routes(sim, feeds)
        _same_bits(ref, got)
        assert region.stored is not any(np.isnan(g).any() for g in got.values())
        for g in got.values():
            assert np.array_equal(g.astype(np.float16).astype(np.float32), g, equal_nan=True)
    previous = compiled.set_enabled(True)
    try:
        feeds = {n: _hostile(rng, (40, 30), 3.0, nan=False) for n in ("x", "y")}
        got = sim.run(feeds)
        compiled.set_enabled(False)
        ref = sim.run(feeds)
    finally:
        compiled.set_enabled(previous)
    _same_bits(ref, got)


def _copy_rows(region):
    return int((region.tape[:, 0] == regions._COPY).sum())



def _every_magnitude(rng, n):
    """float32 values of every magnitude and both signs: random bit patterns, ties to even,
    the fp16 subnormal range and its edges, 65504 and the overflow tie at 65520, infinities,
    and NaN payloads (among them those whose bits wrap round in the rounding's 32-bit arithmetic)."""
    edges = [0, 1, 0x1000, 0x1001, 0x33000000, 0x33000001, 0x387FEFFF, 0x387FF000, 0x387FFFFF, 0x38800000,
             0x38001000, 0x38003000, 0x3F801000, 0x3F803000, 0x477FDFFF, 0x477FE000, 0x477FEFFF, 0x477FF000,
             0x477FF001, 0x47800000, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000, 0x7FFFE000, 0x7FFFEFFF,
             0x7FFFF000, 0x7FFFFFFF, 0x00400000]
    u = np.concatenate([rng.integers(0, 1 << 32, n, dtype=np.int64), edges]).astype(np.uint32)
    return np.concatenate([u, u | np.uint32(0x80000000)]).view(np.float32)


def _tape_module():
    previous = compiled.set_enabled(True)
    try:
        assert regions.tape_kernel() is not None, "numba is installed: the tape must build"
    finally:
        compiled.set_enabled(previous)
    from anekit.sim import _compiled_tape
    return _compiled_tape


@pytest.mark.numba
@pytest.mark.parametrize("code, mode", [(c, m) for c in range(5) for m in (1, 2, 3)] + [(5, 3)])
def test_tape_rows_round_as_round16_with_nan_payloads(code, mode):
    """One tape row per op and rounding mode on operands of every magnitude, NaN payloads of
    both signs included: each element is the float32 op then the numpy route's rounding
    (fp16.round_fp16) with the mode's NaN rule, bit for bit. The tape rounds with the hardware fp16 conversion where the
    host has one and redoes a block holding a NaN through _round16; the copy row (code 5)
    checks the rounding alone."""
    tape = _tape_module()
    rng = np.random.default_rng(code * 3 + mode)
    a = _every_magnitude(rng, 3000)
    b = rng.permutation(a)
    b[::7] = np.float32(0.0) * np.where(rng.random(b[::7].size) < 0.5, -1, 1).astype(np.float32)   # signed zeros
    a[:40] = np.float32(1.5)          # a block without NaN: the fast path alone
    b[:40] = np.float32(3.0)
    out = np.empty_like(a)
    addrs = np.array([a.ctypes.data, b.ctypes.data, out.ctypes.data], np.int64)
    row = np.array([[code, 1, 0, 0, 0, 1, 1, 0, 0, 1, 2, mode, 0]], np.int64)
    tape.run(np.array([[a.size, 0, 1]], np.int64), row, addrs, 3, 64)
    with np.errstate(all="ignore"):
        bz = b + np.float32(0.0) if mode == 2 else b
        root = np.sqrt(a) if mode == 3 else np.sqrt(a) + np.float32(0.0)     # chip: -0 loses its sign
        exact = [a + b, a - b, a * b, a / bz, root, a][code]
    previous = compiled.set_enabled(False)         # the numpy route's rounding: the reference
    try:
        want = fp16.round_fp16(exact, nan=None if mode == 3 else 0.0)
    finally:
        compiled.set_enabled(previous)
    _same_bits({"op": want}, {"op": out})


@pytest.mark.numba
@pytest.mark.parametrize("code, mode", [(c, m) for c in range(5) for m in (0, 3)] + [(5, 3)])
def test_checked_exact_rows_report_a_nan_in_their_one_pass(code, mode):
    """An exact row that must report a NaN (a region output, check flag set) computes, rounds
    (mode 3) and checks in one pass: the flag is set exactly when a float32 result is a NaN,
    and the finite results are numpy's float32 values (mode 0) or their round_fp16 (mode 3)."""
    tape = _tape_module()
    rng = np.random.default_rng(40 + code * 3 + mode)
    a = _every_magnitude(rng, 3000)
    a = a[~np.isnan(a)]
    b = rng.permutation(a)
    b[a == 0] = np.float32(1.0)                                   # no 0 / 0 ...
    b[np.isinf(a)] = np.float32(2.0)                              # ... nor inf - inf, inf * 0, inf / inf
    a[b == 0] = np.float32(1.0)
    a = np.abs(a) if code == 4 else a                             # sqrt of a negative number: NaN
    out = np.empty_like(a)
    with np.errstate(all="ignore"):
        exact = [a + b, a - b, a * b, a / b, np.sqrt(a), a][code]
    assert not np.isnan(exact).any()
    previous = compiled.set_enabled(False)
    try:
        want = fp16.round_fp16(exact, nan=None) if mode == 3 else exact
    finally:
        compiled.set_enabled(previous)
    for poison in (False, True):
        if poison:                     # one NaN operand far into the array
            a = a.copy()
            a[a.size - 5] = np.array(0x7FC01234, np.uint32).view(np.float32)
        addrs = np.array([a.ctypes.data, b.ctypes.data, out.ctypes.data], np.int64)
        row = np.array([[code, 1, 0, 0, 0, 1, 1, 0, 0, 1, 2, mode, 1]], np.int64)
        bad = tape.run(np.array([[a.size, 0, 1]], np.int64), row, addrs, 3, 64)
        assert bool(bad) is poison
        if not poison:
            _same_bits({"op": want}, {"op": out})


@pytest.mark.numba
@pytest.mark.parametrize("mode, check", [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0), (3, 1)])
@pytest.mark.parametrize("code", range(4))
def test_rows_with_a_one_value_operand_match_the_filled_row(code, mode, check):
    """A row whose second operand is one value (kind 2, AdamW's constants) runs a loop that
    reads the value instead of a row filled with it per block: the results and the NaN report
    are those of the same row reading an array of copies, for values that make NaN, inf,
    signed zeros and overflow, with and without a NaN among the first operand's elements."""
    tape = _tape_module()
    rng = np.random.default_rng(70 + code * 10 + mode)
    a = _every_magnitude(rng, 2000)
    nan = np.array(0x7FC01234, np.uint32).view(np.float32)
    for value in (np.float32(3.0), np.float32(0.0), np.float32(-0.0), np.float32(np.inf), np.float32(-np.inf),
                  np.float32(65504.0), np.float32(1e-7), nan):
        for a_in in (a[~np.isnan(a)], a):
            one = np.array([value], np.float32)
            copies = np.full(a_in.size, value, np.float32)
            outs, bads = [], []
            for kind, b in ((2, one), (1, copies)):
                out = np.empty_like(a_in)
                addrs = np.array([a_in.ctypes.data, b.ctypes.data, out.ctypes.data], np.int64)
                row = np.array([[code, 1, 0, 0, 0, kind, 1, 0, 0, 1, 2, mode, check]], np.int64)
                bads.append(bool(tape.run(np.array([[a_in.size, 0, 1]], np.int64), row, addrs, 3, 64)))
                outs.append(out)
            assert bads[0] == bads[1]
            _same_bits({"op": outs[1]}, {"op": outs[0]})


# --- maximum, minimum, abs, inverse, rsqrt on the tape -----------------------------------

_NEW_CODES = {compiled.MAX: "maximum", compiled.MIN: "minimum", compiled.ABS: "abs",
              compiled.RECIP: "inverse", compiled.RSQRT: "rsqrt"}


def _norm_and_friends_program():
    """Each of maximum, minimum, abs, inverse and rsqrt inside a region: operands of the
    output's shape, of one element and broadcast, epsilons of 0, -0, one fp16 rounds (1e-5)
    and one it keeps, and rsqrt and inverse of values that reach zero, negatives and inf."""
    x, y = ak.input("x", (5, 2, 37)), ak.input("y", (5, 2, 37))
    row, s = ak.input("row", (37,)), ak.input("s", (1,))
    m = ak.maximum(x, y) * 0.5 + ak.minimum(y, row)
    a = ak.abs(x - y) * s
    r = ak.inverse(m, epsilon=0.0) + ak.inverse(a * 0.25, epsilon=1e-5) - ak.inverse(y, epsilon=-0.0)
    q = ak.rsqrt(a, epsilon=0.0) * ak.rsqrt(m * m, epsilon=1e-4) + ak.rsqrt(x, epsilon=-0.0)
    z = ak.maximum(ak.minimum(r, 2.0), q) - ak.maximum(s, x) * ak.minimum(s, y)
    return ak.program({"r": r, "q": q, "z": z})


@pytest.mark.numba
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_max_min_abs_inverse_rsqrt_run_on_the_tape_with_the_op_by_op_bits(profile):
    """Every new tape code in a region, on fp16 specials (NaN, inf, signed zeros, subnormals,
    65504), with the op-by-op route's bits: zeros of opposite signs meet in maximum and
    minimum (the region then runs op by op), NaN payloads in exact numerics."""
    p = PROFILES[profile]
    sim = Simulator(_norm_and_friends_program(), profile=p)
    codes = {int(c) for r in _regions(sim) for c in r.tape[:, 0]}
    assert set(_NEW_CODES) <= codes, [_NEW_CODES[c] for c in set(_NEW_CODES) - codes]
    rng = np.random.default_rng(23)
    shapes = {"x": (5, 2, 37), "y": (5, 2, 37), "row": (37,), "s": (1,)}
    for nan in (False, False, True, True):
        feeds = {n: _hostile(rng, sh, 3.0, special=0.3, nan=nan) for n, sh in shapes.items()}
        if not nan:                 # zeros of opposite signs in maximum(x, y) and minimum(y, row)
            feeds["x"][0, 0, :4], feeds["y"][0, 0, :4] = [0.0, -0.0, 0.0, -0.0], [-0.0, 0.0, 0.0, -0.0]
        _same_bits(*both_routes(sim, feeds))
    clean = {n: np.abs(_hostile(rng, sh, 3.0, special=0.0)) + np.float32(0.5) for n, sh in shapes.items()}
    _same_bits(*both_routes(sim, clean))


def _decoder_rmsnorm_program(eps=1e-5):
    """decoder._rmsnorm's overflow-safe form over axis 1: s = 1 / max(max|x|, floor),
    x s / sqrt(mean((x s)^2) + s^2 eps) * w."""
    x = ak.input("x", (1, 288, 1, 1))
    w = np.random.default_rng(4).standard_normal(288).astype(np.float32).reshape(1, -1, 1, 1)
    s = ak.inverse(ak.maximum(ak.abs(x).max(axes=[1], keep_dims=True), 2.0 ** -7), epsilon=0.0)
    xs = x * s
    inv = ak.rsqrt((xs * xs).mean(axes=[1], keep_dims=True) + s * s * eps, epsilon=0.0)
    return ak.program({"y": xs * inv * w})


@pytest.mark.numba
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_decoder_rmsnorm_is_five_units_with_the_op_by_op_bits(profile):
    """abs, reduce_max, [maximum, inverse, x * s, (x s)^2, s * s * eps], reduce_mean,
    [+, rsqrt, x s * inv * w]: five units where maximum, inverse, add and rsqrt used to run
    on their own (nine), with the op-by-op bits on large, tiny, zero and special vectors."""
    sim = Simulator(_decoder_rmsnorm_program(), profile=PROFILES[profile])
    assert len(sim._steps) == 13 and len(sim._units) == 5
    assert [len(r.members) for r in _regions(sim)][-2:] == [6, 4]
    rng = np.random.default_rng(31)
    feeds = [rng.standard_normal((1, 288, 1, 1)) * 900.0, rng.standard_normal((1, 288, 1, 1)) * 1e-6,
             np.zeros((1, 288, 1, 1)), -np.zeros((1, 288, 1, 1))]
    feeds = [f.astype(np.float16).astype(np.float32) for f in feeds]
    feeds += [_hostile(rng, (1, 288, 1, 1), 50.0, special=0.05, nan=nan) for nan in (False, True)]
    for x in feeds:
        _same_bits(*both_routes(sim, {"x": x}))


def _op_by_op(profile, code, a, b):
    """What the kernel of code's op and then the executor's storage rounding compute (b: the
    epsilon for inverse and rsqrt), on the numpy route."""
    from anekit.sim.kernels import elementwise
    from anekit.sim.numerics import Numerics

    class _Call:
        nx = Numerics(profile)
        type = _NEW_CODES[code]
    c = _Call()
    previous = compiled.set_enabled(False)
    try:
        with np.errstate(all="ignore"):
            if code in (compiled.RECIP, compiled.RSQRT):
                v = (elementwise.inverse if code == compiled.RECIP else elementwise.rsqrt)(c, a, b[0])
            else:
                v = elementwise.binary(c, a, b) if code != compiled.ABS else elementwise.unary(c, a)
            return c.nx.store(v)
    finally:
        compiled.set_enabled(previous)


@pytest.mark.numba
@pytest.mark.parametrize("mode", [1, 2, 3])
@pytest.mark.parametrize("code", sorted(_NEW_CODES))
def test_new_tape_rows_have_the_kernels_bits_with_nan_payloads(code, mode):
    """One row per new code and rounding mode on operands of every magnitude, NaN payloads
    included: the kernel's float32 result then the storage rounding (chip modes: a profile
    with signed (1) or unsigned (2) zero divisors; mode 3: exact numerics then round_fp16
    with NaN kept), bit for bit. inverse and rsqrt take epsilons fp16 keeps, rounds and
    flushes. maximum and minimum report zeros of opposite signs, and only those."""
    tape = _tape_module()
    import dataclasses
    m1 = profile_for("m1")
    profile = {1: dataclasses.replace(m1, unsigned_zero_reciprocal=False), 2: m1, 3: profile_for("exact")}[mode]
    rng = np.random.default_rng(100 + code * 3 + mode)
    a = _every_magnitude(rng, 3000)
    b = rng.permutation(a)
    b[::7] = np.float32(0.0) * np.where(rng.random(b[::7].size) < 0.5, -1, 1).astype(np.float32)
    a[:40], b[:40] = np.float32(1.5), np.float32(3.0)          # a block without NaN
    a[40:44], b[40:44] = [0.0, -0.0, 0.0, -0.0], [-0.0, 0.0, 0.0, -0.0]   # zeros of each sign
    eps = [np.float32(v) for v in (0.0, -0.0, 1e-5, 1e-8, 3.0, 0.1)]
    for b_in in ([np.array([e], np.float32) for e in eps] if code in (compiled.RECIP, compiled.RSQRT) else [b]):
        if code in (compiled.RECIP, compiled.RSQRT):
            b_in = _engine_const(profile, b_in)
        out = np.empty_like(a)
        kind = 2 if b_in.size == 1 else 1
        addrs = np.array([a.ctypes.data, b_in.ctypes.data, out.ctypes.data], np.int64)
        row = np.array([[code, 1, 0, 0, 0, kind, 1, 0, 0, 1, 2, mode, 0]], np.int64)
        bad = tape.run(np.array([[a.size, 0, 1]], np.int64), row, addrs, 3, 64)
        want = _op_by_op(profile, code, a, b_in)
        if mode == 3:
            previous = compiled.set_enabled(False)
            try:
                want = fp16.round_fp16(want, nan=None)
            finally:
                compiled.set_enabled(previous)
        if code in (compiled.MAX, compiled.MIN):
            mixed = (a == b_in) & (np.signbit(a) != np.signbit(b_in))
            assert mixed.any() and bool(bad)
            assert not tape.run(np.array([[40, 0, 1]], np.int64), row, addrs, 3, 64)   # none in a[:40]
            out, want = out[~mixed], want[~mixed]
        else:
            assert not bad
        _same_bits({"op": want}, {"op": out})


def _engine_const(profile, eps):
    """An epsilon as the tape reads it: nx.const, the scalar as the engine holds it."""
    from anekit.sim.numerics import Numerics
    return np.array([Numerics(profile).const(eps[0])], np.float32)


@pytest.mark.numba
@pytest.mark.parametrize("op", ["maximum", "abs", "inverse", "rsqrt"])
def test_a_loop_body_with_a_tape_only_code_stays_op_by_op(op):
    """The block program (sim/program.py) reuses the tape form of add ... sqrt only: its row
    codes past SQRT mean other things, so a while_loop whose body holds an op whose tape
    code it lacks is not planned, and runs op by op with the same bits."""
    from anekit.ir.ops import control
    from anekit.sim import program
    i, h = ak.input("i", (1,), "int32"), ak.input("h", (2, 3))
    step = {"maximum": lambda v: ak.maximum(v, v * 0.5), "abs": ak.abs,
            "inverse": lambda v: ak.inverse(v, epsilon=0.5), "rsqrt": lambda v: ak.rsqrt(v, epsilon=0.5)}[op]
    cond = control.block("cond", [i, h], [i < 3])
    body = control.block("body", [i, h], [i + 1, step(h * 0.5 + 1.0)])
    n, y = control.build("while_loop", {"loop_vars": (ak.fill(shape=[1], value=np.int32(0)), ak.input("x", (2, 3)))},
                         {"cond": cond, "body": body})
    sim = Simulator(ak.program({"n": n, "y": y}), profile="m4")
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    ref, got = both_routes(sim, {"x": x})
    _same_bits(ref, got)
    loop = next(s for s in sim._steps if s.call.op.type == "while_loop")
    assert [v for k, v in loop.call.cache.items() if k[0] == "program"] == [None]
    assert program.program_kernel() is not None
