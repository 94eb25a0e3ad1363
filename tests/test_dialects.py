"""The MIL dialect is decided in one place (anekit/dialects.py)."""
import ast
import pathlib

import anekit as ak
from anekit import dialects
from anekit.coreml import opsets

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "anekit"


def test_chips_headers_and_opsets_agree_through_one_module():
    assert ak.targets.get("m1").dialect == dialects.for_family("h13") == "ios16"
    assert ak.targets.get("m4").dialect == dialects.for_family("h16") == "ios18"
    assert dialects.of_version("1.3") == "ios18" and dialects.of_version("1.0") == "ios16"
    assert dialects.of_opset("ios17") == "ios16" and dialects.of_opset("ios26") == "ios18"
    assert opsets.dialect_for("ios26") == ("1.3", "ios18") and opsets.dialect_for("ios15") == ("1.0", "ios16")
    prog = ak.program({"y": ak.relu(ak.input("x", (2,)))})
    assert dialects.of_program(prog) == dialects.DEFAULT
    text = ak.mil.emit(prog)[0]
    assert text.startswith(f"program({dialects.get(dialects.DEFAULT).version})")


def test_no_other_module_compares_against_a_dialect_name():
    """A decision looks like `x == "ios16"`, `x in ("ios18", ...)` or a family -> dialect table."""
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "dialects.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for c in ast.walk(node):
                    if isinstance(c, ast.Constant) and c.value in ("ios16", "ios18"):
                        found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, found
