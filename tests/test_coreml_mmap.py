"""ak.load of an .mlpackage (issue 15 item 3): anekit's own protobuf modules (no coremltools,
no torch in the process) and weight.bin constants handed out as read-only views of the
memory-mapped file, equal to what coremltools' own blob reader returns."""
from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="writing the .mlpackage needs coremltools")

import anekit as ak  # noqa: E402

WEIGHTS = os.path.join("Data", "com.apple.CoreML", "weights", "weight.bin")
SPEC = os.path.join("Data", "com.apple.CoreML", "model.mlmodel")


def _weights():
    rng = np.random.default_rng(15)
    return {"w16": rng.standard_normal((96, 64)).astype(np.float16),
            "w32": rng.standard_normal((64, 48)).astype(np.float32)}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    w = _weights()
    x = ak.input("x", (2, 96), "fp16")
    h = ak.relu(ak.matmul(x, ak.const(w["w16"])))
    y = ak.matmul(ak.cast(h, "fp32"), ak.const(w["w32"]))
    path = str(tmp_path_factory.mktemp("mmap") / "m.mlpackage")
    ak.save(ak.program({"y": y}), path)
    return path


def _blob_consts(prog):
    return [op.attrs["val"] for op in prog.main.ops
            if op.type == "const" and np.size(op.attrs["val"]) >= 64 * 48]


def _mapped(arr) -> bool:
    """Whether `arr`'s memory belongs to an mmap (following numpy's and memoryview's owners)."""
    base = arr
    while base is not None:
        if isinstance(base, mmap.mmap):
            return True
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return False


