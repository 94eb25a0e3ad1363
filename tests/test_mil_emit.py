"""MIL emission: both dialects' syntax, exact floats, the weight.bin policy, determinism, errors."""
from __future__ import annotations

import hashlib
import re
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import anekit as ak
from anekit.errors import MILEmitError
from anekit.ir.builder import make_const
from anekit.mil import format_float, read_blob, write_blobs
from anekit.mil.printer import DEFAULT_BUILD_INFO

W = (np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3) / 7).astype(np.float32)


def small_program():
    x = ak.input("x", (1, 4, 8, 8))
    y = ak.conv(x, W, strides=(2, 2), pad_type="same")
    return ak.program({"y": ak.softmax(ak.relu(y), axis=1)})


def statements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith(" " * 12)]


# ------------------------------------------------------------------------------ dialects

def test_ios18_layout_and_bare_scalars():
    text, files = ak.mil.emit(small_program(), "ios18")
    lines = text.splitlines()
    assert lines[0] == "program(1.3)"
    assert lines[1] == ('[buildInfo = dict<string, string>({{"coremlc-component-MIL", "3510.2.1"}, '
                        '{"coremlc-version", "3505.4.1"}})]')
    assert lines[2] == "{" and lines[-1] == "}" and text.endswith("}\n")
    assert lines[3] == "    func main<ios18>(tensor<fp16, [1, 4, 8, 8]> x) {"
    assert lines[-2] == "        } -> (y);"
    body = statements(text)
    assert 'int32 conv_0_groups = const()[name = string("conv_0_groups"), val = int32(1)];' in body
    assert 'string conv_0_pad_type = const()[name = string("conv_0_pad_type"), val = string("same")];' in body
    assert 'tensor<int32, [2]> conv_0_strides = const()[name = string("conv_0_strides"), val = tensor<int32, [2]>([2, 2])];' in body
    assert ('tensor<fp16, [2, 4, 3, 3]> conv_0_weight = const()[name = string("conv_0_weight"), val = tensor<fp16, [2, 4, 3, 3]>'
            '(BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(64)))];') in body
    assert ('tensor<fp16, [1, 2, 4, 4]> conv_0 = conv(dilations = conv_0_dilations, groups = conv_0_groups, pad = conv_0_pad, '
            'pad_type = conv_0_pad_type, strides = conv_0_strides, weight = conv_0_weight, x = x)[name = string("conv_0")];') in body
    assert list(files) == ["weights/weight.bin"]


def test_ios16_layout_and_rank0_tensor_scalars():
    text, files = ak.mil.emit(small_program(), "ios16")
    lines = text.splitlines()
    assert lines[0] == "program(1.0)"
    assert lines[1].startswith("[buildInfo = dict<tensor<string, []>, tensor<string, []>>({{")
    assert lines[3] == "    func main<ios16>(tensor<fp16, [1, 4, 8, 8]> x) {"
    body = statements(text)
    assert ('tensor<int32, []> conv_0_groups = const()[name = tensor<string, []>("conv_0_groups"), '
            'val = tensor<int32, []>(1)];') in body
    assert ('tensor<string, []> conv_0_pad_type = const()[name = tensor<string, []>("conv_0_pad_type"), '
            'val = tensor<string, []>("same")];') in body
    assert any('BLOBFILE(path = tensor<string, []>("@model_path/weights/weight.bin"), offset = tensor<uint64, []>(64))' in s
               for s in body)
    # the same weights in either dialect
    assert files == ak.mil.emit(small_program(), "ios18")[1]
    # no bare scalar type survives in ios16 text
    assert not re.search(r"(?<![<\w])(int32|fp16|bool|string|uint64)\(", text)


