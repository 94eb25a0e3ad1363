"""Compiled loop programs (sim/program.py, sim/_compiled_program.py): a counter-test
while_loop whose body the program models runs every trip in one compiled call, with the
bits of the op-by-op route.

In exact numerics the linears (BLAS) and numpy's exp and tanh run as numpy rows between
compiled segments, with the op-by-op route's calls on the same layouts.

The loop here is a GRU step written the way coremltools 9 converts torch.nn.GRU (the corpus
model `gru`): the step's input gathered from a captured sequence by the counter (through
int32 casts, a comparison and a select), the state row gathered, six linears, sigmoid,
tanh, elementwise arithmetic, squeeze / expand_dims, and the new row scattered (mode add,
then update) into the state. Each comparison runs the Simulator with the compiled kernels
off (every op through its numpy kernel) and on, and asserts identical float32 bits (NaN
payloads included).
"""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.errors import ShapeError
from anekit.ir.ops import control
from anekit.sim import FAMILY_PROFILES, Simulator, compiled, profile_for, program
from compiled_routes import both_routes

PROFILES = {"exact": profile_for("exact"), "m1": profile_for("m1"), "m4": profile_for("m4"), **FAMILY_PROFILES}
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, -6e-8, 3.05e-5, 65504.0, -65504.0,
                     1024.0, 2.0 ** -14, 1.0, -1.0], np.float32)
STEPS, IN, HID, ROWS = 5, 6, 8, 7


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float16)


def _gru_program(rng, scatter_mode="add"):
    """One GRU layer as a while_loop over STEPS steps; weights as fp16 constants."""
    seq = ak.input("seq", (STEPS, 1, IN))
    i, h, xs = ak.input("i", (1,), "int32"), ak.input("h", (ROWS, 1, HID), "fp32"), ak.input("xs", (STEPS, 1, IN))
    cond = control.block("cond", [i, h, xs], [i < STEPS])
    k = ak.cast(ak.cast(i, "int32"), "int32")
    idx = ak.select(k >= 0, k, k + STEPS)
    x = ak.squeeze(ak.gather(xs, idx, axis=0), axes=[0])                  # [1, IN]
    h16 = ak.cast(h, "fp16")
    hp = ak.squeeze(ak.gather(h16, i, axis=0), axes=[0])                   # [1, HID]

    def lin(v, n_in):
        return ak.linear(v, ak.const(_w(rng, HID, n_in)), ak.const(_w(rng, HID)))
    r = ak.sigmoid(lin(x, IN) + lin(hp, HID))
    z = ak.sigmoid(lin(x, IN) + lin(hp, HID))
    n = ak.tanh(lin(x, IN) + r * lin(hp, HID))
    new = (1.0 - z) * n + z * hp
    nxt = i + 1
    h2 = ak.scatter(h16, nxt, ak.expand_dims(new, axes=[0]), axis=0, mode=scatter_mode)
    body = control.block("body", [i, h, xs], [nxt, ak.cast(h2, "fp32")])
    h0 = ak.const(np.zeros((ROWS, 1, HID), np.float32))
    count, hs = control.build("while_loop", {"loop_vars": (ak.fill(shape=[1], value=np.int32(0)), h0),
                                             "captures": (seq,)}, {"cond": cond, "body": body})
    return ak.program({"count": count, "h": hs})


def _same_bits(ref, got):
    for name in ref:
        r, g = np.asarray(ref[name]), np.asarray(got[name])
        assert r.shape == g.shape and r.dtype == g.dtype, name
        diff = r.view(np.uint32) != g.view(np.uint32)
        assert not diff.any(), f"{name}: {int(diff.sum())} of {diff.size} differ, e.g. {r[diff][0]!r} vs {g[diff][0]!r}"


class _Spy:
    """Counts program runs that finished (True) or fell back to the op-by-op route (False)."""

    def __init__(self, monkeypatch):
        self.runs: list[bool] = []
        real = program.LoopProgram.run

        def run(prog, *args):
            out = real(prog, *args)
            self.runs.append(out is not None)
            return out
        monkeypatch.setattr(program.LoopProgram, "run", run)


