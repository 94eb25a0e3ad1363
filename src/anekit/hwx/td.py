"""Task descriptors: the register-write programs in ``__TEXT,__text``.

A TaskDescriptor keeps its header words and its streams exactly as read, so
``encode()`` reproduces the original bytes; named fields are views over those words
(``fields``), and edits (``with_fields``, ``with_registers``) change data words in a
copy without touching the stream layout.
"""
from __future__ import annotations

import difflib
import operator
import re
import struct
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Mapping, NamedTuple

from anekit.errors import HwxFieldError, HwxFormatError
from anekit.hwx._binary import ByteReader
from anekit.hwx.generations import SEQUENTIAL, Generation, generation_named
from anekit.hwx.regtable import FieldSpec, RegisterTable, table_for
from anekit.hwx.streams import RegisterStream, decode_streams

# H13 header bits that chain descriptors (register table: aneTD.Header[0].EON,
# aneTD.Header[7].NextPointer; brief section 8: "walk via NextPointer until EON = 1").
_EON_WORD, _EON_BIT = 0, 25
_NEXT_POINTER_WORD = 7
# Dense descriptors carry their own size in words at bits [26:16] of word 0 and start
# on 16-byte boundaries (unverified, see generations.py).
_DENSE_SIZE_SHIFT, _DENSE_SIZE_MASK = 16, 0x7FF
_DENSE_ALIGN = 16


class RegisterWrite(NamedTuple):
    address: int  # register byte address
    value: int
    where: str  # "Block+0xOFF", or the bare address outside every known block


