"""ak.save(prog, "x.mlpackage") (issue 6 item 4): coremltools loads the package, its own
protobuf-to-MIL reader accepts every op (type inference with coremltools' op definitions),
and the program read back by ak.load runs to the same outputs as the program saved.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="writing packages needs coremltools (the `coreml` extra)")

import anekit as ak  # noqa: E402
from anekit.models import stories  # noqa: E402

WEIGHTS = os.path.join("Data", "com.apple.CoreML", "weights")


def coremltools_reads(path: str):
    """Load the package the way coremltools does and rebuild its MIL program (every op's
    inputs and output types validated by coremltools); returns the spec."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = ct.models.MLModel(path, skip_model_load=True).get_spec()
    milproto_load(spec, spec.specificationVersion, os.path.join(path, WEIGHTS))
    return spec


def run(prog, feeds):
    with ak.compile(prog, backend="sim", target="m4") as exe:
        return exe(feeds)


def assert_same_outputs(a: dict, b: dict):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_stories_layer_round_trip(tmp_path):
    dim, hidden, heads, seq = 64, 172, 4, 32
    prog = stories.build_layer_program(dim=dim, hidden=hidden, heads=heads, seq=seq, seed=3)
    path = str(tmp_path / "layer.mlpackage")
    ak.save(prog, path)
    spec = coremltools_reads(path)
    assert spec.specificationVersion == 9                       # iOS 18
    assert [f.name for f in spec.description.input] == ["x"]
    assert [f.name for f in spec.description.output] == ["y"]
    assert os.path.getsize(os.path.join(path, WEIGHTS, "weight.bin")) > (4 * dim * dim + 3 * dim * hidden) * 2

    back = ak.load(path)
    x = np.random.default_rng(0).standard_normal((1, dim, 1, seq)).astype(np.float16)
    ours, theirs = run(prog, {"x": x}), run(back, {"x": x})
    assert_same_outputs(ours, theirs)
    # and both are the layer: against the independent float64 reference
    ref = stories.reference_layer(x.reshape(dim, seq).astype(np.float64),
                                  stories.random_weights(dim, hidden, 1, 3)[0], heads)
    np.testing.assert_allclose(theirs["y"].reshape(dim, seq).astype(np.float64), ref, atol=5e-2, rtol=5e-2)


def test_stories_model_with_several_layers(tmp_path):
    prog = stories.build_model_program(dim=32, hidden=64, heads=2, layers=2, seq=16, seed=1)
    path = str(tmp_path / "model.mlpackage")
    ak.save(prog, path)
    coremltools_reads(path)
    x = np.random.default_rng(1).standard_normal((1, 32, 1, 16)).astype(np.float16)
    assert_same_outputs(run(prog, {"x": x}), run(ak.load(path), {"x": x}))


ZOO_SAMPLES = ["cnn_bn_pool", "transposed_conv", "causal_decoder", "embedding", "fp32_io",
               "multi_output", "reductions", "kv_cache_state", "extras", "upsampling"]


@pytest.mark.parametrize("name", ZOO_SAMPLES)
def test_converted_models_round_trip(name, tmp_path_factory, tmp_path):
    pytest.importorskip("torch", reason="the corpus models are PyTorch modules")
    import models_zoo as zoo

    entry = zoo.BY_NAME[name]
    prog = ak.load(zoo.package(name, tmp_path_factory))
    path = str(tmp_path / f"{name}.mlpackage")
    ak.save(prog, path)
    spec = coremltools_reads(path)
    assert [f.name for f in spec.description.output] == entry.outputs
    assert [f.name for f in spec.description.state] == [s.name for s in entry.states]
    back = ak.load(path)
    assert back.main.states == tuple(s.name for s in entry.states)
    feeds = entry.sample(seed=11)
    assert_same_outputs(run(prog, feeds), run(back, feeds))


