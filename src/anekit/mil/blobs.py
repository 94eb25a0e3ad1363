"""weight.bin: the blob file that MIL's BLOBFILE(path=..., offset=...) constants point into.

Layout (docs/mil.md; guide ch. 7 and 25; the format coremltools' libmilstorage writes):

    file header, 64 bytes:  u32 count, u32 version = 2, zeros
    per blob, starting on a 64-byte boundary:
        metadata, 64 bytes: u32 sentinel 0xDEADBEEF, u32 dtype code, u64 size_in_bytes,
                            u64 data_offset (absolute), u64 padding_size_in_bits, 4 x u64 zero
        data, size_in_bytes bytes, right after the metadata
    zero bytes up to the next 64-byte boundary between blobs; the file end is not padded.

All integers are little-endian. A blob's "offset" (what MIL refers to) is its metadata offset.
Sub-byte values are bit-packed as described in anekit.ir.subbyte.

Writing: `write_blobs(items)` or the incremental `BlobWriter`. Items are numpy arrays
(float16 -> fp16, float32 -> fp32, int8, uint8, int16, uint16, int32, uint32), or an explicit
`(array, dtype)` pair / `Blob(array, dtype)` for the other dtypes:
  - sub-byte (uint1/2/3/4/6, int4): an integer or bool array, one element per value,
    each value within the dtype's range;
  - bf16: float input (rounded to nearest even) or uint16 raw bit patterns;
  - fp8e4m3 / fp8e5m2: float input (rounded to nearest even) or uint8 raw codes.
Byte-aligned arrays are referenced, not copied, until getvalue()/write(), so the one copy
made is the output itself; do not modify an added array before then.

Reading: `BlobFile(path_or_bytes)` (memory-maps a path) or `read_blob(...)`. Every field is
checked against the file length before anything is allocated. Reads return:
  fp16 -> float16, fp32 -> float32, (u)int8/16/32 -> the same numpy type,
  uint1/2/3/4/6 -> uint8 (one element per value), int4 -> int8 (sign-extended),
  bf16 -> float32, fp8e4m3 / fp8e5m2 -> float16 (all exact: every value is representable).
"""
from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from anekit._files import open_regular
from anekit.errors import DTypeError, ShapeError, UsageError, WeightFileError
from anekit.ir import subbyte
from anekit.ir.dtypes import canonical
from anekit.mil import minifloat

DTYPE_CODES: dict[str, int] = {
    "fp16": 1, "fp32": 2, "uint8": 3, "int8": 4, "bf16": 5, "int16": 6, "uint16": 7,
    "int4": 8, "uint1": 9, "uint2": 10, "uint4": 11, "uint3": 12, "uint6": 13,
    "int32": 14, "uint32": 15, "fp8e4m3": 16, "fp8e5m2": 17,
}
CODE_DTYPES: dict[int, str] = {code: name for name, code in DTYPE_CODES.items()}

# Stored bits per element.
DTYPE_BITS: dict[str, int] = {
    "fp16": 16, "fp32": 32, "uint8": 8, "int8": 8, "bf16": 16, "int16": 16, "uint16": 16,
    "int4": 4, "uint1": 1, "uint2": 2, "uint4": 4, "uint3": 3, "uint6": 6,
    "int32": 32, "uint32": 32, "fp8e4m3": 8, "fp8e5m2": 8,
}

# anekit dtypes that are plain little-endian numpy types, stored as-is.
_NUMPY_STORED: dict[str, np.dtype] = {
    "fp16": np.dtype("<f2"), "fp32": np.dtype("<f4"), "uint8": np.dtype("u1"),
    "int8": np.dtype("i1"), "int16": np.dtype("<i2"), "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"), "uint32": np.dtype("<u4"),
}
_NUMPY_TO_DTYPE: dict[str, str] = {dt.newbyteorder("=").str: name for name, dt in _NUMPY_STORED.items()}

SENTINEL = 0xDEADBEEF
FILE_VERSION = 2
ALIGNMENT = 64
HEADER_SIZE = 64
METADATA_SIZE = 64

_HEADER = struct.Struct("<II56x")
_METADATA = struct.Struct("<IIQQQ32x")


