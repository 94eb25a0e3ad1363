"""What kernels call to apply a profile: storage rounding, input coercion, MAC, reductions."""
from __future__ import annotations

import numpy as np

from . import mac
from ..ir.fp16cast import from_fp16
from .fp16 import F32, F16_MAX, has_nan, round_fp16
from .profiles import NumericsProfile


class Numerics:
    """A profile bound to helpers. `fp16` is False in exact mode, where every helper is the
    plain float32 operation."""

    def __init__(self, profile: NumericsProfile):
        self.profile = profile
        self.fp16 = profile.fp16_storage

    def store(self, a) -> np.ndarray:
        """A float op's result as it lands in memory: fp16 (half to even), never NaN."""
        a = np.asarray(a, dtype=F32)
        if not self.fp16:
            return a
        return round_fp16(a, nan=0.0 if self.profile.indeterminate_to_zero else None)

    def ingest(self, a) -> np.ndarray:
        """A value entering the engine (input or weight): fp16, NaN coerced to +inf."""
        a = np.asarray(a, dtype=F32)
        if not self.fp16:
            return a
        return round_fp16(a, nan=np.inf if self.profile.nan_inputs_to_inf else None)

    def ingest_fp16(self, h: np.ndarray) -> np.ndarray:
        """`ingest` of a float16 array: its values are already on the fp16 grid, where the
        rounding is the identity, so only the NaN rule is left (a max pass, not a rounding)."""
        a = from_fp16(h)
        if self.fp16 and self.profile.nan_inputs_to_inf and has_nan(a):
            a = np.where(np.isnan(a), F32(np.inf), a)
        return a

    def const(self, value) -> F32:
        """A scalar parameter (epsilon, alpha, ...) as the engine holds it."""
        v = F32(value)
        return F32(np.float16(v)) if self.fp16 else v

    def matmul(self, x, w, ceiling: bool = True) -> np.ndarray:
        """x [..., M, K] @ w [..., K, N] through the MAC (either may be an `operand`)."""
        return mac.matmul(x, w, self.profile, ceiling)

    def operand(self, a, k_axis: int) -> "mac.Operand":
        """A constant MAC operand prepared once (cache it in the kernel); k_axis is its
        reduction axis: -1 for a left operand, -2 for a right one."""
        return mac.Operand(a, self.profile, k_axis, const=True)

    def wide_sum(self, lanes) -> np.ndarray:
        """Sum over the last axis in the accumulator (not yet rounded to storage)."""
        return mac.reduce_lanes(lanes, self.profile)

    def products(self, a, b) -> np.ndarray:
        """Elementwise products as MAC lanes (rounded like the fp16 multiplier)."""
        prod = np.multiply(a, b, dtype=F32)
        if self.fp16 and self.profile.mac_round_products:
            prod = self.store(prod)
        return prod

    def denominator(self, d: np.ndarray) -> np.ndarray:
        """Zeros lose their sign before the reciprocal path (1/(-0) = +inf on the engine)."""
        if self.fp16 and self.profile.unsigned_zero_reciprocal:
            return d + F32(0.0)      # IEEE: -0 + +0 = +0, everything else unchanged
        return d

    def width_slice(self, a: np.ndarray) -> np.ndarray:
        """The crop-DMA gain of a width slice with a nonzero begin offset (ch. 3)."""
        gain = self.profile.width_slice_gain if self.fp16 else 1.0
        if gain == 1.0 or a.dtype.kind != "f":
            return a
        over = np.abs(a) > F32(F16_MAX / gain)
        return np.where(over, np.copysign(F32(np.inf), a), a) if over.any() else a
