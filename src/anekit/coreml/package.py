"""Where things live inside an .mlpackage or .mlmodelc, resolved without leaving the folder.

An .mlpackage (docs/mil.md) holds `Manifest.json`, whose `rootModelIdentifier` names an item
whose `path` (relative to `Data/`) is the Model protobuf, normally
`Data/com.apple.CoreML/model.mlmodel`; weights referenced as `@model_path/weights/weight.bin`
live beside it (`Data/com.apple.CoreML/weights/weight.bin`). A compiled .mlmodelc holds
`model.mil` (MIL text) and `weights/weight.bin`. Every path taken from the package is checked
to stay inside it, symlinks resolved, before it is opened.
"""
from __future__ import annotations

import json
import os

from .._files import read_regular
from ..errors import DTypeError, ModelFormatError, PathEscapeError, WeightFileError
from ..mil.blobs import BlobFile

MANIFEST = "Manifest.json"
MODEL_PATH_PREFIX = "@model_path/"
MAX_MANIFEST_BYTES = 1 << 20
MAX_MODEL_BYTES = 2 << 30      # protobuf's own message limit


def inside(root: str, relative: str, what: str, confine: str | None = None) -> str:
    """`root/relative`, refusing absolute paths and anything that resolves outside `confine`
    (default `root`). Confine to the package itself: `root` may be a symlinked `Data/`."""
    if not isinstance(relative, str) or not relative:
        raise ModelFormatError(f"{what}: empty or non-string path {relative!r}")
    if "\x00" in relative:
        raise PathEscapeError(f"{what}: path {relative!r} contains a NUL byte")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise PathEscapeError(f"{what}: absolute path {relative!r} is not allowed inside a package")
    base = os.path.realpath(confine if confine is not None else root)
    full = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([base, full]) != base:
        raise PathEscapeError(f"{what}: path {relative!r} leaves {confine or root} (it resolves to {full})")
    return full


def read_manifest(pkg: str) -> dict:
    if not os.path.lexists(os.path.join(pkg, MANIFEST)):
        raise ModelFormatError(f"{pkg}: not a Core ML package: {MANIFEST} is missing")
    path = inside(pkg, MANIFEST, f"{pkg} manifest")      # a symlink may not lead outside
    raw = read_regular(path, ModelFormatError, "manifest", MAX_MANIFEST_BYTES)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:   # nesting bombs too
        raise ModelFormatError(f"{path}: not valid JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return doc


def model_spec_path(pkg: str) -> str:
    """The Model protobuf of an .mlpackage, found through its manifest."""
    doc = read_manifest(pkg)
    root_id = doc.get("rootModelIdentifier")
    items = doc.get("itemInfoEntries")
    if not isinstance(items, dict) or not isinstance(root_id, str) or not isinstance(items.get(root_id), dict):
        raise ModelFormatError(f"{pkg}/{MANIFEST}: rootModelIdentifier does not name an entry of itemInfoEntries")
    rel = items[root_id].get("path")
    path = inside(os.path.join(pkg, "Data"), rel, f"{pkg}/{MANIFEST} root model", confine=pkg)
    if not os.path.lexists(path):
        raise ModelFormatError(f"{pkg}: the model specification Data/{rel} is missing")
    return path


def read_bytes(path: str, limit: int = MAX_MODEL_BYTES) -> bytes:
    return read_regular(path, ModelFormatError, "model specification", limit)


class Weights:
    """Opens the weight files a program references (`@model_path/...`) below one folder."""

    def __init__(self, model_dir: str, confine: str | None = None):
        self.model_dir, self.confine = model_dir, confine     # confine: the package folder
        self._files: dict[str, BlobFile] = {}
        self._resolved: dict[str, str] = {}     # every const names the same file: resolve it once

    def resolve(self, file_name: str, where: str) -> str:
        if isinstance(file_name, str) and file_name in self._resolved:
            return self._resolved[file_name]
        if not isinstance(file_name, str) or not file_name.startswith(MODEL_PATH_PREFIX):
            if isinstance(file_name, str) and (os.path.isabs(file_name) or ".." in file_name.split("/")):
                raise PathEscapeError(f"{where}: weight path {file_name!r} leaves the model")
            raise ModelFormatError(f"{where}: weight path {file_name!r} must start with '{MODEL_PATH_PREFIX}'")
        path = inside(self.model_dir, file_name[len(MODEL_PATH_PREFIX):], f"{where}: weight path", self.confine)
        self._resolved[file_name] = path
        return path

    def read(self, file_name: str, offset: int, dtype: str, shape, where: str):
        """The blob as a read-only array: a view of the memory-mapped file where the stored
        bytes are a numpy layout (the map stays open while a view lives), decoded otherwise."""
        path = self.resolve(file_name, where)
        blobs = self._files.get(path)
        if blobs is None:
            if not os.path.lexists(path):
                raise WeightFileError(f"{where}: weight file {file_name} is missing "
                                      f"(looked for {os.path.relpath(path, self.model_dir)} in {self.model_dir})")
            blobs = self._files[path] = BlobFile(path)
        try:
            return blobs.view(offset, dtype=dtype, shape=shape)
        except (WeightFileError, DTypeError) as e:     # DTypeError: a dtype weight.bin cannot hold
            raise WeightFileError(f"{where}: {e}") from None

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
