"""numpy <-> IOSurface bytes in the ANE's [1, C, 1, S] layout, with per-family rules.

The direct route (docs/hardware.md): one IOSurface per tensor, channel-first, element (c, s) at byte offset
(c*S + s) * itemsize, fp16 (or fp32 when the program declares fp32 I/O and casts inside).
Properties: Width = BytesPerRow = AllocSize = the byte count, Height 1, BytesPerElement 1,
PixelFormat 0. M5 wants 128-byte aligned surfaces; others are given the 64-byte engine tile
granule (guide ch. 23: weight and descriptor sections align to 0x40), so the byte count is
rounded up to the family's alignment. Some chips want multi-input requests ordered by
ascending surface size (docs/hardware.md); which chips is not recorded, so it is a per-call rule
whose default is the declared order.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ...errors import DTypeError, ShapeError
from ...preflight.ane_route import compiler_generation

IO_DTYPES = {"fp16": np.dtype("<f2"), "fp32": np.dtype("<f4")}
INPUT_ORDERS = ("declared", "ascending_size")
DEFAULT_ALIGNMENT = 64
M5_ALIGNMENT = 128            # docs/hardware.md: "M5 wants 128-byte aligned surfaces"
MAX_SURFACE_BYTES = 1 << 31   # guide ch. 4: a program holds ~2 GB at most; refuse larger I/O outright


@dataclass(frozen=True)
class IORules:
    """How a chip wants its I/O surfaces: byte alignment and multi-input request order."""
    compiler: str
    alignment: int
    input_order: str = "declared"


def io_rules(target, input_order: str | None = None) -> IORules:
    """The I/O rules of a target record (anekit.targets.get(...)): 128-byte alignment from the
    M5 generation (h17) on, 64 before it."""
    compiler = getattr(target, "compiler", None) or str(getattr(target, "name", target))
    gen = compiler_generation(compiler)
    alignment = M5_ALIGNMENT if gen is not None and gen >= 17 else DEFAULT_ALIGNMENT
    order = input_order or "declared"
    if order not in INPUT_ORDERS:
        raise ShapeError(f"input_order must be one of {', '.join(INPUT_ORDERS)}, got {order!r}")
    return IORules(compiler, alignment, order)


@dataclass(frozen=True)
class SurfaceSpec:
    """One program input or output as an IOSurface: [1, C, 1, S] of fp16 or fp32."""
    name: str
    shape: tuple[int, ...]     # as the program declares it
    dtype: str                 # "fp16" | "fp32"
    channels: int
    spatial: int
    nbytes: int                # C * S * itemsize: the bytes the engine reads or writes
    alloc: int                 # nbytes rounded up to the alignment: the surface's byte count

    def properties(self) -> dict[str, int]:
        """The IOSurfaceCreate properties of docs/hardware.md."""
        return {"Width": self.alloc, "Height": 1, "BytesPerElement": 1, "BytesPerRow": self.alloc,
                "AllocSize": self.alloc, "PixelFormat": 0}


def surface_spec(name: str, shape, dtype: str, rules: IORules) -> SurfaceSpec:
    """The surface for a declared tensor; ShapeError / DTypeError when it cannot map to one."""
    shape = tuple(int(s) for s in shape)
    if dtype not in IO_DTYPES:
        raise DTypeError(f"'{name}' is {dtype}: ANE I/O surfaces hold fp16, or fp32 cast inside "
                         f"the program (docs/hardware.md); cast it in the program")
    if len(shape) != 4 or shape[0] != 1 or shape[2] != 1 or min(shape) < 1:
        raise ShapeError(f"'{name}' has shape {list(shape)}, which does not map to the ANE's "
                         f"[1, C, 1, S] surface layout; reshape it to (1, C, 1, S) inside the program")
    channels, spatial = shape[1], shape[3]
    nbytes = channels * spatial * IO_DTYPES[dtype].itemsize
    alloc = -(-nbytes // rules.alignment) * rules.alignment
    if alloc > MAX_SURFACE_BYTES:
        raise ShapeError(f"'{name}' needs a {alloc}-byte surface, over the {MAX_SURFACE_BYTES}-byte limit")
    if spatial == 1:
        warnings.warn(f"'{name}' has spatial size 1: very small surfaces (spatial 1) have failed "
                      f"on hardware (docs/hardware.md)", RuntimeWarning, stacklevel=3)
    return SurfaceSpec(name, shape, dtype, channels, spatial, nbytes, alloc)


def request_order(specs: list[SurfaceSpec], order: str) -> list[int]:
    """Declared indices in the order the request lists the surfaces (stable for equal sizes)."""
    if order == "ascending_size":
        return sorted(range(len(specs)), key=lambda i: specs[i].alloc)
    return list(range(len(specs)))


def pack(spec: SurfaceSpec, array: np.ndarray) -> bytes:
    """The bytes the engine reads for `array` (declared shape; converted to the I/O dtype)."""
    a = np.asarray(array)
    if a.size != spec.channels * spec.spatial:
        raise ShapeError(f"'{spec.name}': expected {spec.channels * spec.spatial} elements "
                         f"for [1, {spec.channels}, 1, {spec.spatial}], got shape {list(a.shape)}")
    return np.ascontiguousarray(a.reshape(spec.channels, spec.spatial), dtype=IO_DTYPES[spec.dtype]).tobytes()


def unpack(spec: SurfaceSpec, data: bytes) -> np.ndarray:
    """The declared-shape array held in the first `nbytes` of a surface's bytes."""
    if len(data) < spec.nbytes:
        raise ShapeError(f"'{spec.name}': surface holds {len(data)} bytes, need {spec.nbytes}")
    flat = np.frombuffer(data, dtype=IO_DTYPES[spec.dtype], count=spec.channels * spec.spatial)
    return flat.reshape(spec.shape).astype(IO_DTYPES[spec.dtype].newbyteorder("="), copy=True)
