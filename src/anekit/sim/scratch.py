"""Kernel scratch memory: the bytes a kernel allocates besides its outputs (im2col columns,
attention scores, a zero-stuffed input), so the simulator's memory guard counts them and
refuses an op before allocating rather than dying in numpy with a MemoryError.

Each estimate sits beside its kernel (`@scratch("conv")` in kernels/conv.py); it takes the op
and returns a byte count for the kernel's largest route (the guard must not under-count).
"""
from __future__ import annotations

import math
from typing import Callable

SCRATCH: dict[str, Callable] = {}
F32_BYTES = 4


def scratch(*names: str):
    """Register `fn(op) -> bytes` as the scratch estimate of each named op's kernel."""
    def register(fn):
        for name in names:
            SCRATCH[name] = fn
        return fn
    return register


def scratch_bytes(op) -> int:
    fn = SCRATCH.get(op.type)
    return int(fn(op)) if fn is not None else 0


def elements(shape) -> int:
    return math.prod(int(s) for s in shape)
