"""Hostile input for anekit.hwx.read: truncation, bit flips, lying size fields, garbage.

The contract: a bad file raises HwxFormatError (an AnekitError), never IndexError,
struct.error or another crash, and reading never allocates much more than the file
itself, whatever sizes the file claims.
"""
from __future__ import annotations

import json
import struct
import tracemalloc

import pytest
from conftest import SHARED
from fuzz.corpus import container_with_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anekit.errors import AnekitError, HwxFormatError
from anekit.hwx import decode_td, read
from anekit.hwx.disasm import render_dump

VECTORS = SHARED / "vectors" / "hwx"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def vector_bytes(name: str) -> bytes:
    path = VECTORS / name
    if not path.is_file():
        pytest.skip(f"hwx vector {path} not found (set ANEKIT_SHARED to the shared folder)")
    return path.read_bytes()


def load_commands(data: bytes):
    """(cmd, offset, size) of each load command, walked with plain struct reads."""
    ncmds = struct.unpack_from("<I", data, 16)[0]
    offset = 32
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<2I", data, offset)
        yield cmd, offset, size
        offset += size


def segment_offset(data: bytes, name: str) -> int:
    for cmd, offset, _ in load_commands(data):
        if cmd == 0x19 and data[offset + 8:offset + 24].rstrip(b"\0") == name.encode():
            return offset
    raise AssertionError(f"no segment {name}")


def section_offset(data: bytes, segment: str, name: str) -> int:
    seg = segment_offset(data, segment)
    nsects = struct.unpack_from("<I", data, seg + 64)[0]
    for i in range(nsects):
        at = seg + 72 + 80 * i
        if data[at:at + 16].rstrip(b"\0") == name.encode():
            return at
    raise AssertionError(f"no section {segment},{name}")


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def exercise(data: bytes) -> None:
    """Read; on success use every view of the result. Only HwxFormatError may escape."""
    try:
        h = read(data)
    except HwxFormatError:
        return
    json.dumps(h.to_dict())
    render_dump(h, "fuzz")
    for td in h.tds:
        td.fields
        td.unnamed_bits()
        again = decode_td(td.encode(), td.generation)
        assert (again.header, again.streams, again.padding) == (td.header, td.streams, td.padding)


