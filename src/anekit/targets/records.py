"""Record types for compiler targets, chips, per-family limits and features.

Every numeric field keeps the citation it was read with: `rec.source("field")`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .. import dialects
from .support import status


class _Sourced:
    """Mixin: `source(field)` returns the citation string recorded for a field."""

    sources: Mapping[str, str]

    def source(self, name: str) -> str:
        try:
            return self.sources[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no sourced field '{name}'") from None


@dataclass(frozen=True)
class Limits(_Sourced):
    """Shape, kernel, size and numeric limits of one family (None: not known for it)."""

    max_dim: int | None                  # any tensor axis (spatial, contraction, elementwise)
    max_depth: int | None                # the D axis of the 5-D N, D, C, H, W layout
    max_channels: int | None             # conv input/output channel axes escape max_dim
    max_batch: int | None
    max_kernel_width_fp16: int | None
    max_kernel_width: int | None         # default (non-fp16) weight format
    max_kernel_height: int | None
    max_kernel_depth: int | None
    max_rank: int | None
    matmul_max_depth: int | None
    working_set_bytes: int | None        # largest operand that stays on chip
    reduction_transpose_threshold: int | None
    max_weight_bytes: int | None         # per program
    fp16_max: float | None
    mac_output_ceiling: float | None     # conv/matmul/linear output port saturates here
    exp_input_max: float | None          # ln(65504): a bare exp overflows above it
    width_slice_max_value: float | None  # 65504 / 16, on families whose width-offset slices saturate
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Features(_Sourced):
    texture_engine: bool
    native_sin_cos: bool
    width_slice_saturates: bool
    cast_to_int32: bool
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Family:
    """A numerics/limits family: targets that share one limits table and op surface."""

    key: str                  # "h11", "h13", "h14", "h15", "h16", "m11", "ref"
    label: str
    targets: tuple[str, ...]
    limits: Limits
    features: Features
    streams: tuple[str, ...]  # compressed weight formats that stream (others fold to fp16)
    streams_source: str
    support_column: str       # which op-support column this family reads


@dataclass(frozen=True)
class CompilerTarget(_Sourced):
    """One of the 28 compiler targets (guide ch. 34)."""

    name: str                 # as the guide spells it: "H13g"
    key: str                  # lookup form: "h13g"
    family: str
    ne_cores: int             # the compiler's decoded per-die core field, not Apple's marketing count
    silicon: str
    runtime_arch: str | None  # the string the device reports ("h13g"); None where unknown
    chips: tuple[str, ...]    # chips sold under this target
    representative_chip: str | None
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Chip(_Sourced):
    """A chip (or a compiler target with no chip sold under it) with everything checks and
    estimates need. `compiler` is the target key ("h13g"); `family` the limits family."""

    name: str
    compiler: str
    family: str
    ne_cores: int
    marketed_ne_cores: int | None
    tops: float | None            # vendor int8 TOPS
    dram_gbs: float | None
    dies: int
    soc: str | None
    working_set_bytes: int | None
    clock_ghz: float | None
    note: str | None
    limits: Limits
    features: Features
    streams: tuple[str, ...]
    target: CompilerTarget
    support_column: str
    is_chip: bool                 # False for a target-only record (e.g. "H17d", "U1")
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dialect(self) -> str:
        """The MIL dialect the direct route wants for this chip (decided in anekit/dialects.py)."""
        return dialects.for_family(self.family)

    def supports(self, op: str) -> str:
        """'native', 'decomposed' or 'unsupported' for this op on this chip's family."""
        return status(op, self.support_column)

    def __str__(self) -> str:
        return f"{self.name} ({self.target.name}, family {self.family})"
