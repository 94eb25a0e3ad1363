"""The iOS 16 spelling of constexpr_lut_to_dense (one palette per tensor, indices packed into
uint8 bytes, the output shape as an attribute): coremltools' iOS 16/17 palettized models load and
run, MIL text and Core ML packages in the ios16 dialect write it and read it back, and a
malformed one is a clear error. The independent references are coremltools' own decompression
(`decompress_weights`) and the unpacked palette lookup table[indices] in numpy."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit import mil
from anekit.errors import AnekitError, MILEmitError, MILParseError, ModelFormatError
from anekit.ir.spec import REGISTRY

LUT = REGISTRY["constexpr_lut_to_dense"]


def _run(prog, x):
    return ak.runtime.compile(prog, backend="sim", target="m1", numerics="exact")({"x": x})


def _lut_ops(prog):
    return [op for op in prog.main.ops if op.type == "constexpr_lut_to_dense"]


def _dense(op) -> np.ndarray:
    """table[indices] for a palette per tensor, in numpy (the lookup the op means)."""
    table = np.asarray(op.inputs["lut"].const).reshape(-1)
    return table[np.asarray(op.inputs["indices"].const)]


@pytest.mark.parametrize("bits", [1, 2, 4, 6, 8])
@pytest.mark.parametrize("count", [1, 7, 24, 1001])
def test_the_older_form_reads_back_what_it_writes(bits, count):
    """write then read gives the same indices and palette, for every nbits the iOS 16 form has
    and counts that leave a partly used last byte."""
    rng = np.random.default_rng(bits * 1000 + count)
    idx = rng.integers(0, 2 ** bits, size=count).astype(np.uint8).reshape(count, 1)
    table = rng.standard_normal(2 ** bits).astype(np.float16)
    op = ak.constexpr_lut_to_dense(indices=ak.const(idx, dtype=f"uint{bits}"),
                                   lut=ak.const(table.reshape(1, 1, -1, 1))).op
    attrs = LUT.older_form.write(op)
    assert attrs["indices"].dtype == np.uint8 and attrs["indices"].size == -(-count * bits // 8)
    assert attrs["shape"].tolist() == [count, 1] and attrs["shape"].dtype == np.uint32
    back = LUT.older_form.read(attrs)
    assert back["indices"][1] == f"uint{bits}" and np.array_equal(back["indices"][0], idx)
    assert np.array_equal(back["lut"][0].reshape(-1), table)


def _palettized_model(tmp_path, nbits):
    torch = pytest.importorskip("torch", reason="the model comes from PyTorch")
    ct = pytest.importorskip("coremltools", reason="coremltools writes the iOS 16 palettized model")
    import coremltools.optimize.coreml as cto

    torch.manual_seed(nbits)
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 24, 1)).eval()
    x = torch.randn(1, 8, 6, 6)
    model = ct.convert(torch.jit.trace(net, x), inputs=[ct.TensorType(name="x", shape=x.shape)],
                       outputs=[ct.TensorType(name="y")],
                       minimum_deployment_target=ct.target.iOS16, convert_to="mlprogram")
    config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(nbits=nbits, mode="kmeans",
                                                                         weight_threshold=0))
    pal = cto.palettize_weights(model, config)
    pal.save(str(tmp_path / "pal.mlpackage"))
    cto.decompress_weights(pal).save(str(tmp_path / "dense.mlpackage"))
    return x.numpy()


@pytest.mark.parametrize("nbits", [2, 4, 8])
def test_coremltools_ios16_palettized_models_run_as_their_decompressed_twin(tmp_path, nbits):
    """A model coremltools palettized for iOS 16 loads (it used to fail on the missing
    `indices` input) and simulates bit for bit like the same model after coremltools'
    own decompression."""
    x = _palettized_model(tmp_path, nbits)
    pal, dense = ak.load(tmp_path / "pal.mlpackage"), ak.load(tmp_path / "dense.mlpackage")
    assert len(_lut_ops(pal)) == 2 and not _lut_ops(dense)
    got, want = _run(pal, x), _run(dense, x)
    assert set(got) == set(want)
    for k in got:
        assert np.array_equal(got[k].view(np.uint32), want[k].view(np.uint32)), k
    assert ak.check(pal, target="m1").ok


def _quantized(bits=4, group_size=None, shape=(32, 16, 3, 3)):
    x = ak.input("x", (1, shape[1], 6, 6))
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float16)
    return ak.quantize(ak.program({"y": ak.conv(x, ak.const(w), pad_type="same")}), f"lut{bits}",
                       group_size=group_size, min_size=1)


@pytest.mark.parametrize("bits", [4, 6])
def test_mil_text_in_the_ios16_dialect_writes_and_reads_the_older_form(tmp_path, bits):
    """ios16 MIL text spells the op with `indices`, `lut` and `shape` attributes and leaves out
    the consts it inlines; read back, the program computes the same bits; ios18 text keeps
    the op's own form."""
    prog = _quantized(bits)
    text16, files16 = mil.emit(prog, dialect="ios16")
    line = next(ln for ln in text16.splitlines() if "constexpr_lut_to_dense" in ln)
    assert "constexpr_lut_to_dense()[" in line and "shape = tensor<uint32, [4]>" in line
    assert "_indices = const" not in text16 and "_lut = const" not in text16
    text18, files18 = mil.emit(prog, dialect="ios18")
    assert "constexpr_lut_to_dense(indices = " in text18
    assert len(files16["weights/weight.bin"]) == len(files18["weights/weight.bin"])   # stored once
    mil.save(prog, tmp_path / "m16", dialect="ios16")
    back = ak.load(tmp_path / "m16")
    x = np.random.default_rng(1).standard_normal((1, 16, 6, 6)).astype(np.float32)
    assert np.array_equal(_run(back, x)["y"], _run(prog, x)["y"])
    assert np.array_equal(_dense(_lut_ops(back)[0]), _dense(_lut_ops(prog)[0]))


