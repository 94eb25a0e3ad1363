"""ak.load on Core ML models (issue 6 item 1): .mlpackage protobuf + weights, .mlmodelc MIL
text, multifunction packages, state inputs, MIL folders and files; ak.save's other formats.

The interface each loaded program reports is compared with what coremltools itself reads
from the package (an independent reader of the same files).
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="the corpus models are PyTorch modules")
ct = pytest.importorskip("coremltools", reason="converting and reading packages needs coremltools")

import models_zoo as zoo  # noqa: E402

import anekit as ak  # noqa: E402
from anekit.errors import DependencyError, ModelFormatError, UnsupportedOpError  # noqa: E402
from anekit.ir import REGISTRY  # noqa: E402

_ARRAY_DTYPES = {"FLOAT16": "fp16", "FLOAT32": "fp32", "INT32": "int32"}


def _ct_interface(path):
    """(inputs, states, outputs) as coremltools reads the package description."""
    desc = ct.models.MLModel(path, skip_model_load=True).get_spec().description

    def rows(features, state=False):
        out = []
        for f in features:
            arr = f.type.stateType.arrayType if state else f.type.multiArrayType
            out.append((f.name, _ARRAY_DTYPES[arr.ArrayDataType.Name(arr.dataType)], tuple(arr.shape)))
        return out
    return rows(desc.input), rows(desc.state, True), rows(desc.output)


def _interface(fn):
    states = set(fn.states)
    ins = [(t.name, t.dtype, t.shape) for t in fn.inputs if t.name not in states]
    sts = [(t.name, t.dtype, t.shape) for t in fn.inputs if t.name in states]
    return ins, sts, [(t.name, t.dtype, t.shape) for t in fn.outputs]


def _structure(fn):
    """Op types, names and output types, plus const values: what a faithful load preserves."""
    rows = []
    for op in fn.ops:
        outs = [(t.name, t.dtype, t.shape) for t in op.outputs]
        val = op.outputs[0].const if op.type == "const" else None
        rows.append((op.type, outs, None if val is None else np.asarray(val).tolist()))
    return rows


@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_package_loads_with_the_interface_coremltools_reads(entry, tmp_path_factory):
    path = zoo.package(entry.name, tmp_path_factory)
    prog = ak.load(path)
    assert _interface(prog.main) == _ct_interface(path)
    assert [t.name for t in prog.main.outputs] == entry.outputs
    for op in prog.main.ops:
        assert op.type in REGISTRY
        for t in op.outputs:        # narrow ints are widened: only compute dtypes flow
            assert t.dtype in ("fp16", "fp32", "int32", "bool") or op.type == "const"


def test_weights_are_read_from_weight_bin(tmp_path_factory):
    """The conv weights of the CNN equal PyTorch's parameters rounded to fp16 (batch norm is
    folded into them by the converter, so check the final linear layer)."""
    entry = zoo.BY_NAME["cnn_bn_pool"]
    prog = ak.load(zoo.package(entry.name, tmp_path_factory))
    linear = next(op for op in prog.main.ops if op.type == "linear")
    weight = np.asarray(linear.inputs["weight"].const)
    expected = entry.module().fc.weight.detach().numpy().astype(np.float16)
    np.testing.assert_array_equal(weight, expected)


def test_narrow_integer_indices_are_widened_to_int32(tmp_path_factory):
    prog = ak.load(zoo.package("embedding", tmp_path_factory))
    gather = next(op for op in prog.main.ops if op.type == "gather")
    assert gather.inputs["indices"].dtype == "int32"
    casts = [op.attr("dtype") for op in prog.main.ops if op.type == "cast"]
    assert casts and set(casts) == {"int32"}


def test_state_inputs_are_parsed(tmp_path_factory):
    path = zoo.package("kv_cache_state", tmp_path_factory)
    fn = ak.load(path).main
    assert fn.states == ("k_cache", "v_cache")
    types = [op.type for op in fn.ops]
    assert types.count("write_state") == 2 and "read_state" in types and "slice_update" in types
    writes = [op for op in fn.ops if op.type == "write_state"]
    assert {op.inputs["input"].name for op in writes} == {"k_cache", "v_cache"}


@pytest.fixture(scope="module")
def multifunction(tmp_path_factory):
    """A two-function package made by coremltools' multifunction tool, default 'act'."""
    desc = ct.utils.MultiFunctionDescriptor()
    desc.add_function(zoo.package("rmsnorm", tmp_path_factory), "main", "norm")
    desc.add_function(zoo.package("activations", tmp_path_factory), "main", "act")
    desc.default_function_name = "act"
    path = str(tmp_path_factory.mktemp("multi") / "multi.mlpackage")
    ct.utils.save_multifunction(desc, path)
    return path


def test_multifunction_default_function_comes_first(multifunction, tmp_path_factory):
    prog = ak.load(multifunction)
    assert list(prog.functions) == ["act", "norm"]
    assert prog.main.name == "act"
    single = ak.load(zoo.package("activations", tmp_path_factory)).main
    assert _structure(prog.main) == _structure(single)


def test_multifunction_function_argument(multifunction, tmp_path_factory):
    prog = ak.load(multifunction, function="norm")
    assert list(prog.functions) == ["norm"]
    assert _structure(prog.main) == _structure(ak.load(zoo.package("rmsnorm", tmp_path_factory)).main)


def test_multifunction_round_trips_through_save(multifunction, tmp_path):
    out = str(tmp_path / "again.mlpackage")
    ak.save(ak.load(multifunction), out)
    spec = ct.models.MLModel(out, skip_model_load=True).get_spec()
    assert spec.description.defaultFunctionName == "act"
    assert sorted(f.name for f in spec.description.functions) == ["act", "norm"]
    back = ak.load(out)
    assert list(back.functions) == ["act", "norm"]


