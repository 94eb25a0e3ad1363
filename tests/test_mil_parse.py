"""The MIL parser: text as coremlc and earlier direct-route projects write it, both dialects, errors with
line and column, the BLOBFILE path policy and weight validation.

The fixtures are written by hand in the exact syntax of Apple's compiler output: coremlc runs
only on macOS, so no real model.mil can be generated on Linux CI. The line formats follow the
strings coremltools' own tests assert on compiled models (`tensor<fp16, [5, 6272]> w =
const()[name = string("w"), val = tensor<fp16, [5, 6272]>(BLOBFILE(path =
string("@model_path/weights/weight.bin"), offset = uint64(576)))];`, and the iOS 17 form
`BLOBFILE(path = tensor<string, []>(...), offset = tensor<uint64, []>(64))`) and hand-written
direct-route MIL (docs/mil.md: no spaces, op names that differ from their variables, a bare
path string inside BLOBFILE).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import anekit as ak
from anekit.errors import (AnekitError, MILParseError, ModelFormatError, PathEscapeError, UnknownOpError,
                           WeightFileError)
from anekit.mil import write_blobs
from anekit.mil.lexer import quote

# --------------------------------------------------------------------------- fixtures

LINEAR_W = (np.arange(32, dtype=np.float16).reshape(4, 8) - 16) / 8


def coremlc_ios18_weights() -> dict:
    data, offsets = write_blobs([LINEAR_W])
    assert offsets == [64]
    return {"weights/weight.bin": data}


COREMLC_IOS18 = """\
program(1.3)
[buildInfo = dict<string, string>({{"coremlc-component-MIL", "3500.14.1"}, {"coremlc-version", "3500.32.1"}, {"coremltools-component-torch", "2.4.0"}, {"coremltools-source-dialect", "TorchScript"}, {"coremltools-version", "8.0"}})]
{
    func main<ios18>(tensor<fp32, [1, 3, 8]> x) {
            string x_to_fp16_dtype_0 = const()[name = string("x_to_fp16_dtype_0"), val = string("fp16")];
            tensor<fp16, [4, 8]> linear_weight_to_fp16 = const()[name = string("linear_weight_to_fp16"), val = tensor<fp16, [4, 8]>(BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(64)))];
            tensor<fp16, [4]> linear_bias_to_fp16 = const()[name = string("linear_bias_to_fp16"), val = tensor<fp16, [4]>([0x1.5p-2, -0x1.8p-1, 0x0p+0, 0x1.e8p+3])];
            tensor<fp16, [1, 3, 8]> x_to_fp16 = cast(dtype = x_to_fp16_dtype_0, x = x)[name = string("cast_1")];
            tensor<fp16, [1, 3, 4]> linear_0_cast_fp16 = linear(bias = linear_bias_to_fp16, weight = linear_weight_to_fp16, x = x_to_fp16)[name = string("linear_0_cast_fp16")];
            int32 var_9 = const()[name = string("op_9"), val = int32(-1)];
            tensor<fp16, [1, 3, 4]> var_10_cast_fp16 = softmax(axis = var_9, x = linear_0_cast_fp16)[name = string("op_10_cast_fp16")];
            tensor<int32, [2]> var_12_split_sizes_0 = const()[name = string("op_12_split_sizes_0"), val = tensor<int32, [2]>([1, 3])];
            int32 var_12_axis_0 = const()[name = string("op_12_axis_0"), val = int32(-1)];
            tensor<fp16, [1, 3, 1]> var_12_cast_fp16_0, tensor<fp16, [1, 3, 3]> var_12_cast_fp16_1 = split(axis = var_12_axis_0, split_sizes = var_12_split_sizes_0, x = var_10_cast_fp16)[name = string("op_12_cast_fp16")];
            int32 var_14 = const()[name = string("op_14"), val = int32(-1)];
            bool var_15_interleave_0 = const()[name = string("op_15_interleave_0"), val = bool(false)];
            tensor<fp16, [1, 3, 4]> var_15_cast_fp16 = concat(axis = var_14, interleave = var_15_interleave_0, values = (var_12_cast_fp16_1, var_12_cast_fp16_0))[name = string("op_15_cast_fp16")];
            fp16 var_17_to_fp16 = const()[name = string("op_17_to_fp16"), val = fp16(0x1.8p+1)];
            tensor<fp16, [1, 3, 4]> var_18_cast_fp16 = mul(x = var_15_cast_fp16, y = var_17_to_fp16)[name = string("op_18_cast_fp16")];
            string cast_0_dtype_0 = const()[name = string("cast_0_dtype_0"), val = string("fp32")];
            tensor<fp32, [1, 3, 4]> y = cast(dtype = cast_0_dtype_0, x = var_18_cast_fp16)[name = string("cast_0")];
        } -> (y);
}
"""

COREMLC_IOS16 = """\
program(1.0)
[buildInfo = dict<tensor<string, []>, tensor<string, []>>({{"coremlc-component-MIL", "3304.5.2"}, {"coremlc-version", "3304.6.2"}, {"coremltools-component-torch", "2.1.0"}, {"coremltools-version", "7.1"}})]
{
    func main<ios17>(tensor<fp16, [1, 8, 1, 4]> x) {
            tensor<fp16, [4, 8, 1, 1]> w = constexpr_affine_dequantize()[axis = tensor<int32, []>(0), name = tensor<string, []>("w"), quantized_data = tensor<int8, [4, 8, 1, 1]>(BLOBFILE(path = tensor<string, []>("@model_path/weights/weight.bin"), offset = tensor<uint64, []>(64))), scale = tensor<fp16, []>(0x1p-7), zero_point = tensor<int8, []>(3)];
            tensor<string, []> pad_type_0 = const()[name = tensor<string, []>("pad_type_0"), val = tensor<string, []>("valid")];
            tensor<int32, [2]> strides_0 = const()[name = tensor<string, []>("strides_0"), val = tensor<int32, [2]>([1, 1])];
            tensor<int32, [4]> pad_0 = const()[name = tensor<string, []>("pad_0"), val = tensor<int32, [4]>([0, 0, 0, 0])];
            tensor<int32, [2]> dilations_0 = const()[name = tensor<string, []>("dilations_0"), val = tensor<int32, [2]>([1, 1])];
            tensor<int32, []> groups_0 = const()[name = tensor<string, []>("groups_0"), val = tensor<int32, []>(1)];
            tensor<fp16, [1, 4, 1, 4]> conv_0 = conv(dilations = dilations_0, groups = groups_0, pad = pad_0, pad_type = pad_type_0, strides = strides_0, weight = w, x = x)[name = tensor<string, []>("conv_0")];
            tensor<fp16, []> eps = const()[name = tensor<string, []>("eps"), val = tensor<fp16, []>(0x1.5p-17)];
            tensor<fp16, [1, 4, 1, 4]> y = rsqrt(epsilon = eps, x = conv_0)[name = tensor<string, []>("y")];
    } -> (y);
}
"""

QUANT = (np.arange(32, dtype=np.int16) - 16).astype(np.int8).reshape(4, 8, 1, 1)


def coremlc_ios16_weights() -> dict:
    data, offsets = write_blobs([QUANT])
    return {"weights/weight.bin": data}


# Seed style: compact, CRLF line ends, tabs, comments, a raw BLOBFILE path, op names unlike
# their variables, omitted defaults (the conv has no dilations/groups), blank lines.
SEED_STYLE = (
    'program(1.3)\r\n'
    '[buildInfo = dict<string, string>({{"coremlc-component-MIL", "3510.2.1"}, {"coremlc-version", "3505.4.1"}, '
    '{"coremltools-component-milinternal", ""}, {"coremltools-version", "9.0"}})]\r\n'
    '{\r\n'
    '    func main<ios18>(tensor<fp16, [1, 64, 1, 32]> x) {\r\n'
    '        // 1x1 conv as a linear layer\r\n'
    '        string pt = const()[name=string("pt"), val=string("valid")];\r\n'
    '        tensor<int32, [2]> st = const()[name=string("st"), val=tensor<int32, [2]>([1,1])];\r\n'
    '        tensor<int32, [4]> pd = const()[name=string("pd"), val=tensor<int32, [4]>([0,0,0,0])];\r\n'
    '        tensor<fp16, [32,64,1,1]> W = const()[name=string("W"), val=tensor<fp16, [32,64,1,1]>'
    '(BLOBFILE(path="@model_path/weights/weight.bin", offset=uint64(64)))];\r\n'
    '\r\n'
    '\ttensor<fp16, [1,32,1,32]> y = conv(pad=pd,pad_type=pt,strides=st,weight=W,x=x)[name=string("conv")];\r\n'
    '        /* scale by 1/8, then\r\n'
    '           a sigmoid */\r\n'
    '        fp16 sc = const()[name=string("sc"), val=fp16(0.125)];\r\n'
    '        tensor<fp16, [1,32,1,32]> z = mul(x=y,y=sc)[name=string("scale")];\r\n'
    '        tensor<fp16, [1,32,1,32]> out = sigmoid(x=z)[name=string("sig")];\r\n'
    '    } -> (out);\r\n'
    '}\r\n')

SEED_W = (np.random.default_rng(1).standard_normal((32, 64, 1, 1)) * 0.1).astype(np.float16)


def seed_weights() -> dict:
    return {"weights/weight.bin": write_blobs([SEED_W])[0]}


def minimal(body: str, inputs: str = "tensor<fp16, [2, 3]> x", outputs: str = "y", head: str = "program(1.3)") -> str:
    return f"{head}\n{{\n    func main<ios18>({inputs}) {{\n{body}\n    }} -> ({outputs});\n}}\n"


def parse_error(text: str, weights=None, cls=MILParseError):
    with pytest.raises(cls) as info:
        ak.mil.parse(text, weights)
    return info.value


# --------------------------------------------------------------------------- accepted text

def test_coremlc_ios18_text():
    prog = ak.mil.parse(COREMLC_IOS18, coremlc_ios18_weights())
    fn = prog.main
    assert (prog.version, prog.dialect, fn.opset) == ("1.3", "ios18", "ios18")
    assert prog.attributes["buildInfo"]["coremltools-source-dialect"] == "TorchScript"
    assert [(t.name, t.dtype, t.shape) for t in fn.inputs] == [("x", "fp32", (1, 3, 8))]
    assert [t.name for t in fn.outputs] == ["y"] and fn.outputs[0].dtype == "fp32"
    ops = {op.name: op for op in fn.ops}
    # op names ([name = ...]) and variable names differ in coremlc output; both are kept
    assert ops["op_9"].outputs[0].name == "var_9" and ops["cast_1"].outputs[0].name == "x_to_fp16"
    bias = ops["linear_bias_to_fp16"].attrs["val"]
    assert bias.dtype == np.float16 and bias.tolist() == [0.328125, -0.75, 0.0, 15.25]
    weight = ops["linear_weight_to_fp16"].attrs["val"]
    assert weight.dtype == np.float16 and np.array_equal(weight, LINEAR_W)
    split = ops["op_12_cast_fp16"]
    assert [(t.name, t.shape) for t in split.outputs] == [("var_12_cast_fp16_0", (1, 3, 1)), ("var_12_cast_fp16_1", (1, 3, 3))]
    concat = ops["op_15_cast_fp16"]
    assert [t.name for t in concat.inputs["values"]] == ["var_12_cast_fp16_1", "var_12_cast_fp16_0"]
    assert ops["op_17_to_fp16"].attrs["val"] == np.float16(3.0)
    assert ops["op_17_to_fp16"].outputs[0].shape == ()
    # no defaults were missing, so no ops were added: the op order is the text's order
    assert [op.name for op in fn.ops][:4] == ["x_to_fp16_dtype_0", "linear_weight_to_fp16", "linear_bias_to_fp16", "cast_1"]
    assert len(fn.ops) == 17


def test_coremlc_ios16_text_with_constexpr_block_attributes():
    prog = ak.mil.parse(COREMLC_IOS16, coremlc_ios16_weights())
    fn = prog.main
    assert (prog.version, prog.dialect, fn.opset) == ("1.0", "ios16", "ios17")
    w = fn.ops[0]
    assert w.type == "constexpr_affine_dequantize" and not w.inputs
    assert np.array_equal(w.attrs["quantized_data"], QUANT) and w.attrs["quantized_data"].dtype == np.int8
    assert w.attr("axis") == 0 and float(w.attrs["scale"]) == 2 ** -7 and int(w.attrs["zero_point"]) == 3
    assert w.outputs[0].dtype == "fp16"
    eps = next(op for op in fn.ops if op.name == "eps").attrs["val"]
    assert eps.dtype == np.float16 and float(eps) == float.fromhex("0x1.5p-17")
    # emitted again as ios16, the parsed ios17 tag stays; as ios18 it becomes ios18
    assert "func main<ios17>(" in ak.mil.emit(prog, "ios16")[0]
    assert "func main<ios18>(" in ak.mil.emit(prog, "ios18")[0]


def test_seed_style_text_comments_crlf_tabs_raw_blob_path_and_defaults():
    prog = ak.mil.parse(SEED_STYLE, seed_weights())
    fn = prog.main
    conv = next(op for op in fn.ops if op.type == "conv")
    assert conv.name == "conv" and conv.outputs[0].name == "y"
    assert np.array_equal(conv.inputs["weight"].const, SEED_W)
    # dilations and groups were omitted: materialized from the declaration's defaults
    assert conv.attr("dilations") == (1, 1) and conv.attr("groups") == 1
    assert {"dilations", "groups"} <= set(conv.inputs)
    assert [op.type for op in fn.ops].count("const") == 7
    assert [t.name for t in fn.outputs] == ["out"]
    assert next(op for op in fn.ops if op.name == "scale").inputs["y"].const == np.float16(0.125)
    # and the materialized consts round-trip through emission
    text, files = ak.mil.emit(prog)
    assert ak.mil.emit(ak.mil.parse(text, files)) == (text, files)


def test_canonical_text_parses_and_re_emits_to_itself():
    """Text already in anekit's canonical layout comes back byte for byte."""
    prog = ak.mil.parse(COREMLC_IOS18, coremlc_ios18_weights())
    text, files = ak.mil.emit(prog)
    assert ak.mil.emit(ak.mil.parse(text, files)) == (text, files)
    # only the float spelling differs from coremlc's: 0x0p+0 is written 0.0
    assert text.replace("0.0]", "0x0p+0]") .count("\n") == COREMLC_IOS18.count("\n")


