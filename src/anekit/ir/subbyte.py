"""Bit packing of sub-byte weight values (1, 2, 3, 4 or 6 bits each) as weight.bin stores them.

The layout is a little-endian bit stream: value i occupies bits [i*b, i*b + b) counting from
the least significant bit of byte 0, so a 4-bit pair (lo, hi) packs to the byte hi<<4 | lo
(guide ch. 7 worked example: indices [1, 0, 0, 1] pack to 0x01 0x10). The last byte's unused
high bits are zero; weight.bin records their number as padding_size_in_bits.

Both directions work on whole groups of values that fill a whole number of bytes (8 values of
3 bits fill 3 bytes, 2 values of 4 bits fill 1), vectorized, in bounded chunks so a large
weight never needs a per-bit temporary.
"""
from __future__ import annotations

import math

import numpy as np

from anekit.errors import DTypeError

SUBBYTE_WIDTHS = (1, 2, 3, 4, 6)

# Groups per chunk: bounds the uint32 temporaries to a few MB whatever the weight size.
_CHUNK_GROUPS = 1 << 19


def packed_size(count: int, bits: int) -> int:
    """Bytes that `count` values of `bits` bits occupy: ceil(count * bits / 8)."""
    return (count * bits + 7) // 8


def padding_bits(count: int, bits: int) -> int:
    """Unused bits at the end of the last byte (weight.bin's padding_size_in_bits)."""
    return packed_size(count, bits) * 8 - count * bits


def _group_shape(bits: int) -> tuple[int, int]:
    if bits not in SUBBYTE_WIDTHS:
        raise DTypeError(f"unsupported sub-byte width {bits}; weight.bin packs {SUBBYTE_WIDTHS} bits")
    group_bits = math.lcm(bits, 8)
    return group_bits // bits, group_bits // 8  # (values per group, bytes per group)


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack uint8 `values` (each already < 2**bits) into a uint8 array of packed_size bytes."""
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    per_group, group_bytes = _group_shape(bits)
    groups = -(-flat.size // per_group)
    out = np.zeros((groups, group_bytes), dtype=np.uint8)
    for start in range(0, groups, _CHUNK_GROUPS):
        stop = min(groups, start + _CHUNK_GROUPS)
        chunk = flat[start * per_group: stop * per_group]
        if chunk.size < (stop - start) * per_group:  # only the final partial group
            chunk = np.concatenate([chunk, np.zeros((stop - start) * per_group - chunk.size, np.uint8)])
        lanes = chunk.reshape(-1, per_group).astype(np.uint32)
        words = np.zeros(stop - start, dtype=np.uint32)
        for k in range(per_group):
            words |= lanes[:, k] << np.uint32(k * bits)
        for j in range(group_bytes):
            out[start:stop, j] = (words >> np.uint32(8 * j)) & np.uint32(0xFF)
    return out.reshape(-1)[: packed_size(flat.size, bits)]


def unpack_bits(packed, count: int, bits: int) -> np.ndarray:
    """Unpack `count` values of `bits` bits from the bytes `packed` into a uint8 array.

    `packed` must hold at least packed_size(count, bits) bytes (the caller checks this
    against the file before calling); extra bytes are ignored.
    """
    per_group, group_bytes = _group_shape(bits)
    raw = np.frombuffer(packed, dtype=np.uint8, count=packed_size(count, bits))
    groups = -(-count // per_group)
    padded = np.zeros(groups * group_bytes, dtype=np.uint8)
    padded[: raw.size] = raw
    padded = padded.reshape(groups, group_bytes)
    out = np.empty((groups, per_group), dtype=np.uint8)
    mask = np.uint32((1 << bits) - 1)
    for start in range(0, groups, _CHUNK_GROUPS):
        stop = min(groups, start + _CHUNK_GROUPS)
        words = np.zeros(stop - start, dtype=np.uint32)
        for j in range(group_bytes):
            words |= padded[start:stop, j].astype(np.uint32) << np.uint32(8 * j)
        for k in range(per_group):
            out[start:stop, k] = (words >> np.uint32(k * bits)) & mask
    return out.reshape(-1)[:count]
