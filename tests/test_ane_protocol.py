"""The docs/hardware.md dispatch sequence, proven at the transport boundary.

Every test that can runs twice: through FakeTransport (always) and through the real
AppleNeuralEngine.framework (ObjCTransport wrapped in a RecordingTransport) when ANEKIT_HW=1
on Apple Silicon macOS; elsewhere that variant is skipped with the reason, and the fake
variant still runs, so nothing passes by skipping. Tests that inject failures or count live
objects need the fake's instrumentation and run with it only.
"""
import os

import numpy as np
import pytest

import anekit as ak
from anekit import targets
from anekit.errors import (ANECompileError, ANEExecutionError, DTypeError, ShapeError, UsageError,
                           TargetError, TransportError)
from anekit.ir.builder import build as op
from anekit.runtime.ane import AneBackend, FakeTransport, ObjCTransport, RecordingTransport
from anekit.runtime.ane import machine
from anekit.runtime.ane.layout import io_rules, surface_spec
from anekit.runtime.ane.protocol import CompileJob, LoadedModel

HW = os.environ.get("ANEKIT_HW") == "1"
FAKE_TARGET = "m4"
REQUEST_SEL = "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:"
PROTOCOL_CALLS = {"dlopen", "modelWithMILText:weights:optionsPlist:", "inMemoryModelWithDescriptor:",
                  "hexStringIdentifier", "NSTemporaryDirectory", "compileWithQoS:options:error:",
                  "loadWithQoS:options:error:", "IOSurfaceCreate", "objectWithIOSurface:", REQUEST_SEL,
                  "IOSurfaceLock", "IOSurfaceUnlock", "evaluateWithQoS:options:request:error:",
                  "unloadWithQoS:error:", "CFRelease"}


def _real_target():
    return machine.chip_target() or "m1"


@pytest.fixture(params=["fake", "objc"])
def transport(request):
    """(transport, target name): the fake always, the real framework with ANEKIT_HW=1."""
    if request.param == "fake":
        return FakeTransport(chip=FAKE_TARGET), FAKE_TARGET
    if not HW:
        pytest.skip("real AppleNeuralEngine.framework: set ANEKIT_HW=1 on Apple Silicon macOS to run")
    avail = machine.ane_availability()
    if not avail.available:
        pytest.skip(f"ANEKIT_HW=1 but the ANE is unavailable: {avail.reason}")
    return RecordingTransport(ObjCTransport()), _real_target()


def _rng(seed=0):
    return np.random.default_rng(seed)


def conv_program(cin=16, cout=8, s=32, seed=0, with_weights=False):
    w = (_rng(seed).standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float16)
    x = ak.input("x", (1, cin, 1, s))
    prog = ak.program({"y": op("relu", op("conv", x, w))})
    return (prog, w) if with_weights else prog


def relu_program(c=16, s=32):
    x = ak.input("x", (1, c, 1, s))
    return ak.program({"y": op("relu", x)})


def scaled_program(k: float, c=4, s=16):
    x = ak.input("x", (1, c, 1, s))
    return ak.program({"y": op("mul", x, float(k))})


def compile_with(t, prog, target, **options):
    return ak.compile(prog, backend="ane", transport=t, target=target, **options)


def simulate(prog, target, feeds):
    return ak.compile(prog, backend="sim", target=target)(feeds)


def protocol_calls(t):
    return [c for c in t.calls if c.selector in PROTOCOL_CALLS]


def assert_clean(t: FakeTransport):
    assert t.live() == {"objects": [], "surfaces": [], "loaded": [], "temp_folders": []}
    assert t.problems == []


# --- the sequence ----------------------------------------------------------------------------------