@dataclass(frozen=True)
class TaskDescriptor:
    generation: Generation
    offset: int  # byte offset inside __TEXT,__text
    header: tuple[int, ...]
    streams: tuple[RegisterStream, ...]
    padding: int = 0  # zero bytes inside the descriptor's declared size (dense only)

    # -- raw view -------------------------------------------------------------
    @property
    def size(self) -> int:
        return 4 * len(self.header) + sum(s.nbytes for s in self.streams) + self.padding

    def encode(self) -> bytes:
        head = struct.pack(f"<{len(self.header)}I", *self.header)
        return head + b"".join(s.encode() for s in self.streams) + bytes(self.padding)

    @property
    def writes(self) -> tuple[RegisterWrite, ...]:
        """Every register write in stream order, with the block each address falls in."""
        describe = self.generation.describe
        return tuple(
            RegisterWrite(a, w, describe(a)) for s in self.streams for a, w in zip(s.addresses, s.words)
        )

    @cached_property
    def _registers(self) -> dict[int, int]:
        values: dict[int, int] = {}
        for stream in self.streams:
            values.update(zip(stream.addresses, stream.words))
        return values

    @property
    def registers(self) -> dict[int, int]:
        """Final value of every register the descriptor writes (a later write wins)."""
        return dict(self._registers)

    # -- named fields -----------------------------------------------------------
    @property
    def table(self) -> RegisterTable | None:
        return table_for(self.generation.name)

    @cached_property
    def _fields(self) -> dict[str, int]:
        table = self.table
        if table is None:
            return {}
        values: dict[str, int] = {}
        registers = self._registers
        for spec in table.fields:
            word = self._word_of(spec, registers)
            if word is not None:
                values[spec.name] = spec.extract(word)
        return values

    @property
    def fields(self) -> dict[str, int]:
        """``{"Block.Field": value}`` for every named field present (empty without a table)."""
        return dict(self._fields)

    def field(self, name: str) -> int:
        spec = self._spec(name)
        word = self._word_of(spec, self._registers)
        if word is None:
            raise HwxFieldError(f"{spec.name} lives in register {self._where(spec)}, which this descriptor never writes")
        return spec.extract(word)

    def field_specs(self) -> tuple[FieldSpec, ...]:
        """The register-table entries whose registers this descriptor writes."""
        table = self.table
        if table is None:
            return ()
        registers = self._registers
        return tuple(s for s in table.fields if self._word_of(s, registers) is not None)

    def unnamed_bits(self) -> dict[int, int]:
        """Register address -> the bits of its value no named field covers (non-zero only).

        A register with no named field at all reports its whole value. Header words
        are keyed by negative word index - 1 (-1 is header word 0).
        """
        table = self.table
        result: dict[int, int] = {}
        for address, value in self._registers.items():
            covered = 0
            for spec in table.by_address.get(address, ()) if table else ():
                covered |= spec.mask
            rest = value & ~covered & 0xFFFFFFFF
            if rest:
                result[address] = rest
        for index, value in enumerate(self.header):
            covered = 0
            for spec in table.by_header_word.get(index, ()) if table else ():
                covered |= spec.mask
            rest = value & ~covered & 0xFFFFFFFF
            if rest:
                result[-1 - index] = rest
        return result

    # -- edits -------------------------------------------------------------------
    def with_fields(self, values: Mapping[str, int]) -> "TaskDescriptor":
        """A copy with the named fields set; every other bit stays as it was."""
        header = list(self.header)
        registers = self._registers
        updates: dict[int, int] = {}
        for name, value in values.items():
            spec = self._spec(name)
            value = _field_value(spec, value)
            if spec.header_word is not None:
                header[spec.header_word] = spec.insert(header[spec.header_word], value)
            elif spec.address in registers:
                updates[spec.address] = spec.insert(updates.get(spec.address, registers[spec.address]), value)
            else:
                raise HwxFieldError(
                    f"{spec.name} lives in register {self._where(spec)}, which this descriptor never writes; "
                    "adding a write would change the stream layout"
                )
        return replace(self, header=tuple(header), streams=self._patched_streams(updates))

    def with_registers(self, values: Mapping[int | str, int]) -> "TaskDescriptor":
        """A copy with whole register words replaced; keys are byte addresses or ``"Block+0xOFF"``."""
        registers = self._registers
        updates: dict[int, int] = {}
        for key, value in values.items():
            address = self._address_of(key)
            if address not in registers:
                raise HwxFieldError(f"this descriptor never writes register {self.generation.describe(address)}")
            value = _checked_int(value, 32, self.generation.describe(address))
            updates[address] = value
        return replace(self, streams=self._patched_streams(updates))

    def to_dict(self) -> dict:
        """JSON-ready: layout, header words, named fields, and whatever no field names."""
        describe = self.generation.describe
        return {
            "offset": self.offset,
            "size": self.size,
            "header": list(self.header),
            "streams": [
                {"command": s.command, "address": s.address, "where": describe(s.address), "count": len(s.words)}
                for s in self.streams
            ],
            "fields": self.fields,
            "unnamed_bits": {
                (f"Header[{-1 - k}]" if k < 0 else describe(k)): v for k, v in self.unnamed_bits().items()
            },
            "writes": [{"address": w.address, "where": w.where, "value": w.value} for w in self.writes],
        }

    # -- helpers -----------------------------------------------------------------
    def _patched_streams(self, updates: dict[int, int]) -> tuple[RegisterStream, ...]:
        if not updates:
            return self.streams
        # Every write of an edited register changes, so the final value is the edit.
        return tuple(
            replace(s, words=tuple(updates.get(a, w) for a, w in zip(s.addresses, s.words)))
            if any(a in updates for a in s.addresses)
            else s
            for s in self.streams
        )

    def _spec(self, name: str) -> FieldSpec:
        table = self.table
        if table is None:
            raise HwxFieldError(
                f"no register table for {self.generation.name}: its descriptors decode to raw writes only; "
                "use with_registers()"
            )
        spec = table.lookup(name) if isinstance(name, str) else None
        if spec is None:
            close = difflib.get_close_matches(str(name), [s.name for s in table.fields], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise HwxFieldError(f"no field {name!r} in the {self.generation.name} register table{hint}")
        return spec

    def _word_of(self, spec: FieldSpec, registers: dict[int, int]) -> int | None:
        if spec.header_word is not None:
            return self.header[spec.header_word] if spec.header_word < len(self.header) else None
        return registers.get(spec.address)

    def _where(self, spec: FieldSpec) -> str:
        return self.generation.describe(spec.address) if spec.address is not None else f"header word {spec.header_word}"

    def _address_of(self, key: int | str) -> int:
        if isinstance(key, str):
            match = re.fullmatch(r"\s*(\w+)\s*\+\s*(0x[0-9a-fA-F]+|\d+)\s*", key)
            block = next((b for b in self.generation.blocks if match and b.name == match.group(1)), None)
            if block is None:
                raise HwxFieldError(f"cannot read {key!r} as a register: use a byte address or 'Block+0xOFF'")
            return block.base + int(match.group(2), 0)
        try:
            return operator.index(key)
        except TypeError:
            raise HwxFieldError(f"register key {key!r} is neither an address nor 'Block+0xOFF'") from None


def _checked_int(value: object, width: int, what: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise HwxFieldError(f"{what} needs an integer, got {value!r}") from None
    if not 0 <= number < (1 << width):
        raise HwxFieldError(f"{what} is {width} bits wide: {number} does not fit (0 .. {(1 << width) - 1})")
    return number


def _field_value(spec: FieldSpec, value: object) -> int:
    return _checked_int(value, spec.width, spec.name)


# -- reading descriptors out of a __text section ----------------------------------
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
        streams, end = decode_streams(reader, offset + header_bytes, limit, generation)
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


def _dense_descriptor(reader: ByteReader, offset: int, words: int, generation: Generation, index: int) -> TaskDescriptor:
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
