"""Tests for anekit.hwx: the .hwx reader, the task-descriptor decoder/encoder and the CLI.

Facts asserted on the vectors come from the issue and docs/hwx.md: the
conv is 1x1, 3 -> 3 channels, fp16, weights 2.0 (3.0 in the golden copy); the concat
has two descriptors; relu uses NonlinearMode 1; the sigmoid's table is in the weights
section; the gemm is 512 x 512. Synthetic files are built here from the Mach-O layout
so that the load-command variants (0x40 buffer names, a moved __TEXT, dense H14+
streams) are covered without real files of those kinds.
"""
from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from anekit.errors import AnekitError, HwxFieldError, HwxFormatError
from anekit.hwx import decode_td, h13_table, read

VECTORS = SHARED / "vectors" / "hwx"
VECTOR_FILES = sorted(VECTORS.glob("*.hwx")) if VECTORS.is_dir() else []


@pytest.fixture
def vectors() -> Path:
    if not VECTOR_FILES:
        pytest.skip(f"hwx vectors not found at {VECTORS} (set ANEKIT_SHARED to the shared folder)")
    return VECTORS


def vector(name: str) -> Path:
    path = VECTORS / name
    if not path.is_file():
        pytest.skip(f"hwx vector {path} not found (set ANEKIT_SHARED to the shared folder)")
    return path


# --------------------------------------------------------------------------------------
# A minimal .hwx writer, from the Mach-O 64 layout (mach_header_64, segment_command_64,
# section_64, fvmlib_command, symtab_command, nlist_64), independent of the reader.
# --------------------------------------------------------------------------------------
def _segment(name, vmaddr, vmsize, fileoff, filesize, prot, sections, flags=0):
    body = struct.pack("<16s4Q4I", name.encode(), vmaddr, vmsize, fileoff, filesize, prot, prot, len(sections), flags)
    sects = b"".join(
        struct.pack("<16s16s2Q8I", sn.encode(), name.encode(), addr, size, off, align, 0, 0, sflags, 0, 0, 0)
        for sn, addr, size, off, align, sflags in sections
    )
    return struct.pack("<2I", 0x19, 8 + len(body) + len(sects)) + body + sects


def _binding(cmd, name, address, size):
    raw = name.encode() + b"\0"
    if cmd == 0x6:  # fvmlib_command: name offset 20, minor version, header address
        body = struct.pack("<3I", 20, 0, address) + raw
    else:  # 0x40: size, pad, u64 address, name
        body = struct.pack("<2IQ", size, 0, address) + raw
    body += bytes(-(8 + len(body)) % 8)
    return struct.pack("<2I", cmd, 8 + len(body)) + body


IDENT = "ANEC v1\nzin_ane_compiler v0.0.0\n\t-t h13\n"