def test_selector_order_of_compile_run_close(transport):
    t, target = transport
    prog = conv_program()
    exe = compile_with(t, prog, target)
    exe({"x": _rng(1).standard_normal((1, 16, 1, 32))})
    exe.close()
    seq = [c.selector for c in protocol_calls(t)]
    write = ["IOSurfaceLock", "IOSurfaceUnlock"]
    assert seq == (["dlopen", "modelWithMILText:weights:optionsPlist:", "inMemoryModelWithDescriptor:",
                    "hexStringIdentifier", "NSTemporaryDirectory", "compileWithQoS:options:error:",
                    "loadWithQoS:options:error:",
                    "IOSurfaceCreate", "objectWithIOSurface:",          # input x
                    "IOSurfaceCreate", "objectWithIOSurface:",          # output y
                    REQUEST_SEL]
                   + write + ["evaluateWithQoS:options:request:error:"] + write
                   + ["unloadWithQoS:error:", "CFRelease", "CFRelease"])
    by_sel = {c.selector: c for c in protocol_calls(t)}
    for sel in ("compileWithQoS:options:error:", "loadWithQoS:options:error:",
                "evaluateWithQoS:options:request:error:", "unloadWithQoS:error:"):
        assert by_sel[sel].args[0] == 21                              # QoS 21, as earlier direct-route projects use
        assert by_sel[sel].args[-1] == "&error"                        # an NSError** every time
    locks = [c.args[1] for c in protocol_calls(t) if c.selector == "IOSurfaceLock"]
    assert locks == [0, 1]                  # read-write to write the input, read-only to read the output
    # the four private classes are looked up by name after the framework is loaded
    looked_up = [c.args[0] for c in t.calls if c.selector == "objc_getClass" and c.args[0].startswith("_ANE")]
    assert looked_up == ["_ANEInMemoryModelDescriptor", "_ANEInMemoryModel", "_ANERequest", "_ANEIOSurfaceObject"]
    assert [c.selector for c in t.calls].index("dlopen") < [c.selector for c in t.calls].index("objc_getClass")


def test_request_is_built_once_and_reused(transport):
    t, target = transport
    exe = compile_with(t, relu_program(), target)
    x = _rng(2).standard_normal((1, 16, 1, 32))
    for _ in range(3):
        exe({"x": x})
    exe.close()
    sels = [c.selector for c in t.calls]
    assert sels.count(REQUEST_SEL) == 1
    assert sels.count("evaluateWithQoS:options:request:error:") == 3
    assert sels.count("compileWithQoS:options:error:") == 1


def test_outputs_match_the_simulator(transport):
    t, target = transport
    prog = relu_program()
    x = _rng(3).standard_normal((1, 16, 1, 32)).astype(np.float16)
    with compile_with(t, prog, target) as exe:
        got = exe({"x": x})["y"]
    want = simulate(prog, target, {"x": x})["y"]
    assert got.dtype == np.float16 and got.shape == (1, 16, 1, 32)
    np.testing.assert_array_equal(got, want)        # relu is exact on every path
    np.testing.assert_array_equal(got, np.maximum(x, 0))


def test_conv_outputs_match_the_simulator_bit_for_bit_through_the_fake():
    t = FakeTransport(chip=FAKE_TARGET)
    prog, w = conv_program(seed=4, with_weights=True)
    x = _rng(5).standard_normal((1, 16, 1, 32)).astype(np.float16)
    with compile_with(t, prog, FAKE_TARGET) as exe:
        got = exe({"x": x})["y"]
    np.testing.assert_array_equal(got, simulate(prog, FAKE_TARGET, {"x": x})["y"])
    # and the fake really computed it: a float64 reference agrees within fp16 rounding
    # (outputs are O(1): a few fp16 ulps of 2^-10 plus the accumulation)
    ref = np.maximum(w[:, :, 0, 0].astype(np.float64) @ x[0, :, 0, :].astype(np.float64), 0)
    np.testing.assert_allclose(got[0, :, 0, :].astype(np.float64), ref, rtol=0, atol=8e-3)


# --- what goes into the descriptor and the folder ------------------------------------------------------

def test_weights_dictionary_shape():
    t = FakeTransport(chip=FAKE_TARGET)
    with compile_with(t, conv_program(), FAKE_TARGET) as exe:
        weights = exe.job.weights
        mil = exe.job.mil_text.encode()
    call = next(c for c in t.calls if c.selector == "modelWithMILText:weights:optionsPlist:")
    assert call.receiver == "_ANEInMemoryModelDescriptor"
    assert list(weights) == ["weights/weight.bin"]
    assert call.args == (f"<NSData {len(mil)} bytes>",
                         {"@model_path/weights/weight.bin": {"offset": 0,
                                                             "data": f"<NSData {len(weights['weights/weight.bin'])} bytes>"}},
                         None)                                   # optionsPlist:nil


