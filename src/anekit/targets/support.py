"""Per-op support by family, from the guide's Appendix A (legacy column from ch. 35's floors)."""
from __future__ import annotations

from functools import lru_cache

from ..errors import TargetError, UnknownOpError
from ._raw import raw

STATUSES = ("native", "decomposed", "unsupported")
COLUMN_ORDER = ("h11", "h13", "h14", "h15", "h16")   # oldest first, for "native from ..." reasons


@lru_cache(maxsize=1)
def table() -> dict[str, dict[str, str]]:
    sup = raw()["op_support"]
    cols = tuple(sup["columns"])
    if cols != COLUMN_ORDER:
        raise TargetError(f"targets.json: op_support columns {cols} must be {COLUMN_ORDER}")
    for op, rec in sup["ops"].items():
        bad = [c for c in cols if rec.get(c) not in STATUSES]
        if bad:
            raise TargetError(f"targets.json: op_support.{op} has no valid status for {bad}")
    return sup["ops"]


def ops() -> frozenset[str]:
    """Every op name the support table covers."""
    return frozenset(table())


def status(op: str, column: str) -> str:
    """'native', 'decomposed' or 'unsupported' for `op` on the family column `column`."""
    rec = table().get(op)
    if rec is None:
        raise UnknownOpError(f"no support entry for op '{op}'")
    if column not in COLUMN_ORDER:
        raise TargetError(f"unknown support column '{column}' (known: {', '.join(COLUMN_ORDER)})")
    return rec[column]


def reason(op: str) -> str | None:
    """Why an op is not native somewhere (our wording of the guide's note), or None."""
    rec = table().get(op)
    return rec.get("why") if rec else None


def native_from(op: str) -> str | None:
    """The oldest family column on which `op` is native, or None if no family runs it natively."""
    rec = table().get(op)
    if rec is None:
        return None
    for col in COLUMN_ORDER:
        if rec[col] == "native":
            return col
    return None


def source(column: str) -> str:
    sup = raw()["op_support"]
    return raw()["sources"][sup["column_sources"][column]]
