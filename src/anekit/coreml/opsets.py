"""Core ML opset names, specification versions and MIL dialect tags (coremltools' table)."""
from __future__ import annotations

from .. import dialects
from ..errors import ModelFormatError

# opset -> (Function.opset tag as MIL text writes it, Model.specificationVersion)
OPSETS = {
    "CoreML5": ("ios15", 6),
    "CoreML6": ("ios16", 7),
    "CoreML7": ("ios17", 8),
    "CoreML8": ("ios18", 9),
    "CoreML9": ("ios26", 10),
}
TAG_TO_OPSET = {tag: opset for opset, (tag, _) in OPSETS.items()}
DEFAULT_OPSET = "CoreML8"     # iOS 18: fp16 I/O, SDPA, states (the deployment target)
OPSET_OF_DIALECT = {"ios18": DEFAULT_OPSET, "ios16": "CoreML6"}   # a function with no opset tag of its own


def tag_for(opset: str, where: str) -> str:
    if opset not in OPSETS:
        raise ModelFormatError(f"{where}: unknown opset '{opset}' (known: {', '.join(OPSETS)})")
    return OPSETS[opset][0]


def dialect_for(tag: str) -> tuple[str, str]:
    """(MIL program version, anekit dialect) for a function's opset tag: iOS 18 and later
    print as program(1.3), earlier ones as program(1.0) (docs/mil.md)."""
    dialect = dialects.of_opset(tag) or "ios16"
    return dialects.get(dialect).version, dialect


def opset_for(tag: str | None, dialect: str | None) -> str:
    """The Core ML opset a function is written with: its own tag, else the program's dialect."""
    if tag in TAG_TO_OPSET:
        return TAG_TO_OPSET[tag]
    if tag is not None:
        raise ModelFormatError(f"function opset '{tag}' has no Core ML equivalent (known: {', '.join(TAG_TO_OPSET)})")
    return OPSET_OF_DIALECT[dialect or dialects.DEFAULT]


def spec_version(opsets) -> int:
    return max(OPSETS[o][1] for o in opsets)