def _align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _check_dtype_name(dtype) -> str:
    if not (isinstance(dtype, str) and dtype in DTYPE_CODES):
        try:
            dtype = canonical(dtype)        # "float16" / np.float16 for fp16
        except DTypeError:
            pass
    if not isinstance(dtype, str) or dtype not in DTYPE_CODES:
        raise DTypeError(f"unknown weight.bin dtype {dtype!r}; known: {', '.join(DTYPE_CODES)}")
    return dtype


def _subbyte_range(dtype: str) -> tuple[int, int]:
    bits = DTYPE_BITS[dtype]
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dtype == "int4" else (0, (1 << bits) - 1)


@dataclass(frozen=True)
class Blob:
    """One weight.bin item: an array and, where numpy has no matching type, its dtype name."""

    array: np.ndarray
    dtype: str | None = None


@dataclass(frozen=True)
class BlobInfo:
    """One blob's validated metadata."""

    offset: int          # metadata offset (what MIL's BLOBFILE offset= names)
    dtype: str
    size: int            # payload bytes
    data_offset: int
    padding_bits: int
    count: int           # number of elements


def _encode(array, dtype: str | None, where: str) -> tuple[str, object, int]:
    """-> (dtype name, payload buffer of uint8, padding bits) for one item."""
    if isinstance(array, np.ndarray):
        arr = array
    else:
        try:
            arr = np.asarray(array)
        except (ValueError, TypeError) as err:    # ragged nesting, a malformed tuple
            raise UsageError(f"{where}: expected an array, an (array, dtype) pair or a Blob, got a "
                             f"{type(array).__name__} numpy cannot read as an array ({str(err).splitlines()[0]})") from None
    if arr.dtype.hasobject:
        raise DTypeError(f"{where}: an array of Python objects has no weight.bin dtype")
    if dtype is None:
        dtype = _NUMPY_TO_DTYPE.get(arr.dtype.newbyteorder("=").str)
        if dtype is None:
            raise DTypeError(
                f"{where}: numpy {arr.dtype} has no weight.bin dtype; cast to float16/float32/"
                f"(u)int8/16/32 or pass (array, dtype) for sub-byte, bf16 and fp8")
    dtype = _check_dtype_name(dtype)
    if dtype in _NUMPY_STORED:
        stored = _NUMPY_STORED[dtype]
        if arr.dtype.newbyteorder("=") != stored.newbyteorder("="):
            raise DTypeError(f"{where}: dtype {dtype} needs a numpy {stored.newbyteorder('=')} array, got {arr.dtype}")
        data = np.ascontiguousarray(arr, dtype=stored).reshape(-1).view(np.uint8)
        return dtype, data, 0
    if dtype == "bf16":
        return dtype, _encode_minifloat(arr, dtype, np.uint16, minifloat.encode_bf16, where), 0
    if dtype in minifloat.FP8_FORMATS:
        encode = lambda a: minifloat.encode_fp8(a, dtype)  # noqa: E731
        return dtype, _encode_minifloat(arr, dtype, np.uint8, encode, where), 0
    return dtype, *_encode_subbyte(arr, dtype, where)


def _encode_minifloat(arr: np.ndarray, dtype: str, raw_type, encode, where: str) -> np.ndarray:
    if arr.dtype.newbyteorder("=") == np.dtype(raw_type):
        codes = np.ascontiguousarray(arr, dtype=np.dtype(raw_type).newbyteorder("<"))
    elif arr.dtype.kind == "f":
        try:
            codes = encode(arr).astype(np.dtype(raw_type).newbyteorder("<"))
        except ShapeError as err:
            raise ShapeError(f"{where}: {err}") from None
    else:
        raise DTypeError(f"{where}: dtype {dtype} takes a float array or {np.dtype(raw_type)} raw codes, got {arr.dtype}")
    return codes.reshape(-1).view(np.uint8)