def test_weights_dictionary_is_empty_not_nil_without_weights():
    t = FakeTransport(chip=FAKE_TARGET)
    with compile_with(t, relu_program(), FAKE_TARGET) as exe:
        assert exe.job.weights == {}
    call = next(c for c in t.calls if c.selector == "modelWithMILText:weights:optionsPlist:")
    assert call.args[1] == {}
    assert_clean(t)


def test_nil_weights_fail_like_the_framework():
    # The framework "fails silently" on nil weights; the fake returns a nil descriptor for it.
    t = FakeTransport(chip=FAKE_TARGET)
    from anekit.runtime.ane import foundation as ns
    from anekit.runtime.ane.transport import obj
    with ns.autorelease_pool(t):
        t.load_library("/System/Library/PrivateFrameworks/AppleNeuralEngine.framework/AppleNeuralEngine")
        d = t.send(t.get_class("_ANEInMemoryModelDescriptor"), "modelWithMILText:weights:optionsPlist:",
                   obj(ns.ns_data(t, b"program(1.3) {}")), obj(None), obj(None))
    assert d is None


def test_temp_folder_layout_under_the_identifier(transport):
    t, target = transport
    exe = compile_with(t, conv_program(), target)
    folder = exe.compile_info["folder"]
    assert os.path.isdir(folder)
    if isinstance(t, FakeTransport):
        assert sorted(os.listdir(folder)) == ["model.mil", "weights"]
        assert os.listdir(os.path.join(folder, "weights")) == ["weight.bin"]
    else:                               # the framework may add its own compiled files there
        assert set(os.listdir(folder)) >= {"model.mil", "weights"}
    with open(os.path.join(folder, "model.mil"), encoding="utf-8") as f:
        assert f.read() == exe.job.mil_text
    with open(os.path.join(folder, "weights", "weight.bin"), "rb") as f:
        assert f.read() == exe.job.weights["weights/weight.bin"]
    if isinstance(t, FakeTransport):
        assert os.path.dirname(folder) == t.tmp_root            # NSTemporaryDirectory()/<identifier>
        assert all(ch in "0123456789abcdef" for ch in os.path.basename(folder))
    exe.close()
    assert not os.path.exists(folder)


def test_dialect_follows_the_chip():
    for chip, header, tag in (("m1", "program(1.0)", "<ios16>"), ("m2", "program(1.0)", "<ios16>"),
                              ("m3", "program(1.3)", "<ios18>"), ("m4", "program(1.3)", "<ios18>"),
                              ("m5", "program(1.3)", "<ios18>")):
        t = FakeTransport(chip=chip)
        with compile_with(t, conv_program(), chip) as exe:
            text = exe.job.mil_text
            x = _rng(6).standard_normal((1, 16, 1, 32))
            np.testing.assert_array_equal(exe({"x": x})["y"], simulate(conv_program(), chip, {"x": x})["y"])
        assert text.startswith(header) and f"main{tag}" in text, chip


# --- failures ------------------------------------------------------------------------------------------

def _bad_job(target):
    rules = io_rules(targets.get(target))
    spec = surface_spec("x", (1, 4, 1, 16), "fp16", rules)
    return CompileJob("bad" * 8, "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 16]> x) {\n"
                      "        tensor<fp16, [1, 4, 1, 16]> y = no_such_op(x = x)[name = string(\"y\")];\n"
                      "    } -> (y);\n}\n", {}, [spec], [spec], target=target)


def test_mil_the_compiler_rejects_raises_ane_compile_error_and_cleans_up(transport):
    t, target = transport
    with pytest.raises(ANECompileError, match="ANE compile failed|returned nil") as info:
        LoadedModel(t, _bad_job(target))
    if isinstance(t, FakeTransport):
        assert "InvalidMILProgram" in str(info.value) and "no_such_op" in str(info.value)
        assert "Error Domain=" in str(info.value)             # the NSError's own description
        assert_clean(t)
    assert "unloadWithQoS:error:" not in [c.selector for c in t.calls]   # never loaded