def test_arguments_and_attribute_blocks_are_sorted():
    from test_mil_roundtrip import CORPUS   # the corpus covering every op
    for prog in CORPUS.values():
        for line in statements(ak.mil.emit(prog)[0]):
            line = re.sub(r"\] \{$", "];", line)     # a while_loop / cond head: its blocks follow
            if not line.endswith("];"):
                continue                              # the blocks' own headers and closing lines
            m = re.search(r"= (\w+)\((.*)\)\[(.*)\];$", line) or re.search(r"^(\w+)\((.*)\)\[(.*)\];$", line)
            args = re.findall(r"(?:^|, )(\w+) = ", re.sub(r"\([^()]*\)", "", m.group(2)))
            keys = re.findall(r"(?:^|, )(\w+) = ", re.sub(r"\((?:[^()]|\([^()]*\))*\)", "", m.group(3)))
            assert args == sorted(args), line
            assert keys == sorted(keys) and "name" in keys, line


def test_multi_output_ops_list_every_output():
    a, b, c = ak.split(ak.input("x", (1, 6, 2)), num_splits=3, axis=1)
    text = ak.mil.emit(ak.program({"a": a, "c": c, "s": ak.add(b, b)}))[0]
    assert ("tensor<fp16, [1, 2, 2]> a, tensor<fp16, [1, 2, 2]> split_0_1, tensor<fp16, [1, 2, 2]> c = "
            "split(axis = split_0_axis, num_splits = split_0_num_splits, x = x)[name = string(\"split_0\")];") in text
    assert text.splitlines()[-2] == "        } -> (a, c, s);"


def test_several_functions_share_one_weight_file():
    w1, w2 = np.ones((3, 4), np.float16), np.full((5, 4), 2, np.float16)
    prog = ak.program({"y": ak.linear(ak.input("x", (2, 4)), w1)},
                      functions={"other": {"z": ak.linear(ak.input("x", (2, 4)), w2)}})
    text, files = ak.mil.emit(prog)
    assert "    func main<ios18>(tensor<fp16, [2, 4]> x) {" in text
    assert "    func other<ios18>(tensor<fp16, [2, 4]> x) {" in text
    assert "        } -> (y);\n\n    func other" in text
    data = files["weights/weight.bin"]
    assert struct.unpack_from("<I", data)[0] == 2
    offsets = [int(o) for o in re.findall(r"offset = uint64\((\d+)\)", text)]
    assert offsets == [64, 192]
    assert np.array_equal(read_blob(data, 64, dtype="fp16", shape=(3, 4)), w1)
    assert np.array_equal(read_blob(data, 192, dtype="fp16", shape=(5, 4)), w2)


def test_strings_are_escaped():
    prog = ak.program({"s": make_const('a "quoted"\\ \n\ttab\x01')})
    text = ak.mil.emit(prog)[0]
    assert r'val = string("a \"quoted\"\\ \n\ttab\x01")' in text


def test_program_and_function_attributes_sorted_and_typed_per_dialect():
    prog = small_program()
    prog.attributes = {"zeta": "last", "buildInfo": {"b": "2", "a": "1"}, "count": 3, "flag": True}
    prog.main.attributes = {"note": "hi"}
    text18 = ak.mil.emit(prog, "ios18")[0].splitlines()
    assert text18[1] == ('[buildInfo = dict<string, string>({{"a", "1"}, {"b", "2"}}), count = int32(3), '
                         'flag = bool(true), zeta = string("last")]')
    assert text18[3].endswith(') [note = string("hi")] {')
    text16 = ak.mil.emit(prog, "ios16")[0].splitlines()
    assert text16[1] == ('[buildInfo = dict<tensor<string, []>, tensor<string, []>>({{"a", "1"}, {"b", "2"}}), '
                         'count = tensor<int32, []>(3), flag = tensor<bool, []>(true), zeta = tensor<string, []>("last")]')
    assert DEFAULT_BUILD_INFO == {"coremlc-component-MIL": "3510.2.1", "coremlc-version": "3505.4.1"}


# ------------------------------------------------------------------------------ floats

def _parse_reference(text: str) -> float:
    """Independent reading of a float literal: Python's own decimal and hex parsers."""
    if text in ("inf", "-inf", "nan"):
        return float(text)
    return float.fromhex(text) if "0x" in text else float(text)