def _encode_subbyte(arr: np.ndarray, dtype: str, where: str) -> tuple[np.ndarray, int]:
    if arr.dtype.kind not in "biu":
        raise DTypeError(f"{where}: dtype {dtype} takes an integer array (one element per value), got {arr.dtype}")
    flat = arr.reshape(-1)
    low, high = _subbyte_range(dtype)
    if flat.size:
        bad = np.flatnonzero((flat < low) | (flat > high))
        if bad.size:
            first = int(bad[0])
            raise ShapeError(f"{where}: value {flat[first]} at flat index {first} is outside {dtype}'s range [{low}, {high}]")
    # int4 is stored as 4-bit two's complement: the low nibble of the int8 value.
    values = (flat.astype(np.int16) & 0xF).astype(np.uint8) if dtype == "int4" else flat.astype(np.uint8)
    bits = DTYPE_BITS[dtype]
    return subbyte.pack_bits(values, bits), subbyte.padding_bits(flat.size, bits)


class BlobWriter:
    """Builds a weight.bin incrementally; offsets are known as soon as a blob is added."""

    def __init__(self) -> None:
        self._chunks: list = []   # everything after the file header, in order
        self._end = HEADER_SIZE   # file length so far
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Length of the file as it stands."""
        return self._end

    def add(self, array, dtype: str | None = None) -> int:
        """Append one blob; returns its metadata offset (the BLOBFILE offset)."""
        if isinstance(array, Blob):
            array, dtype = array.array, array.dtype if dtype is None else dtype
        if self._count >= 0xFFFFFFFF:
            raise WeightFileError("weight.bin holds at most 2**32 - 1 blobs (u32 count)")
        name, payload, padding = _encode(array, dtype, f"blob {self._count}")
        offset = _align(self._end)
        if offset > self._end:
            self._chunks.append(bytes(offset - self._end))
        data_offset = offset + METADATA_SIZE
        size = payload.nbytes
        self._chunks.append(_METADATA.pack(SENTINEL, DTYPE_CODES[name], size, data_offset, padding))
        if size:
            self._chunks.append(memoryview(payload))
        self._end = data_offset + size
        self._count += 1
        return offset

    def _header(self) -> bytes:
        return _HEADER.pack(self._count, FILE_VERSION)

    def getvalue(self) -> bytes:
        """The whole file as bytes (one copy of the data)."""
        return b"".join([self._header(), *self._chunks])

    def write(self, file) -> int:
        """Write the file to a path or a binary file object without building it in memory."""
        if isinstance(file, (str, os.PathLike)):
            try:
                with open(file, "wb") as handle:
                    return self.write(handle)
            except OSError as err:
                raise WeightFileError(f"cannot write weight file {os.fspath(file)}: {err.strerror}") from None
        file.write(self._header())
        for chunk in self._chunks:
            file.write(chunk)
        return self._end


def _split_item(item) -> tuple[object, str | None]:
    if isinstance(item, Blob):
        return item.array, item.dtype
    if isinstance(item, (tuple, list)) and len(item) == 2 and (item[1] is None or isinstance(item[1], (str, type, np.dtype))):
        return item[0], item[1]
    return item, None


def write_blobs(items: Iterable) -> tuple[bytes, list[int]]:
    """Build a weight.bin from arrays, (array, dtype) pairs or Blobs.

    Returns (file bytes, metadata offset of each item) — byte-identical to coremltools'
    _BlobStorageWriter fed the same blobs in the same order.
    """
    if isinstance(items, (np.ndarray, Blob, str, bytes)) or not isinstance(items, Iterable):
        raise UsageError(f"write_blobs takes a list of arrays, (array, dtype) pairs or Blobs, "
                         f"got {type(items).__name__}")
    writer = BlobWriter()
    offsets = [writer.add(*_split_item(item)) for item in items]
    return writer.getvalue(), offsets


MAX_RANK = 64     # numpy's limit on array dimensions


def _checked_shape(shape) -> tuple[int, ...]:
    try:
        dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    except TypeError:
        raise ShapeError(f"read_blob: shape {shape!r} must be a sequence of non-negative integers") from None
    if len(dims) > MAX_RANK:
        raise ShapeError(f"read_blob: shape has rank {len(dims)}, more than numpy's limit of {MAX_RANK}")
    for dim in dims:
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 0:
            raise ShapeError(f"read_blob: shape {shape!r} must be non-negative integers")
    return tuple(int(dim) for dim in dims)


class BlobFile:
    """A weight.bin opened for reading: a memory-mapped path, or bytes already in memory."""

    def __init__(self, source) -> None:
        self._mmap = None
        if isinstance(source, (str, os.PathLike)):
            self.name = os.fspath(source)
            self._buf = self._map(self.name)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self.name = "weight.bin"
            view = memoryview(source)
            if not view.c_contiguous:
                raise WeightFileError("weight.bin: the buffer must be contiguous bytes")
            self._buf = view.cast("B")
        else:
            raise WeightFileError(f"weight.bin: expected a path or bytes, got {type(source).__name__}")
        self.size = len(self._buf)
        self._offsets: list[int] | None = None
        try:
            self.count = self._read_header()
        except WeightFileError:
            self.close()
            raise

    def _map(self, path: str) -> memoryview:
        handle, length = open_regular(path, WeightFileError, "weight file")   # no FIFO or device
        try:
            with handle:
                if length < HEADER_SIZE:  # mmap refuses empty files; this check covers it
                    raise WeightFileError(f"{path}: truncated: {length} bytes, the file header needs {HEADER_SIZE}")
                self._mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as err:
            raise WeightFileError(f"cannot open weight file {path}: {err.strerror}") from None
        return memoryview(self._mmap)

    def _fail(self, message: str) -> WeightFileError:
        return WeightFileError(f"{self.name}: {message}")

    def _read_header(self) -> int:
        if self.size < HEADER_SIZE:
            raise self._fail(f"truncated: {self.size} bytes, the file header needs {HEADER_SIZE}")
        count, version = _HEADER.unpack_from(self._buf, 0)
        if version != FILE_VERSION:
            raise self._fail(f"header version is {version}, expected {FILE_VERSION}")
        needed = HEADER_SIZE + count * METADATA_SIZE  # every blob has at least its metadata
        if needed > self.size:
            raise self._fail(f"header count {count} needs at least {needed} bytes, file has {self.size}")
        return count

    def close(self) -> None:
        try:
            self._buf.release()
            if self._mmap is not None:
                self._mmap.close()
        except BufferError:  # an array still views the map; it closes when that is freed
            pass

    def __enter__(self) -> "BlobFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def info(self, offset: int) -> BlobInfo:
        """Validate the metadata at `offset` against the file and return it."""
        if not isinstance(offset, (int, np.integer)) or isinstance(offset, bool):
            raise self._fail(f"offset must be an integer, got {offset!r}")
        offset = int(offset)
        where = f"blob at offset {offset}"
        if offset < HEADER_SIZE:
            raise self._fail(f"{where}: offset lies inside the {HEADER_SIZE}-byte file header")
        if offset + METADATA_SIZE > self.size:
            raise self._fail(f"{where}: offset past end: metadata needs bytes {offset}..{offset + METADATA_SIZE}, file has {self.size}")
        if offset % ALIGNMENT:
            raise self._fail(f"{where}: offset is not {ALIGNMENT}-byte aligned (offset % {ALIGNMENT} = {offset % ALIGNMENT})")
        sentinel, code, size, data_offset, padding = _METADATA.unpack_from(self._buf, offset)
        if sentinel != SENTINEL:
            raise self._fail(f"{where}: sentinel is {sentinel:#010x}, expected {SENTINEL:#010x}")
        dtype = CODE_DTYPES.get(code)
        if dtype is None:
            raise self._fail(f"{where}: dtype code {code} is unknown (known 1..{max(CODE_DTYPES)})")
        if data_offset < offset + METADATA_SIZE:
            raise self._fail(f"{where}: data_offset {data_offset} overlaps the metadata ({offset}..{offset + METADATA_SIZE})")
        if data_offset + size > self.size:
            raise self._fail(f"{where}: data_offset {data_offset} + size {size} runs past the end of the file ({self.size} bytes)")
        bits = DTYPE_BITS[dtype]
        if bits % 8 == 0:
            if padding:
                raise self._fail(f"{where}: padding_size_in_bits is {padding} for byte-aligned {dtype}, expected 0")
            if size % (bits // 8):
                raise self._fail(f"{where}: size {size} is not a whole number of {dtype} elements ({bits // 8} bytes each)")
            count = size // (bits // 8)
        else:
            used = size * 8 - padding
            if padding > 7 or used < 0 or used % bits:
                raise self._fail(f"{where}: padding_size_in_bits {padding} does not fit size {size} of {bits}-bit {dtype} values")
            count = used // bits
        return BlobInfo(offset, dtype, size, data_offset, padding, count)

    @property
    def offsets(self) -> list[int]:
        """Metadata offsets of all blobs, found by walking the file; checks the header count."""
        if self._offsets is None:
            found: list[int] = []
            position = HEADER_SIZE
            while len(found) < self.count:
                if position + METADATA_SIZE > self.size:
                    raise self._fail(f"count mismatch: header says {self.count} blobs, the file ends after {len(found)}")
                blob = self.info(position)
                found.append(position)
                position = _align(blob.data_offset + blob.size)
            if position + 4 <= self.size and struct.unpack_from("<I", self._buf, position)[0] == SENTINEL:
                raise self._fail(f"count mismatch: header says {self.count} blobs, another starts at offset {position}")
            self._offsets = found
        return list(self._offsets)

    def read(self, offset: int, dtype: str | None = None, shape=None) -> np.ndarray:
        """The blob at `offset` as a new array (1-D unless `shape` is given)."""
        blob, shape = self._checked(offset, dtype, shape)
        values = self._decode(blob)
        return values.reshape(shape) if shape is not None else values

    def view(self, offset: int, dtype: str | None = None, shape=None) -> np.ndarray:
        """The blob as a read-only array sharing the file's memory where the stored bytes are a
        numpy layout (fp16, fp32, 8/16/32-bit ints); sub-byte and minifloat blobs are decoded."""
        blob, shape = self._checked(offset, dtype, shape)
        if blob.dtype in _NUMPY_STORED:
            values = np.frombuffer(self._buf, dtype=_NUMPY_STORED[blob.dtype], count=blob.count,
                                   offset=blob.data_offset)
        else:
            values = self._decode(blob)
        values = values.reshape(shape) if shape is not None else values
        values.flags.writeable = False
        return values

    def _checked(self, offset: int, dtype, shape) -> tuple[BlobInfo, tuple | None]:
        blob = self.info(offset)
        if dtype is not None and (dtype := _check_dtype_name(dtype)) != blob.dtype:
            raise self._fail(f"blob at offset {blob.offset}: dtype is {blob.dtype} (code {DTYPE_CODES[blob.dtype]}), expected {dtype}")
        if shape is not None:
            try:
                shape = _checked_shape(shape)
            except ShapeError as err:
                raise ShapeError(f"{self.name}: blob at offset {blob.offset}: {err}") from None
            expected = math.prod(shape)  # Python ints: no overflow
            if expected != blob.count:
                raise self._fail(
                    f"blob at offset {blob.offset}: size {blob.size} holds {blob.count} {blob.dtype} "
                    f"elements, shape {shape} needs {expected}")
        return blob, shape

    def _decode(self, blob: BlobInfo) -> np.ndarray:
        span = self._buf[blob.data_offset: blob.data_offset + blob.size]
        if blob.dtype in _NUMPY_STORED:
            stored = _NUMPY_STORED[blob.dtype]
            return np.frombuffer(span, dtype=stored).astype(stored.newbyteorder("="))  # astype copies
        if blob.dtype == "bf16":
            return minifloat.decode_bf16(np.frombuffer(span, dtype="<u2"))
        if blob.dtype in minifloat.FP8_FORMATS:
            return minifloat.decode_fp8(np.frombuffer(span, dtype=np.uint8), blob.dtype)
        values = subbyte.unpack_bits(span, blob.count, DTYPE_BITS[blob.dtype])
        if blob.dtype == "int4":  # sign-extend the 4-bit two's complement
            return ((values.astype(np.int16) ^ 8) - 8).astype(np.int8)
        return values


def read_blob(data_or_path, offset: int, *, dtype: str | None = None, shape=None) -> np.ndarray:
    """Read one blob from a weight.bin path or its bytes; see BlobFile.read."""
    with BlobFile(data_or_path) as blobs:
        return blobs.read(offset, dtype=dtype, shape=shape)