def test_scalars_bare_and_typed_hex_inf_nan():
    body = """
            fp16 a = const()[name = string("a"), val = fp16(0x1.5p-2)];
            tensor<fp16, []> b = const()[name = string("b"), val = tensor<fp16, []>(-inf)];
            fp32 c = const()[name = string("c"), val = fp32(nan)];
            tensor<fp32, [4]> d = const()[name = string("d"), val = tensor<fp32, [4]>([inf, -0.0, 1e-3, 0x1.fffffep+127])];
            int32 e = const()[name = string("e"), val = int32(-2147483648)];
            tensor<uint64, []> f = const()[name = string("f"), val = tensor<uint64, []>(18446744073709551615)];
            bool g = const()[name = string("g"), val = bool(true)];
            tensor<bool, [2, 2]> h = const()[name = string("h"), val = tensor<bool, [2, 2]>([[true, false], [false, true]])];
            string s = const()[name = string("s"), val = string("tab\\there \\"q\\" back\\\\slash \\x41")];
            tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y")];"""
    fn = ak.mil.parse(minimal(body)).main
    v = {op.name: op.attrs["val"] for op in fn.ops if op.type == "const"}
    assert v["a"].dtype == np.float16 and float(v["a"]) == 0.328125
    assert v["b"].shape == () and float(v["b"]) == -np.inf
    assert v["c"].dtype == np.float32 and np.isnan(v["c"])
    assert v["d"].dtype == np.float32
    assert v["d"].view(np.uint32).tolist() == np.array([np.inf, -0.0, 1e-3, 3.4028234663852886e38], np.float32).view(np.uint32).tolist()
    assert v["e"].dtype == np.int32 and int(v["e"]) == -2 ** 31
    assert v["f"].dtype == np.uint64 and int(v["f"]) == 2 ** 64 - 1
    assert v["g"].dtype == np.bool_ and bool(v["g"]) is True
    assert v["h"].tolist() == [[True, False], [False, True]]
    assert v["s"] == 'tab\there "q" back\\slash A'


