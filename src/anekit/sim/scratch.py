"""Kernel scratch memory: the bytes a kernel allocates besides its outputs (im2col columns,
attention scores, a zero-stuffed input), so the simulator's memory guard counts them and
refuses an op before allocating rather than dying in numpy with a MemoryError.

Each estimate sits beside its kernel (`@scratch("conv")` in kernels/conv.py, after the kernel)
and is filed on that kernel's record, found through the op declaration; it takes the op and
returns a byte count for the kernel's largest route (the guard must not under-count).
"""
from __future__ import annotations

import math

from ..ir.spec import REGISTRY

F32_BYTES = 4


def scratch(*names: str):
    """File `fn(op) -> bytes` as the scratch estimate of each named op's kernel."""
    def register(fn):
        for name in names:
            k = REGISTRY[name].kernel
            if k is None:
                raise RuntimeError(f"scratch estimate '{fn.__name__}' for '{name}' comes before its kernel")
            k.scratch = fn
        return fn
    return register


def scratch_bytes(op) -> int:
    k = op.spec.kernel
    return int(k.scratch(op)) if k is not None and k.scratch is not None else 0


def elements(shape) -> int:
    return math.prod(int(s) for s in shape)
