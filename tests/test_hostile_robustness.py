"""Issue 16, robustness: memory and time linear in the input, anekit errors instead of raw
Python exceptions, parse excerpts on the right line (each test failed before its fix)."""
from __future__ import annotations

import io
import os
import tracemalloc

import numpy as np
import pytest

import anekit as ak
from anekit.errors import (AnekitError, DTypeError, MILEmitError, MILParseError, ModelFormatError, ShapeError,
                           UsageError)
from anekit.mil import parser as mil_parser
from anekit.mil.blobs import read_blob, write_blobs
from anekit.mil.lexer import Source, tokenize
from anekit.sim.executor import Simulator


# --- 4. memory and time --------------------------------------------------------------------

def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_lexing_a_long_string_literal_takes_memory_proportional_to_its_text():
    n = 400_000
    text = '"' + "ab\\n" * (n // 4) + '"'
    peak = _peak_bytes(lambda: tokenize(Source(text)))
    # The token keeps a copy of the literal (1 byte per ASCII char); the old regex kept
    # ~330 bytes of backtracking state per character (tracemalloc sees ~130 MB here).
    assert peak < 8 * n, f"{peak / n:.0f} bytes per character"
    assert tokenize(Source(text))[0].text == text


@pytest.mark.parametrize("text", ['"abc', '"a\\"', '"ab\nc"', '"\\'])
def test_unterminated_strings_are_still_refused(text):
    with pytest.raises(MILParseError, match="unterminated string"):
        tokenize(Source(text))


def _duplicate_name_program(n: int) -> str:
    lines = ["program(1.3)", "{", "    func main<ios18>(tensor<fp16, [1, 4]> x) {"]
    prev = "x"
    for i in range(n):   # every op has the same name, and each generates a const named "a_y"
        lines.append(f'        tensor<fp16, [1, 4]> v{i} = add(x = {prev}, y = fp16(1.0))[name = string("a")];')
        prev = f"v{i}"
    return "\n".join(lines + [f"    }} -> ({prev});", "}"])


class _CountingDict(dict):
    probes = 0

    def __contains__(self, key):
        _CountingDict.probes += 1
        return super().__contains__(key)


def test_duplicate_op_names_are_resolved_in_linear_time(monkeypatch):
    n = 3000
    original = mil_parser._Scope.__init__

    def init(self, parser):
        original(self, parser)
        self.names = _CountingDict()
    monkeypatch.setattr(mil_parser._Scope, "__init__", init)
    _CountingDict.probes = 0
    prog = ak.mil.parse(_duplicate_name_program(n))
    consts = [o.name for o in prog.main.ops if o.type == "const"]
    assert len(set(consts)) == n and consts[:3] == ["a_y", "a_y_1", "a_y_2"]
    assert _CountingDict.probes < 5 * n          # was about n * n / 2 = 4.5 million


def test_coreml_reader_names_duplicate_ops_in_linear_time(tmp_path, monkeypatch):
    pytest.importorskip("coremltools", reason="Core ML packages need coremltools (the `coreml` extra)")
    from anekit.coreml import parse_model, reader
    n = 1500
    x = ak.input("x", (1, 4))
    y = x
    for _ in range(n):
        y = ak.relu(y)
    pkg = str(tmp_path / "m.mlpackage")
    ak.save(ak.program({"y": y}), pkg)
    spec = os.path.join(pkg, "Data", "com.apple.CoreML", "model.mlmodel")
    with open(spec, "rb") as f:
        model = parse_model(f.read())
    fn = model.mlProgram.functions["main"]
    for op in fn.block_specializations[fn.opset].operations:
        if "name" in op.attributes:
            op.attributes["name"].immediateValue.tensor.strings.values[:] = ["a"]
    with open(spec, "wb") as f:
        f.write(model.SerializeToString())

    class CountingSet(set):
        probes = 0

        def __contains__(self, key):
            CountingSet.probes += 1
            return super().__contains__(key)
    original = reader.FunctionReader.__init__

    def init(self, *args):
        original(self, *args)
        self.used_names = CountingSet()
    monkeypatch.setattr(reader.FunctionReader, "__init__", init)
    prog = ak.load(pkg)
    names = [o.name for o in prog.main.ops if o.type == "relu"]
    assert len(set(names)) == n and names[:2] == ["a", "a_1"]
    assert CountingSet.probes < 5 * n            # was about n * n / 2


def test_huge_state_input_is_refused_before_allocating():
    s = ak.input("s", (1 << 16, 1 << 16, 1 << 10), state=True)   # 16 TiB as fp32
    x = ak.input("x", (1, 4))
    prog = ak.program({"y": ak.relu(x)}, functions=None)
    fn = prog.main
    fn.inputs.append(s)
    fn.states = tuple(fn.states) + ("s",)
    peak = _peak_bytes(lambda: pytest.raises(ShapeError, Simulator, prog))
    assert peak < 50 << 20
    with pytest.raises(ShapeError, match=r"input 's'.*more than the simulator's 4 GiB limit"):
        Simulator(prog)


@pytest.mark.parametrize("build,what", [
    (lambda: ak.conv(ak.input("x", (1, 64, 1024, 1024)), np.ones((64, 64, 11, 11), np.float16), pad_type="same"),
     "conv"),
    (lambda: ak.conv(ak.input("x", (1, 512, 1024, 1024)), np.ones((512, 1, 3, 3), np.float16), groups=512,
                     pad_type="same"), "conv"),
    (lambda: ak.conv_transpose(ak.input("x", (1, 64, 512, 512)), np.ones((64, 64, 4, 4), np.float16),
                               strides=[4, 4]), "conv_transpose"),
    (lambda: ak.scaled_dot_product_attention(*(ak.input(n, (1, 8, 16384, 64)) for n in "qkv")),
     "scaled_dot_product_attention"),
    (lambda: ak.scaled_dot_product_attention(*(ak.input(n, (1, 32, 4096, 64)) for n in "qkv")),
     "scaled_dot_product_attention"),
])
def test_kernel_scratch_memory_counts_against_the_simulator_limit(build, what):
    prog = ak.program({"y": build()})
    out = prog.main.outputs[0]
    assert np.prod(out.shape) * 4 < Simulator.max_tensor_bytes      # the output alone would pass
    with pytest.raises(ShapeError, match=rf"{what} .*GiB of kernel scratch\), more than the simulator's 4 GiB"):
        Simulator(prog)


def test_small_ops_with_scratch_still_run():
    x = np.random.default_rng(0).standard_normal((1, 4, 16, 16)).astype(np.float32)
    w = np.ones((4, 4, 11, 11), np.float16)
    prog = ak.program({"y": ak.conv(ak.input("x", (1, 4, 16, 16)), w, pad_type="same")})
    y = Simulator(prog, profile="exact").run({"x": x})["y"]
    assert y.shape == (1, 4, 16, 16) and np.isfinite(y).all()


# --- 5. anekit errors, naming the place and the limit ------------------------------------------

def test_core_ml_const_with_a_2_to_63_axis_is_a_model_format_error(tmp_path):
    pytest.importorskip("coremltools", reason="Core ML packages need coremltools (the `coreml` extra)")
    from anekit.coreml import parse_model
    x = ak.input("x", (1, 4))
    pkg = str(tmp_path / "m.mlpackage")
    ak.save(ak.program({"y": ak.add(x, np.ones((1, 4), np.float16))}), pkg)
    spec = os.path.join(pkg, "Data", "com.apple.CoreML", "model.mlmodel")
    with open(spec, "rb") as f:
        model = parse_model(f.read())
    fn = model.mlProgram.functions["main"]
    for op in fn.block_specializations[fn.opset].operations:
        if op.type == "const":
            val = op.attributes["val"]
            dims = val.type.tensorType.dimensions
            dims[0].constant.size, dims[1].constant.size = 0, (1 << 63) - 1
            val.immediateValue.tensor.bytes.values = b""
    with open(spec, "wb") as f:
        f.write(model.SerializeToString())
    with pytest.raises(ModelFormatError, match=r"dimension 1 has size 9223372036854775807.*\(17179869184\)"):
        ak.load(pkg)


def test_empty_palette_is_a_shape_error_naming_the_op():
    from anekit.ir.builder import bind, make_const
    from anekit.ir.spec import REGISTRY
    indices = make_const(np.zeros((4, 4), np.uint8), "uint2")
    lut = make_const(np.zeros((0, 1, 4, 1), np.float16), "fp16")
    with pytest.raises(ShapeError, match=r"constexpr_lut_to_dense: .*lut \[0, 1, 4, 1\].*ZeroDivisionError"):
        bind(REGISTRY["constexpr_lut_to_dense"], {"indices": indices, "lut": lut}, {})


def test_read_blob_rank_over_64_and_malformed_write_items():
    data, offsets = write_blobs([np.zeros(1, np.float16)])
    with pytest.raises(ShapeError, match=r"weight.bin: blob at offset 64: .*rank 65.*limit of 64"):
        read_blob(data, offsets[0], shape=(1,) * 65)
    with pytest.raises(UsageError, match=r"blob 0: expected an array, an \(array, dtype\) pair or a Blob"):
        write_blobs([(np.zeros(2, np.float16), "fp16", 3)])
    with pytest.raises(UsageError, match="blob 1"):
        write_blobs([np.zeros(1, np.float16), [1.0, [2.0, 3.0]]])


def test_lone_surrogate_names_are_anekit_errors(tmp_path):
    x = ak.input("x", (1, 4))
    prog = ak.program({"y": ak.relu(x)})
    prog.main.ops[-1].name = "r\udc80"
    with pytest.raises(MILEmitError, match=r"'\\udc80' at index 1, a lone surrogate"):
        ak.save(prog, str(tmp_path / "m"))
    with pytest.raises(MILEmitError, match="lone surrogate"):
        ak.mil.emit(prog)
    pytest.importorskip("coremltools", reason="Core ML packages need coremltools (the `coreml` extra)")
    with pytest.raises(ModelFormatError, match=r"m.mlpackage: .*lone surrogate"):
        ak.save(prog, str(tmp_path / "m.mlpackage"))


@pytest.mark.parametrize("content,why", [
    (b"", "not a readable .npy file"),
    (b"\x93NUMPY\x01\x00", "not a readable .npy file"),
    ("HUGE", "header declares [1000000000000] float32"),
    (b"hello world", "not a readable .npy file"),
])
def test_empty_or_malformed_npy_inputs_are_usage_errors(tmp_path, capsys, content, why):
    from anekit.cli import main
    folder = str(tmp_path / "m")
    ak.save(ak.program({"y": ak.relu(ak.input("x", (1, 4)))}), folder)
    bad = tmp_path / "x.npy"
    if content == "HUGE":   # a valid header claiming 4 TB of data that the file does not hold
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)})
        content = buf.getvalue() + b"\0" * 16
    bad.write_bytes(content)
    assert main(["run", folder, "-i", f"x={bad}"]) == 2
    err = capsys.readouterr().err
    assert why in err and str(bad) in err and err.count("\n") == 1


