"""Readable disassembly of an HwxFile: buffers, then each descriptor grouped by block.

Within a block the non-zero fields come first (the compiler writes most registers
as zero), then the zero-valued field names on one line, then register bits no named
field covers. Units follow docs/hwx.md: DMA strides and addresses count 64-byte
units, L2 ones 16-byte units; format code 2 is fp16.
"""
from __future__ import annotations

import textwrap
from typing import Callable

import numpy as np

from anekit.hwx.reader import HwxFile
from anekit.hwx.regtable import HEADER_BLOCK, FieldSpec
from anekit.hwx.td import TaskDescriptor

TableFormatter = Callable[[list, list], str]

_DMA_BLOCKS = ("TileDMASrc", "TileDMADst", "KernelDMASrc")
_FP16_FIELDS = ("NE.PostScale", "NE.AccBias", "NE.MatrixVectorBias")
_FORMAT_FIELDS = ("Common.InFmt", "Common.OutFmt")
_FORMAT_NAMES = {2: "fp16"}


def plain_table(headers: list, rows: list) -> str:
    """Left-aligned columns; used when the CLI's table formatter is not available."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def annotate(spec: FieldSpec, value: int) -> str:
    """A short unit or meaning for a field value, or ''."""
    if spec.name in _FP16_FIELDS:
        return f"fp16 {float(np.array(value, dtype=np.uint16).view(np.float16)):g}"
    if spec.name in _FORMAT_FIELDS and value in _FORMAT_NAMES:
        return _FORMAT_NAMES[value]
    if spec.block in _DMA_BLOCKS and spec.bit == 6 and spec.width == 26:
        return f"x64 B = {value * 64} B"
    if spec.block == "L2" and spec.bit == 4 and spec.width == 17:
        return f"x16 B = {value * 16} B"
    return ""


def format_value(spec: FieldSpec, value: int) -> str:
    text = str(value) if value < 10 else f"{value} ({value:#x})"
    note = annotate(spec, value)
    return f"{text}  [{note}]" if note else text


def render_dump(h: HwxFile, title: str = "", table: TableFormatter = plain_table, all_fields: bool = False) -> str:
    out = [f"{title or 'hwx'}: {h.generation} (cpusubtype {h.cpusubtype}), {len(h.tds)} task descriptor(s)"]
    if h.compiler_version or h.target:
        out.append(f"compiler: {h.compiler_version or '?'}" + (f", target {h.target}" if h.target else ""))
    out.append(f"weights: {len(h.weights)} bytes" + (f" in {h.weights_section}" if h.weights_section else ""))
    out.extend(f"note: {n}" for n in h.notes)
    out.append("")
    out.append("buffers:")
    rows = [
        [
            b.role,
            b.name,
            b.dtype or "?",
            (b.axes or "") + " " + "x".join(map(str, b.shape)) if b.shape else "?",
            ",".join(map(str, b.strides)) if b.strides else "?",
            f"{b.address:#x}",
            b.size if b.size is not None else "?",
        ]
        for b in h.buffers
    ]
    headers = ["role", "name", "dtype", "shape", "strides (B)", "address", "bytes"]
    out.append(textwrap.indent(table(headers, rows), "  "))
    for index, td in enumerate(h.tds):
        out.append("")
        out.extend(render_td(td, index, all_fields))
    return "\n".join(out) + "\n"


def render_td(td: TaskDescriptor, index: int, all_fields: bool = False) -> list[str]:
    out = [f"TD {index} at __text+{td.offset:#06x}: {td.size:#x} bytes, {len(td.streams)} streams"]
    specs = td.field_specs()
    if not specs:
        return out + _raw_blocks(td)
    values = td.fields
    unnamed = td.unnamed_bits()
    for block in _block_order(td, specs):
        block_specs = [s for s in specs if s.block == block]
        out.append(f"  {block}" + _block_suffix(td, block))
        nonzero = [s for s in block_specs if values[s.name]]
        zero = [s for s in block_specs if not values[s.name]]
        width = max((len(_short(s)) for s in (block_specs if all_fields else nonzero)), default=0)
        for spec in nonzero + (zero if all_fields else []):
            out.append(f"    {_short(spec).ljust(width)}  {format_value(spec, values[spec.name])}")
        if zero and not all_fields:
            names = ", ".join(_short(s) for s in zero)
            out.extend(textwrap.wrap(f"= 0: {names}", 96, initial_indent="    ", subsequent_indent="          "))
        for key, bits in sorted(unnamed.items()):
            if _block_of_key(td, key) == block:
                where = f"word {-1 - key}" if key < 0 else f"+{key - _block_base(td, block):#05x}"
                out.append(f"    unnamed {where} = {bits:#010x}")
    outside = [(key, bits) for key, bits in sorted(unnamed.items()) if _block_of_key(td, key) is None]
    if outside:   # writes to addresses no known block covers: shown, never dropped
        out.append("  (outside known blocks)")
        out.extend(f"    {key:#07x} = {bits:#010x}" for key, bits in outside)
    return out


def _short(spec: FieldSpec) -> str:
    return spec.name.split(".", 1)[1] if "." in spec.name else spec.name


def _block_order(td: TaskDescriptor, specs: tuple[FieldSpec, ...]) -> list[str]:
    order = [HEADER_BLOCK]
    for stream in td.streams:
        block = td.generation.block_of(stream.address)
        if block and block.name not in order:
            order.append(block.name)
    order += [s.block for s in specs if s.block not in order]
    return list(dict.fromkeys(order))


def _block_base(td: TaskDescriptor, name: str) -> int:
    return next((b.base for b in td.generation.blocks if b.name == name), 0)


def _block_of_key(td: TaskDescriptor, key: int) -> str | None:
    if key < 0:
        return HEADER_BLOCK
    block = td.generation.block_of(key)
    return block.name if block else None


def _block_suffix(td: TaskDescriptor, name: str) -> str:
    if name == HEADER_BLOCK:
        return f" ({len(td.header)} words)"
    written = sum(1 for s in td.streams for a in s.addresses if _block_of_key(td, a) == name)
    return f" ({_block_base(td, name):#07x}, {written} words written)"


def _raw_blocks(td: TaskDescriptor) -> list[str]:
    """Descriptors without a register table: header words, then writes per block."""
    out = ["  header: " + " ".join(f"{w:08x}" for w in td.header)]
    current = None
    for write in td.writes:
        block = write.where.split("+", 1)[0] if "+" in write.where else "(outside known blocks)"
        if block != current:
            out.append(f"  {block}")
            current = block
        out.append(f"    {write.where:<20} = {write.value:#010x}")
    return out
