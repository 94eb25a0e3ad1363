"""Register-write streams inside a task descriptor: decoding and encoding both encodings.

Sequential (H11-H13, docs/hwx.md): a command word ``[31:26] count-1 | [25:0] byte
address`` followed by ``count`` data words written to consecutive registers.

Dense (H14 and later; unverified, see generations.py): a command word whose bits
[14:0] are a *word* address. With bit 31 clear it is a burst: bits [20:15] hold
count-1 and that many data words follow. With bit 31 set it is masked: the first data
word goes to the address itself and bits [30:15] are a 16-bit mask; for every set bit
i one more data word follows, written to address + i + 1 (in words).

The command word is kept verbatim, so unknown or reserved bits survive a round trip.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from anekit.errors import HwxFormatError
from anekit.hwx._binary import ByteReader
from anekit.hwx.generations import SEQUENTIAL, Generation

_SEQ_COUNT_SHIFT = 26
_SEQ_ADDRESS_MASK = (1 << 26) - 1
_DENSE_WORD_ADDRESS_MASK = 0x7FFF
_DENSE_MASKED = 1 << 31


@dataclass(frozen=True)
class RegisterStream:
    """One command word and the data words it writes."""

    command: int
    addresses: tuple[int, ...]  # register byte address of each data word
    words: tuple[int, ...]

    @property
    def address(self) -> int:
        return self.addresses[0]

    @property
    def nbytes(self) -> int:
        return 4 + 4 * len(self.words)

    def encode(self) -> bytes:
        return struct.pack(f"<{1 + len(self.words)}I", self.command, *self.words)


def _zero_tail_start(reader: ByteReader, start: int, limit: int) -> int:
    """Offset where the all-zero padding at the end of ``[start, limit)`` begins."""
    reader.require(start, limit - start, "task descriptor")
    return start + len(reader.data[start:limit].rstrip(b"\0"))


def _sequential_stream(reader: ByteReader, at: int, limit: int) -> RegisterStream:
    command = reader.u32(at, "stream command")
    count = (command >> _SEQ_COUNT_SHIFT) + 1
    address = command & _SEQ_ADDRESS_MASK
    if address % 4:
        raise HwxFormatError(f"stream command {command:#010x} at {at:#x} names unaligned register {address:#x}")
    return _stream(reader, at, limit, command, tuple(address + 4 * i for i in range(count)))


def _dense_stream(reader: ByteReader, at: int, limit: int) -> RegisterStream:
    command = reader.u32(at, "stream command")
    word_address = command & _DENSE_WORD_ADDRESS_MASK
    if command & _DENSE_MASKED:
        mask = (command >> 15) & 0xFFFF
        offsets = [0] + [i + 1 for i in range(16) if mask >> i & 1]
    else:
        offsets = list(range(((command >> 15) & 0x3F) + 1))
    return _stream(reader, at, limit, command, tuple(4 * (word_address + o) for o in offsets))


def _stream(reader: ByteReader, at: int, limit: int, command: int, addresses: tuple[int, ...]) -> RegisterStream:
    end = at + 4 + 4 * len(addresses)
    if end > limit:
        raise HwxFormatError(
            f"stream command {command:#010x} at {at:#x} writes {len(addresses)} words, "
            f"running past the end of its task descriptor at {limit:#x}"
        )
    words = reader.u32_array(at + 4, len(addresses), "stream data")
    return RegisterStream(command, addresses, words)


def decode_streams(
    reader: ByteReader, start: int, limit: int, generation: Generation
) -> tuple[tuple[RegisterStream, ...], int]:
    """Decode the streams in ``[start, limit)``; returns them and the offset after the last one.

    Sequential descriptors declare no size, so their trailing all-zero bytes are
    padding (a zero command word would otherwise read as "write one word at address
    0"). Dense descriptors declare their size: every word inside it is decoded, and
    only an all-zero tail too short to be a command counts as padding.
    """
    sequential = generation.encoding == SEQUENTIAL
    parse = _sequential_stream if sequential else _dense_stream
    zero_tail = _zero_tail_start(reader, start, limit)
    end = zero_tail if sequential else limit
    streams = []
    at = start
    while at < end:
        try:
            stream = parse(reader, at, limit)
        except HwxFormatError:
            if at >= zero_tail:
                break
            raise
        streams.append(stream)
        at += stream.nbytes
    return tuple(streams), at