def test_demo_with_a_huge_sequence_is_refused_before_allocating(capsys):
    from anekit.cli import main
    assert main(["demo", "--seq", "100000"]) == 2
    err = capsys.readouterr().err
    assert "seq=100000" in err and "GiB" in err and "2 GiB limit" in err


# --- 6. excerpts on the lexer's line ---------------------------------------------------------

@pytest.mark.parametrize("sep", ["\v", "\f", "\x85", "\u2028", "\u2029", "\x1c"])
def test_parse_error_excerpt_is_the_line_the_error_is_on(sep):
    text = ("program(1.3)\n// a comment" + sep + "with a line break splitlines would see\n{\n"
            "    func main<ios18>(tensor<fp16, [1]> x) {\n"
            "        tensor<fp16, [1]> y = relu(x = x, q = x);\n    } -> (y);\n}\n")
    with pytest.raises(MILParseError) as info:
        ak.mil.parse(text)
    assert info.value.line == 5
    assert info.value.excerpt.splitlines()[0] == "        tensor<fp16, [1]> y = relu(x = x, q = x);"


def test_every_error_class_used_here_is_an_anekit_error():
    for cls in (DTypeError, MILEmitError, MILParseError, ModelFormatError, ShapeError, UsageError):
        assert issubclass(cls, AnekitError)
