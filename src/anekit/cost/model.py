"""The latency formula: mechanisms from the guide, applied to op-level quantities (OpWork).

One op:   us = max(compute, weight stream, spill traffic) + program I/O it carries
  compute = array flops / (roof x lane fill x cliff^[weights > weight SRAM])
            x (1 + (spill^-e - 1) x stall)  [e: 1 past the working set; graded by the operand's size
                                             where the crossing is smooth, M5; stall: how much
                                             slower than the engine's stream the chip's DRAM
                                             re-reads the spilled operands]          (MAC ops)
          = bytes x passes / vector stream                                      (everything else)
  weight stream = stored weight bytes (less those resident on chip between calls, measured on M4:
                  cost/published.py; a kernel is held whole or streams whole, _residency)
                  / DRAM weight stream: every compression format streams
                  at its stored size where the family streams it (guide ch. 7, 35), no faster
                  than the slow band where the weight is a 16 MiB multiple (params.SLOW_BAND)
  exposed load  = a program's first convolution waits for its kernel (stored bytes, at most a
                  weight SRAM's worth, / conv load rate) before the array starts, the rest of a
                  larger kernel streams under its compute; every later layer's kernel is prefetched while
                  the layer before it computes, so it only binds through the max() above
                  (fused-graph amortization of weight loads, ch. 9, 18)
One program: dispatch floor (once per program and route: fusion amortizes it, ch. 9, 18)
             + sum over ops; epilogues fused into a MAC op cost only the I/O they carry.

Mechanisms and chapters: the roofline and its ridge (ch. 9); the on-chip working set whose
overflow streams activations from DRAM and slows the array (ch. 9, 21; a step on the M1, smooth in the
operand's size on the M5, ch. 21); the weight SRAM past
which weights are re-fetched per activation tile (public M4 GEMM sweeps: cost/published.py); the per-format
weight stream (ch. 7, 10); fused-graph amortization of the dispatch floor (ch. 9, 18);
core-count scaling of Pro/Max/Ultra parts (ch. 12, 18); the dispatch floor per route (ch. 2).

The formula is written once, over numpy arrays of op features, so that a single program's
estimate and the fit over every published point run the same code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir.weights import is_weight
from .fusion import consumers, fusable, io_bytes
from .opwork import FP16, WINOGRAD_GAIN, OpWork, op_work
from .params import SLOW_BAND_BYTES, SLOW_BAND_TOLERANCE

# Utilization: the array fills output-channel lanes up to ~256 channels (the M1's end-to-end
# conv peak is reached by raising channels to 256, guide ch. 11) and streams patches in a
# 16-pixel width granule (patch-width floor, log2 4, guide ch. 20).
FULL_CHANNELS = 256
WIDTH_GRANULE = 16
# A MAC op that streams fewer output rows than one width granule against its weight (batch-1
# decode: a single-row matmul / 1x1 conv on one position) reuses no weight tile, so its weights
# stream at the single-row rate `gemv_gbs` (guide ch. 9: one large single-row matmul saturates
# at 51 GB/s on the M1, below the 68 GB/s DRAM) rather than the tiled weight stream.
GEMV_ROWS = WIDTH_GRANULE

PATHS = ("conv", "matmul", "vector", "io")   # "io": fused epilogues and descriptor edits


def lane_fill(w: OpWork) -> float:
    """Fraction of the array a MAC op keeps busy: output-channel lanes and width granules."""
    ch = min(1.0, w.out_channels / FULL_CHANNELS) if w.out_channels else 1.0
    if w.spatial:
        sp = w.spatial / (math.ceil(w.spatial / WIDTH_GRANULE) * WIDTH_GRANULE)
    else:
        sp = 1.0
    return ch * sp


@dataclass
class OpFeature:
    """Everything the formula needs about one op of one program on one chip."""
    name: str
    type: str
    work: OpWork
    path: str               # one of PATHS
    io_bytes: float = 0.0   # program inputs/outputs this op reads or writes
    spill_bytes: float = 0.0
    spill_exp: float = 0.0  # exponent of spill_factor on a matmul past the working set (spill_exponent)
    over_wsram: bool = False  # the op's weights pass the weight SRAM
    first_conv: bool = False  # the program's first convolution: its kernel load is exposed
    exposed_cap: float = 0.0  # at most this many of its weight bytes are loaded before the array starts
    fill: float = 1.0
    stream_share: float = 1.0  # share of its weights streamed each call (the rest stay resident)
    gemv: bool = False      # fewer rows than a width granule: weights stream at the single-row rate
    restream_bytes: float = 0.0  # input re-read by extra output-channel-group passes (ch. 20)
    slow_band: bool = False  # a MAC op's weight of a 16 MiB multiple (params.SLOW_BAND)


# The output positions of the spatial tile ch. 20 measured the group at (32 x 32). The group lives
# in the accumulator file, which holds output channels x positions of one spatial tile: a
# convolution over fewer positions fits proportionally more channels in one pass (the compiler
# tiles larger images spatially, so the group never shrinks below its measured size).
OCG_TILE_POSITIONS = 32 * 32


def ocg_passes(w: OpWork, ocg_channels: float) -> int:
    """Output-channel-group passes of a convolution (guide ch. 20): the group holds
    `ocg_channels` output channels of a 1x1 kernel over a 32x32 tile, more over fewer positions
    (OCG_TILE_POSITIONS), and shrinks with the kernel's elements (a 3x3 group is ~9x smaller;
    Winograd's transform cuts the effective count, ch. 13, 20); every pass past the first
    re-streams the input."""
    if w.path != "conv" or not w.out_channels or ocg_channels <= 0:
        return 1
    taps = w.taps / WINOGRAD_GAIN if w.winograd else w.taps
    positions = w.act_out_bytes / (FP16 * w.out_channels) if w.act_out_bytes else OCG_TILE_POSITIONS
    group = max(1.0, ocg_channels / max(1.0, taps)) * OCG_TILE_POSITIONS / min(OCG_TILE_POSITIONS, max(1.0, positions))
    return max(1, math.ceil(w.out_channels / group - 1e-9))


FEATURE_COLUMNS = ("path", "exec_flops", "fill", "weight_bytes", "vector_bytes", "io_bytes", "spill_bytes",
                   "spill_exp", "over_wsram", "first_conv", "stream_share", "gemv", "restream_bytes", "exposed_cap",
                   "slow_band")


def features_array(feats: list[OpFeature]) -> dict[str, np.ndarray]:
    """Columns of op features, one row per op."""
    cols = {c: np.zeros(len(feats)) for c in FEATURE_COLUMNS}
    for i, f in enumerate(feats):
        w = f.work
        cols["path"][i] = PATHS.index(f.path)
        cols["exec_flops"][i] = w.exec_flops
        cols["fill"][i] = f.fill
        cols["weight_bytes"][i] = w.weight_bytes if f.path != "io" else 0.0
        cols["vector_bytes"][i] = (w.act_in_bytes + w.act_out_bytes) * w.passes if f.path == "vector" else 0.0
        cols["io_bytes"][i] = f.io_bytes
        cols["spill_bytes"][i] = f.spill_bytes if f.path != "io" else 0.0
        cols["spill_exp"][i] = f.spill_exp
        cols["over_wsram"][i] = f.over_wsram
        cols["first_conv"][i] = f.first_conv
        cols["exposed_cap"][i] = f.exposed_cap
        cols["stream_share"][i] = f.stream_share
        cols["gemv"][i] = f.gemv and f.path in ("conv", "matmul")
        cols["restream_bytes"][i] = f.restream_bytes if f.path == "conv" else 0.0
        cols["slow_band"][i] = f.slow_band
    return cols


def op_times(cols: dict[str, np.ndarray], p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-op time components in microseconds. `p` holds per-op arrays (or scalars) of
    conv_tflops, matmul_tflops, spill_factor, spill_stall, cliff_factor, weight_gbs, gemv_gbs,
    conv_load_gbs, io_gbs, vector_gbs, and optionally slow_band_gbs (inf: no slow band)."""
    path = cols["path"]
    conv, mm, vec = path == 0, path == 1, path == 2
    roof = np.where(conv, p["conv_tflops"], p["matmul_tflops"]) * 1e6          # flops per us
    rate = roof * cols["fill"] * np.where(cols["over_wsram"] > 0, p["cliff_factor"], 1.0)
    # past the working set the array waits on DRAM re-reads: (1/spill^e - 1) of its time where the tiled
    # stream runs at the engine's rate, `spill_stall` times longer where the chip's DRAM caps it
    # (params.SPILL_STALL_SOURCE)
    wait = (p["spill_factor"] ** -cols["spill_exp"] - 1.0) * p["spill_stall"]
    mac = conv | mm
    compute = np.where(mac, cols["exec_flops"] / np.maximum(rate, 1e-30) * (1.0 + wait), 0.0)
    compute = compute + cols["restream_bytes"] / (p["io_gbs"] * 1e3)
    compute = compute + np.where(vec, cols["vector_bytes"] / (p["vector_gbs"] * 1e3), 0.0)
    first = cols["first_conv"] > 0
    wbytes = cols["weight_bytes"] * cols["stream_share"]
    # a weight of a 16 MiB multiple streams no faster than the slow band, on any path (params.SLOW_BAND)
    band = np.where(cols["slow_band"] > 0, p.get("slow_band_gbs", np.inf), np.inf)
    mac_gbs = np.minimum(np.where(cols["gemv"] > 0, p["gemv_gbs"], p["weight_gbs"]), band)
    stream_gbs = np.where(vec, p["vector_gbs"], mac_gbs)
    streamed = wbytes / (stream_gbs * 1e3)
    # The exposed load is the part of the first kernel the weight SRAM holds; a kernel larger than the
    # SRAM cannot be loaded whole before the array starts, so the rest streams under the compute.
    exposed_bytes = np.where(first, np.minimum(wbytes, cols["exposed_cap"]), 0.0)
    exposed = exposed_bytes / (np.minimum(p["conv_load_gbs"], band) * 1e3)
    rest = (wbytes - exposed_bytes) / (stream_gbs * 1e3)
    weights = np.where(first, exposed + rest, streamed)
    spill = cols["spill_bytes"] / (p["io_gbs"] * 1e3)
    io = cols["io_bytes"] / (p["io_gbs"] * 1e3)
    us = np.maximum(np.maximum(compute, np.where(first, rest, streamed)), spill) + exposed + io
    return {"compute": compute, "weights": weights, "spill": spill, "io": io, "us": us}


