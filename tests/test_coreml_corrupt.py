"""Corrupt and hostile Core ML packages give an AnekitError subclass, never a crash (issue 6 item 5).

Each case starts from a valid package that anekit writes (so the test needs coremltools but
not torch), breaks one thing, and checks the error class and that the message says what is
wrong.
"""
from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest

pytest.importorskip("coremltools", reason="Core ML packages need coremltools (the `coreml` extra)")

import anekit as ak  # noqa: E402
from anekit.coreml import parse_model  # noqa: E402
from anekit.errors import (  # noqa: E402
    AnekitError, ModelFormatError, PathEscapeError, ShapeError, UnsupportedOpError, WeightFileError,
)

SPEC = os.path.join("Data", "com.apple.CoreML", "model.mlmodel")
WEIGHTS = os.path.join("Data", "com.apple.CoreML", "weights", "weight.bin")


def _program():
    rng = np.random.default_rng(0)
    x = ak.input("x", (1, 4, 1, 8))
    w = rng.standard_normal((6, 4, 1, 1)).astype(np.float16)
    y = ak.relu(ak.conv(x, w, bias=np.arange(6, dtype=np.float16)))
    return ak.program({"y": y})


@pytest.fixture(scope="module")
def good_package(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("good") / "good.mlpackage")
    ak.save(_program(), path)
    return path


@pytest.fixture
def pkg(good_package, tmp_path):
    """A fresh copy of the good package to break."""
    dst = str(tmp_path / "broken.mlpackage")
    shutil.copytree(good_package, dst)
    return dst


def _edit_spec(pkg: str, edit) -> None:
    path = os.path.join(pkg, SPEC)
    with open(path, "rb") as f:
        model = parse_model(f.read())
    edit(model)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def _main_block(model):
    fn = model.mlProgram.functions["main"]
    return fn.block_specializations[fn.opset]


def _blob_values(model):
    for op in _main_block(model).operations:
        if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue":
            yield op.attributes["val"].blobFileValue


def test_the_unbroken_package_loads(good_package):
    prog = ak.load(good_package)
    assert [t.name for t in prog.main.outputs] == ["y"]
    assert any(op.type == "conv" for op in prog.main.ops)


# --- missing files -----------------------------------------------------------------------

def test_missing_manifest(pkg):
    os.remove(os.path.join(pkg, "Manifest.json"))
    with pytest.raises(ModelFormatError, match="Manifest.json is missing"):
        ak.load(pkg)


def test_missing_model_spec(pkg):
    os.remove(os.path.join(pkg, SPEC))
    with pytest.raises(ModelFormatError, match="model specification .* is missing"):
        ak.load(pkg)


def test_missing_weight_file(pkg):
    os.remove(os.path.join(pkg, WEIGHTS))
    with pytest.raises(WeightFileError, match="weight file .* is missing"):
        ak.load(pkg)


