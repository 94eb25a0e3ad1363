"""Published ANE latency measurements the cost model is fitted to and validated against.

Each point rebuilds the measured program in the IR, names the chip it ran on, and cites where
the number comes from (`cite`: document, table or file, and the row). Points are grouped by
`source`: one measurement campaign (one author, one machine, one harness). Validation leaves
one source out at a time (benchmarks/cost_validation.py), so a source's points are only ever
predicted by constants fitted to the other sources. Where a source leaves part of the shape
unstated, `assumption` says what was assumed. UNUSABLE lists measurements that could not be
turned into a program, with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import anekit
from ..ir import make_const
from . import estimate

G = "ANE guide (arXiv 2606.22283)"


@dataclass(frozen=True)
class Point:
    id: str
    chip: str                  # the anekit chip the measurement was taken on
    published_ms: float
    source: str                # measurement campaign: the unit left out in validation
    cite: str                  # precise citation of this number
    what: str
    build: Callable            # () -> Program; for slopes, (layers) -> Program
    assumption: str | None = None
    slope: bool = False        # published value is a per-layer increment inside a chain
    route: str = "standard"    # dispatch route of the harness (anekit.cost.params.ROUTE_FLOOR)

    def programs(self) -> list[tuple[float, object]]:
        """(sign, Program) pairs whose signed estimates sum to the predicted value."""
        if self.slope:
            return [(1.0, self.build(9)), (-1.0, self.build(8))]
        return [(1.0, self.build())]

    def predict_ms(self) -> float:
        return sum(s * estimate(p, self.chip, route=self.route).total_us for s, p in self.programs()) / 1e3


def _ak():
    return anekit


def _w(*shape):
    """Weights whose values do not matter to an estimate (zeros, fp16)."""
    return np.zeros(shape, dtype=np.float16)


def _conv(cin, cout, k, h, w):
    def build():
        ak = _ak()
        x = ak.input("x", (1, cin, h, w))
        return ak.program({"y": ak.conv(x, _w(cout, cin, k, k), pad_type="same")})
    return build


def _conv_chain(c, spatial, layers_default, width_axis=True):
    def build(layers=layers_default):
        ak = _ak()
        y = ak.input("x", (1, c, 1, spatial))
        for _ in range(layers):
            y = ak.conv(y, _w(c, c, 1, 1))
        return ak.program({"y": y})
    return build


def _matmul(m, k, n, chain=1, weight=None):
    def build():
        ak = _ak()
        y = ak.input("x", (m, k))
        for _ in range(chain):
            y = ak.matmul(y, weight() if weight else _w(k, n))
        return ak.program({"y": y})
    return build


def _int8(k, n):
    def make():
        ak = _ak()
        return ak.constexpr_affine_dequantize(quantized_data=np.zeros((k, n), np.int8),
                                              zero_point=np.zeros(n, np.int8), scale=np.ones(n, np.float16), axis=1)
    return make


def _lut4(k, n):
    def make():
        ak = _ak()
        idx = make_const(np.zeros((k, n), np.uint8), "uint4")
        return ak.constexpr_lut_to_dense(indices=idx, lut=np.zeros((1, 1, 16, 1), np.float16))
    return make


def _sparse(k, n, density):
    def make():
        ak = _ak()
        mask = np.zeros(k * n, np.uint8)
        mask[: int(round(density * k * n))] = 1
        nnz = int(mask.sum())
        return ak.constexpr_sparse_to_dense(nonzero_data=np.zeros(nnz, np.float16),
                                            mask=make_const(mask.reshape(k, n), "uint1"))
    return make


def _elementwise(op, shape):
    def build():
        ak = _ak()
        x = ak.input("x", shape)
        return ak.program({"y": getattr(ak, op)(x)})
    return build


def _linear(rows, k, n):
    ak = _ak()
    x = ak.input("x", (rows, k))
    return ak.program({"y": ak.linear(x, _w(n, k))})


def _chain2d(c, hw, layers):
    ak = _ak()
    y = ak.input("x", (1, c, hw, hw))
    for _ in range(layers):
        y = ak.conv(y, _w(c, c, 1, 1))
    return ak.program({"y": y})




def _linear_sq(n):
    """ANEForge's GEMM: af.input((N, N)).linear(W[N, N]), fp16 in and out."""
    def build():
        return _linear(n, n, n)
    return build


def _conv3_batch(c, b, hw=64):
    """ANEForge's conv: 3x3 same-pad C->C on (B, C, 64, 64), fp16."""
    def build():
        ak = _ak()
        x = ak.input("x", (b, c, hw, hw))
        return ak.program({"y": ak.conv(x, _w(c, c, 3, 3), pad_type="same")})
    return build


def _lm_head(lut_bits=None, vocab=128256, dim=4096, chunks=16):
    """anemll-bench's llama_lm_head: one 4096-channel position against a 128256-row head, split in
    `chunks` 1x1 convolutions (Anemll's models build the head as lm_head16_1..16, each
    nn.Conv2d(hidden, vocab // 16, 1) on a [1, hidden, 1, seq] input, ENABLE_CONV2D with
    ENABLE_VACAB_SPLIT16)."""
    def build():
        ak = _ak()
        rows = vocab // chunks
        x = ak.input("x", (1, dim, 1, 1))
        if lut_bits:
            idx = make_const(np.zeros((rows, dim, 1, 1), np.uint8), f"uint{lut_bits}")
            w = ak.constexpr_lut_to_dense(indices=idx, lut=np.zeros((1, 1, 1, 1, 2 ** lut_bits, 1), np.float16))
        else:
            w = make_const(np.zeros((rows, dim, 1, 1), np.float16))
        return ak.program({f"y{i}": ak.conv(x, w) for i in range(chunks)})
    return build