def in_slow_band(w: OpWork) -> bool:
    """The op streams a weight within 0.4% of an integer multiple of 16 MiB, in any format: the stall
    is on the transfer's length (params.SLOW_BAND)."""
    if not w.weight_bytes:
        return False
    k = round(w.weight_bytes / SLOW_BAND_BYTES)
    return k >= 1 and abs(w.weight_bytes - k * SLOW_BAND_BYTES) <= SLOW_BAND_TOLERANCE * w.weight_bytes


# The operand at which the guide measures a single large matmul's spilled rate: a 4096-dimension fp16
# matrix multiply (ch. 9: M1 4.8 against 12 TFLOP/s; ch. 12: M5 9.5 against 19.6), 32 MiB.
SPILL_REF_BYTES = 4096 * 4096 * FP16


def spill_exponent(operand: float, working_set: float, smooth: bool) -> float:
    """How many times the spill factor applies to a matmul whose largest operand passes the working
    set. A sharp crossing (M1: ch. 21's step at 2.31 MB) applies it once. Where the compiler tiles over
    the batch and output dimensions together (M5: ch. 21, "the crossing is smooth in throughput"), the
    rate falls with the operand's size instead: log-linearly from the working set (1) to the spilled rate
    the guide measures at a 4096-dimension matmul (the spill factor, ch. 12), and on past it."""
    if operand <= working_set:
        return 0.0
    if not smooth:
        return 1.0
    return math.log(operand / working_set) / math.log(SPILL_REF_BYTES / working_set)


