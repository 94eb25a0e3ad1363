"""Bounds-checked little-endian reads over an immutable byte buffer.

Every read names what it was reading, so a truncated or lying file yields a
HwxFormatError that says which structure ran off the end, never an IndexError or
struct.error. Nothing here allocates more than the bytes it returns.
"""
from __future__ import annotations

import struct

from anekit.errors import HwxFormatError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class ByteReader:
    """Read fixed-width integers and strings from ``data`` with explicit bounds checks."""

    __slots__ = ("data", "size")

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)

    def require(self, offset: int, length: int, what: str) -> None:
        """Raise HwxFormatError unless ``[offset, offset + length)`` lies inside the buffer."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise HwxFormatError(
                f"{what} needs bytes [{offset:#x}, {offset + length:#x}) "
                f"but the file has {self.size:#x} bytes"
            )

    def u16(self, offset: int, what: str) -> int:
        self.require(offset, 2, what)
        return _U16.unpack_from(self.data, offset)[0]

    def u32(self, offset: int, what: str) -> int:
        self.require(offset, 4, what)
        return _U32.unpack_from(self.data, offset)[0]

    def u64(self, offset: int, what: str) -> int:
        self.require(offset, 8, what)
        return _U64.unpack_from(self.data, offset)[0]

    def u32_array(self, offset: int, count: int, what: str) -> tuple[int, ...]:
        # The bounds check comes first, so a hostile count never builds a large tuple.
        self.require(offset, 4 * count, what)
        return struct.unpack_from(f"<{count}I", self.data, offset)

    def bytes_at(self, offset: int, length: int, what: str) -> bytes:
        self.require(offset, length, what)
        return bytes(self.data[offset:offset + length])

    def fixed_name(self, offset: int, length: int, what: str) -> str:
        """A NUL-padded fixed-width name field such as a Mach-O segment name."""
        raw = self.bytes_at(offset, length, what)
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")

    def cstring(self, offset: int, end: int, what: str) -> str:
        """A NUL-terminated string that must end before ``end`` (exclusive)."""
        end = min(end, self.size)
        if offset < 0 or offset >= end:
            raise HwxFormatError(f"{what} starts at {offset:#x}, outside its bounds (< {end:#x})")
        stop = self.data.find(b"\0", offset, end)
        if stop < 0:
            raise HwxFormatError(f"{what} at {offset:#x} has no terminating NUL before {end:#x}")
        return bytes(self.data[offset:stop]).decode("utf-8", errors="replace")
