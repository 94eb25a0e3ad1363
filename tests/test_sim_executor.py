"""The Simulator as an executor: input validation, declared output dtypes, missing kernels,
const folding, per-op caches, freeing intermediates, states, and programs parsed from MIL."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.errors import AnekitError, DTypeError, ShapeError, UnsupportedOpError
from anekit.ir.spec import REGISTRY
from anekit.sim import Simulator
from anekit.sim.regions import Region
from anekit.sim.registry import Kernel, kernel


def small_program():
    x = ak.input("x", (2, 3))
    n = ak.input("n", (2,), dtype="int32")
    return ak.program({"y": ak.relu(ak.mul(x, 2.0)), "i": ak.add(n, 1), "b": ak.greater(x, 0.0)})


FEEDS = {"x": np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]], np.float32), "n": np.array([3, 4], np.int32)}


# --- inputs and outputs ----------------------------------------------------------------------

def test_outputs_come_back_in_their_declared_dtypes():
    out = Simulator(small_program(), profile="m1").run(FEEDS)
    assert out["y"].dtype == np.float16 and out["i"].dtype == np.int32 and out["b"].dtype == np.bool_
    np.testing.assert_array_equal(out["y"], [[2, 0, 6], [1, 0, 0]])
    np.testing.assert_array_equal(out["i"], [4, 5])
    fp32 = ak.input("x", (2,), dtype="fp32")
    assert Simulator(ak.program({"y": ak.relu(fp32)}), "exact").run({"x": np.ones(2)})["y"].dtype == np.float32


def test_missing_and_unexpected_inputs_name_the_inputs():
    sim = Simulator(small_program())
    with pytest.raises(ShapeError, match=r"takes inputs x fp16\[2, 3\], n int32\[2\]: missing \['n'\]"):
        sim.run({"x": FEEDS["x"]})
    with pytest.raises(ShapeError, match=r"x fp16\[2, 3\].*unexpected \['z'\]"):
        sim.run({**FEEDS, "z": 1})
    with pytest.raises(ShapeError, match="mapping"):
        sim.run([FEEDS["x"]])


def test_shape_mismatch_names_the_input_and_both_shapes():
    with pytest.raises(ShapeError, match=r"input 'x': expected shape \[2, 3\], got \[3, 2\]"):
        Simulator(small_program()).run({**FEEDS, "x": np.zeros((3, 2))})


def test_inputs_convert_to_the_declared_dtype():
    sim = Simulator(small_program(), profile="m1")
    out = sim.run({"x": [[1.00001, -2, 3], [0.5, 0, -1]], "n": np.array([3.0, 4.0])})   # lists, float64
    assert out["y"][0, 0] == 2.0                   # 1.00001 rounds to fp16 1.0 on the way in
    np.testing.assert_array_equal(out["i"], [4, 5])
    with pytest.raises(DTypeError, match="input 'n' is int32; got non-integer values"):
        sim.run({**FEEDS, "n": np.array([1.5, 2.0])})
    with pytest.raises(DTypeError, match="'x': numeric array expected"):
        sim.run({**FEEDS, "x": np.array([["a", "b", "c"], ["d", "e", "f"]])})
    with pytest.raises(DTypeError, match="bool"):
        b = ak.input("b", (2,), dtype="bool")
        Simulator(ak.program({"y": ak.logical_not(b)})).run({"b": np.array([0, 2])})


def test_the_callers_arrays_are_never_touched_and_outputs_are_owned():
    x = ak.input("x", (4,))
    sim = Simulator(ak.program({"y": ak.identity(x)}), profile="m1")
    feed = np.array([np.nan, 1, 2, 3], np.float32)
    first = sim.run({"x": feed})["y"]
    assert np.isnan(feed[0]) and first[0] == np.inf
    first[:] = 7
    np.testing.assert_array_equal(sim.run({"x": feed})["y"][1:], [1, 2, 3])


def test_unknown_function_and_non_program():
    with pytest.raises(AnekitError, match="no function 'decode'.*main"):
        Simulator(small_program(), function="decode")
    with pytest.raises(AnekitError, match="Program"):
        Simulator("model.mil")


def test_functions_are_selectable():
    x = ak.input("x", (2,))
    prog = ak.program({"y": ak.relu(x)}, functions={"neg": {"y": ak.mul(x, -1.0)}})
    assert list(Simulator(prog, function="neg").run({"x": np.array([1.0, -2.0])})["y"]) == [-1.0, 2.0]


# --- kernels -----------------------------------------------------------------------------------

def test_a_missing_kernel_names_the_op_type_name_and_position(monkeypatch):
    monkeypatch.setattr(REGISTRY["relu"], "kernel", None)
    with pytest.raises(UnsupportedOpError, match=r"op type 'relu' \(op 'y', #\d+ in function 'main'\)"):
        Simulator(small_program())


def test_kernels_register_only_declared_ops():
    with pytest.raises(RuntimeError, match="no op declaration defines"):
        kernel("not_an_op")(lambda c, x: x)
    with pytest.raises(RuntimeError, match="two kernels"):
        kernel("relu")(lambda c, x: x)


def test_runtime_kernel_errors_name_the_op():
    x = ak.input("x", (3, 4))
    i = ak.input("i", (2,), dtype="int32")
    sim = Simulator(ak.program({"y": ak.gather(x, i, axis=1)}))
    with pytest.raises(ShapeError, match=r"gather 'y' \(op #\d+\): indices 0..9 fall outside \[-4, 4\)"):
        sim.run({"x": np.zeros((3, 4)), "i": np.array([0, 9])})


def test_tensors_too_big_to_allocate_are_refused_before_running():
    x = ak.input("x", (1, 65536, 65536))
    with pytest.raises(ShapeError, match="needs 16 GiB, more than the simulator's 4 GiB limit"):
        Simulator(ak.program({"y": ak.relu(x)}))


# --- construction-time work ----------------------------------------------------------------

def _count_calls(monkeypatch, op):
    calls = []
    original = REGISTRY[op].kernel

    def counting(c, *args, **kw):
        calls.append(c.op.name)
        return original.fn(c, *args, **kw)
    monkeypatch.setattr(REGISTRY[op], "kernel", Kernel(op, counting, original.finish))
    return calls


def test_const_only_subgraphs_are_computed_once_at_construction(monkeypatch):
    dequant = _count_calls(monkeypatch, "constexpr_affine_dequantize")
    muls = _count_calls(monkeypatch, "mul")
    q = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    w = ak.constexpr_affine_dequantize(quantized_data=q, zero_point=np.int8(0), scale=np.float16(0.5), axis=0)
    x = ak.input("x", (2, 3))
    y = ak.matmul(x, ak.mul(w, 2.0))                  # the scaled weight is const too
    sim = Simulator(ak.program({"y": y}), profile="m1")
    assert len(dequant) == 1 and len(muls) == 1
    for _ in range(3):
        out = sim.run({"x": np.ones((2, 3))})["y"]
    assert len(dequant) == 1 and len(muls) == 1
    np.testing.assert_array_equal(out, np.ones((2, 3)) @ (q * 1.0))


def test_conv_weights_are_prepared_once_per_op(monkeypatch):
    import anekit.sim.kernels.conv as convmod
    made = []
    original = convmod._weight_matrix
    monkeypatch.setattr(convmod, "_weight_matrix", lambda *a: made.append(1) or original(*a))
    x = ak.input("x", (1, 4, 5, 5))
    sim = Simulator(ak.program({"y": ak.conv(x, np.ones((2, 4, 3, 3), np.float32))}), profile="m1")
    for _ in range(3):
        sim.run({"x": np.ones((1, 4, 5, 5))})
    assert len(made) == 1


def test_runtime_weights_are_not_cached():
    x, w = ak.input("x", (1, 2, 1, 1)), ak.input("w", (1, 2, 1, 1))
    sim = Simulator(ak.program({"y": ak.conv(x, w)}), profile="m1")
    ones = np.ones((1, 2, 1, 1))
    assert sim.run({"x": ones, "w": ones})["y"].item() == 2.0
    assert sim.run({"x": ones, "w": 3 * ones})["y"].item() == 6.0


def test_intermediates_are_freed_after_their_last_consumer(monkeypatch):
    x = ak.input("x", (64,))
    h = x
    for _ in range(40):
        h = ak.relu(ak.add(h, 1.0))
    sim = Simulator(ak.program({"y": h}), profile="m1")
    live = []
    original = Simulator._execute

    original_region = Region.run

    def spy(self, step, env, compile_time=False):
        original(self, step, env, compile_time)
        if not compile_time:
            live.append(sum(isinstance(v, np.ndarray) and v.size == 64 for v in env))

    def region_spy(self, env, execute):        # the adds run as one-op regions (sim/regions.py)
        original_region(self, env, original.__get__(sim))
        live.append(sum(isinstance(v, np.ndarray) and v.size == 64 for v in env))
    monkeypatch.setattr(Simulator, "_execute", spy)
    monkeypatch.setattr(Region, "run", region_spy)
    out = sim.run({"x": np.zeros(64)})["y"]
    assert np.all(out == 40.0)
    assert len(live) == 80 and max(live) <= 3          # never more than input, operand, result


# --- states ------------------------------------------------------------------------------------

def test_state_persists_across_runs_and_resets():
    s, x = ak.input("s", (1, 3)), ak.input("x", (1, 3))
    acc = ak.coreml_update_state(s, ak.add(ak.read_state(s), x))
    sim = Simulator(ak.program({"y": acc}), profile="m1")
    one = np.ones((1, 3))
    assert sim.run({"x": one})["y"].tolist() == [[1, 1, 1]]          # the state starts at zeros
    assert sim.run({"x": one})["y"].tolist() == [[2, 2, 2]]
    np.testing.assert_array_equal(sim.states["s"], [[2, 2, 2]])
    assert sim.run({"x": one, "s": 10 * one})["y"].tolist() == [[11, 11, 11]]   # set explicitly
    sim.reset_states()
    assert sim.run({"x": one})["y"].tolist() == [[1, 1, 1]]


# --- programs parsed from MIL ------------------------------------------------------------------

@pytest.mark.parametrize("dialect", ["ios18", "ios16"])
def test_a_program_parsed_back_from_mil_simulates_identically(dialect):
    from anekit import mil
    from anekit.models import stories
    prog = stories.build_layer_program(dim=32, hidden=64, heads=2, seq=8, seed=1)
    text, files = mil.emit(prog, dialect=dialect)
    parsed = mil.parse(text, weights=files)
    x = np.random.default_rng(0).standard_normal((1, 32, 1, 8)).astype(np.float32)
    for profile in ("m1", "exact"):
        a = Simulator(prog, profile=profile).run({"x": x})["y"]
        b = Simulator(parsed, profile=profile).run({"x": x})["y"]
        assert a.tobytes() == b.tobytes(), profile


def test_parameters_a_parser_omits_take_their_declared_defaults():
    """A conv op carrying only x and weight (as MIL text may write it): strides, pads and
    dilations come from the declaration's per-axis defaults."""
    from anekit.ir import REGISTRY, Function, Op, Program, Tensor, make_const
    x = ak.input("x", (1, 2, 5, 5))
    w = make_const(np.ones((3, 2, 3, 3), np.float16), name="w")
    w.name = "w"
    op = Op(REGISTRY["conv"], {"x": x, "weight": w}, name="y")
    y = Tensor("fp16", (1, 3, 3, 3), op, 0, "y")
    op.outputs.append(y)
    prog = Program({"main": Function("main", [x], [w.op, op], [y])})
    out = Simulator(prog, profile="m1").run({"x": np.ones((1, 2, 5, 5))})["y"]
    np.testing.assert_array_equal(out, np.full((1, 3, 3, 3), 18.0))


