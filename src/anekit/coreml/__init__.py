"""Core ML interop: load .mlpackage / .mlmodelc models into anekit, save programs as .mlpackage.

    prog = anekit.coreml.load_package("model.mlpackage")     # or ak.load(...)
    anekit.coreml.save_package(prog, "out.mlpackage")         # or ak.save(...)

Reading a package needs only the `protobuf` package (anekit's own generated modules in
`anekit.coreml.proto`, the `coreml-load` extra) and memory-maps its weight.bin; writing one
needs coremltools (the `coreml` extra), imported only then. Compiled .mlmodelc folders are MIL text and need nothing.
"""
from .load import load_compiled, load_package, parse_model, program_from_model
from .writer import model_from_program, save_package

__all__ = ["load_package", "load_compiled", "parse_model", "program_from_model", "save_package",
           "model_from_program"]
