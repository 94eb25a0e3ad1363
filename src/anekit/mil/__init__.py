"""MIL text and weight.bin: emit a Program in either dialect, parse it back, save/load folders.

    text, files = anekit.mil.emit(prog, dialect="ios18")   # files: {"weights/weight.bin": bytes}
    prog = anekit.mil.parse(text, weights=files)            # or weights="model_folder"
    anekit.mil.save(prog, "folder", dialect="ios16")         # folder/model.mil + weights/weight.bin
    prog = anekit.mil.load("folder")                          # or a path to a .mil file
    data, offsets = anekit.mil.write_blobs([arr1, arr2])

See docs/mil.md for the dialects, what the parser accepts and the BLOBFILE path policy.
"""
from . import blobs, folder, lexer, parser, printer
from .blobs import Blob, BlobFile, BlobWriter, read_blob, write_blobs
from .folder import MODEL_FILE, blob_relpath, load, parse, save
from .parser import parse_program
from .printer import DIALECTS, emit, format_float, render

__all__ = ["emit", "parse", "save", "load", "render", "parse_program", "write_blobs", "Blob", "BlobFile",
           "BlobWriter", "read_blob", "DIALECTS", "format_float", "blob_relpath", "MODEL_FILE",
           "blobs", "folder", "lexer", "parser", "printer"]
