"""Field-level differences between two .hwx programs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anekit.hwx.reader import HwxFile
from anekit.hwx.td import TaskDescriptor

MAX_WEIGHT_ITEMS = 16  # individual weight differences listed before summarising


@dataclass(frozen=True)
class Difference:
    scope: str  # "file", "buffer", "td <i>" or "weights"
    key: str
    a: object
    b: object
    text: str = ""  # replaces "a -> b" when the pair is not a before/after

    def to_dict(self) -> dict:
        return {"scope": self.scope, "key": self.key, "a": self.a, "b": self.b}


def diff_files(a: HwxFile, b: HwxFile) -> list[Difference]:
    out: list[Difference] = []
    for key in ("generation", "cpusubtype", "compiler_version", "target"):
        if getattr(a, key) != getattr(b, key):
            out.append(Difference("file", key, getattr(a, key), getattr(b, key)))
    out += _buffer_differences(a, b)
    if len(a.tds) != len(b.tds):
        out.append(Difference("file", "task descriptors", len(a.tds), len(b.tds)))
    for index, (ta, tb) in enumerate(zip(a.tds, b.tds)):
        out += diff_tds(ta, tb, f"td {index}")
    out += _weight_differences(a.weights, b.weights)
    return out


def diff_tds(a: TaskDescriptor, b: TaskDescriptor, scope: str = "td") -> list[Difference]:
    """Named fields that differ, then register bits no field names (or raw writes)."""
    out = []
    fa, fb = a.fields, b.fields
    for name in list(fa) + [n for n in fb if n not in fa]:
        if fa.get(name) != fb.get(name):
            out.append(Difference(scope, name, fa.get(name), fb.get(name)))
    if a.table is not None and b.table is not None:
        ua, ub = a.unnamed_bits(), b.unnamed_bits()
    else:
        ua, ub = a.registers, b.registers
    for key in sorted(set(ua) | set(ub)):
        if ua.get(key) != ub.get(key):
            where = f"Header[{-1 - key}] unnamed bits" if key < 0 else a.generation.describe(key)
            out.append(Difference(scope, where, ua.get(key), ub.get(key)))
    if (a.size, len(a.streams)) != (b.size, len(b.streams)):
        out.append(Difference(scope, "layout (bytes, streams)", (a.size, len(a.streams)), (b.size, len(b.streams))))
    return out


def _buffer_differences(a: HwxFile, b: HwxFile) -> list[Difference]:
    out = []
    ba = {x.symbol: x.to_dict() for x in a.buffers}
    bb = {x.symbol: x.to_dict() for x in b.buffers}
    for name in list(ba) + [n for n in bb if n not in ba]:
        if name not in ba or name not in bb:
            out.append(Difference("buffer", name, "present" if name in ba else None, "present" if name in bb else None))
            continue
        for key, value in ba[name].items():
            if value != bb[name][key]:
                out.append(Difference("buffer", f"{name}.{key}", value, bb[name][key]))
    return out


def _weight_differences(wa: bytes, wb: bytes) -> list[Difference]:
    if wa == wb:
        return []
    if len(wa) != len(wb) or len(wa) % 2:
        return [Difference("weights", "bytes", len(wa), len(wb))]
    # Compare bit patterns, so NaNs and signed zeros count as they are stored.
    ua = np.frombuffer(wa, dtype="<u2")
    ub = np.frombuffer(wb, dtype="<u2")
    changed = np.flatnonzero(ua != ub)
    count, total = int(changed.size), int(ua.size)
    out = [Difference("weights", "changed fp16 values", count, total, f"{count} of {total}")]
    for i in changed[:MAX_WEIGHT_ITEMS]:
        va = float(ua[i:i + 1].view("<f2")[0])
        vb = float(ub[i:i + 1].view("<f2")[0])
        out.append(Difference("weights", f"fp16[{int(i)}]", va, vb))
    return out


def render_diff(diffs: list[Difference], name_a: str = "a", name_b: str = "b", td_count: int | None = None) -> str:
    if not diffs:
        return f"{name_a} and {name_b}: no differences\n"
    lines = [f"--- {name_a}", f"+++ {name_b}"]
    scope = None
    for d in diffs:
        if d.scope != scope:
            lines.append(f"{d.scope}:")
            scope = d.scope
        lines.append(f"  {d.key}: {d.text or f'{_show(d.a)} -> {_show(d.b)}'}")
    if td_count is not None:
        changed = len({d.scope for d in diffs if d.scope.startswith("td ")})
        lines.append(f"task descriptors: {td_count} compared, {changed} with differences")
    return "\n".join(lines) + "\n"


def _show(value: object) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10:
        return f"{value} ({value:#x})"
    return str(value)
