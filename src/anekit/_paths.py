"""Path arguments: anything os.fspath takes, else a clear UsageError (never a bare TypeError)."""
from __future__ import annotations

import os

from .errors import UsageError


def as_path(value, what: str = "path") -> str:
    try:
        p = os.fspath(value)
    except TypeError:
        raise UsageError(f"{what} must be a file or folder path, got {type(value).__name__}") from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not p:
        raise UsageError(f"{what} is empty")
    return p