def _seq(rng, scale=1.0, special=0.0):
    v = (rng.standard_normal((STEPS, 1, IN)) * scale).astype(np.float16).astype(np.float32).reshape(-1)
    pick = rng.random(v.size) < special
    v[pick] = rng.choice(SPECIALS, int(pick.sum()))
    return v.reshape(STEPS, 1, IN)


@pytest.mark.numba
@pytest.mark.parametrize("mode", ["add", "update"])
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_program_matches_the_op_by_op_route_in_every_profile(name, mode, monkeypatch):
    """Ordinary data runs through the program (no fallback) with the same bits; hostile data
    (subnormals, overflow past the MAC's plain bound, infinities, NaN: exact numerics bails on
    a NaN) gives the same bits whichever route it ends up on."""
    rng = np.random.default_rng(1)
    sim = Simulator(_gru_program(rng, mode), profile=PROFILES[name])
    spy = _Spy(monkeypatch)
    ref, got = both_routes(sim, {"seq": _seq(rng)})
    _same_bits(ref, got)
    assert spy.runs == [True], "the program should have run the loop"
    assert got["count"].tolist() == [STEPS]
    for scale, special in ((1e-6, 0.0), (3e-4, 0.5), (300.0, 0.0), (1.0, 0.3), (1e4, 0.5)):
        ref, got = both_routes(sim, {"seq": _seq(rng, scale, special)})
        _same_bits(ref, got)
    assert False in spy.runs, "hostile data should have made some run fall back"


def test_out_of_range_gather_reports_the_kernel_error():
    """An index the program cannot take (here the counter past the sequence) leaves the trip to
    the kernels, which report it naming the op."""
    xs_, i, h = ak.input("xs", (3, 4)), ak.input("i", (1,), "int32"), ak.input("h", (1, 4))
    cond = control.block("cond", [i, h, xs_], [i < 5])
    body = control.block("body", [i, h, xs_], [i + 1, h + ak.gather(xs_, i, axis=0)])
    seq = ak.input("seq", (3, 4))
    n, acc = control.build("while_loop", {"loop_vars": (ak.fill(shape=[1], value=np.int32(0)),
                                                        ak.const(np.zeros((1, 4), np.float16))),
                                          "captures": (seq,)}, {"cond": cond, "body": body})
    sim = Simulator(ak.program({"n": n, "acc": acc}), profile="m4")
    with pytest.raises(ShapeError, match="gather .*outside"):
        sim.run({"seq": np.ones((3, 4), np.float32)})


def test_a_body_op_without_a_program_form_keeps_the_loop_op_by_op(monkeypatch):
    """relu declares no program form: the loop is not planned, and runs as before."""
    i, h = ak.input("i", (1,), "int32"), ak.input("h", (2, 3))
    cond = control.block("cond", [i, h], [i < 3])
    body = control.block("body", [i, h], [i + 1, ak.relu(h * 2.0 - 1.0)])
    n, y = control.build("while_loop", {"loop_vars": (ak.fill(shape=[1], value=np.int32(0)), ak.input("x", (2, 3)))},
                         {"cond": cond, "body": body})
    sim = Simulator(ak.program({"n": n, "y": y}), profile="m4")
    spy = _Spy(monkeypatch)
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    ref, got = both_routes(sim, {"x": x})
    _same_bits(ref, got)
    assert spy.runs == []


@pytest.mark.numba
def test_exact_program_takes_only_c_contiguous_loop_values():
    """In exact numerics BLAS and numpy's loops may take another path on other strides, so a
    loop value that is not C-contiguous sends the loop op by op (run returns None)."""
    rng = np.random.default_rng(3)
    previous = compiled.set_enabled(True)          # (also under ANEKIT_NO_JIT=1)
    try:
        sim = Simulator(_gru_program(rng), profile="exact")
        sim.run({"seq": _seq(rng)})
        loop = next(s for s in sim._steps if s.call.op.type == "while_loop")
        prog = next(v for k, v in loop.call.cache.items() if k[0] == "program")
        kern = program.program_kernel()
        state = [np.zeros(1, np.int32), np.zeros((ROWS, 1, HID), np.float32)]
        seq = _seq(rng)
        assert prog.run(kern, state, [seq], 100) is not None
        strided = np.zeros((STEPS, 1, 2 * IN), np.float32)[..., ::2]
        strided[...] = seq
        assert prog.run(kern, state, [strided], 100) is None
    finally:
        compiled.set_enabled(previous)