def test_compile_failure_carries_the_framework_error_text():
    t = FakeTransport(chip=FAKE_TARGET, fail={"compileWithQoS:options:error:": "ANECCompile() FAILED: boom 42"})
    with pytest.raises(ANECompileError, match="boom 42"):
        compile_with(t, conv_program(), FAKE_TARGET)
    assert_clean(t)


# Each injection point of the sequence, with the error it must raise; afterwards nothing may be
# left: no live object or surface, nothing loaded, no temp folder, no protocol problem.
INJECTIONS = [
    ("dlopen", "image not found", TransportError, "compile"),
    ("objc_getClass", None, TransportError, "compile"),
    ("modelWithMILText:weights:optionsPlist:", None, ANECompileError, "compile"),
    ("inMemoryModelWithDescriptor:", None, ANECompileError, "compile"),
    ("hexStringIdentifier", None, ANECompileError, "compile"),
    ("compileWithQoS:options:error:", "compile says no", ANECompileError, "compile"),
    ("compileWithQoS:options:error:", None, ANECompileError, "compile"),
    ("loadWithQoS:options:error:", "load says no", ANECompileError, "compile"),
    ("IOSurfaceCreate#1", None, ANEExecutionError, "compile"),
    ("IOSurfaceCreate#2", None, ANEExecutionError, "compile"),
    ("objectWithIOSurface:#2", None, ANEExecutionError, "compile"),
    (REQUEST_SEL, None, ANEExecutionError, "compile"),
    ("IOSurfaceLock#1", None, ANEExecutionError, "run"),
    ("IOSurfaceLock#2", None, ANEExecutionError, "run"),
    ("evaluateWithQoS:options:request:error:", "evaluate says no", ANEExecutionError, "run"),
    ("unloadWithQoS:error:", "unload says no", ANEExecutionError, "close"),
]


@pytest.mark.parametrize("point, text, error, stage", INJECTIONS, ids=[f"{p}-{s}" for p, _, _, s in INJECTIONS])
def test_cleanup_on_every_error_path(point, text, error, stage):
    t = FakeTransport(chip=FAKE_TARGET, fail={point: text})
    x = _rng(7).standard_normal((1, 16, 1, 32))
    if stage == "compile":
        with pytest.raises(error) as info:
            compile_with(t, conv_program(), FAKE_TARGET)
    else:
        exe = compile_with(t, conv_program(), FAKE_TARGET)
        if stage == "run":
            with pytest.raises(error) as info:
                exe({"x": x})
            exe.close()
        else:
            exe({"x": x})
            with pytest.raises(error) as info:
                exe.close()
    if text:
        assert text in str(info.value)
    if point.startswith("compileWithQoS") and text is None:
        assert "without an NSError" in str(info.value)
    if point.startswith("unload"):
        # The framework refused to unload: the model is still released (nothing of ours leaks),
        # which the fake notes, and the error says cleanup was incomplete.
        assert "incomplete" in str(info.value)
        assert [p for p in t.problems if "deallocated while loaded" not in p] == []
        t.problems.clear()
    assert_clean(t)
    if stage == "run":                    # a failed run leaves the program usable until closed
        assert "unloadWithQoS:error:" in [c.selector for c in t.calls]


def test_cleanup_on_success_releases_everything():
    t = FakeTransport(chip=FAKE_TARGET)
    exe = compile_with(t, conv_program(), FAKE_TARGET)
    live = t.live()
    assert len(live["surfaces"]) == 2 and len(live["loaded"]) == 1 and len(live["temp_folders"]) == 1
    exe({"x": _rng(8).standard_normal((1, 16, 1, 32))})
    exe.close()
    exe.close()                                        # idempotent
    assert_clean(t)
    with pytest.raises(ANEExecutionError, match="closed"):
        exe({"x": _rng(8).standard_normal((1, 16, 1, 32))})


