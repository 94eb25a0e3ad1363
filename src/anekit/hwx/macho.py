"""The Mach-O-shaped container of a .hwx file: header, load commands, segments,
sections, buffer bindings, the compiler identification and the symbol table.

Layout facts: docs/hwx.md and guide ch. 23 ("Hardware container"): magic
0xBEEFFACE, cputype 0x80, cpusubtype = codegen generation, 64-bit Mach-O load
commands. Everything is found by walking the load commands; no offset is assumed.
"""
from __future__ import annotations

from dataclasses import dataclass

from anekit.errors import HwxFormatError
from anekit.hwx._binary import ByteReader

HWX_MAGIC = 0xBEEFFACE
ANE_CPUTYPE = 0x80
HEADER_SIZE = 32  # mach_header_64

LC_SYMTAB = 0x2
LC_THREAD = 0x4
LC_LOADFVMLIB = 0x6
LC_IDENT = 0x8
LC_SEGMENT_64 = 0x19
# Newer compilers name I/O buffers with command 0x40 instead of LC_LOADFVMLIB
# (docs/hwx.md); its body is {u32 size, u32 pad, u64 vmaddr, char name[]} (guide ch. 23).
LC_ANE_BUFFER = 0x40

COMMAND_NAMES = {
    LC_SYMTAB: "LC_SYMTAB",
    LC_THREAD: "LC_THREAD",
    LC_LOADFVMLIB: "LC_LOADFVMLIB",
    LC_IDENT: "LC_IDENT",
    LC_SEGMENT_64: "LC_SEGMENT_64",
    LC_ANE_BUFFER: "LC_ANE_BUFFER(0x40)",
}

_SEGMENT_COMMAND_SIZE = 72
_SECTION_SIZE = 80
_SYMBOL_SIZE = 16  # nlist_64


@dataclass(frozen=True)
class MachHeader:
    magic: int
    cputype: int
    cpusubtype: int
    filetype: int
    ncmds: int
    sizeofcmds: int
    flags: int


@dataclass(frozen=True)
class LoadCommand:
    cmd: int
    offset: int  # file offset of the command
    size: int

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.cmd, f"cmd {self.cmd:#x}")


@dataclass(frozen=True)
class Section:
    segment: str
    name: str
    address: int
    size: int
    offset: int  # file offset; meaningful only when file_backed
    align: int
    reloff: int
    nreloc: int
    flags: int
    file_backed: bool


@dataclass(frozen=True)
class Segment:
    name: str
    vmaddr: int
    vmsize: int
    fileoff: int
    filesize: int
    maxprot: int
    initprot: int
    flags: int
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class BufferBinding:
    """One I/O buffer name bound to a virtual address by a load command."""

    name: str
    address: int
    command: int  # LC_LOADFVMLIB or LC_ANE_BUFFER
    declared_size: int | None  # only the 0x40 spelling carries a size


@dataclass(frozen=True)
class Symbol:
    name: str
    type: int
    sect: int
    desc: int
    value: int


@dataclass(frozen=True)
class Container:
    header: MachHeader
    commands: tuple[LoadCommand, ...]
    segments: tuple[Segment, ...]
    bindings: tuple[BufferBinding, ...]
    ident: str | None
    symbols: tuple[Symbol, ...]

    def find_section(self, segment: str, name: str) -> Section | None:
        for seg in self.segments:
            for sect in seg.sections:
                if sect.segment == segment and sect.name == name:
                    return sect
        return None


def parse_container(reader: ByteReader) -> Container:
    """Parse the header and walk every load command, checking each size against the file."""
    header = _parse_header(reader)
    end_of_commands = HEADER_SIZE + header.sizeofcmds
    commands: list[LoadCommand] = []
    segments: list[Segment] = []
    bindings: list[BufferBinding] = []
    symbols: tuple[Symbol, ...] = ()
    ident: str | None = None
    offset = HEADER_SIZE
    for index in range(header.ncmds):
        what = f"load command {index}"
        cmd = reader.u32(offset, what)
        size = reader.u32(offset + 4, what)
        if size < 8 or size % 4 or offset + size > end_of_commands:
            raise HwxFormatError(
                f"{what} at {offset:#x} has size {size:#x}: not a multiple of 4 of at least 8 "
                f"bytes inside the {header.sizeofcmds:#x} bytes of load commands"
            )
        command = LoadCommand(cmd, offset, size)
        commands.append(command)
        if cmd == LC_SEGMENT_64:
            segments.append(_parse_segment(reader, command))
        elif cmd in (LC_LOADFVMLIB, LC_ANE_BUFFER):
            bindings.append(_parse_binding(reader, command))
        elif cmd == LC_IDENT:
            ident = _parse_ident(reader, command)
        elif cmd == LC_SYMTAB:
            symbols = _parse_symtab(reader, command)
        offset += size
    return Container(header, tuple(commands), tuple(segments), tuple(bindings), ident, symbols)


def _parse_header(reader: ByteReader) -> MachHeader:
    if reader.size < HEADER_SIZE:
        raise HwxFormatError(f"a .hwx file starts with a {HEADER_SIZE}-byte header; got {reader.size} bytes")
    magic = reader.u32(0, "header magic")
    if magic != HWX_MAGIC:
        raise HwxFormatError(f"bad magic {magic:#010x}: a .hwx file starts with {HWX_MAGIC:#010x} (bytes ce fa ef be)")
    fields = [reader.u32(4 * i, "header") for i in range(1, 7)]
    header = MachHeader(magic, *fields)
    if header.cputype != ANE_CPUTYPE:
        raise HwxFormatError(f"cputype {header.cputype:#x} is not the ANE pseudo-architecture {ANE_CPUTYPE:#x}")
    if header.sizeofcmds > reader.size - HEADER_SIZE:
        raise HwxFormatError(
            f"header claims {header.sizeofcmds:#x} bytes of load commands; the file has "
            f"{reader.size - HEADER_SIZE:#x} after the header"
        )
    if header.ncmds * 8 > header.sizeofcmds:
        raise HwxFormatError(f"header claims {header.ncmds} load commands in only {header.sizeofcmds:#x} bytes")
    return header


