"""Per-chip constants of the latency model, each with its source.

Four chips were measured in public sources and anchor the model; every other chip takes
its family's anchor scaled by vendor TOPS (compute and on-chip streams scale with the
engine, guide ch. 18), with the weight stream capped by the chip's own DRAM bandwidth.
Constants marked "calibrated" were set from points in the validation table
(anekit.cost.published, flagged `calibrates=True`); the rest are published figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from .. import targets
from ..errors import TargetError

# Utilization: the array fills output-channel lanes up to ~256 channels (the M1's end-to-end
# conv peak is reached by raising channels to 256, guide ch. 11) and streams patches in a
# 16-pixel width granule (patch-width floor, log2 4, guide ch. 20).
FULL_CHANNELS = 256
WIDTH_GRANULE = 16
# Weight traffic cannot exceed this share of the chip's DRAM bandwidth (the engine is one of
# several DRAM clients; the M1's 51 GB/s weight stream is 0.75 of its 68 GB/s). An assumption.
DRAM_SHARE = 0.75
# The measured working-set threshold sits ~10% above the table value (2.31 MB vs 2 MiB on the
# M1: tiler double-buffer margin, guide ch. 21); used where no measurement exists.
WS_MARGIN = 2.31e6 / 2097152


@dataclass(frozen=True)
class CostParams:
    chip: str
    anchor: str                 # the measured chip these values derive from
    scale: float                # compute/stream scale applied to the anchor (1.0 for anchors)
    dispatch_us: float          # per-evaluation floor, paid once per program
    conv_tflops: float          # conv path roof, dense fp16 at full lane fill
    matmul_tflops: float        # matmul/linear path roof with operands on chip
    spill_factor: float         # matmul rate multiplier once an operand passes the working set
    io_gbs: float               # program inputs/outputs and spilled intermediates
    conv_weight_gbs: float      # conv kernel-weight stream
    matmul_weight_gbs: float    # matmul/linear weight stream
    vector_gbs: float           # on-chip elementwise/reduction stream (assumption, see docs)
    working_set_bytes: float
    streams: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def source(self, name: str) -> str:
        return self.sources.get(name, "")


_G = "ANE guide (arXiv 2606.22283)"
_CAL = "calibrated on validation points flagged calibrates=True (anekit.cost.published)"

# name -> (value, source) per field. Vector stream: no published figure; set to 4x the
# activation I/O stream so fused elementwise work is cheap but not free (assumption).
ANCHORS: dict[str, dict[str, tuple[float, str]]] = {
    "M1 Max": {   # the guide's measured "M1" reports h13g (ch. 10, 12, 34)
        "dispatch_us": (190.0, f"{_G} ch. 2: measured full-call floor of a tiny model, ~190 us"),
        "conv_tflops": (7.0, f"{_G} ch. 20: large 1x1 conv, all four cores saturated, ~7 fp16 TFLOP/s"),
        "matmul_tflops": (12.0, f"{_G} ch. 9: overhead-isolated matmul slope, ~12 fp16 TFLOP/s"),
        "spill_factor": (0.4, f"{_G} ch. 9: the same matmul drops from 12 to ~4.8 TFLOP/s past 2 MB"),
        "io_gbs": (10.0, f"{_G} ch. 9, 10: single-relu / effective activation stream ~10 GB/s"),
        "conv_weight_gbs": (9.0, f"{_G} ch. 18: the guide's fitted bandwidth, 9.0 GB/s (fitted by the "
                                  "guide to its reference convolutions)"),
        "matmul_weight_gbs": (51.0, f"{_G} ch. 9: single-row matmul weight stream saturates ~51 GB/s"),
        "vector_gbs": (40.0, "assumption: 4x the activation I/O stream"),
        "working_set_bytes": (2.31e6, f"{_G} ch. 21: measured working-set threshold 2.28-2.34 MB"),
    },
    "M2 Pro": {   # the guide's measured M2 is a Pro reporting h14g (ch. 12)
        "dispatch_us": (117.0, _CAL + ": fp16 4096x4096 and 8192x8192 weight streams (ch. 7)"),
        "matmul_weight_gbs": (53.8, _CAL + ": same two points"),
    },
    "M4 Max": {   # seed 001's machine
        "dispatch_us": (175.0, "seed 001: 64x32 kernel on the standard evaluate path, 0.175 ms (" + _CAL + ")"),
        "conv_tflops": (19.0, "seed 001: 38 int8 TOPS is ~19 fp16 TFLOP/s"),
        "matmul_tflops": (19.0, "seed 001: 38 int8 TOPS is ~19 fp16 TFLOP/s"),
        "conv_weight_gbs": (330.0, _CAL + ": 128 chained 512-channel convs (67 MB of weights) at "
                                          "11.14 TFLOP/s need >= 320 GB/s of weight traffic (seed 001)"),
        "matmul_weight_gbs": (330.0, "assumed equal to the conv weight path on this chip"),
    },
    "M5 Pro": {   # the guide's measured M5 (h17s)
        "dispatch_us": (110.0, f"{_G} ch. 18: M5 dispatch floor 0.11 ms"),
        "conv_tflops": (18.8, f"{_G} ch. 9: M5 convolution roof 18771 GFLOP/s"),
        "matmul_tflops": (19.6, f"{_G} ch. 12: M5 matmul-slope peak ~19.6 fp16 TFLOP/s"),
        "spill_factor": (0.485, f"{_G} ch. 12: single large matmul 9.5 vs slope 19.6 TFLOP/s"),
        "io_gbs": (57.0, f"{_G} ch. 10: M5 effective stream ~57 GB/s"),
        "conv_weight_gbs": (57.0, f"{_G} ch. 18: M5 fitted bandwidth 57 GB/s"),
        "matmul_weight_gbs": (145.0, f"{_G} ch. 12: M5 weight stream ~145 GB/s over two read channels"),
        "vector_gbs": (228.0, "assumption: 4x the activation I/O stream"),
        "working_set_bytes": (4.72e6, f"{_G} ch. 12: M5 working-set threshold 4.72 MB"),
    },
}
# Fields an anchor leaves out come from M1 Max scaled by TOPS (M2 Pro, M4 Max).
_BASE = "M1 Max"
FIELDS = ("dispatch_us", "conv_tflops", "matmul_tflops", "spill_factor", "io_gbs", "conv_weight_gbs",
          "matmul_weight_gbs", "vector_gbs", "working_set_bytes")
_SCALED = ("conv_tflops", "matmul_tflops", "io_gbs", "conv_weight_gbs", "matmul_weight_gbs", "vector_gbs")
_WEIGHT_STREAMS = ("conv_weight_gbs", "matmul_weight_gbs")


def _anchor_for(chip) -> str:
    """Which measured chip a chip's constants derive from."""
    fam = chip.family
    if fam == "h14" or fam == "h15":
        return "M2 Pro"
    if fam == "h16" or fam == "m11":
        return "M5 Pro" if chip.compiler.startswith(("h17", "h18")) else "M4 Max"
    return "M1 Max"


