"""``read()``: a .hwx file as an HwxFile (generation, compiler, buffers, TDs, weights)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from anekit._files import read_regular
from anekit.errors import HwxFormatError
from anekit.hwx._binary import ByteReader
from anekit.hwx.generations import Generation, generation_for_subtype
from anekit.hwx.macho import BufferBinding, Container, Section, Segment, Symbol, parse_container
from anekit.hwx.stabs import CATALOG_SYMBOL_TYPE, LAYOUT_SYMBOL_TYPE, parse_catalog, parse_layout
from anekit.hwx.td import TaskDescriptor
from anekit.hwx.walk import walk_descriptors

OUTPUT_SUFFIX = "@output"  # the compiler marks output buffers by this name suffix
_VM_PROT_WRITE = 0x2
MAX_HWX_BYTES = 1 << 30  # compiled programs are megabytes; the whole file is read into memory


@dataclass(frozen=True)
class Buffer:
    """One input or output tensor of the program."""

    name: str  # without the "@output" suffix
    role: str  # "input" or "output"
    address: int  # virtual address of its window
    size: int | None  # bytes the window reserves (its __FVMLIB section), if found
    dtype: str | None  # element type name from the symbol catalog, e.g. "float16"
    axes: str | None  # axis letters, outermost first, e.g. "nchw"
    shape: tuple[int, ...] | None
    strides: tuple[int, ...] | None  # bytes per step along each axis
    symbol: str  # the name as written in the file
    command: int  # the load command that named it (0x6 LC_LOADFVMLIB or 0x40)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "dtype": self.dtype,
            "axes": self.axes,
            "shape": list(self.shape) if self.shape else None,
            "strides": list(self.strides) if self.strides else None,
            "address": self.address,
            "size": self.size,
            "symbol": self.symbol,
            "command": self.command,
        }


@dataclass(frozen=True)
class HwxFile:
    generation: str  # "h13", ... or "unknown"
    cpusubtype: int
    compiler: str | None  # the LC_IDENT text
    buffers: tuple[Buffer, ...]
    tds: tuple[TaskDescriptor, ...]
    weights: bytes  # __TEXT,__const, else the __KERN_* sections in file order
    weights_section: str | None  # where the weights came from, "SEG,sect"
    text_section: Section | None
    segments: tuple[Segment, ...]
    symbols: tuple[Symbol, ...]
    container: Container
    data: bytes
    notes: tuple[str, ...]  # what could not be decoded and why

    def __repr__(self) -> str:  # the default would print every byte of the file
        names = ", ".join(f"{b.role} {b.name}" for b in self.buffers)
        return (
            f"<HwxFile {self.generation}: {len(self.tds)} task descriptor(s), buffers [{names}], "
            f"{len(self.weights)} weight bytes>"
        )

    @property
    def profile(self) -> Generation | None:
        return generation_for_subtype(self.cpusubtype)

    @property
    def compiler_version(self) -> str | None:
        """``zin_ane_compiler v4.2.1`` from the identification text, if present."""
        match = re.search(r"\S*compiler v[\w.]+", self.compiler or "")
        return match.group(0) if match else None

    @property
    def target(self) -> str | None:
        """The ``-t`` target flag the compiler was invoked with, e.g. ``h13``."""
        match = re.search(r"(?:^|\s)-t\s+(\S+)", self.compiler or "")
        return match.group(1) if match else None

    def weights_fp16(self) -> np.ndarray:
        """The weights section read as little-endian fp16 (a trailing odd byte is dropped)."""
        usable = len(self.weights) - len(self.weights) % 2
        return np.frombuffer(self.weights[:usable], dtype="<f2")

    def with_td(self, index: int, td: TaskDescriptor) -> "HwxFile":
        """The file with descriptor ``index`` replaced by ``td`` (same size), re-read."""
        if not 0 <= index < len(self.tds):
            raise HwxFormatError(f"no task descriptor {index}; this file has {len(self.tds)}")
        old = self.tds[index]
        encoded = td.encode()
        if len(encoded) != old.size or self.text_section is None:
            raise HwxFormatError(f"replacement descriptor is {len(encoded)} bytes; descriptor {index} is {old.size}")
        at = self.text_section.offset + old.offset
        return read(self.data[:at] + encoded + self.data[at + len(encoded):])

    def to_bytes(self) -> bytes:
        return self.data

    def to_dict(self) -> dict:
        """A JSON-ready summary: header facts, buffers, weights, and every descriptor."""
        return {
            "generation": self.generation,
            "cpusubtype": self.cpusubtype,
            "compiler": self.compiler,
            "compiler_version": self.compiler_version,
            "target": self.target,
            "buffers": [b.to_dict() for b in self.buffers],
            "weights": {"section": self.weights_section, "size": len(self.weights)},
            "tds": [td.to_dict() for td in self.tds],
            "notes": list(self.notes),
        }


def read(source: str | os.PathLike | bytes | bytearray | memoryview) -> HwxFile:
    """Read a .hwx program from a path or from its bytes."""
    data = _load(source)
    container = parse_container(ByteReader(data))
    subtype = container.header.cpusubtype
    generation = generation_for_subtype(subtype)
    notes: list[str] = []
    text = _find_text(container)
    if generation is None:
        notes.append(f"cpusubtype {subtype:#x} is no known ANE generation: task descriptors left undecoded")
        tds: tuple[TaskDescriptor, ...] = ()
    elif text is None:
        notes.append("no __TEXT,__text section: the file holds no task descriptors")
        tds = ()
    else:
        if not generation.verified:
            notes.append(
                f"{generation.name}: stream encoding and block names come from unverified public notes; "
                "registers are shown raw"
            )
        tds = walk_descriptors(data[text.offset:text.offset + text.size], generation)
    weights, weights_section = _weights(container, data)
    return HwxFile(
        generation=generation.name if generation else "unknown",
        cpusubtype=subtype,
        compiler=container.ident,
        buffers=_buffers(container),
        tds=tds,
        weights=weights,
        weights_section=weights_section,
        text_section=text,
        segments=container.segments,
        symbols=container.symbols,
        container=container,
        data=data,
        notes=tuple(notes),
    )


def _load(source: object) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):   # a regular file of bounded size: no FIFO, no /dev/zero
        return read_regular(source, HwxFormatError, ".hwx file", MAX_HWX_BYTES)
    raise HwxFormatError(f"read() takes a path or bytes, not {type(source).__name__}")


def _find_text(container: Container) -> Section | None:
    section = container.find_section("__TEXT", "__text")
    if section is not None and not section.file_backed and section.size:
        raise HwxFormatError("__TEXT,__text declares task descriptors but has no file bytes")
    return section


def _weights(container: Container, data: bytes) -> tuple[bytes, str | None]:
    const = container.find_section("__TEXT", "__const")
    if const is not None and const.file_backed:
        return data[const.offset:const.offset + const.size], "__TEXT,__const"
    # Newer compilers keep coefficients in __KERN_<n> segments (guide ch. 23).
    kernel = [s for seg in container.segments if seg.name.startswith("__KERN_") for s in seg.sections if s.file_backed]
    if kernel:
        names = ",".join(f"{s.segment},{s.name}" for s in kernel)
        return b"".join(data[s.offset:s.offset + s.size] for s in kernel), names
    return b"", None


def _buffers(container: Container) -> tuple[Buffer, ...]:
    catalog = parse_catalog([s.name for s in container.symbols if s.type == CATALOG_SYMBOL_TYPE])
    layouts = {}
    for symbol in container.symbols:
        if symbol.type == LAYOUT_SYMBOL_TYPE:
            name, _, rest = symbol.name.partition(":")
            layouts.setdefault(name, rest)
    windows = {}
    for segment in container.segments:
        if segment.name == "__FVMLIB":
            for section in segment.sections:
                windows.setdefault(section.address, (segment, section))
    return tuple(_buffer(binding, layouts, catalog, windows) for binding in container.bindings)


def _buffer(binding: BufferBinding, layouts: dict, catalog: dict, windows: dict) -> Buffer:
    window = windows.get(binding.address)
    writable = bool(window and window[0].initprot & _VM_PROT_WRITE)
    is_output = binding.name.endswith(OUTPUT_SUFFIX) or writable
    name = binding.name[: -len(OUTPUT_SUFFIX)] if binding.name.endswith(OUTPUT_SUFFIX) else binding.name
    size = window[1].size if window else binding.declared_size
    layout = parse_layout(layouts[binding.name]) if binding.name in layouts else None
    return Buffer(
        name=name,
        role="output" if is_output else "input",
        address=binding.address,
        size=size,
        dtype=catalog.get(layout.element_type, f"t{layout.element_type}") if layout else None,
        axes=layout.axes if layout else None,
        shape=layout.shape if layout else None,
        strides=layout.strides if layout else None,
        symbol=binding.name,
        command=binding.command,
    )

