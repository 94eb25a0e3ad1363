"""Model folders (`model.mil` + `weights/weight.bin`), BLOBFILE path policy, and `parse`.

Path policy: a BLOBFILE path must be `@model_path/<relative path>` naming a file inside the
model folder. Refused with PathEscapeError: any other prefix, absolute paths, `..`
components, backslashes or NUL, and (for folders) a path whose real location, after
following symlinks, lies outside the folder's real location. `.` and repeated `/` are
normalized away. Blob metadata is validated by the weight.bin reader (anekit.mil.blobs)
before anything is read, so a blob larger than its file is a WeightFileError.

Weights are not copied on load: byte-aligned dtypes (fp16, fp32, (u)int8/16/32) come back as
read-only numpy views into a memory map of weight.bin (or into the bytes given to `parse`);
sub-byte, bf16 dtypes are decoded into new arrays.
"""
from __future__ import annotations

import math
import mmap
import os
from typing import Mapping

import numpy as np

from .._files import ensure_inside, open_regular, read_regular
from .._paths import as_path
from ..errors import MILParseError, ModelFormatError, PathEscapeError, WeightFileError
from ..ir.graph import Program
from .blobs import BlobFile
from .printer import MODEL_PATH_PREFIX, WEIGHT_FILE, render
from .parser import parse_program

MODEL_FILE = "model.mil"
MAX_MIL_BYTES = 2 << 30     # MIL text is parsed in memory; weights live in weight.bin

def blob_relpath(path: str) -> str:
    """The folder-relative path a BLOBFILE path names, or PathEscapeError (see module doc)."""
    if not isinstance(path, str):
        raise PathEscapeError(f"BLOBFILE path must be a string, got {type(path).__name__}")
    if not path.startswith(MODEL_PATH_PREFIX):
        if path.startswith("/"):
            raise PathEscapeError(f"BLOBFILE path {path!r} is absolute; it must be {MODEL_PATH_PREFIX}<path in the model folder>")
        raise PathEscapeError(f"BLOBFILE path {path!r} must start with {MODEL_PATH_PREFIX}")
    rel = path[len(MODEL_PATH_PREFIX):]
    if rel.startswith("/"):
        raise PathEscapeError(f"BLOBFILE path {path!r} is absolute after {MODEL_PATH_PREFIX}")
    if "\\" in rel or "\0" in rel:
        raise PathEscapeError(f"BLOBFILE path {path!r} contains a backslash or NUL")
    parts = rel.split("/")
    if ".." in parts:
        raise PathEscapeError(f"BLOBFILE path {path!r} has a '..' component that would leave the model folder")
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        raise PathEscapeError(f"BLOBFILE path {path!r} names no file")
    return "/".join(parts)


