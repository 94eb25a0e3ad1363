"""Buffer shapes and strides from the stabs-style symbol strings of a .hwx file.

The compiler describes each I/O tensor as nested arrays of structs, for example
``image:t11=ar1;0;1;12=s192n:ar1;0;3;13=s64c:ar1;0;1;14=s64h:ar1;0;1;15=s2w:5``:
an array of 1 ``n`` (each 192 bytes) of 3 ``c`` (64 bytes) of 1 ``h`` (64 bytes) of 1
``w`` (2 bytes) of type 5. ``ar1;L;U;`` holds the element count U - L (the vectors
write ``ar1;0;3`` for 3 channels), ``s<size><axis>:`` the byte stride of that axis, and
the trailing number the element type, named by catalog entries such as
``float16:t5=r1;2;0`` (docs/hwx.md, guide ch. 23 "Stabs-style shape descriptors").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Numbers are capped at 18 digits: int() refuses very long decimal strings, and no
# real count or stride comes close.
_CATALOG = re.compile(r"^([A-Za-z_]\w*):t(\d{1,18})=")
_ARRAY = re.compile(r"ar\d{1,18};(-?\d{1,18});(-?\d{1,18});")
_AXIS = re.compile(r"(?:\d{1,18}=)?s(\d{1,18})([a-z]+):")
_ELEMENT = re.compile(r"(\d{1,18})")

# Symbol types seen in the vectors: 0x80 (N_LSYM) for the type catalog, 0x20 (N_GSYM)
# for tensor layouts.
CATALOG_SYMBOL_TYPE = 0x80
LAYOUT_SYMBOL_TYPE = 0x20


@dataclass(frozen=True)
class Layout:
    axes: str  # e.g. "nchw"
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # bytes
    element_type: int


def parse_catalog(entries: list[str]) -> dict[int, str]:
    """Map type numbers to names from entries like ``float16:t5=r1;2;0``."""
    catalog: dict[int, str] = {}
    for text in entries:
        match = _CATALOG.match(text)
        if match:
            catalog[int(match.group(2))] = match.group(1)
    return catalog


def parse_layout(text: str) -> Layout | None:
    """Parse the part after ``name:tN=`` of a layout symbol; None if it is not one.

    Returns None rather than raising: layouts are descriptive, and a file whose
    symbol strings use a form this parser does not know is still a readable program.
    """
    _, sep, body = text.partition("=")
    if not sep:
        return None
    shape: list[int] = []
    strides: list[int] = []
    axes: list[str] = []
    pos = 0
    while True:
        array = _ARRAY.match(body, pos)
        if not array:
            break
        lower, upper = int(array.group(1)), int(array.group(2))
        axis = _AXIS.match(body, array.end())
        if not axis or upper < lower:
            return None
        shape.append(upper - lower)
        strides.append(int(axis.group(1)))
        axes.append(axis.group(2))
        pos = axis.end()
    element = _ELEMENT.fullmatch(body, pos)
    if not shape or not element:
        return None
    return Layout("".join(axes), tuple(shape), tuple(strides), int(element.group(1)))
