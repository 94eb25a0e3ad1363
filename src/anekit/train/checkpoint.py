"""Training checkpoints: one safetensors file, written atomically, read with every field checked.

Format (docs/training.md): the safetensors layout (an 8-byte little-endian header length, a
JSON header naming each tensor's dtype, shape and byte range, then the raw little-endian
bytes), with anekit's metadata as one JSON string under `__metadata__["anekit"]`. Nothing in
it can execute code (no pickle). The file is readable by the `safetensors` package, but this
module needs only numpy: the header length, every offset and every size are checked against
the file size before any tensor is allocated.

Writing goes to a temporary file in the same folder, is fsynced, then renamed over the old
checkpoint (and the folder fsynced), so a crash leaves either the old or the new file whole.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

FILE_NAME = "checkpoint.safetensors"
FORMAT = "anekit-checkpoint"
VERSION = 1
MAX_HEADER_BYTES = 16 << 20
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64,
           "U8": np.uint8, "BOOL": np.bool_}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def write(path, tensors: dict[str, np.ndarray], meta: dict) -> Path:
    """Write `tensors` and the JSON-able `meta` to `path` atomically."""
    path = Path(path)
    header: dict = {"__metadata__": {"format": FORMAT, "version": str(VERSION),
                                     "anekit": json.dumps(meta, sort_keys=True, allow_nan=False)}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        code = _CODES.get(a.dtype)
        if code is None:
            raise CheckpointError(f"tensor '{name}' has dtype {a.dtype}, which checkpoints do not store")
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)                 # the data section starts 8-aligned
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return                                  # platforms without directory fds
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, meta) from a checkpoint file; CheckpointError naming what is wrong, never a
    partial result."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated ({size} bytes; a checkpoint starts with an 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(f"{path}: header length {n} does not fit the {size}-byte file (truncated or not a checkpoint)")
        try:
            header = json.loads(f.read(n).decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{path}: header is not valid JSON ({e})") from None
        entries, meta = _check_header(path, header, size - 8 - n)
        data = f.read(size - 8 - n)
    if len(data) != size - 8 - n:
        raise CheckpointError(f"{path}: file changed while reading")
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=math.prod(shape), offset=begin)
        tensors[name] = arr.astype(dtype).reshape(shape)
    return tensors, meta


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _check_header(path, header, data_len: int):
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    md = header.get("__metadata__")
    if not isinstance(md, dict) or md.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an anekit checkpoint (no '{FORMAT}' metadata)")
    if md.get("version") != str(VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {md.get('version')!r}; this anekit reads {VERSION}")
    try:
        meta = json.loads(md.get("anekit", ""), parse_constant=_no_constant)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata is not a JSON object")
    entries, spans = {}, []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(e, dict) and e.get("dtype") in _DTYPES and isinstance(e.get("shape"), list)
              and all(type(s) is int and s >= 0 for s in e["shape"]) and isinstance(e.get("data_offsets"), list)
              and len(e["data_offsets"]) == 2 and all(type(o) is int for o in e["data_offsets"]))
        if not ok:
            raise CheckpointError(f"{path}: malformed entry for tensor '{name}'")
        dtype, shape = _DTYPES[e["dtype"]], tuple(e["shape"])
        begin, end = e["data_offsets"]
        want = math.prod(shape) * np.dtype(dtype).itemsize
        if not 0 <= begin <= end <= data_len or end - begin != want:
            raise CheckpointError(f"{path}: tensor '{name}' bytes [{begin}, {end}) do not fit its shape "
                                  f"{list(shape)} ({want} bytes) within the {data_len}-byte data section "
                                  "(truncated or corrupt)")
        entries[name] = (dtype, shape, begin, end)
        spans.append((begin, end, name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise CheckpointError(f"{path}: tensor '{name}' {'overlaps another' if begin < pos else 'leaves a gap'} "
                                  "in the data section (corrupt)")
        pos = end
    if pos != data_len:
        raise CheckpointError(f"{path}: {data_len - pos} bytes after the last tensor (corrupt)")
    return entries, meta