def test_fake_compile_limit_fails_past_the_limit_like_the_framework():
    assert FakeTransport().compile_limit == 119 and FakeTransport().load_limit == 128   # docs/hardware.md, guide ch. 14
    t = FakeTransport(chip=FAKE_TARGET, compile_limit=3)
    be = dict(compile_budget=None)                       # let the framework's own limit show
    exes = [compile_with(t, scaled_program(k), FAKE_TARGET, **be) for k in (1, 2, 3)]
    with pytest.raises(ANECompileError, match="ANECCompile"):
        compile_with(t, scaled_program(4), FAKE_TARGET, **be)
    for e in exes:
        e.close()
    assert_clean(t)
    assert t.compiles == 4


def test_in_process_compile_budget_refuses_before_the_framework_would_fail():
    t = FakeTransport(chip=FAKE_TARGET)
    exes = [compile_with(t, scaled_program(k), FAKE_TARGET, compile_budget=2) for k in (1, 2)]
    with pytest.raises(ANECompileError, match="budget of 2"):
        compile_with(t, scaled_program(3), FAKE_TARGET, compile_budget=2)
    assert t.compiles == 2                              # the framework was never asked
    for e in exes:
        e.close()
    assert_clean(t)


def test_target_mismatch_with_the_fakes_chip_is_refused():
    t = FakeTransport(chip="m1")
    with pytest.raises(TargetError, match="emulates m1"):
        compile_with(t, relu_program(), "m4")


# --- compile once, LRU --------------------------------------------------------------------------------------

def test_same_program_compiles_once_per_process(transport):
    t, target = transport
    prog = conv_program(seed=9)
    x = _rng(9).standard_normal((1, 16, 1, 32))
    a = compile_with(t, prog, target)
    b = compile_with(t, conv_program(seed=9), target)        # rebuilt: same MIL, weights, target
    assert a.job.key == b.job.key
    assert [c.selector for c in t.calls].count("compileWithQoS:options:error:") == 1
    assert a.compile_info["compiled"] and not b.compile_info["compiled"]
    ya = a({"x": x})["y"]
    a.close()
    np.testing.assert_array_equal(b({"x": x})["y"], ya)   # still loaded for b
    assert [c.selector for c in t.calls].count("unloadWithQoS:error:") == 0
    b.close()
    assert [c.selector for c in t.calls].count("unloadWithQoS:error:") == 1
    c = compile_with(t, conv_program(seed=10), target)
    assert c.job.key != a.job.key and c.compile_info["compiled"]
    c.close()


def test_loaded_programs_are_capped_with_lru_unload_and_reload_without_recompiling():
    t = FakeTransport(chip=FAKE_TARGET)
    progs = [scaled_program(k) for k in (2, 3, 4)]
    exes = [compile_with(t, p, FAKE_TARGET, max_loaded=2) for p in progs]
    assert len(t.live()["loaded"]) == 2
    unloads = [c for c in t.calls if c.selector == "unloadWithQoS:error:"]
    assert len(unloads) == 1                                  # the least recently used: the first
    x = _rng(10).standard_normal((1, 4, 1, 16)).astype(np.float16)
    y = exes[0]({"x": x})["y"]                                # reloaded, not recompiled
    np.testing.assert_array_equal(y, (x.astype(np.float32) * 2).astype(np.float16))
    assert t.compiles == 3 and t.loads == 4
    assert len(t.live()["loaded"]) == 2
    for e in exes:
        e.close()
    assert_clean(t)


# --- I/O ----------------------------------------------------------------------------------------------------

def test_fp32_io_cast_inside_uses_fp32_surfaces():
    t = FakeTransport(chip=FAKE_TARGET)
    x = ak.input("x", (1, 4, 1, 16), dtype="fp32")
    h = op("relu", op("cast", x, dtype="fp16"))
    prog = ak.program({"y": op("cast", h, dtype="fp32")})
    xv = _rng(11).standard_normal((1, 4, 1, 16)).astype(np.float32)
    with compile_with(t, prog, FAKE_TARGET) as exe:
        got = exe({"x": xv})["y"]
    sizes = [c.args[0]["AllocSize"] for c in t.calls if c.selector == "IOSurfaceCreate"]
    assert sizes == [4 * 16 * 4, 4 * 16 * 4]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.maximum(xv.astype(np.float16), 0).astype(np.float32))


