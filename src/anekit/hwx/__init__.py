"""Read, disassemble and patch compiled ANE programs (.hwx).

>>> h = read("conv.hwx")                 # doctest: +SKIP
>>> h.generation, h.compiler_version, [b.shape for b in h.buffers]  # doctest: +SKIP
>>> td = h.tds[0]; td.fields["Common.Cin"]                           # doctest: +SKIP
>>> td.with_fields({"NE.PostScale": 0x3C00}).encode()                # doctest: +SKIP
"""
from anekit.hwx.generations import GENERATIONS, Generation
from anekit.hwx.reader import Buffer, HwxFile, read
from anekit.hwx.regtable import FieldSpec, h13_table
from anekit.hwx.streams import RegisterStream
from anekit.hwx.td import RegisterWrite, TaskDescriptor
from anekit.hwx.walk import decode_td

__all__ = [
    "GENERATIONS",
    "Buffer",
    "FieldSpec",
    "Generation",
    "HwxFile",
    "RegisterStream",
    "RegisterWrite",
    "TaskDescriptor",
    "decode_td",
    "h13_table",
    "read",
]