def test_folding_constants_reuses_one_table_not_a_copy_per_op(monkeypatch):
    """Construction folds const-only ops into the simulator's own table: no per-op copy of every
    folded value so far (that made building quadratic in the number of consts)."""
    envs = []
    original = Simulator._execute

    def spy(self, step, env, compile_time=False):
        if compile_time:
            envs.append(env)
        return original(self, step, env, compile_time)
    monkeypatch.setattr(Simulator, "_execute", spy)
    x = ak.input("x", (1, 4))
    c = ak.ir.make_const(np.ones((1, 4), np.float16))
    for _ in range(50):
        c = c * 1.0            # a chain of const-only ops, folded at construction
    sim = Simulator(ak.program({"y": x + c}))
    assert len(envs) > 50 and all(e is envs[0] for e in envs)
    assert sim.run({"x": np.zeros((1, 4))})["y"].tolist() == [[1.0] * 4]


def test_a_10000_op_graph_builds():
    """Built in well under a second on a laptop (benchmarks/sim_throughput.py measures it);
    here only that the long const chain folds to the right value."""
    c = ak.ir.make_const(np.zeros((1, 8), np.float16))
    for _ in range(10_000):
        c = c + 1.0
    sim = Simulator(ak.program({"y": ak.input("x", (1, 8)) + c}))
    assert sim.run({"x": np.zeros((1, 8))})["y"].tolist() == [[2048.0] * 8]   # fp16: 2048 + 1 rounds to 2048