def test_fp32_io_not_cast_inside_is_refused_before_any_call():
    t = FakeTransport(chip=FAKE_TARGET)
    x = ak.input("x", (1, 4, 1, 16), dtype="fp32")
    with pytest.raises(DTypeError, match="cast"):
        compile_with(t, ak.program({"y": op("relu", x)}), FAKE_TARGET)
    assert t.calls == []


def test_io_shapes_outside_1_c_1_s_are_refused_before_any_call():
    t = FakeTransport(chip=FAKE_TARGET)
    x = ak.input("x", (1, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"\[1, C, 1, S\]"):
        compile_with(t, ak.program({"y": op("relu", x)}), FAKE_TARGET)
    assert t.calls == []


def test_arrays_of_squeezable_shape_are_reshaped_and_others_refused():
    t = FakeTransport(chip=FAKE_TARGET)
    with compile_with(t, relu_program(), FAKE_TARGET) as exe:
        x = _rng(12).standard_normal((16, 32)).astype(np.float16)
        np.testing.assert_array_equal(exe({"x": x})["y"], np.maximum(x, 0).reshape(1, 16, 1, 32))
        with pytest.raises(ShapeError):
            exe({"x": np.zeros((32, 16))})


def test_surfaces_follow_the_family_alignment():
    for chip, alloc in (("m4", 192), ("m5", 256)):          # 160 data bytes: 64- vs 128-byte rule
        t = FakeTransport(chip=chip)
        x = ak.input("x", (1, 5, 1, 16))
        with compile_with(t, ak.program({"y": op("relu", x)}), chip) as exe:
            xv = _rng(13).standard_normal((1, 5, 1, 16))
            np.testing.assert_array_equal(exe({"x": xv})["y"], np.maximum(xv.astype(np.float16), 0))
        props = [c.args[0] for c in t.calls if c.selector == "IOSurfaceCreate"]
        assert props == [{"Width": alloc, "Height": 1, "BytesPerElement": 1, "BytesPerRow": alloc,
                          "AllocSize": alloc, "PixelFormat": 0}] * 2
        assert t.problems == []


def two_input_program():
    a, b = ak.input("a", (1, 8, 1, 16)), ak.input("b", (1, 1, 1, 16))
    return ak.program({"y": op("mul", a, b)})


def test_inputs_bind_in_declared_order():
    t = FakeTransport(chip=FAKE_TARGET)
    av, bv = _rng(14).standard_normal((1, 8, 1, 16)), _rng(15).standard_normal((1, 1, 1, 16))
    with compile_with(t, two_input_program(), FAKE_TARGET) as exe:
        got = exe({"a": av, "b": bv})["y"]
    np.testing.assert_array_equal(got, simulate(two_input_program(), FAKE_TARGET, {"a": av, "b": bv})["y"])
    req = next(c for c in t.calls if c.selector == REQUEST_SEL)
    labels = [c.args[0]["AllocSize"] for c in t.calls if c.selector == "IOSurfaceCreate"]
    assert labels == [256, 64, 256]                             # a, b, y
    assert req.args[1] == [0, 1] and req.args[3] == [0] and req.args[4:] == (None, None, 0)


def test_ascending_size_input_order_is_a_rule_the_chip_enforces():
    av, bv = _rng(16).standard_normal((1, 8, 1, 16)), _rng(17).standard_normal((1, 1, 1, 16))
    want = simulate(two_input_program(), FAKE_TARGET, {"a": av, "b": bv})["y"]
    t = FakeTransport(chip=FAKE_TARGET, input_order="ascending_size")
    with compile_with(t, two_input_program(), FAKE_TARGET, input_order="ascending_size") as exe:
        np.testing.assert_array_equal(exe({"a": av, "b": bv})["y"], want)
    # a chip that wants ascending order, given the declared order, reads the wrong surfaces
    t2 = FakeTransport(chip=FAKE_TARGET, input_order="ascending_size")
    with compile_with(t2, two_input_program(), FAKE_TARGET) as exe:
        with pytest.raises(ANEExecutionError, match="needs"):
            exe({"a": av, "b": bv})
    assert_clean(t2)


def test_m1_runtime_matmul_inner_dimension_rule():
    def prog(k):
        a, b = ak.input("a", (1, k, 1, 32)), ak.input("b", (1, k, 1, 32))
        m = op("matmul", op("reshape", a, shape=[1, 1, k, 32]), op("reshape", b, shape=[1, 1, k, 32]), transpose_x=True)
        return ak.program({"y": op("reshape", m, shape=[1, 32, 1, 32])})
    t = FakeTransport(chip="m1")
    with pytest.raises(ShapeError, match="multiple of 32"):
        compile_with(t, prog(48), "m1")
    assert t.calls == []
    with compile_with(t, prog(64), "m1") as exe:          # multiple of 32: fine
        av, bv = _rng(18).standard_normal((1, 64, 1, 32)), _rng(19).standard_normal((1, 64, 1, 32))
        np.testing.assert_array_equal(exe({"a": av, "b": bv})["y"], simulate(prog(64), "m1", {"a": av, "b": bv})["y"])
    with compile_with(FakeTransport(chip="m4"), prog(48), "m4"):   # the rule is M1's only
        pass


def test_backend_options_are_validated():
    with pytest.raises(UsageError, match="Transport"):
        AneBackend(transport="not a transport")
    with pytest.raises(UsageError, match="worker"):
        AneBackend(transport=FakeTransport(), worker=True)
    with pytest.raises(UsageError, match="at least 1"):
        AneBackend(transport=FakeTransport(), max_loaded=0)
    with pytest.raises(UsageError, match="compile_budget must be an integer"):
        AneBackend(transport=FakeTransport(), compile_budget="5")
    with pytest.raises(UsageError, match="max_loaded must be at least 1, got None"):
        AneBackend(transport=FakeTransport(), max_loaded=None)
    with pytest.raises(UsageError, match="takes no options"):
        ak.compile(relu_program(), backend="ane", transport=FakeTransport(), target="m4", numerics="exact")


def test_programs_with_state_inputs_are_refused_up_front():
    cache = ak.input("cache", (1, 4, 1, 8), state=True)
    x = ak.input("x", (1, 4, 1, 8))
    prog = ak.program({"y": ak.coreml_update_state(cache, ak.add(ak.read_state(cache), x))})
    with pytest.raises(UsageError, match="state inputs yet \\(cache\\); run them with backend='sim'"):
        ak.compile(prog, backend="ane", transport=FakeTransport(), target="m4")


def test_compile_fails_when_the_folder_lacks_model_mil():
    class NoMilFile(LoadedModel):
        def _write_folder(self, folder):
            super()._write_folder(folder)
            os.remove(os.path.join(folder, "model.mil"))
    t = FakeTransport(chip=FAKE_TARGET)
    job = AneBackend(transport=t).prepare(relu_program(), targets.get(FAKE_TARGET))
    with pytest.raises(ANECompileError, match="model.mil not found"):
        NoMilFile(t, job)
    assert_clean(t)


def test_fake_load_limit_fails_loads_past_the_cap_like_the_framework():
    t = FakeTransport(chip=FAKE_TARGET, load_limit=2)
    exes = [compile_with(t, scaled_program(k), FAKE_TARGET, max_loaded=5) for k in (1, 2)]
    with pytest.raises(ANECompileError, match="GetANEFModel"):
        compile_with(t, scaled_program(3), FAKE_TARGET, max_loaded=5)
    with compile_with(t, scaled_program(3), FAKE_TARGET, max_loaded=2) as exe:   # LRU keeps within the cap
        x = np.ones((1, 4, 1, 16), np.float16)
        np.testing.assert_array_equal(exe({"x": x})["y"], x * np.float16(3))
    for e in exes:
        e.close()
    assert_clean(t)
