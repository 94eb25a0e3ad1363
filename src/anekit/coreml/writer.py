"""An anekit Program -> a Core ML ML-program protobuf and an .mlpackage coremltools loads.

The program is written as coremltools writes converted models: one const op per constant
(arrays of 10 or more elements go to weights/weight.bin, written by anekit.mil.blobs, the
rest inline), every op argument bound by name, op names in the `name` attribute, and a model
description listing each function's inputs, outputs and states. The package folder itself
(Manifest.json and layout) is made by coremltools' own package writer.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile

import numpy as np

from .. import __version__
from ..errors import AnekitError, ModelFormatError
from ..ir.dtypes import from_numpy
from ..ir.graph import Function, Program, Tensor
from ..mil.blobs import BlobWriter
from ..mil.printer import inlined_by_older, older_spelling
from . import _deps, opsets, package, values

WEIGHT_FILE = "@model_path/weights/weight.bin"
BLOB_MIN_ELEMENTS = 10            # coremltools' threshold for moving a constant to weight.bin
_BLOB_DTYPES = ("fp16", "fp32", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                "int4", "uint1", "uint2", "uint3", "uint4", "uint6")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FEATURE_ARRAY_TYPES = {"fp16": "FLOAT16", "fp32": "FLOAT32", "int32": "INT32"}


def model_from_program(prog: Program) -> tuple[object, BlobWriter]:
    """(Model protobuf, weight.bin writer) for `prog`; nothing is written to disk."""
    if not isinstance(prog, Program):
        raise ModelFormatError(f"save expects an anekit Program, got {type(prog).__name__}")
    model_pb2, mil_pb2 = _deps.protos()
    blobs = BlobWriter()
    model = model_pb2.Model()
    used_opsets = []
    for name, fn in prog.functions.items():
        opset = opsets.opset_for(fn.opset, prog.dialect)
        used_opsets.append(opset)
        _FunctionWriter(mil_pb2, blobs, fn, opset).write(model.mlProgram.functions[name])
    model.mlProgram.version = 1
    build = prog.attributes.get("buildInfo") if isinstance(prog.attributes.get("buildInfo"), dict) else None
    _build_info(mil_pb2, model.mlProgram, build or {"anekit-version": _version()})
    multi = len(prog.functions) > 1
    spec_version = opsets.spec_version(used_opsets)
    if multi:
        spec_version = max(spec_version, opsets.OPSETS["CoreML8"][1])   # multifunction is iOS 18+
    model.specificationVersion = spec_version
    _describe(model_pb2, model.description, prog.main)
    if multi:
        model.description.defaultFunctionName = prog.main.name
        for fn in prog.functions.values():
            fd = model.description.functions.add()
            fd.name = fn.name
            _describe(model_pb2, fd, fn)
    return model, blobs


def save_package(prog: Program, path) -> str:
    """Write `prog` as the .mlpackage `path` (an existing package there is replaced)."""
    path = os.fspath(path).rstrip("/\\")
    if not path.endswith(".mlpackage"):
        raise ModelFormatError(f"{path}: a Core ML package path must end in .mlpackage")
    if os.path.exists(path) and not (os.path.isdir(path) and (
            os.path.isfile(os.path.join(path, package.MANIFEST)) or not os.listdir(path))):
        raise ModelFormatError(f"{path} exists and is not a Core ML package; refusing to overwrite it")
    try:
        model, blobs = model_from_program(prog)
    except UnicodeEncodeError as e:     # protobuf strings are UTF-8: a lone surrogate cannot go in
        bad = e.object[e.start] if isinstance(e.object, str) else "?"
        raise ModelFormatError(f"{path}: the name or string {e.object!r} holds {bad!r} at index {e.start}, "
                               f"a lone surrogate that a Core ML package (UTF-8) cannot hold") from None
    ct = _deps.coremltools()
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".anekit-", dir=parent)
    except OSError as e:
        raise ModelFormatError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        weights = os.path.join(work, "weights")
        os.makedirs(weights)
        blobs.write(os.path.join(weights, "weight.bin"))
        staged = os.path.join(work, os.path.basename(path))
        try:
            ct.utils.save_spec(model, staged, weights_dir=weights)
        except Exception as e:   # coremltools raises plain Exception subclasses of its own
            raise ModelFormatError(f"coremltools could not write {path}: {e}") from None
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(staged, path)
    except OSError as e:
        raise ModelFormatError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _version() -> str:
    return __version__


def _build_info(mil_pb2, program, info: dict) -> None:
    value = program.attributes["buildInfo"]
    value.type.dictionaryType.keyType.CopyFrom(values.make_tensor_type(mil_pb2, "string", ()))
    value.type.dictionaryType.valueType.CopyFrom(values.make_tensor_type(mil_pb2, "string", ()))
    for k, v in info.items():
        kv = value.immediateValue.dictionary.values.add()
        kv.key.CopyFrom(values.encode_immediate(mil_pb2, str(k), "string"))
        kv.value.CopyFrom(values.encode_immediate(mil_pb2, str(v), "string"))


def _describe(model_pb2, desc, fn: Function) -> None:
    """Core ML feature descriptions of `fn`'s inputs, states and outputs."""
    states = set(fn.states)
    for t in fn.inputs:
        fd = desc.state.add() if t.name in states else desc.input.add()
        fd.name = t.name
        arr = fd.type.stateType.arrayType if t.name in states else fd.type.multiArrayType
        _array_type(model_pb2, arr, t, f"function '{fn.name}' input")
    for t in fn.outputs:
        fd = desc.output.add()
        fd.name = t.name
        _array_type(model_pb2, fd.type.multiArrayType, t, f"function '{fn.name}' output")