def test_every_fp16_value_prints_exactly():
    bits = np.arange(1 << 16, dtype=np.uint16)
    values = bits.view(np.float16)
    finite = ~np.isnan(values)
    for b, v in zip(bits[finite].tolist(), values[finite].tolist()):
        text = format_float(v, "fp16")
        back = np.float16(_parse_reference(text)).view(np.uint16)
        assert back == b, (hex(b), text)
        assert ("0x" in text) or (text.replace("-", "").replace(".", "").isdigit() or text in ("inf", "-inf"))


def test_fp32_values_print_exactly():
    rng = np.random.default_rng(0)
    bits = np.concatenate([rng.integers(0, 1 << 32, 50000, dtype=np.uint64).astype(np.uint32),
                           np.array([0, 1, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x80000000, 0xFF7FFFFF], np.uint32)])
    values = bits.view(np.float32)
    for b, v in zip(bits.tolist(), values.tolist()):
        if np.isnan(v):
            continue
        assert np.float32(_parse_reference(format_float(v, "fp32"))).view(np.uint32) == b


@pytest.mark.parametrize("value,dtype,text", [
    (0.5, "fp16", "0.5"), (1.0, "fp32", "1.0"), (-0.0, "fp16", "-0.0"), (1024.0, "fp16", "1024.0"),
    (0.125, "fp32", "0.125"), (np.float16(0.1), "fp16", "0x1.998p-4"), (np.float32(0.1), "fp32", "0x1.99999ap-4"),
    (np.float16(1e-5), "fp16", "0x1.5p-17"), (65504.0, "fp16", "0x1.ffcp+15"),
    (float("inf"), "fp16", "inf"), (float("-inf"), "fp32", "-inf"), (float("nan"), "fp16", "nan"),
    (0.75, "fp64", "0.75"), (0.1, "fp64", "0x1.999999999999ap-4"),
])
def test_float_spelling_rule(value, dtype, text):
    """Decimal when the dtype's shortest round-trip decimal is exact (and short), else hex."""
    assert format_float(value, dtype) == text


# ------------------------------------------------------------------------------ weight.bin policy

def test_ten_or_more_elements_go_to_weight_bin_fewer_inline():
    nine, ten = np.arange(9, dtype=np.float16), np.arange(10, dtype=np.float16)
    prog = ak.program({"a": make_const(nine), "b": make_const(ten), "i": make_const(np.arange(12, dtype=np.int32)),
                       "l": make_const(np.arange(12), "int64"), "t": make_const(np.ones(12, bool))})
    text, files = ak.mil.emit(prog)
    assert "val = tensor<fp16, [9]>([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])" in text
    assert re.search(r"val = tensor<fp16, \[10\]>\(BLOBFILE\(.*offset = uint64\(64\)\)\)", text)
    assert re.search(r"val = tensor<int32, \[12\]>\(BLOBFILE\(.*offset = uint64\(192\)\)\)", text)
    # dtypes weight.bin has no code for stay inline whatever their size
    assert "val = tensor<int64, [12]>([0, 1, 2, 3" in text and "val = tensor<bool, [12]>([true, true" in text
    data = files["weights/weight.bin"]
    assert data == write_blobs([ten, np.arange(12, dtype=np.int32)])[0]


def test_blob_offsets_point_at_aligned_metadata():
    from test_mil_roundtrip import CORPUS
    text, files = ak.mil.emit(CORPUS["stories_layer"])
    data = files["weights/weight.bin"]
    offsets = [int(o) for o in re.findall(r"offset = uint64\((\d+)\)", text)]
    assert len(offsets) == struct.unpack_from("<I", data)[0] > 10
    for off in offsets:
        sentinel, _, size, data_offset = struct.unpack_from("<IIQQ", data, off)
        assert off % 64 == 0 and sentinel == 0xDEADBEEF and data_offset == off + 64