def test_a_core_ml_package_in_ios16_carries_the_older_form_coremltools_decompresses(tmp_path):
    """Saved as a Core ML package from an ios16 program, the op has the iOS 16 attributes, and
    coremltools' decompression gives exactly table[indices]."""
    ct = pytest.importorskip("coremltools", reason="coremltools reads the package we write")
    from coremltools.optimize.coreml import decompress_weights

    prog = _quantized(4)
    mil.save(prog, tmp_path / "m16", dialect="ios16")
    ak.save(ak.load(tmp_path / "m16"), tmp_path / "m.mlpackage")
    spec = ct.models.MLModel(str(tmp_path / "m.mlpackage"), skip_model_load=True).get_spec()
    fn = spec.mlProgram.functions["main"]
    ops = [op for op in fn.block_specializations[fn.opset].operations if op.type == "constexpr_lut_to_dense"]
    assert fn.opset == "CoreML6" and sorted(ops[0].attributes) == ["indices", "lut", "name", "shape"]
    decompress_weights(ct.models.MLModel(str(tmp_path / "m.mlpackage"), skip_model_load=True)).save(
        str(tmp_path / "d.mlpackage"))
    dense = [op.outputs[0].const for op in ak.load(tmp_path / "d.mlpackage").main.ops
             if op.type == "const" and op.outputs[0].shape == (32, 16, 3, 3)]
    assert len(dense) == 1 and np.array_equal(np.asarray(dense[0]), _dense(_lut_ops(prog)[0]))


def test_a_palette_per_group_has_no_ios16_form():
    with pytest.raises(MILEmitError, match=r"y_weight.*no iOS 16 form.*group_size=None.*dialect='ios18'"):
        mil.emit(_quantized(4, group_size=16), dialect="ios16")


@pytest.mark.parametrize("old, new, message", [
    ("shape = tensor<uint32, [4]>([4, 2, 1, 1])", "shape = tensor<uint32, [4]>([4, 3, 1, 1])",
     r"12 values of 4 bits pack into uint8\[6\]"),
    ("shape = tensor<uint32, [4]>([4, 2, 1, 1])", "shape = tensor<uint32, [4]>([4, 0, 1, 1])",
     r"must list positive sizes"),
])
def test_a_malformed_older_form_is_an_error_with_its_place(old, new, message):
    text, files = mil.emit(_quantized(4, shape=(4, 2, 1, 1)), dialect="ios16")
    assert old in text
    with pytest.raises(MILParseError, match=message) as err:
        mil.parse(text.replace(old, new), files)
    assert err.value.line and err.value.column


def test_a_malformed_older_form_in_a_package_names_the_op(tmp_path):
    ct = pytest.importorskip("coremltools", reason="coremltools edits the package")
    prog = _quantized(4)
    mil.save(prog, tmp_path / "m16", dialect="ios16")
    ak.save(ak.load(tmp_path / "m16"), tmp_path / "m.mlpackage")
    model = ct.models.MLModel(str(tmp_path / "m.mlpackage"), skip_model_load=True)
    spec = model.get_spec()
    fn = spec.mlProgram.functions["main"]
    op = next(op for op in fn.block_specializations[fn.opset].operations if op.type == "constexpr_lut_to_dense")
    shape = op.attributes["shape"]
    shape.immediateValue.tensor.bytes.values = np.array([32, 16, 3, 4], np.uint32).tobytes()
    ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True).save(str(tmp_path / "bad.mlpackage"))
    with pytest.raises(ModelFormatError, match=r"constexpr_lut_to_dense.*uint8\[3072\]"):
        ak.load(tmp_path / "bad.mlpackage")


def test_older_arguments_need_a_name_only_the_older_form_has():
    assert LUT.older_arguments(["indices", "lut", "shape", "name"])
    assert not LUT.older_arguments(["indices", "lut"])          # the iOS 18 form
    assert not LUT.older_arguments(["indices", "lut", "vector_axis", "shape"])
    with pytest.raises(AnekitError, match=r"5 values of 4 bits pack into uint8\[3\]"):
        LUT.older_form.read({"indices": np.zeros(2, np.uint8), "lut": np.zeros(16, np.float16),
                             "shape": np.array([5], np.uint32)})
    with pytest.raises(AnekitError, match=r"4611686018427387903 values of 4 bits"):   # sizes checked before any allocation
        LUT.older_form.read({"indices": np.zeros(3, np.uint8), "lut": np.zeros(16, np.float16),
                             "shape": np.array([2 ** 31 - 1, 2 ** 31 + 1], np.uint32)})
    with pytest.raises(AnekitError, match=r"\[2\*\*nbits\]"):
        LUT.older_form.read({"indices": np.zeros(3, np.uint8), "lut": np.zeros(15, np.float16),
                             "shape": np.array([5], np.uint32)})
