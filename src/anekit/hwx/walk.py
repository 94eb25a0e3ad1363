"""Finding task descriptors in ``__TEXT,__text``, and decoding a single one.

H13 descriptors chain: each header's NextPointer (an offset in ``__text``) names the
next, until the EON bit is set (register table: aneTD.Header[0].EON and
aneTD.Header[7].NextPointer; docs/hwx.md). Dense (H14+) descriptors carry their
own size in words at bits [26:16] of word 0 and start on 16-byte boundaries
(unverified, see generations.py).
"""
from __future__ import annotations

from anekit.errors import HwxFormatError
from anekit.hwx._binary import ByteReader
from anekit.hwx.generations import SEQUENTIAL, Generation, generation_named
from anekit.hwx.streams import decode_streams
from anekit.hwx.td import TaskDescriptor

_EON_WORD, _EON_BIT = 0, 25
_NEXT_POINTER_WORD = 7
_DENSE_SIZE_SHIFT, _DENSE_SIZE_MASK = 16, 0x7FF
_DENSE_ALIGN = 16


def walk_descriptors(text: bytes, generation: Generation) -> tuple[TaskDescriptor, ...]:
    """Every task descriptor in a ``__TEXT,__text`` section."""
    reader = ByteReader(text)
    if generation.encoding == SEQUENTIAL:
        return _walk_sequential(reader, generation)
    return _walk_dense(reader, generation)


def _walk_sequential(reader: ByteReader, generation: Generation) -> tuple[TaskDescriptor, ...]:
    tds: list[TaskDescriptor] = []
    offset = 0
    header_bytes = 4 * generation.header_words
    while reader.size:
        header = reader.u32_array(offset, generation.header_words, f"task descriptor {len(tds)} header")
        last = header[_EON_WORD] >> _EON_BIT & 1 or header[_NEXT_POINTER_WORD] == 0
        if last:
            limit = reader.size
        else:
            limit = header[_NEXT_POINTER_WORD]
            # Strictly forward links keep the walk finite whatever the file says.
            if limit % 4 or not offset + header_bytes <= limit <= reader.size - header_bytes:
                raise HwxFormatError(
                    f"task descriptor {len(tds)} at {offset:#x} links to {limit:#x}, "
                    f"not a later descriptor inside the {reader.size:#x}-byte __text"
                )
        streams, _ = decode_streams(reader, offset + header_bytes, limit, generation)
        tds.append(TaskDescriptor(generation, offset, header, streams))
        if last:
            break
        offset = limit
    return tuple(tds)


def _walk_dense(reader: ByteReader, generation: Generation) -> tuple[TaskDescriptor, ...]:
    tds: list[TaskDescriptor] = []
    offset = 0
    while offset + 4 <= reader.size:
        words = reader.u32(offset, "task descriptor header") >> _DENSE_SIZE_SHIFT & _DENSE_SIZE_MASK
        if words == 0:  # alignment padding between descriptors
            offset += _DENSE_ALIGN
            continue
        tds.append(_dense_descriptor(reader, offset, words, generation, len(tds)))
        offset += -(-4 * words // _DENSE_ALIGN) * _DENSE_ALIGN
    return tuple(tds)


def _dense_descriptor(
    reader: ByteReader, offset: int, words: int, generation: Generation, index: int
) -> TaskDescriptor:
    if words <= generation.header_words:
        raise HwxFormatError(
            f"task descriptor {index} at {offset:#x} declares {words} words, "
            f"no more than its {generation.header_words}-word header"
        )
    limit = offset + 4 * words
    reader.require(offset, 4 * words, f"task descriptor {index} ({words} words)")
    header = reader.u32_array(offset, generation.header_words, f"task descriptor {index} header")
    streams, end = decode_streams(reader, offset + 4 * generation.header_words, limit, generation)
    return TaskDescriptor(generation, offset, header, streams, padding=limit - end)


def decode_td(data: bytes, generation: str | Generation = "h13") -> TaskDescriptor:
    """Decode one task descriptor from its bytes (e.g. the output of ``encode()``)."""
    gen = generation_named(generation)
    reader = ByteReader(bytes(data))
    if gen.encoding == SEQUENTIAL:
        header = reader.u32_array(0, gen.header_words, "task descriptor header")
        streams, _ = decode_streams(reader, 4 * gen.header_words, reader.size, gen)
        return TaskDescriptor(gen, 0, header, streams)
    words = reader.u32(0, "task descriptor header") >> _DENSE_SIZE_SHIFT & _DENSE_SIZE_MASK
    if 4 * words != reader.size:
        raise HwxFormatError(f"descriptor declares {words} words but {reader.size} bytes were given")
    return _dense_descriptor(reader, 0, words, gen, 0)