def peak_allocation(data: bytes) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(HwxFormatError):
            read(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_rejected_cheaply(data: bytes) -> None:
    # Generous bound: a few copies of the file plus interpreter overhead; a claimed
    # 2**40-byte segment or 2**31 symbols would blow far past it if ever allocated.
    assert peak_allocation(data) < 4 * len(data) + (2 << 20)


# --------------------------------------------------------------------------------------
# Truncation
# --------------------------------------------------------------------------------------
def test_every_truncation_of_the_conv_is_rejected():
    data = vector_bytes("h13_conv.hwx")
    # __TEXT runs to the end of the file, so every proper prefix lacks bytes it claims.
    for length in range(len(data)):
        with pytest.raises(HwxFormatError):
            read(data[:length])
    assert read(data).tds


def test_truncations_of_the_concat_are_rejected():
    data = vector_bytes("h13_concat.hwx")
    for length in list(range(0, 0x1400)) + list(range(0x4000, len(data), 7)):
        with pytest.raises(HwxFormatError):
            read(data[:length])


# --------------------------------------------------------------------------------------
# Bit flips
# --------------------------------------------------------------------------------------
@FUZZ
@given(
    name=st.sampled_from(["h13_conv.hwx", "h13_concat.hwx", "h13_sigmoid.hwx"]),
    positions=st.lists(
        st.one_of(
            st.integers(0, 0x1400 * 8 - 1),  # header, load commands, symbols, strings
            st.integers(0x4000 * 8, 0x4600 * 8 - 1),  # task descriptors
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_bit_flips_never_crash(name, positions):
    data = bytearray(vector_bytes(name))
    for bit in positions:
        if bit // 8 < len(data):
            data[bit // 8] ^= 1 << (bit % 8)
    exercise(bytes(data))


# --------------------------------------------------------------------------------------
# Size fields that lie
# --------------------------------------------------------------------------------------
def test_hostile_container_sizes_are_rejected_without_allocating():
    data = vector_bytes("h13_conv.hwx")
    text_seg = segment_offset(data, "__TEXT")
    text_sect = section_offset(data, "__TEXT", "__text")
    const_sect = section_offset(data, "__TEXT", "__const")
    symtab = next(offset for cmd, offset, _ in load_commands(data) if cmd == 0x2)
    fvmlib = next(offset for cmd, offset, _ in load_commands(data) if cmd == 0x6)
    cases = {
        "segment of 2**40 bytes": patched(data, text_seg + 48, "<Q", 1 << 40),
        "segment file offset 2**40": patched(data, text_seg + 40, "<Q", 1 << 40),
        "section of 2**40 bytes": patched(data, text_sect + 40, "<Q", 1 << 40),
        "weights of 2**40 bytes": patched(data, const_sect + 40, "<Q", 1 << 40),
        "2**30 sections": patched(data, text_seg + 64, "<I", 1 << 30),
        "sizeofcmds 2**31": patched(data, 20, "<I", 1 << 31),
        "ncmds 2**32-1": patched(data, 16, "<I", 0xFFFFFFFF),
        "cmdsize 0": patched(data, text_seg + 4, "<I", 0),
        "cmdsize 2**31": patched(data, text_seg + 4, "<I", 1 << 31),
        "2**31 symbols": patched(data, symtab + 12, "<I", 1 << 31),
        "string table of 2**32-1 bytes": patched(data, symtab + 20, "<I", 0xFFFFFFFF),
        "symbol table past the end": patched(data, symtab + 8, "<I", 0xFFFFFFF0),
        "buffer name offset 2**31": patched(data, fvmlib + 8, "<I", 1 << 31),
        "bad magic": patched(data, 0, "<I", 0xFEEDFACF),
        "wrong cputype": patched(data, 4, "<I", 0x7),
    }
    for label, bad in cases.items():
        try:
            assert_rejected_cheaply(bad)
        except BaseException as exc:  # name the case that failed
            raise AssertionError(label) from exc


def test_hostile_descriptor_sizes_are_rejected():
    conv = vector_bytes("h13_conv.hwx")
    text = struct.unpack_from("<I", conv, section_offset(conv, "__TEXT", "__text") + 48)[0]
    # The last stream of the conv descriptor (7 words at 0x254) claims 64 words.
    last_stream = text + 0x254
    command = struct.unpack_from("<I", conv, last_stream)[0]
    assert command >> 26 == 6
    assert_rejected_cheaply(patched(conv, last_stream, "<I", (63 << 26) | (command & 0x3FFFFFF)))
    # A stream naming an unaligned register.
    assert_rejected_cheaply(patched(conv, last_stream, "<I", command | 0x2))

    concat = vector_bytes("h13_concat.hwx")
    text = struct.unpack_from("<I", concat, section_offset(concat, "__TEXT", "__text") + 48)[0]
    next_pointer = text + 0x1C
    assert struct.unpack_from("<I", concat, next_pointer)[0] == 0x300
    assert_rejected_cheaply(patched(concat, next_pointer, "<I", 0xFFFFFFF0))  # past the section
    assert_rejected_cheaply(patched(concat, next_pointer, "<I", 0x10))  # backwards: would loop


# --------------------------------------------------------------------------------------
# Garbage behind a valid-looking header (no vectors needed)
# --------------------------------------------------------------------------------------
@FUZZ
@given(
    subtype=st.sampled_from([4, 5, 7, 9, 10]),
    words=st.lists(
        st.one_of(
            st.integers(0, 0xFFFFFFFF),
            st.integers(0, 0x40),
            st.sampled_from([0, 1 << 25, 0x3C000000, 0x000F0000]),  # EON, 16-word run, dense size
        ),
        max_size=80,
    ),
)
def test_random_descriptor_streams_never_crash(subtype, words):
    exercise(container_with_text(subtype, struct.pack(f"<{len(words)}I", *words)))


@FUZZ
@given(
    subtype=st.integers(0, 12),
    ncmds=st.integers(0, 8),
    tail=st.binary(max_size=600),
)
def test_random_load_commands_never_crash(subtype, ncmds, tail):
    header = struct.pack("<8I", 0xBEEFFACE, 0x80, subtype, 2, ncmds, len(tail), 0, 0)
    exercise(header + tail)


def test_non_hwx_input_is_an_anekit_error():
    for bad in (b"", b"\xce\xfa\xef", b"\x7fELF" + bytes(60), bytes(4096)):
        with pytest.raises(HwxFormatError):
            read(bad)
    with pytest.raises(AnekitError):
        read(12345)


# --------------------------------------------------------------------------------------
# Valid random descriptors: the decoder recovers exactly what was written
# --------------------------------------------------------------------------------------
@st.composite
def sequential_descriptor(draw):
    """H13 encoding: [31:26] count-1 | [25:0] byte address, then the words."""
    body, writes = [], []
    for _ in range(draw(st.integers(1, 6))):
        address = 4 * draw(st.integers(0, (1 << 24) - 1))
        words = draw(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=64))
        body += [((len(words) - 1) << 26) | address, *words]
        writes += [(address + 4 * i, w) for i, w in enumerate(words)]
    # An all-zero tail reads as padding; keep the last command word non-zero.
    if body[-1 - len(words)] == 0:
        body[-1 - len(words)] = 4 << 0  # write one word at address 4 instead
        writes[-1] = (4, writes[-1][1])
    header = [1 << 25] + [draw(st.integers(0, 0xFFFF))] * 6 + [0, 0, 0]  # EON set, no next
    return struct.pack(f"<{10 + len(body)}I", *header, *body), writes


@st.composite
def dense_descriptor(draw):
    """H16 encoding: burst (count-1) << 15 | word address, or masked 1 << 31 | mask << 15 | address."""
    body, writes = [], []
    for _ in range(draw(st.integers(1, 6))):
        word_address = draw(st.integers(0, 0x7FFF))
        if draw(st.booleans()):
            mask = draw(st.integers(0, 0xFFFF))
            offsets = [0] + [i + 1 for i in range(16) if mask >> i & 1]
            command = (1 << 31) | (mask << 15) | word_address
        else:
            count = draw(st.integers(1, 64))
            offsets = list(range(count))
            command = (draw(st.integers(0, 0x3FF)) << 21) | ((count - 1) << 15) | word_address
        words = draw(st.lists(st.integers(0, 0xFFFFFFFF), min_size=len(offsets), max_size=len(offsets)))
        body += [command, *words]
        writes += [(4 * (word_address + o), w) for o, w in zip(offsets, words)]
    size = 9 + len(body)
    header = [(size << 16) | draw(st.integers(0, 0xFFFF))] + [0] * 8
    return struct.pack(f"<{size}I", *header, *body), writes


@FUZZ
@given(case=sequential_descriptor())
def test_random_sequential_descriptors_decode_exactly(case):
    raw, writes = case
    h = read(container_with_text(4, raw))
    (td,) = h.tds
    assert [(w.address, w.value) for w in td.writes] == writes
    assert td.encode() == raw


@FUZZ
@given(first=dense_descriptor(), second=dense_descriptor())
def test_random_dense_descriptors_decode_exactly(first, second):
    text = first[0] + bytes(-len(first[0]) % 16) + second[0]
    h = read(container_with_text(7, text))
    assert [[(w.address, w.value) for w in td.writes] for td in h.tds] == [first[1], second[1]]
    assert [td.encode() for td in h.tds] == [first[0], second[0]]
