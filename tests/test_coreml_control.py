"""Control flow from Core ML (issue 15): `while_loop` and `cond` keep their nested blocks.

torch.nn.GRU converted by coremltools 9 becomes one `while_loop` per layer and direction (a
gather of step t, the cell, a scatter-add of h into the output sequence): it loads, runs on
the simulator within 2e-2 relative L2 of PyTorch fp32 (measured 4-9e-4 with fp16 weights
and activations, M4 numerics), and ak.check reports every loop as leaving the engine (guide
Appendix A: no standalone code generation; Core ML runs control flow on the host).
A loop whose trip count is an input, and a cond on a computed predicate, run for every
input: compared with a float64 numpy reference.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import optional
from coreml_recurrent import REL_L2, convert_and_run

import anekit as ak
from anekit.errors import GradientError, ModelFormatError, ShapeError

pytestmark = [pytest.mark.coremltools]


@pytest.mark.torch
@pytest.mark.parametrize("layers, bidirectional, batch_first",
                         [(1, False, False), (1, True, True), (2, False, True), (2, True, True)])
def test_converted_gru_matches_pytorch(tmp_path, layers, bidirectional, batch_first):
    torch = optional("torch")
    torch.manual_seed(5)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(6, 5, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)

        def forward(self, x):
            y, h = self.rnn(x)
            return y, h
    net = Net().eval()
    prog, errors = convert_and_run(tmp_path, net, torch.randn(2, 7, 6), "yh")
    loops = [op for op in prog.main.ops if op.type == "while_loop"]
    assert len(loops) == layers * (2 if bidirectional else 1)
    assert all(len(op.attrs["body"].ops) > 10 for op in loops)       # the cell lives in the block
    assert all(e < REL_L2 for e in errors.values()), errors
    found = [f for f in ak.check(prog, "m4").by_rule("op-support") if f.op_type == "while_loop"]
    assert len(found) == len(loops)
    assert all(f.verdict == "unsupported" and "host" in f.reason for f in found)


def _dynamic_program(tmp_path):
    """acc <- 2 acc + x, n times (n an input); then acc if sum(x) > 0 else acc - x."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    @mb.program(input_specs=[mb.TensorSpec(shape=(1,), dtype=types.int32),
                             mb.TensorSpec(shape=(2, 3), dtype=types.fp32)], opset_version=ct.target.iOS17)
    def prog(n, x):
        def cond(i, acc):
            return mb.less(x=i, y=n)

        def body(i, acc):
            return mb.add(x=i, y=1), mb.add(x=mb.mul(x=acc, y=2.0), y=x)
        i, acc = mb.while_loop(_cond=cond, _body=body, loop_vars=(np.zeros((1,), np.int32), mb.mul(x=x, y=0.0)))
        positive = mb.greater(x=mb.reduce_sum(x=x), y=0.0)
        out = mb.cond(pred=positive, _true_fn=lambda: mb.mul(x=acc, y=1.0), _false_fn=lambda: mb.sub(x=acc, y=x))
        return i, out
    ml = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                    compute_precision=ct.precision.FLOAT32)
    ml.save(str(tmp_path / "dyn.mlpackage"))
    return ak.load(tmp_path / "dyn.mlpackage")


def test_data_dependent_trip_count_and_cond_run_for_every_input(tmp_path):
    prog = _dynamic_program(tmp_path)
    assert {op.type for op in prog.main.ops} >= {"while_loop", "cond"}
    names = [op.name for op in prog.main.ops if op.type in ("while_loop", "cond")]
    with ak.compile(prog, backend="sim", target="m4", numerics="exact") as exe:
        for n in (0, 1, 4, 9):
            for sign in (1.0, -1.0):
                x = sign * (np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5)
                out = exe({"n": np.array([n], np.int32), "x": x})
                acc = (2.0 ** n - 1.0) * x.astype(np.float64)
                want = acc if x.sum() > 0 else acc - x
                assert out[prog.main.outputs[0].name].tolist() == [n]
                np.testing.assert_allclose(out[prog.main.outputs[1].name], want, rtol=1e-6, atol=0)
    verdicts = {f.op: f.verdict for f in ak.check(prog, "m4").by_rule("op-support")}
    assert all(verdicts[n] == "unsupported" for n in names)


def test_runaway_loop_is_reported_naming_the_op(tmp_path, monkeypatch):
    from anekit.sim.kernels import control
    prog = _dynamic_program(tmp_path)
    monkeypatch.setattr(control, "MAX_TRIPS", 5)
    with ak.compile(prog, backend="sim", target="m4") as exe:
        with pytest.raises(ShapeError, match="while_loop '.*' .*still running after 5 trips"):
            exe({"n": np.array([50], np.int32), "x": np.ones((2, 3), np.float32)})