def _array_type(model_pb2, arr, t: Tensor, what: str) -> None:
    if t.dtype not in _FEATURE_ARRAY_TYPES:
        raise ModelFormatError(f"{what} '{t.name}' has dtype {t.dtype}; Core ML model inputs and outputs "
                               f"are {', '.join(_FEATURE_ARRAY_TYPES)} (cast it first)")
    arr.shape.extend(t.shape)
    arr.dataType = model_pb2.ArrayFeatureType.ArrayDataType.Value(_FEATURE_ARRAY_TYPES[t.dtype])


class _FunctionWriter:
    def __init__(self, mil_pb2, blobs: BlobWriter, fn: Function, opset: str):
        self.pb, self.blobs, self.fn, self.opset = mil_pb2, blobs, fn, opset
        self.dialect = opsets.tag_for(opset, "writing")      # ios15 .. ios18: which spelling each op takes
        self.where = f"function '{fn.name}'"
        self.defined: dict[int, str] = {}
        self.names: set[str] = set()

    def _define(self, t: Tensor, where: str) -> str:
        name = t.name
        if not isinstance(name, str) or not _IDENT.match(name):
            raise ModelFormatError(f"{where}: '{name}' is not a valid MIL identifier")
        if name in self.names:
            raise ModelFormatError(f"{where}: the name '{name}' is defined twice")
        self.names.add(name)
        self.defined[id(t)] = name
        return name

    def _use(self, t: Tensor, where: str) -> str:
        if id(t) not in self.defined:
            raise ModelFormatError(f"{where}: uses '{t.name}' before it is defined")
        return self.defined[id(t)]

    def write(self, proto) -> None:
        fn = self.fn
        states = set(fn.states)
        for t in fn.inputs:
            nvt = proto.inputs.add()
            nvt.name = self._define(t, f"{self.where} input")
            vt = values.make_tensor_type(self.pb, t.dtype, t.shape)
            if t.name in states:
                nvt.type.stateType.wrappedType.CopyFrom(vt)
            else:
                nvt.type.CopyFrom(vt)
        proto.opset = self.opset
        block = proto.block_specializations[self.opset]
        inlined = inlined_by_older(fn, self.dialect)
        for index, op in enumerate(fn.ops):
            if id(op) in inlined:
                continue
            where = f"{self.where} op {index} ('{op.name}', type '{op.type}')"
            try:
                self._op(block.operations.add(), op, where)
            except ModelFormatError:
                raise
            except AnekitError as e:
                raise ModelFormatError(f"{where}: {e}") from None
        for t in fn.outputs:
            block.outputs.append(self._use(t, f"{self.where} output"))

    def _op(self, proto, op, where: str) -> None:
        proto.type = op.type
        name = op.name or (op.outputs[0].name if op.outputs else None)
        if not name:
            raise ModelFormatError(f"{where}: an op without a name")
        proto.attributes["name"].CopyFrom(values.encode_immediate(self.pb, name, "string"))
        # (an op newer than the opset without an older spelling is written as it is, as before)
        older = older_spelling(op, self.dialect, where) if op.spec.older_form is not None else None
        if older is not None:
            for key, arr in older.items():
                proto.attributes[key].CopyFrom(self._value(arr, from_numpy(arr.dtype)))
        elif op.type == "const":
            proto.attributes["val"].CopyFrom(self._const_value(op.outputs[0], where))
        else:
            for pname, v in op.inputs.items():
                arg = proto.inputs[pname]
                for t in (v if isinstance(v, tuple) else (v,)):
                    arg.arguments.add().name = self._use(t, f"{where} argument '{pname}'")
            for key, val in op.attrs.items():
                p = op.spec.param(key)
                if p is None or p.kind != "attr":
                    continue
                if isinstance(val, Function):
                    raise ModelFormatError(f"{where}: writing nested blocks (control flow) to a Core ML package is "
                                           f"not supported; save the program as MIL text")
                if isinstance(val, str):
                    proto.attributes[key].CopyFrom(values.encode_immediate(self.pb, val, "string"))
                else:
                    arr = np.asarray(val)
                    proto.attributes[key].CopyFrom(self._value(arr, from_numpy(arr.dtype)))
        for t in op.outputs:
            nvt = proto.outputs.add()
            nvt.name = self._define(t, where)
            nvt.type.CopyFrom(values.make_tensor_type(self.pb, t.dtype, t.shape))

    def _const_value(self, t: Tensor, where: str):
        val = t.const if t.const is not None else t.op.attrs.get("val")
        if val is None:
            raise ModelFormatError(f"{where}: a const without a value")
        if isinstance(val, str) or t.dtype == "string":
            return values.encode_immediate(self.pb, str(val), "string")
        return self._value(np.asarray(val), t.dtype)

    def _value(self, arr: np.ndarray, dtype: str):
        """A Value for `arr`: in weight.bin when large enough, else inline."""
        if dtype in _BLOB_DTYPES and arr.size >= BLOB_MIN_ELEMENTS:
            value = self.pb.Value()
            value.type.CopyFrom(values.make_tensor_type(self.pb, dtype, arr.shape))
            value.blobFileValue.fileName = WEIGHT_FILE
            value.blobFileValue.offset = self.blobs.add(arr, dtype)
            return value
        return values.encode_immediate(self.pb, arr, dtype)
