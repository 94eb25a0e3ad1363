"""Loading Core ML models: .mlpackage (protobuf + weight.bin) and compiled .mlmodelc (MIL text)."""
from __future__ import annotations

import json
import os

from .._files import read_regular
from ..errors import AnekitError, ModelFormatError
from ..ir.graph import Program
from ..mil import folder as mil_folder
from . import _deps, package, shapes as flex
from .reader import choose_functions, read_program


def parse_model(data: bytes, source: str = "model"):
    """Decode Model protobuf bytes; anything protobuf refuses is a ModelFormatError."""
    model_pb2, _ = _deps.reader_protos()
    model = model_pb2.Model()
    try:
        model.ParseFromString(data)
    except _deps.decode_error() as e:
        raise ModelFormatError(f"{source}: not a Core ML model specification (protobuf: {e})") from None
    except (ValueError, RuntimeError, TypeError, OverflowError) as e:  # the C++ backend's other refusals
        raise ModelFormatError(f"{source}: not a Core ML model specification ({type(e).__name__}: {e})") from None
    return model


def program_from_model(model, weights_dir: str, function: str | None = None, source: str = "model",
                       confine: str | None = None, shapes: dict | None = None) -> Program:
    """An anekit Program from a Model protobuf whose `@model_path/` is `weights_dir`; weight
    files must resolve inside `confine` (default `weights_dir`); `shapes` pins flexible inputs."""
    _, mil_pb2 = _deps.reader_protos()
    with package.Weights(weights_dir, confine) as weights:
        try:
            return read_program(model, mil_pb2, weights, function, source, shapes)
        except RecursionError:
            raise ModelFormatError(f"{source}: nesting too deep") from None


def load_package(path, function: str | None = None, shapes: dict | None = None) -> Program:
    """Load an .mlpackage; `function` picks one function of a multifunction package (default:
    every function, the package's default one first so that `prog.main` is it); `shapes`
    ({input: shape}) pins inputs declared with RangeDim or enumerated shapes."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ModelFormatError(f"{path}: no such .mlpackage folder")
    spec_path = package.model_spec_path(path)
    model = parse_model(package.read_bytes(spec_path), spec_path)
    # spec_path is real and inside the package, so weights confined to its folder are too
    return program_from_model(model, os.path.dirname(spec_path), function, spec_path, shapes=shapes)


def load_compiled(path, function: str | None = None, shapes: dict | None = None) -> Program:
    """Load a compiled .mlmodelc folder through its model.mil (and weights/weight.bin); its
    shapes are static, so `shapes` may only restate them."""

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ModelFormatError(f"{path}: no such .mlmodelc folder")
    if not os.path.lexists(os.path.join(path, mil_folder.MODEL_FILE)):
        raise ModelFormatError(f"{path}: no {mil_folder.MODEL_FILE} inside (only ML program models "
                               f"compile to MIL text; neural-network models are not supported)")
    prog = mil_folder.load(path)
    default = _compiled_default_function(path, prog)
    return flex.check_static(select_function(prog, function, default, path), shapes, path)


def _compiled_default_function(path: str, prog: Program) -> str:
    """The default function recorded in metadata.json when present, else main / the first."""
    meta = os.path.join(path, "metadata.json")
    if os.path.isfile(meta):
        try:
            package.inside(path, "metadata.json", f"{path} metadata")
            doc = json.loads(read_regular(meta, ModelFormatError, "metadata", package.MAX_MANIFEST_BYTES).decode("utf-8"))
            entries = doc if isinstance(doc, list) else [doc]
            for entry in entries:
                name = entry.get("defaultFunctionName") if isinstance(entry, dict) else None
                if isinstance(name, str) and name in prog.functions:
                    return name
        except (ValueError, UnicodeDecodeError, OSError, RecursionError, AnekitError):
            pass     # metadata is optional; a broken file does not stop the program loading
    return prog.main.name


def select_function(prog: Program, function: str | None, default: str, source: str) -> Program:
    """`prog` with the functions `choose_functions` picks."""
    keep = choose_functions(list(prog.functions), function, default, source)
    return Program({n: prog.functions[n] for n in keep}, version=prog.version, attributes=dict(prog.attributes),
                   dialect=prog.dialect)


__all__ = ["load_package", "load_compiled", "parse_model", "program_from_model", "select_function"]
