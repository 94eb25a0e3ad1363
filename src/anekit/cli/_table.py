"""Plain-text tables and a stderr progress line for the CLI."""
from __future__ import annotations

import json
import math



def _cell(v) -> str:
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.4e}"
    return str(v)


def format_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """Columns padded to width; numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) and rows for i in range(len(headers))]

    def line(vals):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric)).rstrip()

    out = ([title] if title else []) + [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def to_json(data, indent: int | None = 2) -> str:
    """Strict JSON for --json output: numpy scalars and arrays become Python values, and
    non-finite floats (which JSON cannot hold) become the strings "inf", "-inf" and "nan"."""

    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "tolist"):          # numpy scalar or array
            return clean(v.tolist())
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if v != v else ("inf" if v > 0 else "-inf")
        return v

    return json.dumps(clean(data), indent=indent, allow_nan=False)
