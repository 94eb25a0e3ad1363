"""Per-chip constants of the latency model: named, sourced, and fitted.

The model has one parameter set per engine generation (h13 = M1 ... h18 = M6), measured on
that generation's reference chip, plus two shared constants. Each parameter has

  * a prior: the published figure it starts from, with its source (a guide chapter, a seed
    document, a public benchmark), or an assumption, marked as such, with a wider spread;
  * a fitted value: least squares on the log error of every published point
    (anekit.cost.fit, re-run with `python benchmarks/cost_validation.py --fit`), pulled
    towards the prior by its spread. Fitted values live in fitted.json next to this file;
    without it the priors are used as they are.

A chip that is not a generation's reference chip takes that generation's values scaled by
its core count and vendor TOPS (guide ch. 12, 18: throughput and bandwidth scale with the
compute units), with its streams capped by its own DRAM bandwidth.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Mapping

from ..errors import TargetError
from .. import targets
from .host import CPU_GBS, stream_gbs

G = "ANE guide (arXiv 2606.22283)"
M6_REPORT = "public M6 measurement notes (Mac18,5, h18g)"
SEED1 = "seed 001 (maderix, M4 Max)"
ASSUMED = "assumption"

# The reference chip of each generation: the part whose measurements anchor it.
GENERATIONS = {"h13": "M1 Max", "h14": "M2 Pro", "h15": "M3 Max", "h16": "M4 Max", "h17": "M5 Pro", "h18": "M6"}

# Fitted per generation, in this order (the fit works on their logarithms).
FITTED = ("dispatch_us", "conv_tflops", "matmul_tflops", "weight_gbs", "gemv_gbs", "conv_load_gbs", "io_gbs",
          "spill_factor", "cliff_factor", "gemv_share")
# Shared across generations.
SHARED = ("host_copy_gbs",)

# Weight traffic cannot exceed this share of a chip's DRAM bandwidth (the engine is one DRAM
# client among several; the M1's 51 GB/s weight stream is 0.75 of its 68 GB/s). Assumption.
DRAM_SHARE = 0.75
# The measured working-set threshold sits ~10% above the table value (2.31 MB vs 2 MiB on the
# M1: tiler double-buffer margin, guide ch. 21); used where no measurement exists.
WS_MARGIN = 2.31e6 / 2097152
# The single-row (decode) weight stream has no tile reuse: it is one DMA stream per op, bound by the
# engine's own DMA rate (gemv_gbs) or by the share of the chip's memory system it gets
# (gemv_share x DRAM), whichever is lower. The share is fitted per generation: a base part's narrower
# memory system streams a decoder's weights much slower than its Max/Pro sibling with the same
# 16-core engine (anemll-bench heads: M4 64 GB/s, M4 Max 120 GB/s; ANEForge decoders: M4 28 GB/s,
# M5 Pro >= 140 GB/s), while the M1 reads 0.8 of its 68 GB/s (ANEForge M1 decode).
GEMV_SHARE_SOURCE = ("fitted share of the chip's DRAM bandwidth that a single-row weight stream reaches; prior "
                     f"{DRAM_SHARE} (the DRAM_SHARE assumption), loose: no published figure")
# The vector (elementwise) path streams on chip; no published figure: 4x the I/O stream.
VECTOR_RATIO = 4.0
# Dispatch floor per route relative to the standard evaluate path: the guide measures ~0.19 ms
# standard and ~0.07 ms through e5rt (ch. 2; ANE-BRIEF §7). Not fitted (no point uses e5rt).
# "host": the caller hands numpy arrays each call and the route copies them into and out of
# the engine's surfaces (Core ML predict, Python wrappers): program I/O also pays host_copy_gbs.
# "realtime": _ANEClient's real-time evaluate (seed 001, M4 Max, 64x32 kernel: 0.093 ms against the
# standard path's 0.175 ms). Seed 001 also finds the two paths converge (0.246 vs 0.205 ms) at a
# 768x256 kernel, so the ratio is a floor for tiny, dispatch-bound programs only. Not fitted.
ROUTE_FLOOR = {"standard": 1.0, "e5rt": 0.07 / 0.19, "host": 1.0, "realtime": 0.093 / 0.175}
HOST_COPY_ROUTES = ("host",)

# The host route's copy of program I/O is a CPU memory copy issued from the calling thread (assumption:
# the wrappers copy the caller's arrays into the engine's surfaces on the thread that evaluates): its rate is the
# fitted shared `host_copy_gbs` on a chip whose performance cluster streams at the full measured CPU
# rate (guide ch. 9, tbl:c9-perdevice: 130.4 GB/s on the M5), scaled down where the chip's DRAM caps
# that cluster's stream (anekit.cost.host.stream_gbs: the M1's 68 GB/s DRAM, the M4's 120).
HOST_COPY_SOURCE = (f"fitted host copy rate at a full CPU-cluster stream, scaled by the chip's one-cluster stream "
                    f"({G} ch. 9 tbl:c9-perdevice, capped by the chip's DRAM: anekit.cost.host.stream_gbs)")


def host_copy_scale(chip) -> float:
    """A chip's host-copy rate relative to the shared fitted one: its one-cluster CPU stream
    (host.stream_gbs) over the full measured cluster stream; 1 where the DRAM does not cap it."""
    return stream_gbs(chip, 1) / CPU_GBS


# Generations whose compiler tiles a matmul over the batch and output dimensions together, so that
# neither operand need be resident and the working-set crossing is smooth in throughput rather than a
# step (model.spill_exponent). Measured on the M5 only; the M1 shows the step (ch. 21's sweep).
SMOOTH_CROSSING = {
    "h17": f"{G} ch. 21: 'The M5 softens this threshold. Its compiler tiles over the batch and the output "
           "dimensions together, so neither operand need be fully resident and the crossing is smooth in "
           "throughput'; appendix F: M5/H17s measured",
}

# The 16 MiB slow band of the weight stream. The mechanism (kasper0406/stablehlo-coreml PR
# #110, citing Eileen Yoon's reverse engineering of the ANE kernel DMA, "Getting 50 GB/s Back Out of the
# ANE"): the weight DMA's prefetch ring measures its distance in 14-bit 64-byte line pointers, so a
# transfer whose length is an integer multiple of 1 MiB aliases "a full lap left" to "empty", the
# prefetcher stops and the stream falls to 17-19 GB/s from a nominal 45-60, recovering over 16 KiB
# either side. Each of the 16 cores streams the whole inner dimension for the output channels it owns,
# so a weight whose bytes are a multiple of 16 MiB (16 x 1 MiB; 2048x4096 fp16 is one) sits in the
# notch; we test the whole weight's bytes within 0.4% (a quarter of the recovery window per core).
# It is the transfer's length, so the format does not matter: ANEForge's M4 int8 decode takes half its
# fp16 time (22.1 against 43.1 ms), as int8 weights of a 16 MiB multiple streaming at the same slowed
# rate would. Which engines: ANEForge's roofline GEMV (M=1, K=N=4096, fp16: 32 MiB) takes 1.448 ms on
# an M4, 1.594 on an M4 Max and 1.592 on an M5 (24.3, 22.0, 22.0 GB/s net of the ~0.07 ms e5rt floor),
# 0.300 ms on an M5 Pro (146 GB/s) and 0.747 / 0.742 ms on an M1 / M1 Max (49-50 GB/s, their
# single-row ceiling). The same DMA feeds a convolution's kernel, and on the conv path the band shows
# too: seed 001's SRAM probe runs a single 1x1 conv over 64 positions with a 128 MiB kernel at 8.0
# GFLOPS/MB on the M4 Max (8.4 ms: 16 GB/s, PR #110's 17-19), where anemll-bench's 62.6 MiB head
# chunks, out of the band, stream at 120 GB/s on an M4 Max; at 32 MiB the same probe and tuxillo's
# M4 mini (inmem_bench) take 1.13 and 1.01 ms (35-39 GB/s: between the band and the nominal rate, the
# model's 22 GB/s prices them 1.6-1.8x slow). So it applies to every MAC op's weight stream, tiled or
# single-row, and to a first conv's exposed load. Not fitted: the rate is the median of the three GEMV
# machines.
SLOW_BAND_BYTES = 16 * 2 ** 20
SLOW_BAND_TOLERANCE = 0.004
SLOW_BAND_GBS = 22.0
_AF_GEMV = "sbryngelson/ANEForge bench/results/rooflines/{}: roofline_analysis gap_measurements gemv ANE lat_ms {}"
SLOW_BAND = {
    "h16": (SLOW_BAND_GBS, _AF_GEMV.format("roofline-apple-m4-Mac16_12-d4109cd41a75-6779bad2.json",
                                           "1.448 (K=N=4096 fp16, 32 MiB: 24.3 GB/s)")),
    "h16g": (SLOW_BAND_GBS, _AF_GEMV.format("roofline-apple-m4-max-Mac16_6-c77b1414be16-d11ec8da.json",
                                            "1.594 (K=N=4096 fp16, 32 MiB: 22.0 GB/s)")),
    "h17": (SLOW_BAND_GBS, _AF_GEMV.format("roofline-apple-m5-Mac17_3-019d3ac27339-426ca052.json",
                                           "1.592 (K=N=4096 fp16, 32 MiB: 22.0 GB/s)") + "; mechanism: kasper0406/stablehlo-coreml PR #110 "
            "(the weight DMA's prefetch stalls on transfers of a 1 MiB multiple per core: 17-19 GB/s)"),
}
# Measured without it: M1 and M1 Max (49-50 GB/s, their single-row ceiling), M5 Pro (h17s, 146 GB/s).
# Targets nobody measured (h14, h15, h18, ...) are assumed free of it.
SLOW_BAND_FREE = ("h13", "h13g", "h17s")


@dataclass(frozen=True)
class Prior:
    value: float
    source: str
    spread: float = 1.5      # multiplicative: the prior holds to within this factor (1 sigma)

    @property
    def sigma(self) -> float:
        return math.log(self.spread)


# Where the output-channel-group pass step is not measured, no pass penalty is charged (0):
# chained 512-channel 1x1 convs run at 11.14 TFLOP/s on the M4 Max (seed 001), which leaves
# no room for re-streaming their input two more times at the I/O rate.
_NO_OCG = ("not measured on this generation: no pass penalty charged (seed 001: 128 chained 512-channel "
           "1x1 convs at 11.14 TFLOP/s on the M4 Max show none)")


def _p(value, source, spread=1.5):
    return Prior(float(value), source, spread)


# Published figures per generation. Missing fields fall back to the generation named in
# _FALLBACK, scaled by vendor TOPS where the field is a rate (marked in the source string).
PRIORS: dict[str, dict[str, Prior]] = {
    "h13": {
        "dispatch_us": _p(190.0, f"{G} ch. 2, 9: measured full-call floor of a tiny model ~0.19 ms"),
        "conv_tflops": _p(7.0, f"{G} ch. 20: large 1x1 conv with all cores saturated, ~7 fp16 TFLOP/s"),
        "matmul_tflops": _p(12.0, f"{G} ch. 9: overhead-isolated matmul slope ~12 fp16 TFLOP/s"),
        "weight_gbs": _p(51.0, f"{G} ch. 9: single-row matmul weight stream saturates at ~51 GB/s"),
        "gemv_gbs": _p(51.0, f"{G} ch. 9: a direct wall-clock measurement of one large single-row matmul "
                             "saturates at ~51 GB/s (below the 68 GB/s DRAM)"),
        "conv_load_gbs": _p(9.0, f"{G} ch. 18: fitted bandwidth 9.0 GB/s of the analytic model, fitted to "
                                 "single-convolution calls (exposed kernel load)"),
        "io_gbs": _p(24.0, f"{G} ch. 9: standalone activation-stream rate 24 GB/s"),
        "spill_factor": _p(0.4, f"{G} ch. 9: the same matmul drops from 12 to ~4.8 TFLOP/s past the working set"),
        "cliff_factor": _p(0.7, "maderix, 'Inside the M4 ANE, part 2': ~30% slower once weights pass the "
                                "on-chip SRAM (measured on M4; assumed for this generation)", 2.0),
        "gemv_share": _p(DRAM_SHARE, GEMV_SHARE_SOURCE, 4.0),
        "working_set_bytes": _p(2.31e6, f"{G} ch. 21: measured working-set threshold 2.28-2.34 MB"),
        "ocg_channels": _p(224, f"{G} ch. 20: a 1x1 fp16 conv's per-layer slope doubles (second output-channel-"
                                "group pass) between 192 and 256 output channels; the midpoint"),
        "weight_sram_bytes": _p(16e6, f"{SEED1}: SRAM budget ~16 MB on A14/M1"),
    },
    "h14": {
        "dispatch_us": _p(117.0, f"{G} ch. 7: two-point fit of the fp16 4096 and 8192 weight streams"),
        "weight_gbs": _p(53.8, f"{G} ch. 7: the same two points, 53.8 GB/s"),
        "gemv_gbs": _p(53.8, f"{G} ch. 7: the fp16 weight-stream table's two-point fit, 53.8 GB/s"),
        "weight_sram_bytes": _p(24e6, f"{SEED1}: SRAM budget ~24 MB on A15/M2"),
    },
    "h15": {
        "ocg_channels": _p(0, _NO_OCG),
        "weight_sram_bytes": _p(24e6, f"{ASSUMED}: as the M2 (no M3 measurement)", 2.0),
    },
    "h16": {
        "ocg_channels": _p(0, _NO_OCG),
        "dispatch_us": _p(175.0, f"{SEED1}: 64x32 kernel on the standard evaluate path, 0.175 ms"),
        "conv_tflops": _p(19.0, f"{SEED1}: 38 int8 TOPS is ~19 fp16 TFLOP/s"),
        "matmul_tflops": _p(19.0, f"{SEED1}: 38 int8 TOPS is ~19 fp16 TFLOP/s"),
        "weight_gbs": _p(200.0, f"{SEED1}: 128 chained 512-channel convs (67 MB of weights) at 11.14 TFLOP/s "
                                "need >= 170 GB/s of weight traffic", 2.0),
        "weight_sram_bytes": _p(32e6, "maderix, 'Inside the M4 ANE, part 2': SRAM cliff between 24 and 96 MB, "
                                      "~32 MB; seed 001: ~24-32 MB on M4 Max"),
    },
    "h17": {
        "ocg_channels": _p(0, _NO_OCG),
        "dispatch_us": _p(110.0, f"{G} ch. 18: M5 dispatch floor 0.11 ms"),
        "conv_tflops": _p(18.8, f"{G} ch. 9: M5 convolution roof 18771 GFLOP/s"),
        "matmul_tflops": _p(19.6, f"{G} ch. 12: M5 matmul-slope peak ~19.6 fp16 TFLOP/s"),
        "spill_factor": _p(0.485, f"{G} ch. 12: single large matmul 9.5 vs slope 19.6 TFLOP/s"),
        "weight_gbs": _p(145.0, f"{G} ch. 12: M5 weight stream ~145 GB/s over two read channels"),
        "gemv_gbs": _p(112.0, f"{G} ch. 9: an M5 decode GEMV reaches ~112 GFLOP/s, a weight DMA path near 112 GB/s "
                              "(the engine's own single-row rate; a base part's memory system caps it lower: "
                              "gemv_share)"),
        "io_gbs": _p(57.0, f"{G} ch. 10, 18: M5 effective stream ~57 GB/s"),
        "conv_load_gbs": _p(57.0, f"{G} ch. 18: M5 fitted bandwidth 57 GB/s of the analytic model (single convs)"),
        "working_set_bytes": _p(4.72e6, f"{G} ch. 12: M5 working-set threshold 4.72 MB"),
        "weight_sram_bytes": _p(32e6, f"{ASSUMED}: as the M4 generation", 2.0),
    },
    # M6 (Mac18,5): the compiler's default M6 target (h18g) builds *bonded* programs, each layer split
    # spatially over two engines with one kick on each (guide ch. 22: bonded networks, co-issue on the
    # two engines). Figures from a public M6 measurement report (Mac18,5, macOS 27.0.1, 2026-10-02:
    # "疑似缺陷与不合理的行为（M6）", items B5, B8, B9).
    "h18": {
        "dispatch_us": _p(270.0, f"{M6_REPORT} B5: host-side completion and wake-up ~160 us per call at short tasks "
                                 f"(~355 us past 0.4 ms tasks), on top of the M5's 0.11 ms floor ({G} ch. 18)"),
        "conv_tflops": _p(37.6, f"{M6_REPORT} B8: a bonded program splits each layer over two engines, balanced "
                                "when the layer is not tiled: 2 x the M5 roof (18.8, guide ch. 9)", 2.0),
        "matmul_tflops": _p(39.2, f"{M6_REPORT} B8: two engines per bonded program: 2 x the M5 slope (19.6, "
                                  "guide ch. 12)", 2.0),
        "weight_gbs": _p(150.0, f"{M6_REPORT} B9: weight reads ~150 GB/s, shared by the two engines"),
    },
}
_FALLBACK = {"h14": "h13", "h15": "h14", "h16": "h17", "h17": "h13", "h18": "h17"}
# Fields a generation takes from another generation than its _FALLBACK, and why. The M3 has no
# published floor or tiled weight stream. Its default fallback, the M2 Pro, has none either: its
# dispatch_us prior (117 us) is the intercept of a two-point fit to two single-row weight streams
# (guide ch. 7), and its weight_gbs prior is the slope of the same fit, a single-row rate (the
# points are modelled on gemv_gbs, so nothing fits the M2's tiled stream). The nearest generation
# that measured both is the M4 (seed 001: the floor of a tiny kernel on the standard evaluate path
# of a Max die, and a tiled stream of 128 chained 512-channel convs), taken for the M3 Max with
# the usual TOPS scaling of rates and the fallback's wider spread.
_FIELD_FALLBACK = {("h15", "dispatch_us"): "h16", ("h15", "weight_gbs"): "h16"}
SHARED_PRIORS = {
    # Host-side copy of program inputs and outputs on routes that take arrays per call
    # (guide ch. 2: operand transfer is part of the floor; its per-byte rate is not published).
    "host_copy_gbs": _p(10.0, f"{ASSUMED}: host staging copy rate; fitted", 3.0),
}
# Weights that stay resident on chip between evaluations of a loaded program, so that only
# the excess streams from DRAM each call. Measured on the M4 Max (seed 001 SRAM probe: full
# efficiency to ~12-32 MB of weights); the M1 and M2 re-stream even 8 MB of weights every call
# (guide ch. 7 weight-stream table, ch. 18 convolutions), so none there. Not fitted. The capacity
# holds whole kernels: one larger than it streams whole every call (model._residency).
RESIDENT = {
    "h13": _p(0.0, f"{G} ch. 18: single convolutions re-load 0.5-8 MB kernels every call"),
    "h14": _p(0.0, f"{G} ch. 7: an 8 MB fp16 weight streams at the full-stream rate every call"),
    "h15": _p(32e6, f"{ASSUMED}: as the M4 generation (no M3 measurement)"),
    "h16": _p(32e6, f"{SEED1}: SRAM probe, efficiency falls past ~32 MB of weights (M4 Max)"),
    "h17": _p(32e6, f"{ASSUMED}: as the M4 generation"),
    "h18": _p(32e6, f"{ASSUMED}: as the M4 generation"),
}
# Scaled by a chip's compute units. Not gemv_gbs: the single-row stream is one DMA stream that
# the guide measures alike on M1 and M2 parts (51 and 53.8 GB/s, ch. 7, 9); it is capped by
# the chip's DRAM like the other streams.
_RATES = ("conv_tflops", "matmul_tflops", "weight_gbs", "conv_load_gbs", "io_gbs")
CAPPED_STREAMS = ("weight_gbs", "conv_load_gbs", "io_gbs")
# The spill stall. A matmul past the working set re-reads its operands from DRAM while the array waits
# (guide ch. 9: the 96-layer chain's 426 MB of DRAM traffic; ch. 12, 21 on the working set): the fitted
# spill factor s prices that wait as (1/s^e - 1) of the array's time on the generation's reference chip,
# where the tiled stream runs at the engine's own rate. A chip whose DRAM caps that stream
# (DRAM_SHARE x its dram_gbs below the engine's rate: the base M4's 120 GB/s against the M4 Max's 546)
# re-reads the same bytes slower, so its wait is longer by the ratio of the engine's rate to the capped
# one. No new parameter: the ratio comes from the fitted stream and the chip table's DRAM figure.
SPILL_STALL_SOURCE = (f"spill wait x (engine's tiled stream / the stream {DRAM_SHARE} x the chip's DRAM allows): "
                      f"re-reads past the working set are DRAM traffic ({G} ch. 9, 12, 21); 1 where the DRAM "
                      "does not cap the stream")
# Parameters one generation takes from another instead of having its own: the single-row share is a
# property of the SoC's memory system, and the LPDDR5X generations (M4, M5, M6) pool their evidence in
# one value (assumption: one M5 base-chip decode point alone cannot separate its share from its rate).
TIED = {("h17", "gemv_share"): "h16", ("h18", "gemv_share"): "h16"}
# Fitted factors that are shares (never above 1).
FRACTIONS = ("spill_factor", "cliff_factor", "gemv_share")
# Published constants, not fitted (they decide which ops cross a threshold).
CONSTANTS = ("working_set_bytes", "weight_sram_bytes", "ocg_channels")


@dataclass(frozen=True)
class CostParams:
    chip: str
    anchor: str                 # the reference chip of the generation these values derive from
    generation: str             # "h13" ... "h18"
    scale: float                # rate scale applied to the generation's values (1.0 on the reference chip)
    dispatch_us: float          # per-evaluation floor, paid once per program (standard route)
    conv_tflops: float          # conv path roof, dense fp16 at full lane fill
    matmul_tflops: float        # matmul/linear path roof with operands on chip
    spill_factor: float         # MAC rate multiplier once an operand passes the working set
    cliff_factor: float         # MAC rate multiplier once an op's weights pass the weight SRAM
    io_gbs: float               # program inputs/outputs and spilled intermediates
    weight_gbs: float           # DRAM weight stream (every compression format at its stored size)
    gemv_gbs: float             # weight stream of a single-row (decode) MAC op: no tile reuse (ch. 9)
    conv_load_gbs: float        # exposed kernel load of a program's first convolution
    vector_gbs: float           # on-chip elementwise/reduction stream (assumption, see docs)
    working_set_bytes: float    # largest activation that stays on chip
    weight_sram_bytes: float    # weights that stay on chip while the op's activations stream
    ocg_channels: float = 224.0     # 1x1 output channels one output-channel-group pass holds (ch. 20)
    resident_bytes: float = 0.0     # weights that stay on chip between calls
    host_copy_gbs: float = 10.0     # host copy of program I/O on the "host" route
    gemv_share: float = DRAM_SHARE  # share of the chip's DRAM a single-row stream reaches (caps gemv_gbs)
    spill_stall: float = 1.0    # the spill wait's lengthening where the DRAM caps the stream (SPILL_STALL_SOURCE)
    smooth_crossing: bool = False  # the working-set crossing is smooth in throughput (SMOOTH_CROSSING)
    slow_band_gbs: float = 0.0  # weight stream of a 16 MiB-multiple weight (0: no slow band)
    streams: tuple[str, ...] = ()
    fitted: bool = False        # values come from fitted.json rather than the priors alone
    measured: bool = True       # False: no published point measures this generation
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def conv_weight_gbs(self) -> float:
        return self.weight_gbs

    @property
    def matmul_weight_gbs(self) -> float:
        return self.weight_gbs

    def source(self, name: str) -> str:
        return self.sources.get(name, "")


def prior(gen: str, name: str) -> Prior:
    """The published (or assumed) starting value of a generation's parameter, with its source.
    Rates missing for a generation come from its fallback generation (_FIELD_FALLBACK, else
    _FALLBACK) scaled by vendor TOPS."""
    if name in SHARED_PRIORS:
        return SHARED_PRIORS[name]
    if name in PRIORS[gen]:
        return PRIORS[gen][name]
    base = _FIELD_FALLBACK.get((gen, name), _FALLBACK.get(gen))
    if base is None:
        raise KeyError(f"no prior for {gen}.{name}")
    p = prior(base, name)
    if name in _RATES:
        s = _tops_ratio(GENERATIONS[gen], GENERATIONS[base])
        if s is not None and s != 1.0:
            return Prior(p.value * s, f"{GENERATIONS[base]} value x {s:.3g} (vendor TOPS ratio): {p.source}",
                         max(p.spread, 2.0))
    return Prior(p.value, f"{GENERATIONS[base]} value, assumed for {GENERATIONS[gen]}: {p.source}",
                 max(p.spread, 2.0))


def _tops_ratio(a: str, b: str) -> float | None:
    ta, tb = targets.get(a).tops, targets.get(b).tops
    return ta / tb if ta and tb else None


@lru_cache(maxsize=1)
def fitted() -> dict:
    """The fitted parameter table (fitted.json), or {} when absent."""
    try:
        text = resources.files("anekit.cost").joinpath("fitted.json").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return {}
    return json.loads(text)


def generation_values(gen: str, table: Mapping | None = None) -> dict[str, float]:
    """Parameter values of a generation's reference chip: fitted where fitted.json (or the
    given table) has them, the prior otherwise; plus the shared constants."""
    tab = fitted() if table is None else table
    out = {}
    for f in FITTED + CONSTANTS:
        src = TIED.get((gen, f), gen)
        out[f] = float(tab.get("generations", {}).get(src, {}).get(f, prior(src, f).value))
    for f in SHARED:
        out[f] = float(tab.get("shared", {}).get(f, SHARED_PRIORS[f].value))
    return out


def generation_of(chip) -> tuple[str, bool]:
    """(cost generation, measured) for a chip record: its compiler target's generation, or,
    for engines older or smaller than the M1's (A11, A12, M9, M11, T0), the M1 generation
    scaled by TOPS or core count, flagged as extrapolated."""
    comp = chip.compiler
    for gen in GENERATIONS:
        if comp.startswith(gen):
            return gen, True
    if comp == "t1":
        return "h13", True
    return "h13", False


def chip_scale(chip, gen: str) -> tuple[float, str]:
    """Rate scale of a chip against its generation's reference chip.

    Core-count scaling (guide ch. 12, 18: throughput and bandwidth scale with the engine's
    compute units): by per-die vendor TOPS where both chips have a figure, else by per-die
    marketed NE cores, else 1. Per die, because one program runs on one die's engine (an
    Ultra's second die does not speed it up). The compiler's decoded core field is not used:
    it does not track measured speed (M1 vs M1 Max decode 4 vs 8 cores and measure within 15%,
    M5 vs M5 Pro decode 4 vs 16 and measure within 15%: ANEForge roofline submissions)."""
    ref = targets.get(GENERATIONS[gen])
    ta, tb = _tops_per_die(chip), _tops_per_die(ref)
    if ta and tb:
        return ta / tb, ("reference chip" if ta == tb else f"per-die TOPS ratio {ta / tb:.3g}")
    ca, cb = _cores_per_die(chip), _cores_per_die(ref)
    if ca and cb:
        return ca / cb, ("reference chip" if ca == cb else f"per-die NE-core ratio {ca}/{cb}")
    return 1.0, "no vendor figure to scale by"


def _cores_per_die(chip) -> float | None:
    return chip.marketed_ne_cores / chip.dies if chip.marketed_ne_cores else None


def _tops_per_die(chip) -> float | None:
    """Vendor TOPS of one die; a chip with no figure borrows one from a chip on the same
    compiler target (an M3 Ultra's die is an M3 Max's). A program runs on one die's engine."""
    if chip.tops:
        return chip.tops / chip.dies
    for name in chip.target.chips:
        other = targets.get(name)
        if other.tops:
            return other.tops / other.dies
    return None


