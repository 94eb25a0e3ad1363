"""ANE chips and compiler targets: limits, features and op support per family, each number
with its source (guide ch. 4, 12, 34, 35, Appendix A; vendor figures).

    from anekit import targets
    m1 = targets.get("M1")            # case, space and hyphen insensitive; chip or compiler name
    m1.compiler, m1.family            # "h13", "h13"
    m1.limits.max_kernel_width_fp16   # 13
    m1.limits.source("max_dim")       # where the number comes from
    m1.supports("sin")                # "unsupported" (native from A15)

Family keys: h11 (pre-A13 legacy: A11, A12), h13 (A13, M1), h14 (A14, M2), h15 (A15, M3),
h16 (A16 and later: M4, M5, A17, A18 share limits and op set), m11 (small embedded engine),
ref (U1-U3 reference profiles, not silicon).
"""
from __future__ import annotations

import difflib

from ..errors import TargetError
from . import _data, support
from .records import Chip, CompilerTarget, Family, Features, Limits

__all__ = ["get", "all_targets", "all_chips", "families", "names", "support",
           "Chip", "CompilerTarget", "Family", "Features", "Limits"]


def get(name) -> Chip:
    """The record for a chip ("M4 Max", "m4max", "A17 Pro") or compiler target ("h16g").

    Also accepted: "Apple M5 Pro" (as `system_profiler` prints it) and Mac model identifiers
    ("Mac16,12"). A compiler target resolves to its representative chip (e.g. "h13g" -> M1 Max, the guide's
    measured part); targets with no chip sold under them ("h17d", "u1") give a target-only record.
    A Chip passed in is returned as is."""
    if isinstance(name, Chip):
        return name
    if not isinstance(name, str) or not name.strip():
        raise TargetError(f"target name must be a non-empty string, got {name!r}")
    idx = _data.index()
    key = _data.normalize(name)
    for k in (key, key[len("apple"):] if key.startswith("apple") else None):
        if k and k in idx:          # "Apple M5 Pro" as system_profiler prints it
            return idx[k]
    near = difflib.get_close_matches(key, list(idx), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(near)}? " if near else ""
    raise TargetError(f"unknown chip or compiler target '{name}': {hint}known chips: "
                      f"{', '.join(c.name for c in all_chips())}; compiler targets such as h13g, h16g, h17s; "
                      f"Mac model identifiers such as Mac16,12")


def all_targets() -> list[CompilerTarget]:
    """The 28 compiler targets of guide ch. 34, in the guide's order."""
    return list(_data.targets().values())


def all_chips() -> list[Chip]:
    """Every chip record (M1 ... M5 Max, A11 ... A18 Pro)."""
    return list(_data.chips().values())


def families() -> dict:
    """Family key -> Family (label, member targets, limits, features, streaming formats)."""
    return dict(_data.families())


def names() -> list[str]:
    """Chip names and compiler target names, as printed in help text."""
    return [c.name for c in all_chips()] + [t.name for t in all_targets()]
