"""Named bit fields of H13 task descriptors, from the shipped register table.

``data/h13_regs.json`` (tinygrad's aneregs.json, see data/NOTICE) keys every field by
its byte offset in the flat 0x274-byte H13 task-descriptor image: a 10-word header,
then seven register streams, each a header word followed by its data words. This
module re-keys the fields by register address, so a descriptor whose streams sit
elsewhere still decodes. Field keys are ``Block.Field`` (``Common.Cin``,
``NE.PostScale``); where a field name repeats inside its block the register joins it
(``L2.SourceCfg.DMAFmt``, ``KernelDMASrc.CoeffDMAConfig[3].En``).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from anekit.errors import HwxFormatError

HEADER_BLOCK = "Header"
H13_HEADER_BYTES = 0x28  # 10 words (docs/hwx.md)

# (block, address of its first register, byte offset of that register's data word in
# the 0x274-byte image, data words in the image). The image places the streams in the
# order the compiler emits them; every H13 vector has exactly this layout.
_H13_IMAGE = (
    ("KernelDMASrc", 0x1F800, 0x02C, 62),
    ("Common", 0x00000, 0x128, 16),
    ("TileDMASrc", 0x13800, 0x16C, 28),
    ("L2", 0x04800, 0x1E0, 18),
    ("PE", 0x08800, 0x22C, 4),
    ("NE", 0x0C800, 0x240, 5),
    ("TileDMADst", 0x17800, 0x258, 7),
)


@dataclass(frozen=True)
class FieldSpec:
    name: str  # the key in TaskDescriptor.fields
    full_name: str  # Block.Register.Field, always unique
    source_name: str  # the name in the shipped table
    block: str
    register: str
    header_word: int | None  # set for header fields
    address: int | None  # register byte address, set for register fields
    bit: int
    width: int

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.bit

    def extract(self, word: int) -> int:
        return (word >> self.bit) & ((1 << self.width) - 1)

    def insert(self, word: int, value: int) -> int:
        return (word & ~self.mask & 0xFFFFFFFF) | (value << self.bit)


@dataclass(frozen=True)
class RegisterTable:
    fields: tuple[FieldSpec, ...]
    by_name: dict  # every accepted spelling -> FieldSpec
    by_address: dict  # register address -> tuple of FieldSpecs
    by_header_word: dict  # header word index -> tuple of FieldSpecs

    def lookup(self, name: str) -> FieldSpec | None:
        return self.by_name.get(name)


def _image_to_register(offset: int, name: str) -> tuple[str, int, int]:
    """Map a byte offset in the H13 image to (block, register address, extra bit shift)."""
    for block, base, start, words in _H13_IMAGE:
        if start <= offset < start + 4 * words:
            aligned = offset - offset % 4
            return block, base + (aligned - start), 8 * (offset % 4)
    raise HwxFormatError(f"register table entry {name} at image offset {offset:#x} lies in no register stream")


def _split_name(source: str) -> tuple[str, str, str]:
    parts = source.split(".")
    if parts[0] == "aneTD" and len(parts) == 3:
        return HEADER_BLOCK, parts[1], parts[2]
    if parts[0] == "aneRegs" and len(parts) == 4:
        return parts[1], parts[2], parts[3]
    raise HwxFormatError(f"register table entry {source!r} is not aneTD.Reg.Field or aneRegs.Block.Reg.Field")


def build_table(entries: list) -> RegisterTable:
    raw = []
    for entry in entries:
        try:
            source, (offset, bit, width) = entry
            offset, bit, width = int(offset), int(bit), int(width)
        except (TypeError, ValueError):
            raise HwxFormatError(f"register table entry {entry!r} is not [name, [offset, bit, width]]") from None
        block, register, field = _split_name(str(source))
        shift = 8 * (offset % 4)
        if not (0 < width and bit + shift + width <= 32):
            raise HwxFormatError(f"register table entry {source} does not fit one 32-bit word")
        if block == HEADER_BLOCK:
            if offset >= H13_HEADER_BYTES:
                raise HwxFormatError(f"header field {source} lies past the {H13_HEADER_BYTES:#x}-byte header")
            raw.append((source, block, register, field, offset // 4, None, bit + shift, width))
        else:
            block_name, address, shift = _image_to_register(offset, source)
            if block_name != block:
                raise HwxFormatError(f"register table entry {source} lies in the {block_name} stream")
            raw.append((source, block, register, field, None, address, bit + shift, width))

    repeats = Counter((block, field) for _, block, _, field, *_ in raw)
    specs = []
    for source, block, register, field, word, address, bit, width in raw:
        # Header registers are already spelled Header[i]; do not repeat the block name.
        full = f"{register}.{field}" if block == HEADER_BLOCK else f"{block}.{register}.{field}"
        short = f"{block}.{field}" if repeats[(block, field)] == 1 else full
        specs.append(FieldSpec(short, full, source, block, register, word, address, bit, width))

    by_name: dict = {}
    by_address: dict = {}
    by_word: dict = {}
    for spec in specs:
        for alias in (spec.name, spec.full_name, spec.source_name):
            by_name.setdefault(alias, spec)
        if spec.address is not None:
            by_address.setdefault(spec.address, []).append(spec)
        else:
            by_word.setdefault(spec.header_word, []).append(spec)
    return RegisterTable(
        tuple(specs),
        by_name,
        {k: tuple(v) for k, v in by_address.items()},
        {k: tuple(v) for k, v in by_word.items()},
    )


@lru_cache(maxsize=None)
def h13_table() -> RegisterTable:
    """The H13 register table shipped in ``anekit/hwx/data`` (parsed once)."""
    text = resources.files("anekit.hwx").joinpath("data", "h13_regs.json").read_text(encoding="utf-8")
    return build_table(json.loads(text))


def table_for(generation_name: str) -> RegisterTable | None:
    """The named-field table of a generation, or None where only raw writes are known."""
    return h13_table() if generation_name == "h13" else None