def test_counter_test_and_trip_entry_give_the_block_route_values(tmp_path, monkeypatch):
    """A loop's `i < n` cond is evaluated on the int32 values directly and its body through
    Simulator.run_trip; with both switched off (every block through run_stored) the outputs
    are the same bits, in chip and exact numerics."""
    from anekit.sim import Simulator
    from anekit.sim.kernels import control
    prog = _dynamic_program(tmp_path)
    loop = next(op for op in prog.main.ops if op.type == "while_loop")

    class Probe:
        cache: dict = {}

        def cached(self, key, make, *params):
            return make()
    compare, operands = control._counter_test(Probe(), loop.attrs["cond"])
    assert compare is np.less and operands == (0, 2)      # i (loop variable) < n (capture)
    feeds = [{"n": np.array([n], np.int32), "x": np.linspace(-2, 3, 6, dtype=np.float32).reshape(2, 3) * 7.3}
             for n in (0, 1, 5)]
    for numerics in ("m4", "exact"):
        sim = Simulator(prog, profile=numerics)
        fast = [sim.run(f) for f in feeds]
        with monkeypatch.context() as m:
            m.setattr(control, "_counter_test", lambda c, fn: None)
            m.setattr(Simulator, "run_trip", lambda self, values: None)
            slow = [Simulator(prog, profile=numerics).run(f) for f in feeds]
        for a, b in zip(fast, slow):
            assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_run_trip_matches_run_stored_and_declines_other_forms(tmp_path):
    from anekit.ir.graph import Program
    from anekit.sim import Simulator
    prog = _dynamic_program(tmp_path)
    body = next(op for op in prog.main.ops if op.type == "while_loop").attrs["body"]
    sim = Simulator(Program({body.name: body}), profile="m4", function=body.name)
    floats = iter([np.array([[1.5, -2.0, 0.25], [4.0, 65504.0, -0.0]], np.float32),
                   np.array([[1.0, np.inf, -3.0], [0.5, 1e-6, 2.0]], np.float32)])
    values = [np.array([3], np.int32) if t.dtype == "int32" else next(floats) for t in body.inputs]
    assert [t.dtype for t in body.inputs] == ["int32", "fp32", "int32", "fp32"]      # i, acc, n, x
    want = sim.run_stored({}, resident={t.name: v for t, v in zip(body.inputs, values)})
    got = sim.run_trip(values)
    assert [g.tobytes() for g in got] == [want[n].tobytes() for n in sim.output_names]
    assert sim.run_trip([values[0].astype(np.int64)] + values[1:]) is None      # not stored form
    assert sim.run_trip([values[0], values[1].astype(np.float64)] + values[2:]) is None
    assert sim.run_trip(values[:3]) is None

def test_control_flow_round_trips_through_mil_text_and_autodiff_refuses_it(tmp_path):
    prog = _dynamic_program(tmp_path)
    x = prog.main.input("x")
    loss = ak.reduce_sum(prog.main.outputs[1])
    with pytest.raises(GradientError, match="no gradient rule for op 'cond'"):
        ak.grad(loss, [x])
    ak.save(prog, tmp_path / "dyn.mil")
    again = ak.load(tmp_path / "dyn.mil")
    ak.save(again, tmp_path / "again.mil")
    assert (tmp_path / "dyn.mil").read_text() == (tmp_path / "again.mil").read_text()
    feeds = {"n": np.array([3], np.int32), "x": np.linspace(-1, 2, 6, dtype=np.float32).reshape(2, 3)}
    with ak.compile(prog, backend="sim", target="m4") as a, ak.compile(again, backend="sim", target="m4") as b:
        first, second = a(feeds), b(feeds)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    with pytest.raises(ModelFormatError, match="while_loop.*nested blocks .* save the program as MIL text"):
        ak.save(prog, tmp_path / "out.mlpackage")


def test_generic_builder_refuses_a_non_block_argument_clearly():
    """ak.while_loop / ak.cond called with something other than a block give a ShapeError that
    names the op, the argument and how to build the op (was an AttributeError from the rule)."""
    x = ak.input("x", (2,))
    with pytest.raises(ShapeError, match=r"while_loop: argument 'cond': takes a block .*control\.build"):
        ak.while_loop([x], cond="a", body="b")
    pred = ak.input("p", (1,), dtype="bool")
    with pytest.raises(ShapeError, match=r"cond: argument 'true_block': takes a block"):
        ak.cond(pred, true_block=3, false_block=4)