def test_missing_package(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        ak.load(str(tmp_path / "absent.mlpackage"))


# --- bad manifest and bad protobuf ------------------------------------------------------

def test_manifest_not_json(pkg):
    with open(os.path.join(pkg, "Manifest.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        ak.load(pkg)


def test_manifest_root_names_no_entry(pkg):
    path = os.path.join(pkg, "Manifest.json")
    doc = json.load(open(path))
    doc["rootModelIdentifier"] = "no-such-id"
    json.dump(doc, open(path, "w"))
    with pytest.raises(ModelFormatError, match="rootModelIdentifier"):
        ak.load(pkg)


def test_spec_is_not_protobuf(pkg):
    with open(os.path.join(pkg, SPEC), "wb") as f:
        f.write(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(ModelFormatError, match="not a Core ML model specification"):
        ak.load(pkg)


def test_truncated_spec(pkg):
    path = os.path.join(pkg, SPEC)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(AnekitError):
        ak.load(pkg)


def test_neural_network_model_is_refused(pkg):
    def edit(model):
        model.ClearField("mlProgram")
        model.neuralNetwork.SetInParent()
    _edit_spec(pkg, edit)
    with pytest.raises(ModelFormatError, match="neuralNetwork model; only ML programs"):
        ak.load(pkg)


def test_random_corruption_never_escapes(good_package, tmp_path):
    """Byte flips and truncations of the spec: every outcome is a load or an AnekitError."""
    dst = str(tmp_path / "fuzz.mlpackage")
    shutil.copytree(good_package, dst)
    path = os.path.join(dst, SPEC)
    original = open(path, "rb").read()
    rng = random.Random(1234)
    outcomes = set()
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            ak.load(dst)
            outcomes.add("loaded")
        except AnekitError as e:
            outcomes.add(type(e).__name__)
    assert "ModelFormatError" in outcomes      # the corruption did reach the reader


# --- weights ------------------------------------------------------------------------------

def test_weight_offset_past_end(pkg):
    size = os.path.getsize(os.path.join(pkg, WEIGHTS))

    def edit(model):
        next(_blob_values(model)).offset = size + 4096
    _edit_spec(pkg, edit)
    with pytest.raises(WeightFileError, match="past end"):
        ak.load(pkg)


def test_truncated_weight_file(pkg):
    path = os.path.join(pkg, WEIGHTS)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:-10])
    with pytest.raises(WeightFileError, match="past the end"):
        ak.load(pkg)


def test_weight_blob_of_wrong_dtype(pkg):
    def edit(model):
        for op in _main_block(model).operations:
            val = op.attributes["val"] if op.type == "const" else None
            if val is not None and val.WhichOneof("value") == "blobFileValue":
                val.type.tensorType.dataType = 11      # FLOAT32 where the blob holds fp16
                for out in op.outputs:
                    out.type.tensorType.dataType = 11
    _edit_spec(pkg, edit)
    with pytest.raises(WeightFileError, match="expected fp32"):
        ak.load(pkg)


# --- paths leaving the package -------------------------------------------------------------

@pytest.mark.parametrize("file_name", ["@model_path/../../../../etc/passwd", "/etc/passwd",
                                       "@model_path/weights/../../../Manifest.json"])
def test_weight_path_leaving_the_package(pkg, file_name):
    def edit(model):
        next(_blob_values(model)).fileName = file_name
    _edit_spec(pkg, edit)
    with pytest.raises(PathEscapeError):
        ak.load(pkg)


def test_weight_symlink_leaving_the_package(pkg, tmp_path):
    outside = tmp_path / "outside.bin"
    shutil.copy(os.path.join(pkg, WEIGHTS), outside)
    os.remove(os.path.join(pkg, WEIGHTS))
    os.symlink(outside, os.path.join(pkg, WEIGHTS))
    with pytest.raises(PathEscapeError, match="leaves"):
        ak.load(pkg)


@pytest.mark.parametrize("rel", ["../../outside.mlmodel", "/etc/hostname"])
def test_manifest_path_leaving_the_package(pkg, rel):
    path = os.path.join(pkg, "Manifest.json")
    doc = json.load(open(path))
    doc["itemInfoEntries"][doc["rootModelIdentifier"]]["path"] = rel
    json.dump(doc, open(path, "w"))
    with pytest.raises(PathEscapeError):
        ak.load(pkg)


# --- inconsistent programs ----------------------------------------------------------------

def test_unknown_op_names_op_and_position(pkg):
    def edit(model):
        ops = _main_block(model).operations
        conv = next(i for i, op in enumerate(ops) if op.type == "conv")
        ops[conv].type = "fancy_new_op"
    _edit_spec(pkg, edit)
    with pytest.raises(UnsupportedOpError, match=r"function 'main' op \d+ \('conv_0', type 'fancy_new_op'\)"):
        ak.load(pkg)


def test_control_flow_is_refused(pkg):
    def edit(model):
        ops = _main_block(model).operations
        next(op for op in ops if op.type == "relu").blocks.add()
    _edit_spec(pkg, edit)
    with pytest.raises(UnsupportedOpError, match="nested blocks"):
        ak.load(pkg)


def test_value_used_before_definition(pkg):
    def edit(model):
        ops = _main_block(model).operations
        relu = next(op for op in ops if op.type == "relu")
        relu.inputs["x"].arguments[0].name = "nowhere"
    _edit_spec(pkg, edit)
    with pytest.raises(ModelFormatError, match="'nowhere' is used before it is defined"):
        ak.load(pkg)


def test_declared_output_type_disagrees_with_the_op(pkg):
    def edit(model):
        relu = next(op for op in _main_block(model).operations if op.type == "relu")
        relu.outputs[0].type.tensorType.dimensions[1].constant.size = 5
    _edit_spec(pkg, edit)
    with pytest.raises(ModelFormatError, match=r"declared fp16\[1, 5, 1, 8\] but 'relu' computes fp16\[1, 6, 1, 8\]"):
        ak.load(pkg)


def test_flexible_input_shape_needs_a_pinned_shape(pkg):
    x = ak.load(pkg).main.inputs[0]

    def edit(model):
        dim = model.mlProgram.functions["main"].inputs[0].type.tensorType.dimensions[3]
        dim.ClearField("constant")
        dim.unknown.variadic = False
    _edit_spec(pkg, edit)
    assert ak.load(pkg, shapes={x.name: x.shape}).main.inputs[0].shape == x.shape    # pinned: loads
    with pytest.raises(ShapeError, match=rf"input '{x.name}': a flexible shape \[.*\?\]; pick one"):
        ak.load(pkg)


def test_huge_declared_constant_is_refused_before_allocation(pkg):
    def edit(model):
        for op in _main_block(model).operations:
            val = op.attributes["val"] if op.type == "const" else None
            if val is not None and val.WhichOneof("value") == "blobFileValue":
                val.type.tensorType.dimensions[0].constant.size = 1 << 40
    _edit_spec(pkg, edit)
    with pytest.raises(ModelFormatError, match="more elements"):
        ak.load(pkg)


def test_inline_value_count_mismatch(pkg):
    def edit(model):
        for op in _main_block(model).operations:
            if op.type == "const" and op.attributes["val"].WhichOneof("value") == "immediateValue":
                tensor = op.attributes["val"].immediateValue.tensor
                if tensor.WhichOneof("value") == "ints" and len(tensor.ints.values) > 1:
                    tensor.ints.values.append(7)
                    return
        raise AssertionError("no int list constant to break")
    _edit_spec(pkg, edit)
    with pytest.raises(ModelFormatError, match="holds 3 values"):
        ak.load(pkg)


def test_missing_function_name(good_package):
    with pytest.raises(ModelFormatError, match="no function 'nope'"):
        ak.load(good_package, function="nope")


# --- compiled models ---------------------------------------------------------------------

def test_mlmodelc_without_model_mil(tmp_path):
    path = tmp_path / "broken.mlmodelc"
    path.mkdir()
    (path / "coremldata.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelFormatError, match="no model.mil"):
        ak.load(str(path))


def test_mlmodelc_with_garbage_mil(tmp_path):
    path = tmp_path / "broken.mlmodelc"
    path.mkdir()
    (path / "model.mil").write_bytes(b"program(1.3) { func main<ios18>(\xff")
    with pytest.raises(AnekitError):
        ak.load(str(path))


def test_manifest_symlink_leaving_the_package(pkg, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.copy(os.path.join(pkg, "Manifest.json"), outside)
    os.remove(os.path.join(pkg, "Manifest.json"))
    os.symlink(outside, os.path.join(pkg, "Manifest.json"))
    with pytest.raises(PathEscapeError, match="leaves"):
        ak.load(pkg)


def test_deeply_nested_manifest_is_refused(pkg):
    with open(os.path.join(pkg, "Manifest.json"), "w") as f:
        f.write("[" * 100000 + "]" * 100000)
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        ak.load(pkg)


def test_bool_constant_retyped_to_uint64_is_refused(tmp_path):
    from coremltools.proto import MIL_pb2
    x = ak.input("x", (1, 4, 8))
    pkg = ak.save(ak.program({"y": ak.matmul(x, x, transpose_y=True)}), tmp_path / "b.mlpackage")

    def edit(model):
        for op in _main_block(model).operations:
            if op.type == "const":
                v = op.attributes["val"]
                if v.type.tensorType.dataType == MIL_pb2.DataType.BOOL:
                    v.type.tensorType.dataType = MIL_pb2.DataType.UINT64
                    return
        raise AssertionError("the test package has no bool const")
    _edit_spec(pkg, edit)
    with pytest.raises(AnekitError):
        ak.load(pkg)


@pytest.mark.parametrize("bad", [None, 3])
def test_non_path_arguments_are_usage_errors(bad):
    from anekit.errors import UsageError
    with pytest.raises(UsageError, match="path"):
        ak.load(bad)