def test_loading_imports_neither_coremltools_nor_torch(package):
    code = (
        "import sys, json, numpy as np, anekit as ak\n"
        f"prog = ak.load({package!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('coremltools', 'torch'))\n"
        "print(json.dumps({'heavy': heavy, 'ops': len(prog.main.ops)}))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["ops"] > 3


def test_weight_constants_are_read_only_views_of_the_mapped_file(package):
    prog = ak.load(package)
    consts = _blob_consts(prog)
    assert sorted(c.dtype.name for c in consts) == ["float16", "float32"]
    for c in consts:
        assert _mapped(c) and not c.flags.writeable and not c.flags.owndata
        with pytest.raises(ValueError):
            c.flags.writeable = True          # a view of a read-only map cannot be made writable


def test_weight_constants_equal_what_coremltools_reads(package):
    from coremltools.libmilstoragepython import _BlobStorageReader
    from coremltools.proto import Model_pb2
    spec = Model_pb2.Model()
    with open(os.path.join(package, SPEC), "rb") as f:
        spec.ParseFromString(f.read())
    fn = spec.mlProgram.functions["main"]
    offsets = {op.outputs[0].name: op.attributes["val"].blobFileValue.offset
               for op in fn.block_specializations[fn.opset].operations
               if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue"}
    reader = _BlobStorageReader(os.path.join(package, WEIGHTS))
    prog = ak.load(package)
    seen = 0
    for op in prog.main.ops:
        if op.type == "const" and op.outputs[0].name in offsets:
            arr = op.attrs["val"]
            read = reader.read_fp16_data if arr.dtype == np.float16 else reader.read_float_data
            theirs = np.asarray(read(offsets[op.outputs[0].name]))
            if arr.dtype == np.float16:
                theirs = theirs.view(np.float16)     # coremltools hands fp16 back as uint16 bits
            np.testing.assert_array_equal(arr.reshape(-1), theirs)
            seen += 1
    assert seen == 2
    assert sorted(tuple(a.shape) for a in _blob_consts(prog)) == [(64, 48), (96, 64)]


def test_mapped_program_runs_and_outlives_the_package_files(package, tmp_path):
    """The simulator computes with the views (it never writes into a constant: a write would
    raise on the read-only map) and the map lives as long as the program, not the files."""
    import shutil
    copy = str(tmp_path / "copy.mlpackage")
    shutil.copytree(package, copy)
    prog = ak.load(copy)
    shutil.rmtree(copy)                      # the mapping keeps the unlinked file's pages
    x = np.random.default_rng(1).standard_normal((2, 96)).astype(np.float16)
    w = _weights()
    h = np.maximum(x.astype(np.float64) @ w["w16"].astype(np.float64), 0)
    ref = h @ w["w32"].astype(np.float64)
    with ak.compile(prog, backend="sim", target="m4") as exe:
        got = np.asarray(exe(x=x)["y"], np.float64)
        assert np.abs(got - ref).max() <= 2e-2 * np.abs(ref).max()    # fp16 matmul + relu
        np.testing.assert_array_equal(np.asarray(exe(x=x)["y"], np.float64), got)  # constants unchanged


def test_own_modules_and_coremltools_share_a_process(package):
    """Same bytes, both schemas, one process: distinct descriptor names, same reading."""
    from coremltools.proto import Model_pb2 as theirs

    from anekit.coreml.proto import Model_pb2 as ours
    with open(os.path.join(package, SPEC), "rb") as f:
        data = f.read()
    a, b = ours.Model(), theirs.Model()
    a.ParseFromString(data)
    b.ParseFromString(data)
    assert ours.Model.DESCRIPTOR.full_name != theirs.Model.DESCRIPTOR.full_name
    assert a.mlProgram.SerializeToString(deterministic=True) == b.mlProgram.SerializeToString(deterministic=True)
    assert a.description.SerializeToString(deterministic=True) == b.description.SerializeToString(deterministic=True)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def test_other_model_kinds_keep_their_names_and_bytes():
    """A neural-network Model parses with the pruned schema: its kind is named, its bytes kept."""
    from coremltools.proto import Model_pb2 as theirs

    from anekit.coreml.proto import Model_pb2 as ours
    spec = theirs.Model(specificationVersion=4)
    spec.neuralNetwork.layers.add(name="dense")
    data = spec.SerializeToString()
    mine = ours.Model()
    mine.ParseFromString(data)
    assert mine.WhichOneof("Type") == "neuralNetwork"
    assert mine.SerializeToString() == data


def test_saving_over_the_loaded_package_keeps_its_weights(package, tmp_path):
    """ak.save writes a new package and replaces the folder, so the file the constants map is
    never rewritten under them: saving a program over its own source round-trips."""
    import shutil
    copy = str(tmp_path / "own.mlpackage")
    shutil.copytree(package, copy)
    prog = ak.load(copy)
    ak.save(prog, copy)
    w = _weights()
    for loaded in (prog, ak.load(copy)):
        by_shape = {a.shape: a for a in _blob_consts(loaded)}
        np.testing.assert_array_equal(by_shape[(96, 64)], w["w16"])
        np.testing.assert_array_equal(by_shape[(64, 48)], w["w32"])


def _fields(desc):
    return sorted((f.name, f.number, f.type, f.message_type.name if f.message_type else None,
                   f.enum_type.name if f.enum_type else None) for f in desc.fields)


def _messages(desc, prefix=""):
    for m in desc.message_types_by_name.values() if hasattr(desc, "message_types_by_name") else desc.nested_types:
        yield prefix + m.name, m
        yield from _messages(m, prefix + m.name + ".")


def test_generated_schema_matches_coremltools():
    """The committed modules are coremltools' schema (tools/gen_coreml_proto.py): every message,
    field number, type and enum value of MIL and FeatureTypes, and of the kept Model messages."""
    from coremltools.proto import FeatureTypes_pb2 as ct_ft
    from coremltools.proto import MIL_pb2 as ct_mil
    from coremltools.proto import Model_pb2 as ct_model

    from anekit.coreml.proto import FeatureTypes_pb2, MIL_pb2, Model_pb2
    for ours, theirs in ((MIL_pb2, ct_mil), (FeatureTypes_pb2, ct_ft)):
        mine = dict(_messages(ours.DESCRIPTOR))
        assert len(mine) > 5 and set(mine) == set(dict(_messages(theirs.DESCRIPTOR)))
        for name, m in _messages(theirs.DESCRIPTOR):
            assert _fields(mine[name]) == _fields(m), name
        assert ({e.name: [(v.name, v.number) for v in e.values] for e in ours.DESCRIPTOR.enum_types_by_name.values()}
                == {e.name: [(v.name, v.number) for v in e.values] for e in theirs.DESCRIPTOR.enum_types_by_name.values()})
    mine = dict(_messages(Model_pb2.DESCRIPTOR))
    for name, m in _messages(ct_model.DESCRIPTOR):
        if name.split(".")[0] in ("FeatureDescription", "Metadata", "FunctionDescription", "ModelDescription"):
            assert _fields(mine[name]) == _fields(m), name
    kinds = {f.name: f.number for f in ct_model.Model.DESCRIPTOR.oneofs_by_name["Type"].fields}
    assert {f.name: f.number for f in Model_pb2.Model.DESCRIPTOR.oneofs_by_name["Type"].fields} == kinds
    assert ({f.name: f.number for f in Model_pb2.Model.DESCRIPTOR.fields if f.containing_oneof is None}
            == {f.name: f.number for f in ct_model.Model.DESCRIPTOR.fields if f.containing_oneof is None})
