"""The MIL dialects, and the one place that decides which applies.

  ios18  `program(1.3)`, `func main<ios18>`, bare scalars `int32(1)` (iOS 18 op set: SDPA,
         states, the iOS 18 constexpr forms)
  ios16  `program(1.0)`, `func main<ios16>`, scalars as rank-0 tensors `tensor<int32, []>(1)`

The direct route compiles ios16 on the M1/M2-era families and older and ios18 from A15/M3 on
(guide ch. 34, the compiler targets); a program read from text or a package keeps the dialect
of its header; anything else gets DEFAULT.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import MILEmitError


@dataclass(frozen=True)
class Dialect:
    name: str
    version: str          # program(...) version
    bare_scalars: bool    # ios18: `int32(1)`; ios16: `tensor<int32, []>(1)`


DIALECTS = {
    "ios18": Dialect("ios18", "1.3", True),
    "ios16": Dialect("ios16", "1.0", False),
}
DEFAULT = "ios18"
# Families whose compiler takes the ios16 dialect (A14/M1/M2 era and older).
IOS16_FAMILIES = frozenset({"h11", "h13", "h14", "m11"})


def get(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except (KeyError, TypeError):
        raise MILEmitError(f"unknown MIL dialect {name!r}; use one of {', '.join(DIALECTS)}") from None


def for_family(family: str) -> str:
    """The dialect a chip family's compiler wants on the direct route."""
    return "ios16" if family in IOS16_FAMILIES else "ios18"


def has_states(name: str) -> bool:
    """Whether a dialect's op set has state buffers (read_state / write_state: iOS 18)."""
    return get(name).name == "ios18"


def of_program(prog) -> str:
    """A program's own dialect (from its header when parsed or loaded), else DEFAULT."""
    return prog.dialect or DEFAULT


def of_version(version: str) -> str:
    """The dialect a `program(X.Y)` header belongs to: 1.3 and later are ios18, older ios16."""
    try:
        major, minor = (int(p) for p in version.split(".", 1))
    except ValueError:
        return "ios16"
    return "ios18" if (major, minor) >= (1, 3) else "ios16"


def opset_number(tag: str) -> int:
    """18 for "ios18": op sets compare by their iOS release."""
    return int(tag[3:])


def of_opset(opset: str | None) -> str | None:
    """The dialect an opset tag such as `ios17` belongs to (None when not an iosNN tag)."""
    m = re.fullmatch(r"ios(\d+)", opset or "")
    if not m:
        return None
    return "ios18" if int(m.group(1)) >= 18 else "ios16"