def _decoder_token(d=1024, layers=4, heads=16, d_ff=4096, vocab=32000, s_kv=128, head_tiles=2):
    """ANEForge decode_measurement.py --quick: one token through a Llama-style decoder (RMSNorm,
    q/k/v/o projections, attention against a KV cache passed in as inputs, SiLU-gated FFN)
    and a 32000-word head split in two (the tiled vocab head, ANEForge #181)."""
    def build():
        ak = _ak()
        dh = d // heads
        x = ak.input("x", (1, d))

        def rms(h):
            return h * ak.rsqrt(ak.reduce_mean(h * h, axes=[-1], keep_dims=True) + 1e-5) * _w(d)

        h = x
        for i in range(layers):
            kc, vc = ak.input(f"kc{i}", (heads, dh, s_kv)), ak.input(f"vc{i}", (heads, s_kv, dh))
            a = rms(h)
            q, k, v = (ak.reshape(ak.linear(a, _w(d, d)), shape=(heads, 1, dh)) for _ in range(3))
            scores = ak.concat([ak.matmul(q, kc), ak.matmul(q, ak.transpose(k, perm=(0, 2, 1)))], axis=2)
            p = ak.softmax(scores * (dh ** -0.5), axis=-1)
            ctx = ak.reshape(ak.matmul(p, ak.concat([vc, v], axis=1)), shape=(1, d))
            h = h + ak.linear(ctx, _w(d, d))
            f = rms(h)
            h = h + ak.linear(ak.silu(ak.linear(f, _w(d_ff, d))) * ak.linear(f, _w(d_ff, d)), _w(d, d_ff))
        h = rms(h)
        return ak.program({f"logits{i}": ak.linear(h, _w(vocab // head_tiles, d)) for i in range(head_tiles)})
    return build


_RAMP = f"{G} ch. 11, tbl:c11-convramp (3x3 conv, 64 channels, M1)"
_C18 = f"{G} ch. 18, tbl:c18-conv-compare (measured M1 column)"
_M1CLASS = f"{G} ch. 11, tbl:c11-m1class (engine GFLOP/s, M1)"
_INT8 = f"{G} ch. 7, tbl:c7-int8-matmul (A14/M2 matmul-path weight stream)"
_FMT = f"{G} ch. 10, tbl:c10-formats (bandwidth-bound 4096-inner matmul, M2)"
_ROWS = "rows not published: modelled as one row (decode-shaped), weight-stream bound"
_SEED = "seed 001 (M4 Max, standard evaluate path)"
_SEED_PROBE = "seed 001 (M4 Max), 'SRAM budget measured via sram_probe.m'"
_MDX_M4MAX = "maderix/ANE docs/BENCHMARK_RESULTS.md (Mac16,5 M4 Max), 'Programmatic MIL Peak TFLOPS' table"
_MDX_CHAIN = ("maderix/ANE inmem_peak.m: d chained 1x1 convs C->C on [1, C, 1, 64]; fp32 I/O cast to fp16 "
              "inside on M3+ (modelled as fp16 I/O: <0.2 MB either way)")
_PR28 = "maderix/ANE PR #28, benchmarks/submissions/m3-ultra-mac-studio-2026-03-03/raw/inmem_peak.log"
_I42 = "maderix/ANE issue #42 (M3 Ultra, Mac15,14), inmem_peak and inmem_bench logs"
_M3P = ("maderix/ANE benchmarks/community_results.json (report 2026-03-04, from issue #3), M3 Pro 36 GB, macOS 15.7.4: "
        "peak_tflops 16.77 (sustained 15.04), 'Peak at 128x conv 512ch sp2048', 'Only ch=512 compiles. 52 values tested'")
_PART2 = "maderix, 'Inside the M4 Apple Neural Engine, Part 2: ANE Benchmarks' (M4 Mac mini), matmul scaling"
_PART2_SHAPE = ("square N x N by N x N matmul with a compile-time weight, fp16 compute, fp32 I/O (fp16 modelled); "
                "route: the post's 'direct _ANEClient API' read as _ANEClient's real-time evaluate (assumed: of the "
                "three _ANEClient paths seed 001 timed, only the real-time one, 0.093 ms on a 64x32 kernel, matches "
                "the post's 0.101 ms floor; evaluateWithModel 0.175, doEvaluateDirect 0.225)")
_AF = "sbryngelson/ANEForge bench/results/rooflines/{file}: device_saturation_sweep, ANE {what}"
_AF_GEMM = ("ANEForge GEMM: af.input((N, N)).linear(W), fp16 I/O; min latency over 8 reps of net(x) on numpy "
            "arrays (host-copy route)")
_AF_CONV = ("ANEForge conv: 3x3 same-pad C->C on (B, C, 64, 64), fp16; min latency over 8 reps of net(x) on numpy "
            "arrays (host-copy route)")
_ANEMLL = "Anemll/anemll-bench issue #{n} ({chip}, {model}): llama_lm_head{suffix} inference_time_ms"
_ANEMLL_SHAPE = ("head [128256 x 4096] (1050.67 MB reported = fp16 128256 x 4096) on one 4096-channel position; "
                 "16 1x1 convs of 8016 rows (Anemll's lm_head16_1..16 = nn.Conv2d(hidden, vocab // 16, 1); "
                 "anemll-bench assumed to build its head the same way)")

_AF_FILES = {
    "M1": "roofline-apple-m1-MacBookAir10_1-bb9e71be3ae6-22b6e4fa.json",
    "M1 Max": "roofline-apple-m1-max-MacBookPro18_2-8dc9588b5db6-2d0173cb.json",
    "M4": "roofline-apple-m4-Mac16_12-d4109cd41a75-6779bad2.json",
    "M4 Max": "roofline-apple-m4-max-Mac16_6-c77b1414be16-d11ec8da.json",
    "M5": "roofline-apple-m5-Mac17_3-019d3ac27339-426ca052.json",
    "M5 Pro": "roofline-apple-m5-pro-Mac17_8-c38210cfc8ea-a154b89e.json",
    "M6": "roofline-apple-m6-Mac18_5-2bd3d20a7d10-3fab2f9b.json",
}
# ANE latencies (ms) from each ANEForge submission: GEMM by N, conv by (C, B).
_AF_GEMM_MS = {
    "M1": {512: 0.3317, 1024: 0.9933, 2048: 4.9607, 4096: 31.739},
    "M1 Max": {512: 0.4770, 1024: 0.9978, 2048: 4.2966, 4096: 30.130},
    "M4": {512: 0.2086, 1024: 0.7459, 2048: 3.5133, 4096: 25.286, 6144: 135.29, 8192: 313.50},
    "M4 Max": {512: 0.1391, 1024: 0.3708, 2048: 1.9366, 4096: 20.564, 6144: 123.74, 8192: 296.53},
    "M5": {512: 0.1373, 1024: 0.4369, 2048: 1.9730, 4096: 19.119},
    "M5 Pro": {512: 0.1523, 1024: 0.3748, 2048: 1.7109, 4096: 16.577, 6144: 97.178, 8192: 226.01},
    "M6": {512: 0.4021, 1024: 0.5745, 2048: 2.1197, 4096: 12.761},
}
_AF_CONV_MS = {
    "M1": {(64, 8): 1.5805},
    "M1 Max": {(64, 8): 1.3825, (128, 8): 3.0250, (256, 4): 4.1077},
    "M5": {(64, 8): 0.5063, (128, 8): 1.1120, (256, 4): 1.5357},
    "M6": {(64, 8): 0.6233, (128, 8): 1.1409, (256, 4): 1.3224, (512, 2): 1.6750},
}
# maderix inmem_peak chains: (depth, channels) -> ms
_MDX_M4MAX_MS = {(32, 512): 0.408, (48, 512): 0.262, (64, 512): 0.244, (96, 512): 0.326, (128, 512): 0.385,
                 (64, 256): 0.365, (128, 256): 0.454, (256, 256): 0.351, (64, 384): 0.429, (128, 384): 0.354}
_PR28_MS = {(32, 512): 0.497, (48, 512): 0.535, (64, 512): 0.355, (96, 512): 0.423, (128, 512): 0.531,
            (64, 256): 0.287, (128, 256): 0.272, (256, 256): 0.439, (64, 384): 0.319, (128, 384): 0.369}
_I42_MS = {(32, 512): 0.281, (48, 512): 0.315, (64, 512): 0.313, (96, 512): 0.380, (1, 512): 0.189}


# ANEForge decode at batch 1 (bench/results/ROOFLINES.md, 'Decode @b1 (tok/s)' column, produced by
# decode_measurement.py --quick through roofline_suite.py --perf): tokens per second.
_AF_DECODE_TOKS = {"M1": 278, "M1 Max": 244, "M2 Pro": 276, "M5": 228}
_AF_FILES["M2 Pro"] = "roofline-apple-m2-pro-Mac14_12-723396ad9091-370b3d53.json"
# The same harness without --quick (--perf-full): d_model 2048, 8 layers, d_ff 8192, KV cache 256
# (decode_measurement.py's default Cfg). ROOFLINES.md leaves these out of its tok/s column (a heavier
# model than the other rows'); the submissions' perf_rooflines record them: ANE batch-1
# latency_per_token_ms, ms.
_AF_DECODE_FULL_MS = {"M4": 43.112, "M5 Pro": 8.570}
_AF_DECODE_FULL_SHAPE = ("decode_measurement.py (default Cfg, --perf-full): d_model 2048, 8 layers, 16 heads, d_ff "
                         "8192, vocab 32000, KV cache 256 fed as inputs; one program per token; min latency over 40 "
                         "reps of net(x, caches) (host-copy route)")
_AF_DECODE_SHAPE = ("decode_measurement.py --quick: d_model 1024, 4 layers, 16 heads, d_ff 4096, vocab 32000, "
                    "KV cache 128 fed as inputs; one program per token (assumed: aneforge compiles the "
                    "stack as e5rt program(s)); min latency over 20 reps of net(x, caches) (host-copy route)")


def _aneforge_points() -> list[Point]:
    out = []
    for chip, toks in _AF_DECODE_TOKS.items():
        src = f"ANEForge {chip} ({_AF_FILES[chip].split('-')[-3].replace('_', ',')})"
        out.append(Point(f"af-{chip.lower().replace(' ', '')}-decode", chip, 1e3 / toks, src,
                         f"sbryngelson/ANEForge bench/results/ROOFLINES.md, 'Decode @b1 (tok/s)' = {toks} "
                         f"(submission {_AF_FILES[chip]})", "one decode token, Llama-style 4-layer d=1024",
                         _decoder_token(), assumption=_AF_DECODE_SHAPE, route="host"))
    for chip, ms in _AF_DECODE_FULL_MS.items():
        src = f"ANEForge {chip} ({_AF_FILES[chip].split('-')[-3].replace('_', ',')})"
        out.append(Point(f"af-{chip.lower().replace(' ', '')}-decode-full", chip, ms, src,
                         f"sbryngelson/ANEForge {_AF_FILES[chip]}: perf_rooflines, decode_measurement.py, ANE "
                         f"batch 1 latency_per_token_ms = {ms}", "one decode token, Llama-style 8-layer d=2048",
                         _decoder_token(d=2048, layers=8, heads=16, d_ff=8192, s_kv=256),
                         assumption=_AF_DECODE_FULL_SHAPE, route="host"))
    for chip, rows in _AF_GEMM_MS.items():
        src = f"ANEForge {chip} ({_AF_FILES[chip].split('-')[-3].replace('_', ',')})"
        for n, ms in rows.items():
            out.append(Point(f"af-{chip.lower().replace(' ', '')}-gemm-{n}", chip, ms, src,
                             _AF.format(file=_AF_FILES[chip], what=f"gemm N={n} lat_ms"),
                             f"linear {n}x{n} by a {n}x{n} weight", _linear_sq(n), assumption=_AF_GEMM,
                             route="host"))
        for (c, b), ms in _AF_CONV_MS.get(chip, {}).items():
            out.append(Point(f"af-{chip.lower().replace(' ', '')}-conv-{c}x{b}", chip, ms, src,
                             _AF.format(file=_AF_FILES[chip], what=f"conv C={c} B={b} lat_ms"),
                             f"conv 3x3 {c}->{c} on ({b}, {c}, 64, 64)", _conv3_batch(c, b), assumption=_AF_CONV,
                             route="host"))
    return out


def _chain_points(prefix, chip, table, source, cite) -> list[Point]:
    return [Point(f"{prefix}-chain-{d}x{c}", chip, ms, source, f"{cite}, row '{d}x conv {c}ch sp64'"
                  if d > 1 else f"{cite}, inmem_bench row '{c}ch x64sp'",
                  f"{d} chained 1x1 convs {c}->{c} on [1, {c}, 1, 64]", _conv_chain(c, 64, d), assumption=_MDX_CHAIN)
            for (d, c), ms in table.items()]



# anemll-bench lm-head submissions: (key, chip, issue number, machine, model id, fp16 ms, 6-bit LUT ms)
_ANEMLL_RUNS = (("m4max", "M4 Max", 1, "M4 Max 128 GB", "MacBook Pro", 8.74, 4.03),
                ("m4", "M4", 5, "M4 16 GB", "Mac16,1", 16.37, 6.447),
                ("m2u", "M2 Ultra", 2, "M2 Ultra 192 GB", "Mac14,14", 17.04, 6.70))


def _anemll_points() -> list:
    out = []
    for key, chip, n, machine, model, fp16_ms, lut6_ms in _ANEMLL_RUNS:
        source = f"anemll-bench {n} {chip}"
        out.append(Point(f"anemll-{key}-head", chip, fp16_ms, source,
                         _ANEMLL.format(n=n, chip=machine, model=model, suffix=""), "fp16 lm head, one row",
                         _lm_head(), assumption=_ANEMLL_SHAPE, route="host"))
        out.append(Point(f"anemll-{key}-head-lut6", chip, lut6_ms, source,
                         _ANEMLL.format(n=n, chip=machine, model=model, suffix="_lut6"), "6-bit LUT lm head, one row",
                         _lm_head(6), assumption=_ANEMLL_SHAPE + "; 6-bit palette (396 MB reported)", route="host"))
    return out

# ---- further ANEForge roofline submissions: machines not in the tables above (same harness, same
# programs, same route). key -> (chip, contributor, submission file, {N: GEMM ms}, {(C, B): conv ms},
# quick-decode ms: perf_rooflines, decode_measurement.py (quick: true), ANE batch 1 latency_per_token_ms).
# Repeat runs of a machine already listed are one campaign with it and are not added (UNUSABLE).
_AF_MORE = {
    "m1mbp": ("M1", "diegobauavi", "roofline-apple-m1-MacBookPro17_1-dcf5b8a7dd09-4b3e72c0.json",
              {512: 0.73929, 1024: 2.2608, 2048: 9.7120, 4096: 50.944},
              {(64, 8): 3.9889, (128, 8): 7.5504, (256, 4): 9.5356, (512, 2): 11.091}, 3.6189),
    "m2max": ("M2 Max", "Jeff271828", "roofline-apple-m2-max-Mac14_6-8c6229361be7-773f5b28.json",
              {512: 0.28900, 1024: 1.2820, 2048: 3.8122, 4096: 25.538},
              {(64, 8): 1.2549, (128, 8): 2.6702, (256, 4): 3.5334, (512, 2): 4.7655}, 3.6047),
    "m4pro": ("M4 Pro", "hyfjjjj", "roofline-apple-m4-pro-Mac16_7-7fdf43ae2309-9094e75f.json",
              {512: 0.13704, 1024: 0.59850, 2048: 2.7710, 4096: 22.375},
              {(64, 8): 0.88229, (128, 8): 2.1432, (256, 4): 2.5908, (512, 2): 3.7242}, 2.9728),
}


def _aneforge_more_points() -> list[Point]:
    out = []
    for key, (chip, who, file, gemm, conv, decode_ms) in _AF_MORE.items():
        src = f"ANEForge {chip} ({file.split('-')[-3].replace('_', ',')})"
        out.append(Point(f"af-{key}-decode", chip, decode_ms, src,
                         f"sbryngelson/ANEForge bench/results/rooflines/{file}: perf_rooflines, decode_measurement.py "
                         f"(quick: true), ANE batch 1 latency_per_token_ms = {decode_ms} (contributor {who})",
                         "one decode token, Llama-style 4-layer d=1024", _decoder_token(),
                         assumption=_AF_DECODE_SHAPE, route="host"))
        for n, ms in gemm.items():
            out.append(Point(f"af-{key}-gemm-{n}", chip, ms, src,
                             _AF.format(file=file, what=f"gemm N={n} lat_ms") + f" (contributor {who})",
                             f"linear {n}x{n} by a {n}x{n} weight", _linear_sq(n), assumption=_AF_GEMM, route="host"))
        for (c, b), ms in conv.items():
            out.append(Point(f"af-{key}-conv-{c}x{b}", chip, ms, src,
                             _AF.format(file=file, what=f"conv C={c} B={b} lat_ms") + f" (contributor {who})",
                             f"conv 3x3 {c}->{c} on ({b}, {c}, 64, 64)", _conv3_batch(c, b), assumption=_AF_CONV,
                             route="host"))
    return out


# maderix/ANE issue #3, tuxillo's Mac mini M4: inmem_peak chains and inmem_bench single layers, (depth, C) -> ms
_I3_TUX = "maderix/ANE issue #3, comment by tuxillo (2026-03-21, 'Apple Mac Mini M4 (10-core) 16 GB RAM')"
_I3_TUX_PEAK_MS = {(32, 512): 0.160, (48, 512): 0.190, (64, 512): 0.223, (96, 512): 0.302, (128, 512): 0.366,
                   (64, 256): 0.124, (128, 256): 0.153, (256, 256): 0.220, (64, 384): 0.163, (128, 384): 0.230}
_I3_TUX_BENCH_MS = {256: 0.106, 512: 0.084, 1024: 0.116, 2048: 0.237, 3072: 0.421, 4096: 1.012}
_INMEM_BENCH = ("maderix/ANE inmem_bench.m (not in the stored copy of the repository): one 1x1 conv C->C on "
                "[1, C, 1, 64], as its own table states (W (MB) = 2 C^2 bytes; TFLOPS = 2 C^2 64 / time); PR #27 "
                "moved it onto inmem_peak.m's in-memory MIL path (_ANEInMemoryModel evaluateWithQoS, the standard "
                "route); fp32 I/O cast inside on M3+, modelled as fp16 I/O (<= 1 MB either way)")


def _tuxillo_points() -> list[Point]:
    src = "maderix/ANE issue 3 M4 Mac mini (tuxillo)"
    out = _chain_points("m4-i3tux", "M4", _I3_TUX_PEAK_MS, src, _I3_TUX + ", inmem_peak table")
    for c, ms in _I3_TUX_BENCH_MS.items():
        out.append(Point(f"m4-i3tux-chain-1x{c}", "M4", ms, src, f"{_I3_TUX}, inmem_bench table, row '{c}ch x64sp'",
                         f"one 1x1 conv {c}->{c} on [1, {c}, 1, 64]", _conv_chain(c, 64, 1), assumption=_INMEM_BENCH))
    return out


_M5R = ("maderix/ANE training/m5result.md ('Machine: Apple M5, macOS 26.3', 2026-03-01), test_qos_sweep: 'eval "
        "~0.07ms avg for 8.4 MFLOPS kernel' (its Eval(avg10) column: 0.06-0.08 ms at QoS 1-63, 0.11 at QoS 0)")
_M5R_SHAPE = ("training/test_qos_sweep.m: one 1x1 conv 256->256 on [1, 256, 1, 64], compiled, loaded and evaluated "
              "through _ANEInMemoryModel evaluateWithQoS (the standard route, as inmem_peak); the average of 10 calls "
              "after one untimed call; fp32 I/O cast inside, modelled as fp16 (64 KB each way)")

# ---- third gathering pass (issue 17): reports found on a public mirror of maderix/ANE (git.madfire.net/berkus/ANE,
# pages corpus) whose files the stored copy of the repository lacks, and anemll-bench's per-chip table.
_MIRROR = "git.madfire.net mirror of maderix/ANE, commit {}"
_M5MAX = ("maderix/ANE PR #50 (lixiangnlp), benchmarks/m5max_result.md ('MacBook Pro, Apple M5 Max (6P + 12E CPU), 128 GB', "
          "macOS 26.4.1, Mac17,7, 2026-04-23, aneSubType h17; " + _MIRROR.format("82c275d1") + "), inmem_peak table")
_M5MAX_MS = {(32, 512): 0.135, (48, 512): 0.171, (64, 512): 0.206, (96, 512): 0.266, (128, 512): 0.311,
             (64, 256): 0.168, (128, 256): 0.132, (256, 256): 0.216, (64, 384): 0.142, (128, 384): 0.203}
_PROBE_M4 = ("maderix/ANE PROBE_RESULTS.md ('Apple M4 (10 cores), 32GB RAM, macOS 26.3', 2026-03-03; "
             + _MIRROR.format("6f16dbef") + ")")
_PROBE_M4_MS = {(64, 512): 0.395, (96, 512): 0.429, (128, 512): 0.589, (256, 256): 0.380}
_PROBE_V2_SHAPE = ("probe_v2.m TEST 1 'Conv 128x128, spatial=64': one 1x1 conv 128->128 on [1, 128, 1, 64] "
                   "(2 x 128 x 128 x 64 = 2.1 MFLOP, the report's 11.09 GFLOPS at 0.189 ms); 1000 back-to-back "
                   "evaluations, assumed on the in-memory standard path as the repository's other probes")


# Seed 001's SRAM probe on the M4 Max (sram_probe.m, not in the stored copy of maderix/ANE): "Peak efficiency at ~12.5 MB
# weights (282.6 GFLOPS/MB); first spill at ~32 MB (59.2); catastrophic spilling at 128 MB (8.0)". The probe's table
# (maderix/ANE issue #3, srt54558: "ANE SRAM Fine Probe (weights only vary, spatial=64)", columns Channels, W (MB),
# ms/eval, TFLOPS, GFLOPS/MB; rows 256 ... 8192 channels with W = 2 C^2 bytes in MiB) makes each figure one 1x1 conv
# C->C on [1, C, 1, 64]: W = 12.5, 32, 128 MiB is C = 2560, 4096, 8192, and ms = 2 C^2 64 / (GFLOPS/MB x W) (the
# harness's TFLOPS is 2 C^2 64 / time, as its inmem_bench table states).
_SRAM_PROBE = {2560: 282.6, 4096: 59.2, 8192: 8.0}
_SRAM_PROBE_SHAPE = ("sram_probe.m: one 1x1 conv C->C on [1, C, 1, 64] (the fine probe's 'weights only vary, spatial=64', "
                     "maderix/ANE issue #3), C from W = 2 C^2 bytes; latency = 2 C^2 64 / (GFLOPS/MB x W MiB); "
                     "standard route, as seed 001's other kernels")


def _sram_probe_ms(c: int) -> float:
    """The probe's latency from its GFLOPS/MB figure: 2 C^2 64 flops over (GFLOPS/MB x W MiB)."""
    return 2 * c * c * 64 / (_SRAM_PROBE[c] * 1e9 * (2 * c * c / 2 ** 20)) * 1e3


def _mirror_points() -> list[Point]:
    out = _chain_points("m5max-pr50", "M5 Max", _M5MAX_MS, "maderix/ANE PR 50 M5 Max (lixiangnlp)", _M5MAX)
    src = "maderix/ANE PROBE_RESULTS M4 (32 GB, macOS 26.3)"
    out += _chain_points("m4-probe", "M4", _PROBE_M4_MS, src, _PROBE_M4 + ", 'Peak ANE Throughput (inmem_peak)' table")
    out.append(Point("m4-probe-conv-128", "M4", 0.189, src, _PROBE_M4 + ", probe_v2.m TEST 1: '0.189ms/eval'",
                     "one 1x1 conv 128->128 on [1, 128, 1, 64]", _conv_chain(128, 64, 1), assumption=_PROBE_V2_SHAPE))
    return out


# anemll-bench Results.MD, 'llama_lm_head Model (Standard)': the head's bytes over its latency, per chip (GB/s).
# The harness reports throughput_gb_s = model_size_mb / inference_time_ms (issue #5: 1050.67 / 16.372 = 64.18),
# so latency = 1050.67 / GB/s. The table names no contributors: each chip row is taken as one machine's
# submission. Rows that repeat a submission already used are left out (UNUSABLE).
_ANEMLL_TABLE = "Anemll/anemll-bench Results.MD (commit 0a9a5de7), 'llama_lm_head Model (Standard)' table"
_ANEMLL_TABLE_GBS = {"M1": 60.87, "M1 Pro": 54.90, "M1 Max": 54.62, "M1 Ultra": 54.72, "M2": 60.45, "M2 Pro": 61.93,
                     "M2 Max": 62.01, "M3": 63.10, "M3 Max": 120.22, "M4 Pro": 126.36, "M5": 70.21,
                     "M5 Max": 148.39, "M6": 152.01}
_ANEMLL_MB = 1050.67


def _anemll_table_points() -> list[Point]:
    out = []
    for chip, gbs in _ANEMLL_TABLE_GBS.items():
        key = chip.lower().replace(" ", "")
        out.append(Point(f"anemll-table-{key}-head", chip, _ANEMLL_MB / gbs, f"anemll-bench Results.MD {chip}",
                         f"{_ANEMLL_TABLE}, row '{chip}': {gbs} GB/s (latency = {_ANEMLL_MB} MB / rate)",
                         "fp16 lm head, one row", _lm_head(),
                         assumption=_ANEMLL_SHAPE + "; one contributor's machine per chip row", route="host"))
    return out


POINTS: list[Point] = [
    # ---- guide, M1 (the guide's measured M1 reports h13g: an M1 Max-class part, ch. 10, 12, 34)
    Point("m1-conv3-64-16", "M1 Max", 0.231, "guide M1", _RAMP + ", 16x16 row", "conv 3x3 64->64 at 16x16", _conv(64, 64, 3, 16, 16)),
    Point("m1-conv3-64-32", "M1 Max", 0.248, "guide M1", _RAMP + ", 32x32 row", "conv 3x3 64->64 at 32x32", _conv(64, 64, 3, 32, 32)),
    Point("m1-conv3-64-64", "M1 Max", 0.395, "guide M1", _RAMP + ", 64x64 row", "conv 3x3 64->64 at 64x64", _conv(64, 64, 3, 64, 64)),
    Point("m1-conv3-64-128", "M1 Max", 1.062, "guide M1", _RAMP + ", 128x128 row", "conv 3x3 64->64 at 128x128", _conv(64, 64, 3, 128, 128)),
    Point("m1-conv3-64-256", "M1 Max", 3.814, "guide M1", _RAMP + ", 256x256 row", "conv 3x3 64->64 at 256x256", _conv(64, 64, 3, 256, 256)),
    Point("m1-conv3-256-28", "M1 Max", 0.507, "guide M1", _C18 + ", 3x3 C256 at 28 row", "conv 3x3 256->256 at 28x28", _conv(256, 256, 3, 28, 28)),
    Point("m1-conv1-512-32", "M1 Max", 0.444, "guide M1", _C18 + ", 1x1 C512 at 32 row", "conv 1x1 512->512 at 32x32", _conv(512, 512, 1, 32, 32)),
    Point("m1-conv1-1024-16", "M1 Max", 0.686, "guide M1", _C18 + ", 1x1 C1024 at 16 row", "conv 1x1 1024->1024 at 16x16", _conv(1024, 1024, 1, 16, 16)),
    Point("m1-conv1-2048-8", "M1 Max", 1.047, "guide M1", _C18 + ", 1x1 C2048 at 8 row", "conv 1x1 2048->2048 at 8x8", _conv(2048, 2048, 1, 8, 8)),
    Point("m1-linear-64", "M1 Max", 0.23, "guide M1", f"{G} ch. 9 and 11: a 64-element linear is 0.23 ms",
          "linear 64->64, one row", lambda: _linear(1, 64, 64)),
    Point("m1-relu-small", "M1 Max", 0.25, "guide M1", f"{G} ch. 9 and 11: relu, sigmoid, avg pool, small conv at 0.24-0.26 ms",
          "relu on a small tensor", _elementwise("relu", (1, 64, 1, 256)),
          assumption="size not published ('small'): [1, 64, 1, 256]; published range midpoint"),
    Point("m1-gemm-64x256x256", "M1 Max", 2 * 64 * 256 * 256 / 51e9 * 1e3, "guide M1", _M1CLASS + ": GEMM floor, 51 GFLOP/s",
          "matmul 64x256 @ 256x256", _matmul(64, 256, 256),
          assumption="shape from ch. 11's 'floor matrix multiply, 64 by 256 by 256'; latency = flops / rate"),
    Point("m1-gemm-256x4096x4096", "M1 Max", 2 * 256 * 4096 * 4096 / 3588e9 * 1e3, "guide M1",
          _M1CLASS + ": GEMM compute, 3588 GFLOP/s", "matmul 256x4096 @ 4096x4096", _matmul(256, 4096, 4096),
          assumption="shape inferred from ch. 11's '256 by 4096 by 4096' large-K GEMM; latency = flops / rate"),
    Point("m1-matmul-4096", "M1 Max", 2 * 4096.0 ** 3 / 4.8e12 * 1e3, "guide M1",
          f"{G} ch. 9: one large 4096-dimension matmul at ~4.8 TFLOP/s", "matmul 4096x4096 @ 4096x4096",
          _matmul(4096, 4096, 4096), assumption="square 4096 operands; latency = flops / rate"),
    Point("m1-matmul-chain-8x1024", "M1 Max", 2.11, "guide M1",
          f"{G} ch. 10: eight chained 1024-square matmuls in one program, p50 2110 us",
          "8 chained matmuls 1024x1024 @ 1024x1024", _matmul(1024, 1024, 1024, chain=8)),
    Point("m1-conv1-slope-192", "M1 Max", 0.020, "guide M1", f"{G} ch. 20: per-layer slope of 1x1 fp16 conv at 32x32, 192 channels",
          "one more 1x1 conv 192->192 at [1, 192, 32, 32] in a chain", lambda layers: _chain2d(192, 32, layers),
          assumption="input channels equal to output channels; increment from 8 to 9 layers", slope=True),
    Point("m1-conv1-slope-256", "M1 Max", 0.061, "guide M1", f"{G} ch. 20: per-layer slope of 1x1 fp16 conv at 32x32, 256 channels",
          "one more 1x1 conv 256->256 at [1, 256, 32, 32] in a chain", lambda layers: _chain2d(256, 32, layers),
          assumption="input channels equal to output channels; increment from 8 to 9 layers", slope=True),
    # ---- guide, M2 (a Pro reporting h14g, ch. 12)
    Point("m2-fp16-2048", "M2 Pro", 0.290, "guide M2", _INT8 + ", 2048 fp16", "matmul, fp16 weight 2048x2048", _matmul(1, 2048, 2048), assumption=_ROWS),
    Point("m2-fp16-4096", "M2 Pro", 0.740, "guide M2", _INT8 + ", 4096 fp16", "matmul, fp16 weight 4096x4096", _matmul(1, 4096, 4096), assumption=_ROWS),
    Point("m2-fp16-8192", "M2 Pro", 2.610, "guide M2", _INT8 + ", 8192 fp16", "matmul, fp16 weight 8192x8192", _matmul(1, 8192, 8192), assumption=_ROWS),
    Point("m2-int8-2048", "M2 Pro", 0.253, "guide M2", _INT8 + ", 2048 int8", "matmul, int8 weight 2048x2048",
          _matmul(1, 2048, 2048, weight=_int8(2048, 2048)), assumption=_ROWS),
    Point("m2-int8-4096", "M2 Pro", 0.447, "guide M2", _INT8 + ", 4096 int8", "matmul, int8 weight 4096x4096",
          _matmul(1, 4096, 4096, weight=_int8(4096, 4096)), assumption=_ROWS),
    Point("m2-int8-8192", "M2 Pro", 1.351, "guide M2", _INT8 + ", 8192 int8", "matmul, int8 weight 8192x8192",
          _matmul(1, 8192, 8192, weight=_int8(8192, 8192)), assumption=_ROWS),
    Point("m2-fmt-fp16", "M2 Pro", 0.690, "guide M2", _FMT + ", fp16 row", "matmul, fp16 weight 4096x4096", _matmul(1, 4096, 4096),
          assumption=_ROWS + "; output width 4096 assumed"),
    Point("m2-fmt-int8", "M2 Pro", 0.431, "guide M2", _FMT + ", int8 row", "matmul, int8 weight 4096x4096",
          _matmul(1, 4096, 4096, weight=_int8(4096, 4096)), assumption=_ROWS + "; output width 4096 assumed"),
    Point("m2-fmt-int4", "M2 Pro", 0.270, "guide M2", _FMT + ", int4 row", "matmul, 4-bit palettized weight 4096x4096",
          _matmul(1, 4096, 4096, weight=_lut4(4096, 4096)),
          assumption=_ROWS + "; int4 as a 16-entry lookup table (the form that streams from M1)"),
    Point("m2-fmt-sparse", "M2 Pro", 0.330, "guide M2", _FMT + ", sparse row", "matmul, sparse weight 4096x4096, 32% dense",
          _matmul(1, 4096, 4096, weight=_sparse(4096, 4096, 0.32)), assumption=_ROWS + "; output width 4096 assumed"),
    # ---- guide, M5 (the measured M5 is an H17s part)
    Point("m5-floor", "M5 Pro", 0.11, "guide M5", f"{G} ch. 18, tbl:c18-chip-params: M5 dispatch floor 0.11 ms",
          "relu on a small tensor", _elementwise("relu", (1, 64, 1, 64)), assumption="a floor-sized op; size not published"),
    # ---- seed 001 and the same author's repository (one M4 Max machine)
    Point("m4max-kernel-64x32", "M4 Max", 0.175, "maderix M4 Max", f"{_SEED}: 64x32 kernel 0.175 ms",
          "1x1 conv 64->64 on [1, 64, 1, 32]", _conv_chain(64, 32, 1), assumption="'64x32' read as 64 channels by 32 positions"),
    Point("m4max-kernel-768x256", "M4 Max", 0.205, "maderix M4 Max", f"{_SEED}: 768x256 (Stories110M) kernel 0.205 ms",
          "1x1 conv 768->768 on [1, 768, 1, 256]", _conv_chain(768, 256, 1),
          assumption="'768x256' read as dim 768 by sequence 256, one 768->768 projection"),
    *_chain_points("m4max", "M4 Max", _MDX_M4MAX_MS, "maderix M4 Max", _MDX_M4MAX),
    *[Point(f"m4max-sram-probe-{c}", "M4 Max", _sram_probe_ms(c), "maderix M4 Max",
            f"{_SEED_PROBE}: {c}-channel row, {gpm} GFLOPS/MB at {2 * c * c / 2 ** 20:g} MB",
            f"one 1x1 conv {c}->{c} on [1, {c}, 1, 64]", _conv_chain(c, 64, 1), assumption=_SRAM_PROBE_SHAPE)
      for c, gpm in _SRAM_PROBE.items()],
    # ---- maderix's M4 (base) blog measurements
    Point("m4-part2-matmul-256", "M4", 0.101, "maderix part 2 M4", f"{_PART2}: 256x256 'dispatch-limited at 0.101 ms'",
          "linear 256x256 by a 256x256 weight", _linear_sq(256), assumption=_PART2_SHAPE, route="realtime"),
    Point("m4-part2-matmul-2048", "M4", 2 * 2048 ** 3 / 5.7e12 * 1e3, "maderix part 2 M4", f"{_PART2}: 2048, 5.7 TFLOPS",
          "linear 2048x2048 by a 2048x2048 weight", _linear_sq(2048), assumption=_PART2_SHAPE + "; latency = flops / rate", route="realtime"),
    Point("m4-part2-matmul-4096", "M4", 2 * 4096 ** 3 / 4.0e12 * 1e3, "maderix part 2 M4", f"{_PART2}: 4096, 4.0 TFLOPS",
          "linear 4096x4096 by a 4096x4096 weight", _linear_sq(4096), assumption=_PART2_SHAPE + "; latency = flops / rate", route="realtime"),
    # ---- M3 Ultra community submissions to maderix/ANE (two machines, two people)
    *_chain_points("m3u-pr28", "M3 Ultra", _PR28_MS, "maderix/ANE PR 28 M3 Ultra", _PR28),
    *_chain_points("m3u-i42", "M3 Ultra", _I42_MS, "maderix/ANE issue 42 M3 Ultra", _I42),
    # ---- the one M3 measurement at a full-width activation (a third person's machine): inmem_peak with
    # the spatial size swept; its peak config is stated, so the latency follows from the harness's own
    # flop count (2 C^2 sp d) and rate
    Point("m3p-sp2048-chain-128x512", "M3 Pro", 2 * 512 ** 2 * 2048 * 128 / 16.77e12 * 1e3, "maderix/ANE community M3 Pro",
          _M3P, "128 chained 1x1 convs 512->512 on [1, 512, 1, 2048]", _conv_chain(512, 2048, 128),
          assumption=("maderix/ANE inmem_peak.m chain, spatial size swept: d chained 1x1 convs C->C on [1, C, 1, sp]; "
                      "fp32 I/O cast to fp16 inside (4 MB each way, modelled as fp16: ~0.1 ms of 8); "
                      "latency = flops / peak rate")),
    # ---- ANEForge roofline submissions (one machine and person each)
    *_aneforge_points(),
    # ---- anemll-bench weight-streaming heads (one machine and person each)
    *_anemll_points(),
    # ---- added in the second gathering pass (issue 17): new machines and people only
    *_aneforge_more_points(),
    *_tuxillo_points(),
    Point("m5-m5result-conv-256", "M5", 0.07, "maderix/ANE m5result M5", _M5R,
          "one 1x1 conv 256->256 on [1, 256, 1, 64]", _conv_chain(256, 64, 1), assumption=_M5R_SHAPE),
    # ---- third gathering pass: mirrored report files and anemll-bench's per-chip table
    *_mirror_points(),
    *_anemll_table_points(),
]


def sources() -> dict[str, list[Point]]:
    """Points grouped by measurement campaign, in table order."""
    out: dict[str, list[Point]] = {}
    for p in POINTS:
        out.setdefault(p.source, []).append(p)
    return out


# Points that contradict their own source's neighbours: in the same run of the same harness, a chain
# of at least twice as many layers of the same width measured faster. maderix/ANE inmem_peak.m compiles each configuration,
# runs 10 warm-up and then times 50 back-to-back evaluations; the engine runs one fixed clock (guide
# ch. 31: no local voltage or frequency scaling), so no mechanism in the guide makes a longer chain of
# the same layer finish sooner. They stay in every fit and every statistic; they are flagged, with
# the evidence, so a reader can tell a measurement outlier from a model miss.
MEASUREMENT_OUTLIERS = {
    "m4max-chain-32x512": "32 layers 0.408 ms, while 64 layers took 0.244 ms (and 48 layers 0.262 ms)",
    "m4max-chain-64x256": "64 layers 0.365 ms, while 256 layers (4x the work and the weights) took 0.351 ms",
    "m4max-chain-128x256": "128 layers 0.454 ms, while 256 layers (2x the work) took 0.351 ms",
    "m4max-chain-64x384": "64 layers 0.429 ms, while 128 layers (2x the work) took 0.354 ms",
    "m3u-pr28-chain-32x512": ("32 layers 0.497 ms, while 64 layers (2x the work) took 0.355 ms; the other M3 Ultra "
                              "(issue 42) ran the 32-layer chain in 0.281 ms"),
    "m3u-pr28-chain-48x512": "48 layers 0.535 ms, while 96 layers took 0.423 ms (issue 42's M3 Ultra: 0.315 ms)",
    "m3u-pr28-chain-64x256": "64 layers 0.287 ms, while 128 layers took 0.272 ms",
    "m5max-pr50-chain-64x256": "64 layers 0.168 ms, while 128 layers (2x the work) took 0.132 ms",
}

# Measurements found in the sources that could not be rebuilt as a program, and why.
UNUSABLE = [
    (f"{G} ch. 11 tbl:c11-m1class", "GEMM bandwidth (K=1024), 662 GFLOP/s", "rows and output width not published"),
    (f"{G} ch. 11 tbl:c11-m1class", "conv single (C=64), 99 GFLOP/s", "spatial size not published"),
    (f"{G} ch. 11 tbl:c11-m1class", "conv stack 16 deep, 9602 GFLOP/s", "spatial size not published"),
    (f"{G} ch. 11 tbl:c11-m1class", "attention ViT S=197 and S=512, 1711 and 1775 GFLOP/s", "model width and heads not published"),
    (f"{G} ch. 11", "single-row matmul at inner 1024, 5.9 GFLOP/s", "output width not published"),
    (f"{G} ch. 11, 13", "3x3 conv at 256 channels, 2212 GFLOP/s", "spatial size not published"),
    (f"{G} ch. 9", "fused conv-relu stack flat near 0.19 ms for 1-32 layers; 1.5 us per sample at batch 512",
     "layer shape not published"),
    (f"{G} ch. 9, 12", "M5 conv roof 18771, matmul roof 10191, slope 19.6 TFLOP/s, single matmul 9.5 TFLOP/s, "
     "GEMV 112 GFLOP/s, fused 3-conv stack 20718 GFLOP/s", "shapes not published (the roofs are used as constants)"),
    (f"{G} ch. 9", "96-layer matmul chain at a 2 MB activation: 426 MB of DRAM traffic", "a traffic count, not a latency"),
    (f"{G} ch. 21", "batched-matmul sweep across the 2 MB threshold", "units and shape not stated"),
    ("seed 001", "transformer block (LN + SDPA + FFN) ~0.21 ms", "model dimensions not published"),
    ("seed 001", "real-time, processRequest and direct evaluate paths", "anekit models the standard evaluate path"),
    ("maderix/ANE benchmarks/community_results.json", "peak_tflops_inmem M4 Pro 12.57, M4 Max 10.93, M5 12.44/12.17",
     "headline rates without the run's chosen configuration (the M3 Pro row names its: a point)"),
    ("maderix/ANE issue #42", "inmem_peak 128x conv 512ch row", "cut off in the stored copy"),
    ("maderix/ANE community_results.json", "Stories110M training steps (ms/step, ane_ms) on M1 Pro/Max, M4 Pro/Max, M5",
     "the step's 60-99 kernels and their CPU share are not in the results"),
    ("maderix/ANE issue #3, srt54558 (M4 Pro MacBook Pro)", "sram_probe and inmem_bench tables",
     "every row failed (-1.000 ms); the inmem_peak table is not in the stored thread (only its 12.57 TFLOPS peak, "
     "in community_results.json, without the configuration)"),
    ("maderix/ANE PR #50, lixiangnlp (M5 Max, h17)", "inmem_bench, sram_bench and ane_int8_bench tables (benchmarks/m5max_result.md)",
     "the stored copy of the repository lacks the file, and the excerpts of its mirror (git.madfire.net) that the "
     "pages corpus returns end after the inmem_peak table (used: 'maderix/ANE PR 50 M5 Max')"),
    ("maderix/ANE benchmarks/ANE_BENCHMARK_REPORT.md (mirror)", "'Peak ANE Throughput (inmem_peak, 128x conv 512ch sp64)' "
     "per-chip table", "the header names one configuration, but the M3 Pro's own submission peaks at sp2048 (the "
     "'maderix/ANE community M3 Pro' point): the rows are each run's best configuration, not one shape"),
    ("maderix/ANE docs/BENCHMARK_RESULTS.md (mirror)", "M4 Max (Mac16,5) inmem_peak table",
     "the same table as 'maderix M4 Max' (seed 001's machine): one campaign, counted once"),
    ("Anemll/anemll-bench Results.MD", "rows M2 Ultra (61.68 GB/s), M4 (64.18 GB/s)",
     "the same values as issues #2 and #5, already used: the same submissions"),
    ("Anemll/anemll-bench Results.MD", "row M4 Max (118.88 GB/s)",
     "issue #1's M4 Max measured 120.24 GB/s; the table names no contributor, so whether this is another machine "
     "or a re-run of that one cannot be told: counted once, as issue #1"),
    ("Anemll/anemll-bench Results.MD", "M5 Max dual-model rows (two heads evaluated in parallel, 14.19-14.21 ms) "
     "and the DeepHermes head (7.07 ms)", "two programs running concurrently is not a program anekit estimates; the "
     "DeepHermes head is the same shape on the same machine as its llama_lm_head row (a repeat)"),
    ("maderix/ANE PR #51, dailykim149656-source (M2 Mac mini)", "benchmark tables (benchmarks/local_m2_results.md)",
     "the report file is not in the stored copy; the PR text has no table"),
    ("maderix/ANE PR #35, Lumysia (M5)", "m5_performance_suite 'Pure ANE Eval' (0.022 ms at 128 x 128, SEQ=1)",
     "training/m5_performance_suite.m does not check evaluateWithQoS's result, and 0.022 ms is under a quarter of the "
     "fastest dispatch any source measured (seed 001's real-time path, 0.093 ms): nothing shows the program ran"),
    ("maderix/ANE issue #36, dev-erik", "community benchmark dashboard",
     "the results live on an external site; the stored thread has no table"),
    ("maderix/ANE training/m5result.md", "test_weight_reload compile/load/reload times",
     "compile and load times, not evaluation latencies"),
    ("sbryngelson/ANEForge bench/results/rooflines", "repeat runs of machines already used (M1 MacBookPro17,1 b1ab0125, "
     "M1 Max 85ebfafa, M2 Pro 1c1aa174 and 44d76599, M5 dd5e5c95, M5 Pro 06ec400a, 523cfebe, a92275dd, db49f4a5)",
     "the same machine and person as a run already in the table: one campaign, counted once"),
]
