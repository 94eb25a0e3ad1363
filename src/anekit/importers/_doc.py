"""The supported-op lists of docs/importers.md, generated from the importers' tables."""
from __future__ import annotations
from .aten_table import ATEN
from .onnx_table import ONNX


def _table(title: str, table: dict) -> str:
    rows = {}
    for src, r in table.items():   # group source names that share a rule
        rows.setdefault(id(r.convert), ([], r.emits))[0].append(src)
    lines = [f"### {title} ({len(table)} source ops)", "", "| source op | anekit ops |", "|---|---|"]
    for names, emits in sorted(rows.values(), key=lambda v: v[0][0]):
        lines.append(f"| {', '.join(f'`{n}`' for n in sorted(names))} | "
                     f"{', '.join(f'`{e}`' for e in emits) or '(none: passes its input through)'} |")
    return "\n".join(lines) + "\n"


def ops_markdown() -> str:
    return _table("PyTorch (ATen)", ATEN) + "\n" + _table("ONNX", ONNX)