def _tops_per_die(chip) -> float | None:
    """Vendor TOPS of one die; a chip with no figure borrows one from a chip on the same
    compiler target (an M3 Ultra's die is an M3 Max's)."""
    if chip.tops:
        return chip.tops / chip.dies
    for name in chip.target.chips:
        other = targets.get(name)
        if other.tops:
            return other.tops / other.dies
    return None


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


def _anchor_params(name: str) -> CostParams:
    anchor_chip = targets.get(name)
    vals, srcs = {}, {}
    base = targets.get(_BASE)
    s_base = _ratio(anchor_chip.tops, base.tops) or 1.0
    for f in FIELDS:
        if f in ANCHORS[name]:
            vals[f], srcs[f] = ANCHORS[name][f]
        else:
            v, src = ANCHORS[_BASE][f]
            if f in _SCALED:
                v *= s_base
                src = f"{_BASE} value x {s_base:.3g} (TOPS ratio): {src}"
            elif f == "working_set_bytes":
                v = anchor_chip.working_set_bytes * WS_MARGIN
                src = f"{anchor_chip.source('working_set_bytes')}, plus the measured ~10% tiler margin (ch. 21)"
            vals[f], srcs[f] = v, src
    return CostParams(chip=name, anchor=name, scale=1.0, streams=anchor_chip.streams, sources=srcs, **vals)


def params_for(chip) -> CostParams:
    """The cost constants for a chip record (anekit.targets.Chip) or name."""
    chip = targets.get(chip)
    if chip.family == "ref":
        raise TargetError(f"{chip.name} is a reference profile, not silicon: no latency model")
    for name in ANCHORS:
        if targets.get(name) is chip:
            return _anchor_params(name)
    anchor_name = _anchor_for(chip)
    a = _anchor_params(anchor_name)
    anchor = targets.get(anchor_name)
    # Per die: a program is assumed to run on one die's engine (an Ultra's second die does not
    # speed up one program; not measured anywhere, see docs/targets.md).
    scale = _ratio(_tops_per_die(chip), _tops_per_die(anchor))
    how = "per-die TOPS ratio"
    if scale is None and chip.is_chip:
        # A chip with no vendor figure: the decoded core field does not track throughput
        # (M1 and M1 Max decode 4 and 8 cores at the same 11 TOPS), so keep the anchor's rates.
        scale, how = 1.0, "no vendor TOPS; anchor rates unscaled"
    elif scale is None:
        # A target with no chip sold under it: the decoded core count is the only handle.
        scale = chip.ne_cores / anchor.ne_cores
        how = "decoded NE-core ratio (no chip sold under this target)"
    vals = {f: getattr(a, f) for f in FIELDS}
    srcs = dict(a.sources)
    for f in _SCALED:
        vals[f] *= scale
        srcs[f] = f"{anchor_name} x {scale:.3g} ({how}): {a.source(f)}"
    for f in _WEIGHT_STREAMS:
        if chip.dram_gbs and vals[f] > DRAM_SHARE * chip.dram_gbs:
            vals[f] = DRAM_SHARE * chip.dram_gbs
            srcs[f] = f"capped at {DRAM_SHARE} x the chip's {chip.dram_gbs} GB/s DRAM"
    if chip.working_set_bytes and anchor.working_set_bytes and chip.working_set_bytes != anchor.working_set_bytes:
        vals["working_set_bytes"] = chip.working_set_bytes * WS_MARGIN
        srcs["working_set_bytes"] = f"{chip.source('working_set_bytes')}, plus the ~10% tiler margin (ch. 21)"
    return replace(a, chip=chip.name, anchor=anchor_name, scale=scale, streams=chip.streams, sources=srcs, **vals)
