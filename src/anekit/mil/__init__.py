"""MIL text and weight.bin: emit a Program in either dialect, parse it back, save/load folders.

    text, files = anekit.mil.emit(prog, dialect="ios18")   # files: {"weights/weight.bin": bytes}
    prog = anekit.mil.parse(text, weights=files)            # or weights="model_folder"
    anekit.mil.save(prog, "folder", dialect="ios16")         # folder/model.mil + weights/weight.bin
    prog = anekit.mil.load("folder")                          # or a path to a .mil file
    data, offsets = anekit.mil.write_blobs([arr1, arr2])

See docs/mil.md for the dialects, what the parser accepts and the BLOBFILE path policy.
"""
from . import blobs, emit as _emit_module, folder, lexer, parse as _parse_module
from .blobs import Blob, BlobFile, BlobWriter, read_blob, write_blobs
from .emit import DIALECTS, format_float, render
from .folder import MODEL_FILE, blob_relpath, load, save

# The public functions share their modules' names; bind them last so they win.
emit = _emit_module.emit
parse = folder.parse
parse_program = _parse_module.parse_program

__all__ = ["emit", "parse", "save", "load", "render", "parse_program", "write_blobs", "Blob", "BlobFile",
           "BlobWriter", "read_blob", "DIALECTS", "format_float", "blob_relpath", "MODEL_FILE",
           "blobs", "folder", "lexer"]