def _parse_segment(reader: ByteReader, command: LoadCommand) -> Segment:
    base = command.offset
    what = f"LC_SEGMENT_64 at {base:#x}"
    if command.size < _SEGMENT_COMMAND_SIZE:
        raise HwxFormatError(f"{what} is {command.size} bytes, shorter than {_SEGMENT_COMMAND_SIZE}")
    name = reader.fixed_name(base + 8, 16, what)
    vmaddr = reader.u64(base + 24, what)
    vmsize = reader.u64(base + 32, what)
    fileoff = reader.u64(base + 40, what)
    filesize = reader.u64(base + 48, what)
    maxprot = reader.u32(base + 56, what)
    initprot = reader.u32(base + 60, what)
    nsects = reader.u32(base + 64, what)
    flags = reader.u32(base + 68, what)
    if _SEGMENT_COMMAND_SIZE + nsects * _SECTION_SIZE > command.size:
        raise HwxFormatError(f"{what} ({name}) claims {nsects} sections; its {command.size} bytes hold fewer")
    if filesize and fileoff + filesize > reader.size:
        raise HwxFormatError(
            f"segment {name} claims file bytes [{fileoff:#x}, {fileoff + filesize:#x}) "
            f"but the file has {reader.size:#x} bytes"
        )
    sections = []
    for i in range(nsects):
        at = base + _SEGMENT_COMMAND_SIZE + i * _SECTION_SIZE
        swhat = f"section {i} of segment {name}"
        sect_name = reader.fixed_name(at, 16, swhat)
        seg_name = reader.fixed_name(at + 16, 16, swhat)
        address = reader.u64(at + 32, swhat)
        size = reader.u64(at + 40, swhat)
        offset, align, reloff, nreloc, sflags = reader.u32_array(at + 48, 5, swhat)
        # Buffer windows (__FVMLIB) declare memory with no file bytes: filesize 0.
        file_backed = filesize > 0 and (sflags & 0xFF) != 0x1  # 0x1 = S_ZEROFILL
        if file_backed and offset + size > reader.size:
            raise HwxFormatError(
                f"section {seg_name},{sect_name} claims file bytes [{offset:#x}, {offset + size:#x}) "
                f"but the file has {reader.size:#x} bytes"
            )
        sections.append(Section(seg_name, sect_name, address, size, offset, align, reloff, nreloc, sflags, file_backed))
    return Segment(name, vmaddr, vmsize, fileoff, filesize, maxprot, initprot, flags, tuple(sections))


def _parse_binding(reader: ByteReader, command: LoadCommand) -> BufferBinding:
    base, end = command.offset, command.offset + command.size
    what = f"{command.name} at {base:#x}"
    if command.cmd == LC_LOADFVMLIB:
        # struct fvmlib_command: cmd, cmdsize, {lc_str name (offset), minor_version, header_addr}
        name_offset = reader.u32(base + 8, what)
        address = reader.u32(base + 16, what)
        if name_offset < 20 or name_offset >= command.size:
            raise HwxFormatError(f"{what} puts its name at {name_offset:#x}, outside the command")
        name = reader.cstring(base + name_offset, end, f"buffer name in {what}")
        return BufferBinding(name, address, command.cmd, None)
    if command.size < 25:
        raise HwxFormatError(f"{what} is {command.size} bytes, too short for a size, address and name")
    declared_size = reader.u32(base + 8, what)
    address = reader.u64(base + 16, what)
    name = reader.cstring(base + 24, end, f"buffer name in {what}")
    return BufferBinding(name, address, command.cmd, declared_size)


def _parse_ident(reader: ByteReader, command: LoadCommand) -> str:
    raw = reader.bytes_at(command.offset + 8, command.size - 8, "LC_IDENT")
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _parse_symtab(reader: ByteReader, command: LoadCommand) -> tuple[Symbol, ...]:
    what = f"LC_SYMTAB at {command.offset:#x}"
    if command.size < 24:
        raise HwxFormatError(f"{what} is {command.size} bytes, shorter than 24")
    symoff, nsyms, stroff, strsize = reader.u32_array(command.offset + 8, 4, what)
    reader.require(symoff, nsyms * _SYMBOL_SIZE, f"symbol table ({nsyms} entries)")
    reader.require(stroff, strsize, "string table")
    symbols = []
    for i in range(nsyms):
        at = symoff + i * _SYMBOL_SIZE
        strx = reader.u32(at, "symbol")
        n_type = reader.data[at + 4]
        n_sect = reader.data[at + 5]
        n_desc = reader.u16(at + 6, "symbol")
        n_value = reader.u64(at + 8, "symbol")
        if strx >= strsize:
            raise HwxFormatError(f"symbol {i} names string {strx:#x}, past the {strsize:#x}-byte string table")
        name = reader.cstring(stroff + strx, stroff + strsize, f"name of symbol {i}")
        symbols.append(Symbol(name, n_type, n_sect, n_desc, n_value))
    return tuple(symbols)