def test_literal_arguments_become_named_consts_before_their_op():
    body = """
            tensor<fp16, [2, 3]> y = add(x = x, y = fp16(1.5))[name = string("plus")];
            tensor<fp16, [4, 3]> z = concat(axis = int32(0), interleave = bool(false), values = (y, tensor<fp16, [2, 3]>([1, 2, 3, 4, 5, 6])))[name = string("cat")];"""
    fn = ak.mil.parse(minimal(body, outputs="z")).main
    assert [(op.type, op.name) for op in fn.ops] == [
        ("const", "plus_y"), ("add", "plus"), ("const", "cat_axis"), ("const", "cat_interleave"),
        ("const", "cat_values_1"), ("concat", "cat")]
    assert fn.ops[0].outputs[0].name == "plus_y" and float(fn.ops[0].attrs["val"]) == 1.5
    assert fn.ops[4].attrs["val"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_inline_blobfile_arguments_of_ios18_constexpr_ops():
    """coremlc writes iOS 18 constexpr inputs inline: `mask = tensor<uint1, [..]>(BLOBFILE(...))`."""
    mask = (np.arange(32).reshape(4, 8) % 3 == 0).astype(np.uint8)
    data, offsets = write_blobs([(mask, "uint1")])
    nz = int(mask.sum())
    values = ", ".join(str(float(i)) for i in range(nz))
    body = (f'            tensor<fp16, [4, 8]> w = constexpr_sparse_to_dense(mask = tensor<uint1, [4, 8]>(BLOBFILE(path = '
            f'string("@model_path/weights/weight.bin"), offset = uint64({offsets[0]}))), nonzero_data = '
            f'tensor<fp16, [{nz}]>([{values}]))[name = string("w")];')
    fn = ak.mil.parse(minimal(body, inputs="", outputs="w"), {"weights/weight.bin": data}).main
    assert [(op.type, op.name) for op in fn.ops] == [("const", "w_mask"), ("const", "w_nonzero_data"),
                                                      ("constexpr_sparse_to_dense", "w")]
    assert fn.ops[0].outputs[0].dtype == "uint1" and np.array_equal(fn.ops[0].attrs["val"], mask)
    assert fn.ops[1].attrs["val"].tolist() == list(range(nz))


def test_generated_const_names_avoid_names_defined_later():
    body = """
            tensor<fp16, [2, 3]> y = add(x = x, y = fp16(1.5))[name = string("p")];
            tensor<fp16, [2, 3]> p_y = relu(x = y)[name = string("p_y")];"""
    fn = ak.mil.parse(minimal(body, outputs="p_y")).main
    assert fn.ops[0].name == "p_y_1"
    text, files = ak.mil.emit(ak.mil.parse(minimal(body, outputs="p_y")))
    assert ak.mil.emit(ak.mil.parse(text, files)) == (text, files)


def test_several_functions_states_and_function_attributes():
    text = """program(1.3)
[buildInfo = dict<string, string>({{"k", "v"}}), tag = string("mine")]
{
    func main<ios18>(state<tensor<fp16, [1, 4]>> cache, tensor<fp16, [1, 4]> x) {
            tensor<fp16, [1, 4]> old = read_state(input = cache)[name = string("old")];
            tensor<fp16, [1, 4]> s = add(x = old, y = x)[name = string("s")];
            write_state(data = s, input = cache)[name = string("store")];
        } -> (s);

    func other<ios18>(tensor<fp32, [3]> a) [note = string("second")] {
            tensor<fp32, [3]> b = exp(x = a)[name = string("b")];
        } -> (b);
}
"""
    prog = ak.mil.parse(text)
    assert list(prog.functions) == ["main", "other"]
    assert prog.attributes == {"buildInfo": {"k": "v"}, "tag": "mine"}
    main = prog.functions["main"]
    assert main.states == ("cache",)
    assert main.ops[-1].type == "write_state" and main.ops[-1].outputs == []
    assert prog.functions["other"].attributes == {"note": "second"}
    again = ak.mil.emit(prog)[0]
    assert "state<tensor<fp16, [1, 4]>> cache" in again
    assert '            write_state(data = s, input = cache)[name = string("store")];' in again
    assert 'func other<ios18>(tensor<fp32, [3]> a) [note = string("second")] {' in again
    assert ak.mil.emit(ak.mil.parse(again)) == (again, {})


def test_typed_dict_function_attribute_round_trips():
    text = minimal('            tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y")];').replace(
        "(tensor<fp16, [2, 3]> x) {",
        '(tensor<fp16, [2, 3]> x) [defaults = dict<string, fp32>({{"a", 0x1.8p+1}, {"b", -0.5}})] {')
    prog = ak.mil.parse(text)
    assert prog.main.attributes == {"defaults": {"a": 3.0, "b": -0.5}}
    again = ak.mil.emit(prog)[0]
    assert '[defaults = dict<string, fp32>({{"a", 3.0}, {"b", -0.5}})] {' in again
    assert ak.mil.emit(ak.mil.parse(again))[0] == again


# --------------------------------------------------------------------------- errors

def test_unknown_op_names_itself_with_line_and_column():
    err = parse_error(minimal('            tensor<fp16, [2, 3]> y = frobnicate(x = x)[name = string("y")];'),
                      cls=UnknownOpError)
    assert "frobnicate" in str(err) and (err.line, err.column) == (4, 38)
    assert "4:38" in str(err) and "^" in str(err)
    assert isinstance(err, AnekitError)


def test_unknown_type_names_itself():
    err = parse_error(minimal('            tensor<fp17, [2, 3]> y = relu(x = x)[name = string("y")];'))
    assert "unknown type 'fp17'" in err.message and (err.line, err.column) == (4, 20)
    err = parse_error(minimal("", inputs="quaternion<fp16> x"))
    assert "unknown type 'quaternion'" in err.message and err.line == 3


def test_argument_not_declared_by_the_op():
    err = parse_error(minimal('            tensor<fp16, [2, 3]> y = relu(x = x, alpha = x)[name = string("y")];'))
    assert "relu" in err.message and "'alpha'" in err.message and (err.line, err.column) == (4, 50)
    err = parse_error(minimal('            tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y"), bogus = int32(1)];'))
    assert "relu" in err.message and "'bogus'" in err.message


def test_undefined_name():
    err = parse_error(minimal('            tensor<fp16, [2, 3]> y = relu(x = q)[name = string("y")];'))
    assert "undefined name 'q'" in err.message and (err.line, err.column) == (4, 47)
    err = parse_error(minimal('            tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y")];', outputs="nope"))
    assert "undefined name 'nope'" in err.message


def test_declared_output_type_disagreeing_with_the_shape_rule():
    err = parse_error(minimal('            tensor<fp16, [3, 2]> y = relu(x = x)[name = string("y")];'))
    assert "relu" in err.message and "tensor<fp16, [3, 2]>" in err.message and "tensor<fp16, [2, 3]>" in err.message
    err = parse_error(minimal('            tensor<fp32, [2, 3]> y = relu(x = x)[name = string("y")];'))
    assert "tensor<fp32, [2, 3]>" in err.message and "tensor<fp16, [2, 3]>" in err.message
    err = parse_error(minimal('            tensor<int32, [2]> c = const()[name = string("c"), val = tensor<int32, [3]>([1, 2, 3])];'))
    assert "tensor<int32, [2]>" in err.message and "tensor<int32, [3]>" in err.message


@pytest.mark.parametrize("body,needle", [
    ('tensor<fp16, [2, 3]> y = relu()[name = string("y")];', "missing required argument 'x'"),
    ('tensor<fp16, [2, 3]> y = relu(x = x, x = x)[name = string("y")];', "given twice"),
    ('tensor<fp16, [2, 3]> x = relu(x = x)[name = string("x")];', "defined twice"),
    ('tensor<fp16, [2, 3]> y = softmax(axis = x, x = x)[name = string("y")];', "must be a compile-time constant"),
    ('tensor<fp32, [2, 3]> a = const()[name = string("a"), val = tensor<fp32, [2, 3]>([1, 2, 3, 4, 5, 6])];\n'
     'tensor<fp16, [2, 3]> y = add(x = x, y = a)[name = string("y")];', "dtype fp32, expected fp16"),
    ('string m = const()[name = string("m"), val = string("FAST")];\n'
     'tensor<fp16, [2, 3]> y = gelu(mode = m, x = x)[name = string("y")];', "not one of"),
    ('tensor<fp16, [2, 3]> y = concat(axis = int32(0), values = x)[name = string("y")];', "tuple"),
    ('tensor<fp16, [2, 3]> y = relu(x = (x, x))[name = string("y")];', "not a tuple"),
    ('tensor<fp16, [2, 3]> y = reshape(shape = tensor<int32, [2]>([4, 4]), x = x)[name = string("y")];', "reshape"),
    ('tensor<fp16, [2]> c = const()[name = string("c"), val = tensor<fp16, [2]>([1e10, 0])];', "out of range for fp16"),
    ('int32 c = const()[name = string("c"), val = int32(2147483648)];', "out of range for int32"),
    ('tensor<uint4, [2]> c = const()[name = string("c"), val = tensor<uint4, [2]>([3, 16])];', "out of range for uint4"),
    ('tensor<fp16, [3]> c = const()[name = string("c"), val = tensor<fp16, [3]>([1, 2])];', "needs 3 values"),
    ('tensor<fp16, [?, 3]> y = relu(x = x)[name = string("y")];', "dynamic dimension"),
    ('int32 c = const()[name = string("c"), val = int32(1.5)];', "float value"),
    ('fp16 c = const()[name = string("c"), val = fp16(0x1p99999)];', "out of range"),
    ('tensor<fp16, [2]> c = const()[name = string("c"), val = tensor<fp16, [2]>(BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(64)))];',
     "no weights were given"),
    ('string s = const()[name = string("s"), val = string("open', "unterminated string"),
    ('/* never closed', "unterminated /* comment"),
    ('tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y")] @', "unexpected character '@'"),
])
def test_malformed_statements(body, needle):
    err = parse_error(minimal("            " + body))
    assert needle in err.message, err.message
    assert err.line >= 4 and err.column >= 1 and err.excerpt.endswith("^")


def test_caret_excerpt_points_at_the_error():
    err = parse_error(minimal('            tensor<fp16, [2, 3]> y = relu(x = q)[name = string("y")];'))
    line, caret = err.excerpt.split("\n")
    assert line.strip().startswith("tensor<fp16") and line[caret.index("^")] == "q"


def test_deep_nesting_is_a_parse_error_not_a_recursion_error():
    deep = "[" * 5000 + "1" + "]" * 5000
    err = parse_error(minimal(f'            tensor<fp16, [1]> c = const()[name = string("c"), val = tensor<fp16, [1]>({deep})];'))
    assert "nesting" in err.message
    err = parse_error(minimal("", inputs="state<" * 3000 + "fp16" + ">" * 3000 + " x"))
    assert "nesting" in err.message


def test_header_and_structure_errors():
    assert "expected 'program'" in parse_error("func main() {} -> ();").message
    assert "at least one function" in parse_error("program(1.3)\n{\n}\n").message
    assert "program version" in parse_error("program(x)\n{}").message
    assert "after the program" in parse_error(minimal('            tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y")];') + "extra").message
    assert "end of input" in parse_error("program(1.3)\n{\n    func main<ios18>(").message
    with pytest.raises(MILParseError):
        ak.mil.parse(b"program(1.3)")


# --------------------------------------------------------------------------- weights and paths

def _blob_program(path: str = "@model_path/weights/weight.bin", offset: int = 64, dtype: str = "fp16",
                  shape: str = "4, 8") -> str:
    return minimal(f'            tensor<{dtype}, [{shape}]> w = const()[name = string("w"), val = tensor<{dtype}, [{shape}]>'
                   f'(BLOBFILE(path = string({quote(path)}), offset = uint64({offset})))];', inputs="", outputs="w")


def _write_folder(folder, data: bytes):
    (folder / "weights").mkdir(parents=True, exist_ok=True)
    (folder / "weights" / "weight.bin").write_bytes(data)


@pytest.mark.parametrize("path", [
    "@model_path/../outside.bin", "@model_path/weights/../../outside.bin", "/etc/passwd",
    "@model_path//etc/passwd", "weights/weight.bin", "@model_path/", "@model_path/weights\\..\\x.bin",
])
def test_blobfile_paths_leaving_the_folder_are_refused(tmp_path, path):
    _write_folder(tmp_path / "m", coremlc_ios18_weights()["weights/weight.bin"])
    (tmp_path / "outside.bin").write_bytes(coremlc_ios18_weights()["weights/weight.bin"])
    (tmp_path / "m" / "model.mil").write_text(_blob_program(path))
    with pytest.raises(PathEscapeError) as info:
        ak.mil.load(tmp_path / "m")
    assert "4:" in str(info.value)   # located at the BLOBFILE
    with pytest.raises(PathEscapeError):
        ak.mil.parse(_blob_program(path), coremlc_ios18_weights())


def test_symlink_out_of_the_folder_is_refused_and_inside_is_allowed(tmp_path):
    data = coremlc_ios18_weights()["weights/weight.bin"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "weight.bin").write_bytes(data)
    model = tmp_path / "m"
    model.mkdir()
    os.symlink(outside, model / "weights")
    (model / "model.mil").write_text(_blob_program())
    with pytest.raises(PathEscapeError, match="outside the model folder"):
        ak.mil.load(model)
    # a symlink that stays inside the folder is fine
    inside = tmp_path / "n"
    _write_folder(inside, data)
    os.symlink(inside / "weights" / "weight.bin", inside / "weights" / "alias.bin")
    (inside / "model.mil").write_text(_blob_program("@model_path/./weights//alias.bin"))
    w = ak.mil.load(inside).main.ops[0].attrs["val"]
    assert np.array_equal(w, LINEAR_W)


def test_blob_larger_than_its_file_is_a_weight_file_error(tmp_path):
    data = coremlc_ios18_weights()["weights/weight.bin"]
    _write_folder(tmp_path, data[:-10])
    (tmp_path / "model.mil").write_text(_blob_program())
    with pytest.raises(WeightFileError, match="past the end"):
        ak.mil.load(tmp_path)
    with pytest.raises(WeightFileError):
        ak.mil.parse(_blob_program(), {"weights/weight.bin": data[:100]})


@pytest.mark.parametrize("kw,needle", [
    (dict(offset=128), "offset"),                      # not a blob's metadata
    (dict(offset=0), "header"),
    (dict(dtype="fp32"), "holds fp16"),                # MIL type disagrees with the blob
    (dict(shape="4, 9"), "needs 36"),                  # element count disagrees
    (dict(path="@model_path/weights/other.bin"), "other.bin"),
])
def test_blob_reference_mismatches(kw, needle):
    with pytest.raises(WeightFileError, match=needle):
        ak.mil.parse(_blob_program(**kw), coremlc_ios18_weights())


def test_blob_dtype_that_weight_bin_cannot_hold():
    err = parse_error(_blob_program(dtype="bool"), coremlc_ios18_weights())
    assert "cannot be stored in weight.bin" in err.message


def test_missing_weight_file_in_folder(tmp_path):
    (tmp_path / "model.mil").write_text(_blob_program())
    with pytest.raises(WeightFileError, match="cannot open"):
        ak.mil.load(tmp_path)


def test_load_errors(tmp_path):
    with pytest.raises(ModelFormatError):
        ak.mil.load(tmp_path / "missing")
    with pytest.raises(ModelFormatError, match="model.mil"):
        ak.mil.load(tmp_path)
    (tmp_path / "model.mil").write_bytes(b"program(1.3)\n{\n  \xff\n}")
    with pytest.raises(MILParseError) as info:
        ak.mil.load(tmp_path)
    assert (info.value.line, info.value.column) == (3, 3) and "UTF-8" in info.value.message
    with pytest.raises(WeightFileError):
        ak.mil.parse(_blob_program(), {"weights/weight.bin": "not bytes"})
    with pytest.raises(ModelFormatError):
        ak.mil.parse(_blob_program(), tmp_path / "no_such_folder")


def test_load_skips_a_utf8_byte_order_mark(tmp_path):
    (tmp_path / "model.mil").write_bytes(b"\xef\xbb\xbf" + minimal(
        '            tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y")];').encode())
    assert [op.type for op in ak.mil.load(tmp_path).main.ops] == ["relu"]


def test_weights_from_a_folder_argument(tmp_path):
    _write_folder(tmp_path, coremlc_ios18_weights()["weights/weight.bin"])
    w = ak.mil.parse(_blob_program(), tmp_path).main.ops[0].attrs["val"]
    assert np.array_equal(w, LINEAR_W) and not w.flags.writeable


def test_float_scalar_params_accept_fp32_on_fp16_ops():
    """From iOS 17, coremltools writes fp32 alpha/epsilon on fp16 ops; the value is used in the op's type."""
    text = minimal('''            fp32 a = const()[name = string("a"), val = fp32(0.25)];
            tensor<fp16, [2, 3]> y = leaky_relu(alpha = a, x = x)[name = string("y")];''')
    prog = ak.mil.parse(text)
    op = prog.main.ops[-1]
    assert op.inputs["alpha"].dtype == "fp32" and op.attr("alpha") == 0.25
    assert ak.mil.emit(ak.mil.parse(ak.mil.emit(prog)[0]))[0] == ak.mil.emit(prog)[0]


def test_an_output_listed_twice_is_refused():
    text = minimal('            tensor<fp16, [2, 3]> y = relu(x = x)[name = string("y")];', outputs="y, y")
    err = parse_error(text)
    assert "output 'y' is listed twice" in err.message and err.line > 0