def inside_folder(root: str, rel: str) -> str:
    """The real path of `rel` under `root`, refusing one that a symlink leads outside."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *rel.split("/")))
    if os.path.commonpath([real_root, real]) != real_root:
        raise PathEscapeError(f"BLOBFILE path '{MODEL_PATH_PREFIX}{rel}' resolves to {real}, outside the model folder {real_root}")
    return real


class WeightResolver:
    """Reads BLOBFILE constants from a model folder or from {relative path: bytes}."""

    def __init__(self, weights):
        self._files: dict[str, tuple[BlobFile, object]] = {}
        if isinstance(weights, Mapping):
            self._root = None
            self._given: dict[str, object] = {}
            for key, data in weights.items():
                rel = blob_relpath(key if str(key).startswith(MODEL_PATH_PREFIX) else MODEL_PATH_PREFIX + str(key))
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise WeightFileError(f"weights[{key!r}] must be bytes, got {type(data).__name__}")
                self._given[rel] = data
        elif isinstance(weights, (str, os.PathLike)):
            self._root = as_path(weights, "weights")
            if not os.path.isdir(self._root):
                raise ModelFormatError(f"weights folder {self._root} does not exist")
        else:
            raise WeightFileError(f"weights must be a {{path: bytes}} dict or a folder, got {type(weights).__name__}")

    def _open(self, rel: str) -> tuple[BlobFile, object]:
        if rel in self._files:
            return self._files[rel]
        if self._root is None:
            if rel not in self._given:
                raise WeightFileError(f"no weight file '{rel}' among the given weights ({', '.join(sorted(self._given)) or 'none'})")
            buffer = self._given[rel]
        else:
            real = inside_folder(self._root, rel)
            buffer = _map_file(real)
        entry = (BlobFile(memoryview(buffer)), buffer)
        self._files[rel] = entry
        return entry

    def __call__(self, path: str, offset: int, dtype: str, shape: tuple) -> np.ndarray:
        rel = blob_relpath(path)
        blobs, _ = self._open(rel)
        info = blobs.info(offset)
        if info.dtype != dtype:
            raise WeightFileError(f"{rel}: blob at offset {offset} holds {info.dtype}, the MIL type says {dtype}")
        count = math.prod(shape)
        if info.count != count:
            raise WeightFileError(f"{rel}: blob at offset {offset} holds {info.count} {dtype} values, "
                                  f"shape {list(shape)} needs {count}")
        return blobs.view(offset, dtype, shape)


def _map_file(path: str):
    handle, size = open_regular(path, WeightFileError, "weight file")    # no FIFO or device
    try:
        with handle:
            if size == 0:
                return b""   # mmap refuses empty files; the reader reports the truncation
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as err:
        raise WeightFileError(f"cannot open weight file {path}: {err.strerror}") from None


def parse(text: str, weights=None) -> Program:
    """Parse MIL text. `weights`: None, {relative path: bytes} (as `emit` returns), or the
    model folder that `@model_path/` refers to."""
    return parse_program(text, None if weights is None else WeightResolver(weights))


def load(path) -> Program:
    """Parse a model folder (its model.mil) or a .mil file; BLOBFILE paths resolve against
    the folder holding model.mil."""
    path = as_path(path)
    if os.path.isdir(path):
        mil_path, folder = os.path.join(path, MODEL_FILE), path
        if not os.path.lexists(mil_path):
            raise ModelFormatError(f"{path} is a folder without {MODEL_FILE}")
        ensure_inside(path, mil_path, f"{MODEL_FILE} of {path}")     # a symlink may not lead outside
    elif os.path.lexists(path):
        mil_path, folder = path, os.path.dirname(os.path.abspath(path))
    else:
        raise ModelFormatError(f"{path}: no such model folder or .mil file")
    raw = read_regular(mil_path, ModelFormatError, "MIL file", MAX_MIL_BYTES)
    if raw.startswith(b"\xef\xbb\xbf"):   # a UTF-8 byte-order mark some editors add
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        good = raw[:err.start].decode("utf-8")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        raise MILParseError(f"invalid UTF-8 byte 0x{raw[err.start]:02x}", line, column, good, mil_path) from None
    return parse_program(text, WeightResolver(folder), path=mil_path)


def save(prog: Program, folder, dialect: str = "ios18") -> None:
    """Write folder/model.mil and, when the program has blobs, folder/weights/weight.bin
    (streamed from the program's arrays, not built in memory).

    Each file is written beside its destination and then renamed over it, so a program
    loaded from this same folder (whose weights are views of the old weight.bin's memory
    map) stays valid while it is being saved."""
    text, blobs = render(prog, dialect)
    folder = as_path(folder, "folder")
    weight_path = os.path.join(folder, *WEIGHT_FILE.split("/"))
    try:
        os.makedirs(os.path.dirname(weight_path) if blobs.count else folder, exist_ok=True)
    except OSError as err:
        raise ModelFormatError(f"cannot create model folder {folder}: {err.strerror or err}") from None
    # Writes stay in the real folder: a `weights/` symlink may not carry them elsewhere.
    if blobs.count:
        ensure_inside(folder, os.path.dirname(weight_path), f"weights folder of {folder}")
        _replace(weight_path, blobs.write)
    _replace(os.path.join(folder, MODEL_FILE), lambda tmp: _write_text(tmp, text))


def _write_text(path: str, text: str):
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _replace(path: str, write):
    tmp = f"{path}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):
        os.remove(tmp)      # a stale file, or a symlink someone planted: never write through it
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise ModelFormatError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


__all__ = ["blob_relpath", "inside_folder", "WeightResolver", "parse", "load", "save", "MODEL_FILE"]