def test_compressed_weights_round_trip(tmp_path):
    """int8 blockwise-quantized and 4-bit palettized weights (weight.bin sub-byte and int8
    blobs) survive the package and decompress to the same values."""
    rng = np.random.default_rng(5)
    x = ak.input("x", (1, 8, 1, 6))
    q = rng.integers(-128, 128, (16, 8, 1, 1)).astype(np.int8)
    scale = (0.01 + 0.01 * rng.random((16, 1, 1, 1))).astype(np.float16)
    w1 = ak.constexpr_blockwise_shift_scale(data=q, scale=scale)
    idx = rng.integers(0, 16, (8, 16, 1, 1)).astype(np.uint8)
    lut = rng.standard_normal((1, 1, 1, 1, 16, 1)).astype(np.float16)
    w2 = ak.constexpr_lut_to_dense(ak.ir.make_const(idx, "uint4"), lut)
    y = ak.conv(ak.relu(ak.conv(x, w1)), w2)
    prog = ak.program({"y": y})
    path = str(tmp_path / "compressed.mlpackage")
    ak.save(prog, path)
    coremltools_reads(path)
    back = ak.load(path)
    types = {op.type for op in back.main.ops}
    assert {"constexpr_blockwise_shift_scale", "constexpr_lut_to_dense"} <= types
    idx_back = next(op.outputs[0] for op in back.main.ops if op.type == "const" and op.outputs[0].dtype == "uint4")
    np.testing.assert_array_equal(np.asarray(idx_back.const), idx)
    feeds = {"x": rng.standard_normal((1, 8, 1, 6)).astype(np.float16)}
    assert_same_outputs(run(prog, feeds), run(back, feeds))


def test_saved_package_layout(tmp_path):
    prog = stories.build_layer_program(dim=32, hidden=64, heads=2, seq=8)
    path = str(tmp_path / "p.mlpackage")
    assert ak.save(prog, path) == path
    assert sorted(os.listdir(path)) == ["Data", "Manifest.json"]
    assert os.path.isfile(os.path.join(path, "Data", "com.apple.CoreML", "model.mlmodel"))
    # anekit's weight.bin is the format coremltools' own reader validates
    from coremltools.libmilstoragepython import _BlobStorageReader
    reader = _BlobStorageReader(os.path.join(path, WEIGHTS, "weight.bin"))
    blob_ops = 0
    spec = ct.models.MLModel(path, skip_model_load=True).get_spec()
    fn = spec.mlProgram.functions["main"]
    for op in fn.block_specializations[fn.opset].operations:
        val = op.attributes["val"] if op.type == "const" else None
        if val is not None and val.WhichOneof("value") == "blobFileValue":
            data = np.frombuffer(reader.read_fp16_data(val.blobFileValue.offset).tobytes(), np.float16)
            ours = next(o.outputs[0].const for o in prog.main.ops if o.name == op.attributes["name"].immediateValue.tensor.strings.values[0])
            np.testing.assert_array_equal(data, np.asarray(ours).reshape(-1))
            blob_ops += 1
    assert blob_ops >= 7


@pytest.mark.parametrize("opset,spec_version", [("ios16", 7), ("ios18", 9)])
def test_opset_and_attribute_weights_round_trip(opset, spec_version, tmp_path):
    """The function's opset picks the Core ML opset and specification version; the iOS 16
    constexpr_affine_dequantize keeps its int8 data in op attributes, stored in weight.bin."""
    rng = np.random.default_rng(6)
    x = ak.input("x", (1, 8, 1, 6))
    q = rng.integers(-128, 128, (16, 8, 1, 1)).astype(np.int8)
    w = ak.constexpr_affine_dequantize(quantized_data=q, zero_point=np.int8(3), scale=np.float16(0.02), axis=0)
    prog = ak.program({"y": ak.conv(x, w)})
    prog.main.opset = opset
    path = str(tmp_path / "affine.mlpackage")
    ak.save(prog, path)
    spec = coremltools_reads(path)
    assert spec.specificationVersion == spec_version
    fn = spec.mlProgram.functions["main"]
    affine = next(op for op in fn.block_specializations[fn.opset].operations
                  if op.type == "constexpr_affine_dequantize")
    assert affine.attributes["quantized_data"].WhichOneof("value") == "blobFileValue"
    back = ak.load(path)
    assert back.main.opset == opset
    feeds = {"x": rng.standard_normal((1, 8, 1, 6)).astype(np.float16)}
    assert_same_outputs(run(prog, feeds), run(back, feeds))
