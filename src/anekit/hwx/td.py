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

from anekit.errors import HwxFieldError
from anekit.hwx.generations import Generation
from anekit.hwx.regtable import FieldSpec, RegisterTable, table_for
from anekit.hwx.streams import RegisterStream

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

    def __repr__(self) -> str:  # the default would list every data word
        return (
            f"<TaskDescriptor {self.generation.name} at __text+{self.offset:#x}: "
            f"{self.size:#x} bytes, {len(self.streams)} streams>"
        )

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
            raise HwxFieldError(
                f"{spec.name} lives in register {self._where(spec)}, which this descriptor never writes"
            )
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
        by_address = table.by_address if table else {}
        by_word = table.by_header_word if table else {}
        words = [(address, value, by_address.get(address, ())) for address, value in self._registers.items()]
        words += [(-1 - index, value, by_word.get(index, ())) for index, value in enumerate(self.header)]
        result: dict[int, int] = {}
        for key, value, specs in words:
            covered = 0
            for spec in specs:
                covered |= spec.mask
            if value & ~covered:
                result[key] = value & ~covered & 0xFFFFFFFF
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
            match = re.fullmatch(r"\s*(\w+)\s*\+\s*(0x[0-9a-fA-F]{1,8}|\d{1,10})\s*", key)
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
