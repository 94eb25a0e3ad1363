"""What the simulator derives from a constant array, shared by every executable that reads the
same array object.

A model's programs (a decoder's prefill and decode, one program per prompt-length bucket) hold
their weights as the same read-only arrays (ir.make_const(copy=False)). Each executable used to
make its own float32 copy of every weight and its own MAC operand layouts, so memory grew by
about five times the fp16 weights per program; with this memo the second program reuses the
first one's. An entry is keyed by the source array's identity and everything else the derived
value depends on (the numerics profile, the op's layout arguments), and it lives exactly as
long as the source array: a weak reference drops it when the source is freed. Writable arrays
are never memoized (their contents could change under the entry).
"""
from __future__ import annotations

import weakref
from typing import Callable

import numpy as np

_MEMO: dict[tuple, tuple] = {}


def memo(source, key: tuple, make: Callable):
    """make(), computed once per (read-only `source` array, `key`) and shared afterwards."""
    if type(source) is not np.ndarray or source.flags.writeable:
        return make()
    k = (id(source),) + key
    hit = _MEMO.get(k)
    if hit is not None and hit[0]() is source:
        return hit[1]
    value = make()
    # the dict bound as a default: at interpreter exit the module's globals may be gone first
    _MEMO[k] = (weakref.ref(source, lambda _ref, k=k, held=_MEMO: held.pop(k, None)), value)
    return value


def entries() -> int:
    """How many derived values are held (for tests)."""
    return len(_MEMO)