def test_compiled_mlmodelc_loads_like_the_package(tmp_path_factory, tmp_path):
    """An .mlmodelc holds the program as model.mil + weights/weight.bin (written here by
    anekit's MIL writer, as coremlc would); it loads to the same program."""
    prog = ak.load(zoo.package("conv1d", tmp_path_factory))
    compiled = tmp_path / "conv1d.mlmodelc"
    ak.mil.save(prog, str(compiled))
    (compiled / "coremldata.bin").write_bytes(b"\0" * 8)     # present in real bundles; unused
    back = ak.load(str(compiled))
    assert _interface(back.main) == _interface(prog.main)
    assert [op.type for op in back.main.ops if op.type != "const"] == \
        [op.type for op in prog.main.ops if op.type != "const"]


def test_compiled_multifunction_default_from_metadata(tmp_path):
    x = ak.input("x", (1, 4))
    prog = ak.program({"y": ak.relu(x)}, name="main", functions={"other": {"z": ak.sigmoid(x)}})
    compiled = tmp_path / "two.mlmodelc"
    ak.mil.save(prog, str(compiled))
    (compiled / "metadata.json").write_text(json.dumps([{"defaultFunctionName": "other"}]))
    loaded = ak.load(str(compiled))
    assert loaded.main.name == "other"
    assert list(loaded.functions) == ["other"]      # a function named main would shadow it
    assert ak.load(str(compiled), function="main").main.name == "main"


@pytest.mark.parametrize("target", ["model_folder", "model.mil"])
def test_mil_folder_and_file_round_trip(target, tmp_path_factory, tmp_path):
    prog = ak.load(zoo.package("residual", tmp_path_factory))
    path = str(tmp_path / target)
    assert ak.save(prog, path) == path
    back = ak.load(path)
    assert _interface(back.main) == _interface(prog.main)
    convs = [np.asarray(op.inputs["weight"].const) for op in back.main.ops if op.type == "conv"]
    originals = [np.asarray(op.inputs["weight"].const) for op in prog.main.ops if op.type == "conv"]
    assert len(convs) == len(originals) == 3
    for a, b in zip(convs, originals):
        np.testing.assert_array_equal(a, b)


def test_save_refuses_compiled_formats(tmp_path):
    prog = ak.program({"y": ak.relu(ak.input("x", (1, 4)))})
    with pytest.raises(ModelFormatError, match="writes .mlpackage"):
        ak.save(prog, str(tmp_path / "x.mlmodelc"))


def test_save_will_not_overwrite_a_folder_that_is_not_a_package(tmp_path):
    target = tmp_path / "precious.mlpackage"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    prog = ak.program({"y": ak.relu(ak.input("x", (1, 4)))})
    with pytest.raises(ModelFormatError, match="refusing to overwrite"):
        ak.save(prog, str(target))
    assert (target / "notes.txt").read_text() == "keep me"


def test_save_replaces_an_existing_package(tmp_path):
    target = str(tmp_path / "m.mlpackage")
    ak.save(ak.program({"y": ak.relu(ak.input("x", (1, 4)))}), target)
    ak.save(ak.program({"z": ak.sigmoid(ak.input("x", (1, 4)))}), target)
    assert ak.load(target).main.output_names == ["z"]


def test_bool_outputs_cannot_be_core_ml_features(tmp_path):
    x = ak.input("x", (1, 4))
    prog = ak.program({"mask": ak.greater(x, 0.0)})
    with pytest.raises(ModelFormatError, match="output 'mask' has dtype bool"):
        ak.save(prog, str(tmp_path / "m.mlpackage"))


def test_loading_needs_no_coremltools_but_saving_does(monkeypatch, tmp_path_factory):
    path = zoo.package("rmsnorm", tmp_path_factory)
    for name in list(sys.modules):
        if name == "coremltools" or name.startswith("coremltools."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "coremltools", None)     # import now fails
    prog = ak.load(path)                                      # anekit's own protobuf modules
    with pytest.raises(DependencyError, match=r"pip install 'anekit\[coreml\]'"):
        ak.save(prog, str(tmp_path_factory.mktemp("resave") / "m.mlpackage"))


def test_missing_protobuf_is_a_dependency_error(monkeypatch, tmp_path_factory):
    path = zoo.package("rmsnorm", tmp_path_factory)
    for name in list(sys.modules):
        if name.startswith(("anekit.coreml.proto", "google.protobuf")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    with pytest.raises(DependencyError, match=r"pip install 'anekit\[coreml-load\]'"):
        ak.load(path)


def test_renamed_package_is_recognized_by_its_manifest(tmp_path_factory):
    """A package folder renamed without its extension still loads as a package."""
    src = zoo.package("rmsnorm", tmp_path_factory)
    renamed = os.path.join(str(tmp_path_factory.mktemp("renamed")), "model_without_ext")
    shutil.copytree(src, renamed)
    assert _interface(ak.load(renamed).main) == _interface(ak.load(src).main)


def test_op_without_a_simulator_kernel_is_named_with_its_position(monkeypatch, tmp_path_factory):
    """A declared op the simulator cannot execute fails when the program is compiled, before
    any input is read, naming the op type, its name and its position in the function."""
    prog = ak.load(zoo.package("cnn_bn_pool", tmp_path_factory))
    position, pool = next((i, op) for i, op in enumerate(prog.main.ops) if op.type == "max_pool")
    monkeypatch.setattr(REGISTRY["max_pool"], "kernel", None)
    with pytest.raises(UnsupportedOpError) as info:
        ak.compile(prog, backend="sim", target="m4")
    message = str(info.value)
    assert "'max_pool'" in message and pool.name in message and f"#{position}" in message