def walk(prog, fn, streams: tuple[str, ...], working_set: float, weight_sram: float,
         resident: float = 0.0, ocg_channels: float = 0.0, smooth: bool = False) -> list[OpFeature]:
    """Per-op features of one function: work, fusion of epilogues into MAC ops, program I/O,
    working-set spills, the two on-chip capacity flags, and the share of weights streamed per
    call once `resident` bytes of them stay on chip between calls."""
    uses = consumers(fn)
    inputs = {id(t) for t in fn.inputs}
    outputs = {id(t) for t in fn.outputs}
    seen_inputs: set[int] = set()
    work: dict[int, OpWork] = {}
    fused_root: dict[int, object] = {}
    feats: list[OpFeature] = []
    seen_conv = False
    for op in fn.ops:
        w = op_work(op, streams)
        work[id(op)] = w
        if w.path == "const":
            continue
        fused = fusable(op, work, fused_root, uses, outputs)
        if fused:
            fused_root[id(op)] = op
        io, spill = 0.0, 0.0
        for t in op.tensor_inputs():
            if id(t) in inputs and id(t) not in seen_inputs:   # each program input is copied in once
                seen_inputs.add(id(t))
                io += io_bytes(t)
            elif not is_weight(t) and id(t) not in inputs and t.size * FP16 > working_set:
                spill += t.size * FP16
        for t in op.outputs:
            if id(t) in outputs:
                io += io_bytes(t)
            elif t.size * FP16 > working_set and w.path != "free":
                spill += t.size * FP16
        path = "io" if (fused or w.path == "free") else w.path
        f = OpFeature(op.name, op.type, w, path, io, spill)
        if path in ("conv", "matmul"):
            f.fill = lane_fill(w)
            # the matmul tiler loses its reuse past the working set (ch. 9: 12 -> 4.8 TFLOP/s);
            # a convolution tiles spatially with halos and keeps its rate (ch. 11: the 64-channel
            # 3x3 ramp keeps rising to 256x256, a 8 MB activation)
            f.spill_exp = spill_exponent(w.largest_operand, working_set, smooth) if path == "matmul" else 0.0
            f.over_wsram = w.weight_bytes > weight_sram
            f.gemv = 0 < w.rows < GEMV_ROWS
            # a single-row conv has no compute for its kernel load to wait on: the load is its
            # work, streamed at the single-row rate (ch. 9), so it exposes no separate load
            if path == "conv" and not seen_conv and not f.gemv:
                f.first_conv = seen_conv = True
                f.exposed_cap = weight_sram
            f.slow_band = in_slow_band(w)
            f.restream_bytes = (ocg_passes(w, ocg_channels) - 1) * w.act_in_bytes
        feats.append(f)
    _residency(feats, resident)
    return feats