def test_sub_byte_consts_go_to_weight_bin_with_their_dtype():
    idx = np.array([1, 0, 0, 1], np.uint8)
    prog = ak.program({"u": make_const(idx, "uint4"), "m": make_const(np.array([1, 0, 1], np.uint8), "uint1"),
                       "s": make_const(np.array([-8, 7], np.int8), "int4")})
    text, files = ak.mil.emit(prog)
    data = files["weights/weight.bin"]
    offsets = [int(o) for o in re.findall(r"offset = uint64\((\d+)\)", text)]
    codes = [struct.unpack_from("<II", data, off)[1] for off in offsets]
    assert codes == [11, 9, 8]   # uint4, uint1, int4 (docs/mil.md)
    # guide ch. 7: uint4 indices [1, 0, 0, 1] pack to 0x01 0x10
    assert data[offsets[0] + 64: offsets[0] + 66] == bytes([0x01, 0x10])
    assert "tensor<uint4, [4]>(BLOBFILE(" in text and "tensor<int4, [2]>(BLOBFILE(" in text


def test_save_streams_weights_and_load_maps_them():
    """Neither save nor load holds a second copy of the weights (tracemalloc peak)."""
    x = ak.input("x", (1, 512, 1, 4))
    w = [np.full((512, 512, 1, 1), i, np.float16) for i in range(16)]   # 8 MiB of weights
    h = x
    for wi in w:
        h = ak.conv(h, wi)
    prog = ak.program({"y": h})
    weight_bytes = sum(a.nbytes for a in w)
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            ak.mil.save(prog, folder)
            save_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            loaded = ak.mil.load(folder)
            load_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert save_peak < 0.25 * weight_bytes and load_peak < 0.25 * weight_bytes, (save_peak, load_peak)
        assert ak.mil.emit(loaded) == ak.mil.emit(prog)
        del loaded


# ------------------------------------------------------------------------------ determinism

def test_same_program_same_bytes():
    a, b = ak.mil.emit(small_program()), ak.mil.emit(small_program())
    assert a == b
    prog = small_program()
    assert ak.mil.emit(prog, "ios16") == ak.mil.emit(prog, "ios16")


def test_same_bytes_across_processes_with_different_hash_seeds():
    src = str(Path(ak.__file__).resolve().parents[1])      # the anekit under test, not an installed one
    code = (f"import hashlib, sys; sys.path[:0] = ['tests', {src!r}]; import anekit as ak; "
            "from test_mil_roundtrip import CORPUS; h = hashlib.sha256()\n"
            "for name in sorted(CORPUS):\n"
            "    text, files = ak.mil.emit(CORPUS[name]); h.update(text.encode()); [h.update(v) for v in files.values()]\n"
            "print(h.hexdigest())")
    digests = set()
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=str(_repo_root()))
        digests.add(out.stdout.strip())
    from test_mil_roundtrip import CORPUS
    h = hashlib.sha256()
    for name in sorted(CORPUS):
        text, files = ak.mil.emit(CORPUS[name])
        h.update(text.encode())
        for v in files.values():
            h.update(v)
    assert digests == {h.hexdigest()}


def _repo_root():
    return Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ errors

def test_unknown_dialect():
    with pytest.raises(MILEmitError, match="unknown MIL dialect 'ios99'"):
        ak.mil.emit(small_program(), "ios99")


def test_names_that_are_not_identifiers():
    prog = ak.program({"my-output": ak.relu(ak.input("x", (2,)))})
    with pytest.raises(MILEmitError, match="'my-output' is not a MIL identifier"):
        ak.mil.emit(prog)


def test_use_before_definition_and_foreign_inputs():
    prog = small_program()
    prog.main.ops.reverse()
    with pytest.raises(MILEmitError, match="before it is defined"):
        ak.mil.emit(prog)
    with pytest.raises(MILEmitError, match="needs a Program"):
        ak.mil.emit("program(1.3)")
