"""data/targets.json, read and schema-checked once (the records and the op-support table
both read it)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from ..errors import TargetError


@lru_cache(maxsize=1)
def raw() -> dict:
    text = resources.files("anekit.targets").joinpath("data/targets.json").read_text("utf-8")
    doc = json.loads(text)
    if doc.get("schema") != 1:
        raise TargetError(f"targets.json: unsupported schema {doc.get('schema')!r}")
    return doc
