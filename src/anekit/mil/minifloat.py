"""bf16 and fp8 (E4M3FN, E5M2) codes, which numpy has no dtype for, to and from numpy floats.

Decoding is exact: every bf16 value is a float32, and every E4M3FN / E5M2 value is a float16
(the engine itself decodes fp8 to fp16 before the multiplier; guide ch. 36, glossary).
Encoding rounds to nearest, ties to even.

E4M3FN is the shipping fp8 variant (guide ch. 36): bias 7, max finite 448, no infinity,
NaN at 0x7F/0xFF. E5M2 is the high byte of an fp16: bias 15, max finite 57344, inf at 0x7C.
"""
from __future__ import annotations

import numpy as np

from anekit.errors import ShapeError

FP8_FORMATS = ("fp8e4m3", "fp8e5m2")

# Largest finite code (sign bit clear) and the canonical NaN code of each fp8 format.
_MAX_FINITE_CODE = {"fp8e4m3": 0x7E, "fp8e5m2": 0x7B}
_NAN_CODE = {"fp8e4m3": 0x7F, "fp8e5m2": 0x7E}
_INF_CODE = {"fp8e5m2": 0x7C}


def _e4m3_table() -> np.ndarray:
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 3) & 0xF
    mantissa = (codes & 0x7).astype(np.float64)
    normal = (1.0 + mantissa / 8.0) * np.exp2(exponent - 7.0)
    subnormal = mantissa / 8.0 * 2.0 ** -6
    values = sign * np.where(exponent == 0, subnormal, normal)
    values[(codes & 0x7F) == 0x7F] = np.nan
    return values.astype(np.float16)  # exact: 448 and 2**-9 lie well inside fp16


_DECODE_E4M3 = _e4m3_table()


def decode_fp8(codes: np.ndarray, fmt: str) -> np.ndarray:
    """uint8 fp8 codes -> float16 values (exact)."""
    codes = np.asarray(codes, dtype=np.uint8)
    if fmt == "fp8e4m3":
        return _DECODE_E4M3[codes]
    return (codes.astype(np.uint16) << np.uint16(8)).view(np.float16)


def _positive_grid(fmt: str) -> np.ndarray:
    """Non-negative finite values in code order, plus the next step past the maximum.

    The extra entry stands for 'overflow', so rounding to nearest with ties to even
    decides by itself whether a value just past the maximum stays finite.
    """
    top = _MAX_FINITE_CODE[fmt]
    values = decode_fp8(np.arange(top + 1, dtype=np.uint8), fmt).astype(np.float64)
    step = values[-1] - values[-2]
    return np.append(values, values[-1] + step)


_GRIDS = {fmt: _positive_grid(fmt) for fmt in FP8_FORMATS}


def encode_fp8(values: np.ndarray, fmt: str) -> np.ndarray:
    """Float values -> uint8 fp8 codes, rounding to nearest, ties to even.

    NaN maps to the format's NaN. E5M2 has an infinity, so infinities and values that round
    past 57344 become infinity as IEEE rounding does; E4M3FN has none, so for it those raise
    ShapeError rather than saturating or turning into NaN silently.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    grid = _GRIDS[fmt]
    magnitude = np.abs(x)
    finite = np.isfinite(x)
    safe = np.where(finite, magnitude, 0.0)
    upper = np.clip(np.searchsorted(grid, safe, side="left"), 0, grid.size - 1)
    lower = np.maximum(upper - 1, 0)
    below, above = safe - grid[lower], grid[upper] - safe
    take_upper = (above < below) | ((above == below) & (upper % 2 == 0))
    codes = np.where(take_upper, upper, lower)
    overflow = finite & ((codes == grid.size - 1) | (safe > grid[-1]))
    if overflow.any() and fmt not in _INF_CODE:
        where = int(np.flatnonzero(overflow)[0])
        raise ShapeError(
            f"{fmt}: value {x[where]!r} at flat index {where} is beyond the largest finite "
            f"magnitude {grid[-2]:g} and {fmt} has no infinity")
    codes = codes.astype(np.uint8)
    if overflow.any():
        codes[overflow] = _INF_CODE[fmt]  # IEEE rounding: past the top goes to infinity
    codes[np.isnan(x)] = _NAN_CODE[fmt]
    infinite = np.isinf(x)
    if infinite.any():
        if fmt not in _INF_CODE:
            where = int(np.flatnonzero(infinite)[0])
            raise ShapeError(f"{fmt} has no infinity; value at flat index {where} is {x[where]!r}")
        codes[infinite] = _INF_CODE[fmt]
    codes |= np.where(np.signbit(x), 0x80, 0).astype(np.uint8)
    return codes


def decode_bf16(codes: np.ndarray) -> np.ndarray:
    """uint16 bf16 codes -> float32 values (exact: bf16 is the top half of a float32)."""
    return (np.asarray(codes, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def encode_bf16(values: np.ndarray) -> np.ndarray:
    """Float values -> uint16 bf16 codes, rounding to nearest, ties to even.

    float64 input is first rounded to float32 (as torch does), so a float64 that lies
    exactly between two bf16 values after that first rounding may land one step off.
    Overflow gives infinity, as IEEE rounding does; NaN stays a (quiet) NaN.
    """
    bits = np.asarray(values, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    lsb = (bits >> np.uint64(16)) & np.uint64(1)
    rounded = ((bits + np.uint64(0x7FFF) + lsb) >> np.uint64(16)).astype(np.uint16)
    is_nan = (bits & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000)
    quiet_nan = ((bits >> np.uint64(16)) | np.uint64(0x0040)).astype(np.uint16)
    return np.where(is_nan, quiet_nan, rounded)