def build_hwx(*, subtype=4, text=b"", const=b"", text_fileoff=0x4000, buffers=(), ident=IDENT):
    """buffers: (name, binding command, address, size, role, shape, strides)."""
    const_rel = -(-len(text) // 16) * 16
    seg_size = const_rel + len(const)
    cmds = [
        _segment(
            "__TEXT", 0x30000000, max(0x4000, seg_size), text_fileoff, seg_size, 5,
            [("__text", 0x30000000, len(text), text_fileoff, 14, 0x80000400),
             ("__const", 0x30000000 + const_rel, len(const), text_fileoff + const_rel, 6, 0)],
        )
    ]
    symbols = [("float16:t5=r1;2;0", 0x80, 0)]
    for i, (name, cmd, address, size, role, shape, strides) in enumerate(buffers):
        out = role == "output"
        symbol = name + ("@output" if out else "")
        cmds.append(_segment("__FVMLIB", address, 0x4000, 0, 0, 2 if out else 1,
                             [("__data" if out else "__const", address, size, 0, 14, 0x23 if out else 0x21)], 6))
        cmds.append(_binding(cmd, symbol, address, size))
        t = 20 + 10 * i
        layout = f"{symbol}:t{t}=" + "".join(
            f"ar1;0;{n};{t + 1 + k}=s{s}{axis}:" for k, (n, s, axis) in enumerate(zip(shape, strides, "nchw"))
        ) + "5"
        symbols.append((layout, 0x20, 0))
        symbols.append((symbol, 0x0F, address))
    ident_raw = ident.encode() + b"\0"
    ident_raw += bytes(-(8 + len(ident_raw)) % 8)
    cmds.append(struct.pack("<2I", 0x8, 8 + len(ident_raw)) + ident_raw)
    symtab_at = len(cmds)
    cmds.append(b"")  # placeholder, filled once the command size is known
    sizeofcmds = sum(len(c) for c in cmds) + 24
    symoff = 32 + sizeofcmds
    strtab = b"\0"
    nlist = b""
    for name, ntype, value in symbols:
        nlist += struct.pack("<IBBHQ", len(strtab), ntype, 0, 0, value)
        strtab += name.encode() + b"\0"
    stroff = symoff + len(nlist)
    cmds[symtab_at] = struct.pack("<6I", 0x2, 24, symoff, len(symbols), stroff, len(strtab))
    head = struct.pack("<8I", 0xBEEFFACE, 0x80, subtype, 2, len(cmds), sizeofcmds, 0x200000, 0)
    meta = head + b"".join(cmds) + nlist + strtab
    assert len(meta) <= text_fileoff, "test builder: metadata overlaps __TEXT"
    return meta + bytes(text_fileoff - len(meta)) + text + bytes(const_rel - len(text)) + const


def h13_td(cin=5, eon=True, next_pointer=0):
    """An H13 descriptor: 10 header words, then a Common stream of 16 words."""
    header = [(1 << 25) if eon else 0] + [0] * 6 + [next_pointer] + [0, 0]
    common = [0] * 16
    common[0] = (2 << 16) | 7  # InDim: Hin 2, Win 7
    common[3] = cin  # Cin at Common+0xc
    common[4] = 9  # Cout
    return struct.pack("<27I", *header, (15 << 26) | 0x0, *common)


IO_BUFFERS = (
    ("image", 0x6, 0x30004000, 0xC0, "input", (1, 3, 1, 1), (192, 64, 64, 2)),
    ("probs", 0x6, 0x30008000, 0xC0, "output", (1, 3, 1, 1), (192, 64, 64, 2)),
)


# --------------------------------------------------------------------------------------
# Register table
# --------------------------------------------------------------------------------------
def test_register_table_names_are_unique_and_resolve():
    table = h13_table()
    assert len(table.fields) == 258  # every entry of the shipped table
    names = [s.name for s in table.fields]
    assert len(set(names)) == len(names)
    for spec in table.fields:
        assert table.lookup(spec.full_name) is spec and table.lookup(spec.source_name) is spec
        assert 0 <= spec.bit and spec.bit + spec.width <= 32


def test_register_table_places_cin_where_the_guide_does():
    # Guide appendix C: Cin is register 0x0c of the Common group, bits [16:0].
    spec = h13_table().lookup("Common.Cin")
    assert (spec.address, spec.bit, spec.width) == (0x0C, 0, 17)
    post = h13_table().lookup("NE.PostScale")
    assert post.address == 0xC800 + 0x10 and post.width == 16


def test_register_table_is_shipped_with_its_notice():
    from importlib import resources

    data = resources.files("anekit.hwx").joinpath("data")
    assert "tinygrad" in data.joinpath("NOTICE").read_text() and "MIT" in data.joinpath("NOTICE").read_text()
    assert json.loads(data.joinpath("h13_regs.json").read_text())[0][0] == "aneTD.Header[0].TID"


# --------------------------------------------------------------------------------------
# Synthetic files: always run, no vectors needed
# --------------------------------------------------------------------------------------
def test_synthetic_h13_file_decodes_fields_buffers_and_weights():
    weights = np.full(9, 2.0, dtype="<f2").tobytes()
    data = build_hwx(text=h13_td(cin=5), const=weights, buffers=IO_BUFFERS)
    h = read(data)
    assert (h.generation, h.cpusubtype, h.compiler_version, h.target) == ("h13", 4, "zin_ane_compiler v0.0.0", "h13")
    td = h.tds[0]
    assert [td.fields[k] for k in ("Common.Cin", "Common.Cout", "Common.Win", "Common.Hin")] == [5, 9, 7, 2]
    assert td.fields["Header.EON"] == 1
    assert h.weights == weights and np.all(h.weights_fp16() == 2.0)
    image, probs = h.buffers
    assert (image.name, image.role, image.dtype) == ("image", "input", "float16")
    assert (image.shape, image.strides) == ((1, 3, 1, 1), (192, 64, 64, 2))
    assert (probs.name, probs.role, probs.symbol, probs.size) == ("probs", "output", "probs@output", 0xC0)


def test_buffer_names_from_command_0x40_are_read():
    buffers = tuple((n, 0x40, a, s, r, sh, st) for n, _, a, s, r, sh, st in IO_BUFFERS)
    h = read(build_hwx(text=h13_td(), buffers=buffers))
    assert [(b.name, b.role, b.address, b.command, b.shape) for b in h.buffers] == [
        ("image", "input", 0x30004000, 0x40, (1, 3, 1, 1)),
        ("probs", "output", 0x30008000, 0x40, (1, 3, 1, 1)),
    ]


def test_moved_text_segment_still_parses():
    base = read(build_hwx(text=h13_td(cin=11), buffers=IO_BUFFERS))
    moved = read(build_hwx(text=h13_td(cin=11), buffers=IO_BUFFERS, text_fileoff=0x9000))
    assert moved.text_section.offset == 0x9000 != base.text_section.offset
    assert moved.tds[0].fields == base.tds[0].fields and moved.tds[0].fields["Common.Cin"] == 11


def _dense_td(header_words, commands, tid=1):
    body = [w for command, data in commands for w in [command, *data]]
    words = header_words + len(body)
    return struct.pack(f"<{words}I", (words << 16) | tid, *([0] * (header_words - 1)), *body)


# Dense command words written out by hand from the documented layout: burst =
# (count-1) << 15 | word address; masked = 1 << 31 | mask << 15 | word address.
NE_BURST = ((3 - 1) << 15) | (0x4900 // 4)
TDMA_MASKED = (1 << 31) | (0b101 << 15) | (0x4D00 // 4)
COMMON_BURST_RESERVED = (0b11 << 21) | (0 << 15) | 0  # reserved bits [30:21] set


def test_dense_h16_streams_decode_to_block_named_writes():
    td0 = _dense_td(9, [(NE_BURST, [1, 2, 3]), (TDMA_MASKED, [10, 11, 12])])
    td1 = _dense_td(9, [(COMMON_BURST_RESERVED, [7])], tid=2)
    text = td0 + bytes(-len(td0) % 16) + td1
    h = read(build_hwx(subtype=7, text=text, buffers=IO_BUFFERS))
    assert h.generation == "h16" and len(h.tds) == 2
    assert [tuple(w) for w in h.tds[0].writes] == [
        (0x4900, 1, "NE+0x000"), (0x4904, 2, "NE+0x004"), (0x4908, 3, "NE+0x008"),
        (0x4D00, 10, "TileDMASrc+0x000"), (0x4D04, 11, "TileDMASrc+0x004"), (0x4D0C, 12, "TileDMASrc+0x00c"),
    ]
    assert h.tds[1].offset == 80 and [tuple(w) for w in h.tds[1].writes] == [(0, 7, "Common+0x000")]
    assert h.tds[0].fields == {} and any("unverified" in n for n in h.notes)
    for td, raw in ((h.tds[0], td0), (h.tds[1], td1)):
        assert td.encode() == raw  # reserved command bits survive
        again = decode_td(raw, "h16")
        assert (again.header, again.streams, again.padding) == (td.header, td.streams, td.padding)


def test_dense_register_edit_round_trips_and_named_edit_is_refused():
    td = decode_td(_dense_td(9, [(NE_BURST, [1, 2, 3])]), "h17")
    edited = td.with_registers({"NE+0x4": 99, 0x4908: 5})
    assert edited.registers == {0x4900: 1, 0x4904: 99, 0x4908: 5}
    assert decode_td(edited.encode(), "h17").registers == edited.registers
    assert len(edited.encode()) == len(td.encode())
    with pytest.raises(HwxFieldError, match="no register table"):
        td.with_fields({"NE.PostScale": 0x3C00})
    with pytest.raises(HwxFieldError, match="never writes"):
        td.with_registers({0x4D00: 1})


def test_h14_uses_eight_header_words_and_its_own_block_bases():
    # H14 bases per the unverified hwx_dump notes: NE at 0xD00.
    td = decode_td(_dense_td(8, [(((2 - 1) << 15) | (0xD00 // 4), [4, 5])]), "h14")
    assert len(td.header) == 8 and [w.where for w in td.writes] == ["NE+0x000", "NE+0x004"]


def test_unknown_generation_is_reported_not_decoded():
    h = read(build_hwx(subtype=2, text=h13_td(), buffers=IO_BUFFERS))
    assert h.generation == "unknown" and h.tds == () and "cpusubtype 0x2" in h.notes[0]
    assert [b.name for b in h.buffers] == ["image", "probs"]


def test_layout_strings_that_do_not_parse_leave_the_shape_unknown():
    from anekit.hwx.stabs import parse_layout

    assert parse_layout("t=ar1;0;2;3=s4c:ar1;0;5;4=s2w:5").shape == (2, 5)
    assert parse_layout("t=ar1;0;" + "9" * 5000 + ";2=s2w:5") is None  # int() would refuse it
    assert parse_layout("t=ar1;0;3;") is None  # array without an axis
    assert parse_layout("no type definition") is None


def test_decode_td_rejects_unknown_generation_names():
    with pytest.raises(HwxFormatError, match="unknown ANE generation"):
        decode_td(h13_td(), "h99")


# --------------------------------------------------------------------------------------
# The real H13 vectors
# --------------------------------------------------------------------------------------
def test_every_vector_reads_as_h13(vectors):
    for path in VECTOR_FILES:
        h = read(path)
        assert h.generation == "h13" and h.cpusubtype == 4, path.name
        assert "zin_ane_compiler" in h.compiler and h.target == "h13", path.name
        assert h.tds and all(td.fields for td in h.tds), path.name
        assert h.weights_section == "__TEXT,__const", path.name
        assert h.notes == (), path.name
        # The weights sit at round_up(text size, 16) after __text (docs/hwx.md).
        const = h.container.find_section("__TEXT", "__const")
        assert const.address - h.text_section.address == -(-h.text_section.size // 16) * 16, path.name


def test_read_accepts_paths_and_bytes(vectors):
    path = vector("h13_conv.hwx")
    assert read(str(path)).tds == read(path.read_bytes()).tds == read(bytearray(path.read_bytes())).tds


def test_conv_is_1x1_3_to_3_fp16_with_weights_of_two(vectors):
    h = read(vector("h13_conv.hwx"))
    f = h.tds[0].fields
    assert (f["Common.Kw"], f["Common.Kh"], f["Common.Cin"], f["Common.Cout"]) == (1, 1, 3, 3)
    assert f["Common.InFmt"] == f["Common.OutFmt"] == 2  # fp16 format code (docs/hwx.md)
    assert [(b.role, b.dtype, b.shape) for b in h.buffers] == [
        ("input", "float16", (1, 3, 1, 1)),
        ("output", "float16", (1, 3, 1, 1)),
    ]
    w = h.weights_fp16()
    nonzero = w[w != 0]
    assert nonzero.size == f["Common.Cin"] * f["Common.Cout"] * f["Common.Kw"] * f["Common.Kh"]
    assert np.all(nonzero == 2.0)
    # One 64-byte tile per output channel, named K<hash>_ne_<i> (guide ch. 23), each
    # starting with that channel's 3 input weights.
    tiles = sorted((s.value, s.name) for s in h.symbols if s.name.startswith("K") and "_ne_" in s.name)
    assert len(tiles) == 3
    const_address = h.container.find_section("__TEXT", "__const").address
    for address, _ in tiles:
        at = address - const_address
        assert np.all(np.frombuffer(h.weights[at:at + 6], "<f2") == 2.0)


def test_golden_conv_differs_only_in_weights(vectors):
    from anekit.hwx.diff import diff_files

    conv, golden = read(vector("h13_conv.hwx")), read(vector("h13_conv_golden.hwx"))
    assert np.all(golden.weights_fp16()[golden.weights_fp16() != 0] == 3.0)
    diffs = diff_files(conv, golden)
    assert {d.scope for d in diffs} == {"weights"}
    changes = [(d.a, d.b) for d in diffs if d.key.startswith("fp16[")]
    assert changes == [(2.0, 3.0)] * 9


def test_concat_has_two_chained_descriptors(vectors):
    h = read(vector("h13_concat.hwx"))
    first, second = h.tds
    assert (first.fields["Header.EON"], second.fields["Header.EON"]) == (0, 1)
    assert first.fields["Header.NextPointer"] == second.offset == 0x300
    inputs = [b for b in h.buffers if b.role == "input"]
    (output,) = [b for b in h.buffers if b.role == "output"]
    # Each descriptor copies one input's channels; together they fill the output.
    assert sorted(td.fields["Common.Cin"] for td in h.tds) == sorted(b.shape[1] for b in inputs)
    assert sum(td.fields["Common.Cin"] for td in h.tds) == output.shape[1] == 16400


def test_relu_uses_nonlinear_mode_1(vectors):
    assert read(vector("h13_relu.hwx")).tds[0].fields["NE.NonlinearMode"] == 1
    assert read(vector("h13_conv.hwx")).tds[0].fields["NE.NonlinearMode"] == 0


def test_sigmoid_carries_its_table_in_the_weights_section(vectors):
    h = read(vector("h13_sigmoid.hwx"))
    assert h.tds[0].fields["NE.NonlinearMode"] != read(vector("h13_relu.hwx")).tds[0].fields["NE.NonlinearMode"]
    table = h.weights_fp16().astype(np.float64)
    # Reference: the exact logistic function at 33 knots over [-8, 8] (docs/numerics.md:
    # activations are 33-knot tables), rounded to fp16; allow one fp16 ulp.
    knots = np.linspace(-8.0, 8.0, 33)
    reference = 1.0 / (1.0 + np.exp(-knots))
    ulp = np.spacing(reference.astype(np.float16)).astype(np.float64)
    matches = [i for i in range(len(table) - 32) if np.all(np.abs(table[i:i + 33] - reference) <= ulp)]
    assert len(matches) == 1


def test_gemm_is_512_by_512(vectors):
    h = read(vector("h13_gemm.hwx"))
    f = h.tds[0].fields
    assert (f["Common.Cin"], f["Common.Cout"]) == (512, 512)
    assert len(h.weights) == 512 * 512 * 2  # fp16
    assert [b.shape for b in h.buffers] == [(1, 512, 1, 1), (1, 512, 1, 1)]


def test_dma_strides_agree_with_the_symbol_layouts(vectors):
    # Tile DMA strides count 64-byte units (docs/hwx.md); the symbol strings give
    # byte strides. Two independent parts of the file must tell the same story.
    for path in VECTOR_FILES:
        h = read(path)
        inputs = {b.strides[2::-1][:3]: b for b in h.buffers if b.role == "input"}
        (output,) = [b for b in h.buffers if b.role == "output"]
        for td in h.tds:
            f = td.fields
            src = tuple(64 * f[k] for k in (
                "TileDMASrc.RowStride.Stride", "TileDMASrc.PlaneStride", "TileDMASrc.DepthStride.Stride"))
            dst = tuple(64 * f[k] for k in ("TileDMADst.RowStride", "TileDMADst.PlaneStride", "TileDMADst.DepthStride"))
            assert src in inputs, path.name
            assert inputs[src].shape[1] == f["Common.Cin"] and inputs[src].shape[3] == f["Common.Win"], path.name
            assert dst == output.strides[2::-1][:3], path.name


def test_every_descriptor_round_trips_bit_exactly(vectors):
    for path in VECTOR_FILES:
        h = read(path)
        raw = path.read_bytes()
        for td in h.tds:
            encoded = td.encode()
            start = h.text_section.offset + td.offset
            assert encoded == raw[start:start + td.size], path.name
            again = decode_td(encoded, "h13")
            assert again.header == td.header and again.streams == td.streams, path.name
            assert again.fields == td.fields, path.name


def test_with_fields_changes_only_that_field(vectors):
    for path in VECTOR_FILES:
        td = read(path).tds[0]
        edited = td.with_fields({"NE.PostScale": 0x3800, "Common.Cin": 77, "Header.TID": 0x1234})
        changed = {k for k in td.fields if td.fields[k] != edited.fields[k]}
        assert changed == {"NE.PostScale", "Common.Cin", "Header.TID"}, path.name
        assert decode_td(edited.encode(), "h13").fields == edited.fields, path.name
        # Bits outside the edited fields are untouched, word for word.
        a = np.frombuffer(td.encode(), "<u4")
        b = np.frombuffer(edited.encode(), "<u4")
        assert np.count_nonzero(a != b) <= 3, path.name


def test_with_fields_accepts_every_spelling_and_keeps_the_original(vectors):
    td = read(vector("h13_conv.hwx")).tds[0]
    for name in ("Common.Cin", "Common.Cin.Cin", "aneRegs.Common.Cin.Cin"):
        assert td.with_fields({name: 4}).fields["Common.Cin"] == 4
    assert td.fields["Common.Cin"] == 3  # TDs are immutable
    assert td.field("Common.Cin.Cin") == 3


def test_patched_file_reads_back_the_edit(vectors):
    h = read(vector("h13_conv.hwx"))
    patched = h.with_td(0, h.tds[0].with_fields({"NE.PostScale": 0x4000}))
    assert patched.tds[0].fields["NE.PostScale"] == 0x4000
    assert len(patched.to_bytes()) == len(h.to_bytes()) and patched.weights == h.weights


def test_bad_field_edits_raise_clear_errors(vectors):
    td = read(vector("h13_conv.hwx")).tds[0]
    with pytest.raises(HwxFieldError, match="did you mean"):
        td.with_fields({"Common.Cinn": 1})
    with pytest.raises(HwxFieldError, match="17 bits"):
        td.with_fields({"Common.Cin": 1 << 17})
    with pytest.raises(HwxFieldError):
        td.with_fields({"Common.Cin": -1})
    with pytest.raises(HwxFieldError, match="integer"):
        td.with_fields({"Common.Cin": 1.5})
    assert issubclass(HwxFieldError, AnekitError)


# --------------------------------------------------------------------------------------
# CLI (driven through register(), the module's contract with anekit.cli)
# --------------------------------------------------------------------------------------
def run_cli(argv, capsys):
    from anekit.cli import hwx as hwx_cli

    parser = argparse.ArgumentParser(prog="anekit")
    hwx_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def test_cli_dump_lists_buffers_then_blocks_nonzero_first(vectors, capsys):
    path = vector("h13_relu.hwx")
    code, out = run_cli(["hwx", "dump", str(path)], capsys)
    assert code == 0
    assert out.index("buffers:") < out.index("image") < out.index("TD 0")
    ne = out[out.index("  NE ("):]
    lines = ne[: ne.index("\n  TileDMADst")].splitlines()[1:]
    zero_at = next(i for i, line in enumerate(lines) if line.strip().startswith("= 0:"))
    shown = {line.split()[0]: int(line.split()[1]) for line in lines[:zero_at]}
    listed_zero = " ".join(lines[zero_at:]).split("= 0:")[1].split("unnamed")[0]
    fields = read(path).tds[0].fields
    ne_fields = {k[3:]: v for k, v in fields.items() if k.startswith("NE.")}
    assert shown == {k: v for k, v in ne_fields.items() if v} and shown["NonlinearMode"] == 1
    assert {n.strip() for n in listed_zero.split(",")} == {k for k, v in ne_fields.items() if not v}


def test_cli_dump_json_matches_the_reader(vectors, capsys):
    path = vector("h13_concat.hwx")
    code, out = run_cli(["hwx", "dump", str(path), "--json"], capsys)
    document = json.loads(out)
    h = read(path)
    assert code == 0 and document["generation"] == "h13" and len(document["tds"]) == 2
    assert [td["fields"] for td in document["tds"]] == [td.fields for td in h.tds]
    assert [b["name"] for b in document["buffers"]] == ["input_1", "input_0", "output"]


def test_cli_diff_conv_against_golden(vectors, capsys):
    code, out = run_cli(["hwx", "diff", str(vector("h13_conv.hwx")), str(vector("h13_conv_golden.hwx"))], capsys)
    assert code == 1
    assert "9 of 96" in out and "2.0 -> 3.0" in out and "1 compared, 0 with differences" in out
    code, out = run_cli(["hwx", "diff", str(vector("h13_relu.hwx")), str(vector("h13_sigmoid.hwx")), "--json"], capsys)
    keys = {(d["scope"], d["key"]): (d["a"], d["b"]) for d in json.loads(out)["differences"]}
    assert code == 1 and keys[("td 0", "NE.NonlinearMode")] == (1, 2)


def test_cli_diff_of_a_file_with_itself_is_empty(vectors, capsys):
    code, out = run_cli(["hwx", "diff", str(vector("h13_sum.hwx")), str(vector("h13_sum.hwx"))], capsys)
    assert code == 0 and "no differences" in out


def test_cli_dump_of_dense_file_shows_raw_writes(tmp_path, capsys):
    path = tmp_path / "dense.hwx"
    path.write_bytes(build_hwx(subtype=9, text=_dense_td(9, [(NE_BURST, [1, 2, 0xABC])]), buffers=IO_BUFFERS))
    code, out = run_cli(["hwx", "dump", str(path)], capsys)
    assert code == 0 and "h17" in out and "NE+0x008" in out and "0x00000abc" in out


def test_cli_missing_file_is_an_anekit_error(tmp_path, capsys):
    with pytest.raises(HwxFormatError, match="cannot open .*absent.hwx"):
        run_cli(["hwx", "dump", str(tmp_path / "absent.hwx")], capsys)


def test_dump_shows_writes_outside_known_blocks():
    import struct
    from anekit.hwx.disasm import render_dump
    header = [(1 << 25)] + [0] * 9
    common = [0] * 16
    common[3] = 5
    body = [(15 << 26) | 0x0, *common, (1 << 26) | 0x30000, 0xDEAD, 0xBEEF]
    text = struct.pack(f"<{len(header) + len(body)}I", *header, *body)
    out = render_dump(read(build_hwx(text=text, buffers=IO_BUFFERS)))
    assert "(outside known blocks)" in out and "0x30000 = 0x0000dead" in out and "0x0000beef" in out
