"""Per-generation facts for reading task descriptors: cpusubtype, stream encoding,
where the register stream starts, and which register block an address belongs to.

cpusubtype -> generation: docs/hwx.md and guide ch. 35 (table "Cross-compiled across
the family"). H13 block bases: docs/hwx.md, confirmed by the H13 vectors.
Everything marked ``verified=False`` has no real file in the test vectors: the dense
stream encoding and the H14+ block bases come from public reverse-engineering notes
(freedomtan/coreml_to_ane_hwx, hwx_dump) and are kept here as data so that a
correction is a table edit. The guide's ch. 23 group table lists the same 0x4100-0x5500
apertures under different group names; the names below follow the H13 block names.
"""
from __future__ import annotations

from dataclasses import dataclass

from anekit.errors import HwxFormatError

SEQUENTIAL = "sequential"  # u32 [31:26] count-1 | [25:0] byte address, then count words
DENSE = "dense"  # u32 burst or masked command over word addresses (H14 and later)


@dataclass(frozen=True)
class Block:
    name: str
    base: int  # byte address of the block's first register
    span: int  # bytes of address space attributed to the block


@dataclass(frozen=True)
class Generation:
    name: str
    cpusubtype: int
    encoding: str
    header_words: int  # words of task-descriptor header before the register stream
    blocks: tuple[Block, ...]
    verified: bool

    def block_of(self, address: int) -> Block | None:
        for block in self.blocks:
            if block.base <= address < block.base + block.span:
                return block
        return None

    def describe(self, address: int) -> str:
        """``Block+0xOFF`` for an address inside a known block, else the bare address."""
        block = self.block_of(address)
        if block is None:
            return f"{address:#07x}"
        return f"{block.name}+{address - block.base:#05x}"


def _blocks(span: int, *pairs: tuple[str, int]) -> tuple[Block, ...]:
    return tuple(Block(name, base, span) for name, base in pairs)


# H13 blocks sit 0x4000 or more apart; the span only has to separate them.
_H13_BLOCKS = _blocks(
    0x4000,
    ("Common", 0x0),
    ("L2", 0x4800),
    ("PE", 0x8800),
    ("NE", 0xC800),
    ("TileDMASrc", 0x13800),
    ("TileDMADst", 0x17800),
    ("KernelDMASrc", 0x1F800),
)
# H14 (subtype 5) bases as listed by hwx_dump; unverified.
_H14_BLOCKS = _blocks(
    0x400,
    ("Common", 0x0),
    ("L2", 0x500),
    ("PE", 0x900),
    ("NE", 0xD00),
    ("TileDMASrc", 0x1100),
    ("TileDMADst", 0x1500),
    ("KernelDMASrc", 0x1900),
)
# H15 and later: the 0x4100..0x5900 apertures (guide ch. 23 table, hwx_dump); unverified.
_H15_BLOCKS = _blocks(
    0x400,
    ("Common", 0x0),
    ("L2", 0x4100),
    ("PE", 0x4500),
    ("NE", 0x4900),
    ("TileDMASrc", 0x4D00),
    ("TileDMADst", 0x5100),
    ("KernelDMASrc", 0x5500),
    ("CacheDMA", 0x5900),
)

GENERATIONS: dict[int, Generation] = {
    g.cpusubtype: g
    for g in (
        # H11/H12 are said to share the H13 stream encoding; their block map is unknown.
        Generation("h11", 1, SEQUENTIAL, 10, (), False),
        Generation("h12", 3, SEQUENTIAL, 10, (), False),
        Generation("h13", 4, SEQUENTIAL, 10, _H13_BLOCKS, True),
        Generation("h14", 5, DENSE, 8, _H14_BLOCKS, False),
        Generation("h15", 6, DENSE, 8, _H15_BLOCKS, False),
        Generation("h16", 7, DENSE, 9, _H15_BLOCKS, False),
        Generation("h17", 9, DENSE, 9, _H15_BLOCKS, False),
        Generation("h18", 10, DENSE, 9, _H15_BLOCKS, False),
    )
}
_BY_NAME = {g.name: g for g in GENERATIONS.values()}


def generation_for_subtype(cpusubtype: int) -> Generation | None:
    return GENERATIONS.get(cpusubtype)


def generation_named(name: str | Generation) -> Generation:
    if isinstance(name, Generation):
        return name
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise HwxFormatError(f"unknown ANE generation {name!r}; known: {known}") from None
