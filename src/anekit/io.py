"""`ak.load` / `ak.save`: one entry point for every model format anekit reads and writes.

    prog = ak.load("model.mlpackage")          # Core ML package (protobuf + weight.bin)
    prog = ak.load("model.mlmodelc")           # compiled Core ML model (model.mil inside)
    prog = ak.load("folder")                   # MIL folder: model.mil + weights/weight.bin
    prog = ak.load("model.mil")                # MIL text file (weights beside it)
    ak.save(prog, "out.mlpackage")             # via coremltools' package writer
    ak.save(prog, "folder") / ak.save(prog, "out.mil")
"""
from __future__ import annotations

import os

from . import dialects
from ._files import ensure_inside
from ._paths import as_path
from .coreml import load_compiled, load_package, save_package
from .coreml.load import select_function
from .coreml.shapes import check_static
from .errors import ModelFormatError
from .ir.graph import Program
from .mil import folder as mil_folder
from .mil.printer import WEIGHT_FILE, render


def kind_of(path: str) -> str:
    """"mlpackage", "mlmodelc", "folder" or "mil" for an existing model path."""
    p = as_path(path).rstrip("/\\")
    ext = os.path.splitext(p)[1].lower()
    if not os.path.exists(p):
        raise ModelFormatError(f"{p}: no such file or folder")
    if os.path.isdir(p):
        if ext == ".mlpackage":
            return "mlpackage"
        if ext == ".mlmodelc":
            return "mlmodelc"
        if os.path.isfile(os.path.join(p, "Manifest.json")):
            return "mlpackage"          # a package folder that was renamed
        return "folder"
    if ext == ".mlmodel":
        raise ModelFormatError(f"{p}: a single-file .mlmodel is a neural-network model; anekit loads "
                               f"ML programs (.mlpackage, .mlmodelc, MIL)")
    return "mil"


def load(path, function: str | None = None, shapes: dict | None = None) -> Program:
    """Load a model: .mlpackage, .mlmodelc, MIL folder or .mil file.

    `function` picks one function of a multifunction model; by default every function is
    loaded with the model's default function first (it is `prog.main`). `shapes` pins inputs
    a Core ML model declares flexible (RangeDim, EnumeratedShapes): `{"x": (1, 3, 224, 224)}`,
    checked against the declared range or enumeration."""
    kind = kind_of(path)
    if kind == "mlpackage":
        return load_package(path, function, shapes)
    if kind == "mlmodelc":
        return load_compiled(path, function, shapes)
    prog = mil_folder.load(path)
    return check_static(select_function(prog, function, prog.main.name, os.fspath(path)), shapes, os.fspath(path))


def save(prog: Program, path) -> str:
    """Save `prog`: `.mlpackage` through coremltools, otherwise as MIL text (`.mil` file, or a
    folder holding model.mil and weights/weight.bin). Returns the path written."""
    if not isinstance(prog, Program):
        raise ModelFormatError(f"save expects an anekit Program, got {type(prog).__name__}")
    p = as_path(path).rstrip("/\\")
    ext = os.path.splitext(p)[1].lower()
    if ext == ".mlpackage":
        return save_package(prog, p)
    if ext in (".mlmodelc", ".mlmodel"):
        raise ModelFormatError(f"{p}: anekit writes .mlpackage (Apple's compiler makes .mlmodelc from it)")
    if ext == ".mil":
        return _save_mil_file(prog, p, mil_folder)
    if ext and not os.path.isdir(p):    # "x.onnx": a format anekit does not write, not a new folder
        raise ModelFormatError(f"{p}: anekit does not write {ext} files; save as .mlpackage, .mil, or a "
                               f"folder (a path without an extension, or an existing folder)")
    mil_folder.save(prog, p, dialect=dialects.of_program(prog))
    return p


def _save_mil_file(prog: Program, path: str, mil_folder) -> str:
    """A .mil file; its weights (if any) go to weights/weight.bin beside it, where
    `@model_path/` points when the file is loaded back."""
    text, blobs = render(prog, dialects.of_program(prog))
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        if blobs.count:
            os.makedirs(os.path.join(folder, os.path.dirname(WEIGHT_FILE)), exist_ok=True)
    except OSError as e:
        raise ModelFormatError(f"cannot write {path}: {e.strerror or e}") from None
    if blobs.count:     # a `weights/` symlink may not carry the weights out of the folder
        ensure_inside(folder, os.path.join(folder, os.path.dirname(WEIGHT_FILE)), f"weights folder beside {path}")
        blobs.write(os.path.join(folder, *WEIGHT_FILE.split("/")))
    return path