def _residency(feats: list[OpFeature], resident: float) -> None:
    """Which weight bytes stay on chip between calls (params.RESIDENT). A kernel is held whole or not at
    all: one larger than the resident capacity streams all its bytes every call (seed 001's SRAM probe:
    a single 1x1 conv holding 12.5 MiB runs at 282.6 GFLOPS/MB, at 32 MiB it falls to 59.2, the
    whole kernel's stream, not 32 MiB less the capacity). The kernels that fit share the capacity and
    only their excess over it streams, spread over them: the next layer's kernel is prefetched under
    the current layer's compute (seed 001: 128 chained 0.5 MiB layers at 11.14 TFLOP/s)."""
    if resident <= 0:
        return
    small = [f for f in feats if f.path != "io" and 0 < f.work.weight_bytes <= resident]
    total = sum(f.work.weight_bytes for f in small)
    share = max(0.0, total - resident) / total if total else 0.0
    for f in feats:
        if f.path != "io" and f.work.weight_bytes > resident:
            f.stream_share = 1.0
        else:
            f.stream_share = share


def param_arrays(p) -> dict[str, float]:
    out = {k: getattr(p, k) for k in ("conv_tflops", "matmul_tflops", "spill_factor", "spill_stall", "cliff_factor",
                                      "weight_gbs", "gemv_gbs", "conv_load_gbs", "io_gbs", "vector_gbs")}
    out["slow_band_gbs"] = p.slow_band_gbs or np.inf
    return out