def slow_band(chip) -> tuple[float, str]:
    """(GB/s, source) of a chip's single-row stream of a weight in the 16 MiB slow band; 0.0
    where its compiler target was measured without the band or was not measured (SLOW_BAND)."""
    if chip.compiler in SLOW_BAND:
        return SLOW_BAND[chip.compiler]
    if chip.compiler in SLOW_BAND_FREE:
        return 0.0, "measured without the 16 MiB slow band (ANEForge roofline GEMV, K=N=4096 fp16)"
    return 0.0, "no 16 MiB slow band assumed (not measured on this compiler target)"


def params_for(chip, table: Mapping | None = None) -> CostParams:
    """The cost constants for a chip record (anekit.targets.Chip) or name. `table` overrides
    fitted.json (the fit passes candidate values through it)."""
    chip = targets.get(chip)
    if chip.family == "ref":
        raise TargetError(f"{chip.name} is a reference profile, not silicon: no latency model")
    gen, measured = generation_of(chip)
    tab = fitted() if table is None else table
    vals = generation_values(gen, tab)
    is_fitted = gen in tab.get("generations", {})
    anchor = GENERATIONS[gen]
    scale, how = chip_scale(chip, gen)
    srcs = {}
    tag = "fitted (anekit.cost.fit) from prior: " if is_fitted else "prior: "
    for f in FITTED + CONSTANTS:
        srcs[f] = (tag if f in FITTED else "") + prior(gen, f).source
    for f in _RATES:
        vals[f] *= scale
        if scale != 1.0:
            srcs[f] = f"{anchor} x {scale:.3g} ({how}); {srcs[f]}"
    engine_gbs = vals["weight_gbs"]
    for f in CAPPED_STREAMS:
        if chip.dram_gbs and vals[f] > DRAM_SHARE * chip.dram_gbs:
            vals[f] = DRAM_SHARE * chip.dram_gbs
            srcs[f] = f"capped at {DRAM_SHARE} x the chip's {chip.dram_gbs} GB/s DRAM"
    spill_stall = engine_gbs / vals["weight_gbs"]
    srcs["spill_stall"] = f"{spill_stall:.3g}: {SPILL_STALL_SOURCE}"
    if chip.dram_gbs and vals["gemv_gbs"] > vals["gemv_share"] * chip.dram_gbs:
        vals["gemv_gbs"] = vals["gemv_share"] * chip.dram_gbs
        srcs["gemv_gbs"] = (f"capped at the fitted share {vals['gemv_share']:.3g} of the chip's {chip.dram_gbs} GB/s "
                            f"DRAM ({GEMV_SHARE_SOURCE})")
    if chip.working_set_bytes and gen != "h17" and chip.working_set_bytes != targets.get(anchor).working_set_bytes:
        vals["working_set_bytes"] = chip.working_set_bytes * WS_MARGIN
        srcs["working_set_bytes"] = f"{chip.source('working_set_bytes')}, plus the ~10% tiler margin (ch. 21)"
    srcs["vector_gbs"] = f"assumption: {VECTOR_RATIO:g}x the I/O stream"
    srcs["resident_bytes"] = RESIDENT[gen].source
    host_scale = host_copy_scale(chip)
    vals["host_copy_gbs"] *= host_scale
    srcs["host_copy_gbs"] = SHARED_PRIORS["host_copy_gbs"].source + (
        f"; x {host_scale:.3g}: this chip's one-cluster CPU stream is capped by its {chip.dram_gbs} GB/s DRAM "
        f"({HOST_COPY_SOURCE})" if host_scale < 1.0 else "")
    srcs["smooth_crossing"] = SMOOTH_CROSSING.get(gen, "a step at the working set (guide ch. 21, M1 sweep)")
    band_gbs, srcs["slow_band_gbs"] = slow_band(chip)
    if not measured:
        for f in srcs:
            srcs[f] = "UNMEASURED generation, extrapolated from the M1's: " + srcs[f]
    return CostParams(chip=chip.name, anchor=anchor, generation=gen, scale=scale,
                      dispatch_us=vals["dispatch_us"], conv_tflops=vals["conv_tflops"],
                      matmul_tflops=vals["matmul_tflops"], spill_factor=vals["spill_factor"],
                      cliff_factor=vals["cliff_factor"], io_gbs=vals["io_gbs"], weight_gbs=vals["weight_gbs"],
                      gemv_gbs=vals["gemv_gbs"], ocg_channels=vals["ocg_channels"],
                      conv_load_gbs=vals["conv_load_gbs"],
                      vector_gbs=VECTOR_RATIO * vals["io_gbs"], working_set_bytes=vals["working_set_bytes"],
                      weight_sram_bytes=vals["weight_sram_bytes"], resident_bytes=RESIDENT[gen].value,
                      host_copy_gbs=vals["host_copy_gbs"], gemv_share=vals["gemv_share"], spill_stall=spill_stall,
                      slow_band_gbs=band_gbs, smooth_crossing=gen in SMOOTH_CROSSING,
                      streams=chip.streams, fitted=is_fitted,
                      measured=measured and (gen != "h18" or is_fitted), sources=srcs)
