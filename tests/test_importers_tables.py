"""The importers' op tables (no torch or onnx needed): every op a rule emits is declared, and
docs/importers.md lists exactly what the tables map."""
import pathlib

import pytest

from anekit.importers._doc import ops_markdown
from anekit.importers.aten_table import ATEN
from anekit.importers.onnx_table import ONNX
from anekit.ir.spec import REGISTRY

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "importers.md"
BEGIN, END = "<!-- ops: begin (python -m anekit.importers) -->\n", "<!-- ops: end -->"


@pytest.mark.parametrize("table", [ATEN, ONNX], ids=["aten", "onnx"])
def test_tables_name_only_declared_ops(table):
    undeclared = {src: [op for op in r.emits if op not in REGISTRY] for src, r in table.items()}
    assert not {k: v for k, v in undeclared.items() if v}
    assert all(r.emits or r.convert for r in table.values())


def test_aten_keys_are_schema_names():
    assert all(k.startswith("aten.") and k.count(".") == 1 for k in ATEN)


def test_docs_list_the_generated_tables():
    text = DOC.read_text()
    listed = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert listed == ops_markdown(), "docs/importers.md is stale: regenerate with python -m anekit.importers"
