"""Published ANE latency measurements the cost model is validated against.

Each point rebuilds the measured program in the IR and names its source. `calibrates` names
the constant a point sets in params.py (directly, or through a constant the guide fitted to
it); the rest are held out. Where a source leaves part of the shape unstated, `assumption`
says what was assumed. UNUSABLE lists measurements that could not be turned into a program,
with the reason.
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
    source: str
    what: str
    build: Callable            # () -> Program; for slopes, (layers) -> Program
    calibrates: str = ""       # the constant this point sets (empty: held out)
    assumption: str | None = None
    slope: bool = False        # published value is a per-layer increment inside a chain

    def predict_ms(self) -> float:
        if self.slope:
            return (estimate(self.build(9), self.chip).total_us - estimate(self.build(8), self.chip).total_us) / 1e3
        return estimate(self.build(), self.chip).total_ms


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


_RAMP = f"{G} ch. 11, tbl:c11-convramp (3x3 conv, 64 channels, M1)"
_C18 = f"{G} ch. 18, tbl:c18-conv-compare (measured M1 column)"
_C18_CAL = ("M1 conv weight stream 9.0 GB/s: the guide fitted this constant (used as is) to its "
            "reference convolutions, these four among them")
_M1CLASS = f"{G} ch. 11, tbl:c11-m1class (engine GFLOP/s, M1)"
_INT8 = f"{G} ch. 7, tbl:c7-int8-matmul (A14/M2 matmul-path weight stream)"
_FMT = f"{G} ch. 10, tbl:c10-formats (bandwidth-bound 4096-inner matmul, M2)"
_ROWS = "rows not published: modelled as one row (decode-shaped), weight-stream bound"
_SEED = "seed 001 (M4 Max, standard evaluate path)"

POINTS: list[Point] = [
    Point("m1-conv3-64-16", "M1 Max", 0.231, _RAMP, "conv 3x3 64->64 at 16x16", _conv(64, 64, 3, 16, 16)),
    Point("m1-conv3-64-32", "M1 Max", 0.248, _RAMP, "conv 3x3 64->64 at 32x32", _conv(64, 64, 3, 32, 32)),
    Point("m1-conv3-64-64", "M1 Max", 0.395, _RAMP, "conv 3x3 64->64 at 64x64", _conv(64, 64, 3, 64, 64)),
    Point("m1-conv3-64-128", "M1 Max", 1.062, _RAMP, "conv 3x3 64->64 at 128x128", _conv(64, 64, 3, 128, 128)),
    Point("m1-conv3-64-256", "M1 Max", 3.814, _RAMP, "conv 3x3 64->64 at 256x256", _conv(64, 64, 3, 256, 256)),
    Point("m1-conv3-256-28", "M1 Max", 0.507, _C18, "conv 3x3 256->256 at 28x28", _conv(256, 256, 3, 28, 28),
          calibrates=_C18_CAL),
    Point("m1-conv1-512-32", "M1 Max", 0.444, _C18, "conv 1x1 512->512 at 32x32", _conv(512, 512, 1, 32, 32),
          calibrates=_C18_CAL),
    Point("m1-conv1-1024-16", "M1 Max", 0.686, _C18, "conv 1x1 1024->1024 at 16x16", _conv(1024, 1024, 1, 16, 16),
          calibrates=_C18_CAL),
    Point("m1-conv1-2048-8", "M1 Max", 1.047, _C18, "conv 1x1 2048->2048 at 8x8", _conv(2048, 2048, 1, 8, 8),
          calibrates=_C18_CAL),
    Point("m1-linear-64", "M1 Max", 0.23, f"{G} ch. 9 and 11: a 64-element linear is 0.23 ms",
          "linear 64->64, one row", lambda: _linear(1, 64, 64)),
    Point("m1-relu-small", "M1 Max", 0.25, f"{G} ch. 9 and 11: relu, sigmoid, avg pool, small conv at 0.24-0.26 ms",
          "relu on a small tensor", _elementwise("relu", (1, 64, 1, 256)),
          assumption="size not published ('small'): [1, 64, 1, 256]; published range midpoint"),
    Point("m1-gemm-64x256x256", "M1 Max", 2 * 64 * 256 * 256 / 51e9 * 1e3, _M1CLASS + ": GEMM floor, 51 GFLOP/s",
          "matmul 64x256 @ 256x256", _matmul(64, 256, 256),
          assumption="shape from ch. 11's 'floor matrix multiply, 64 by 256 by 256'; latency = flops / rate"),
    Point("m1-gemm-256x4096x4096", "M1 Max", 2 * 256 * 4096 * 4096 / 3588e9 * 1e3, _M1CLASS + ": GEMM compute, 3588 GFLOP/s",
          "matmul 256x4096 @ 4096x4096", _matmul(256, 4096, 4096),
          assumption="shape inferred from ch. 11's '256 by 4096 by 4096' large-K GEMM; latency = flops / rate"),
    Point("m1-matmul-4096", "M1 Max", 2 * 4096.0 ** 3 / 4.8e12 * 1e3, f"{G} ch. 9: one large 4096-dimension matmul at ~4.8 TFLOP/s",
          "matmul 4096x4096 @ 4096x4096", _matmul(4096, 4096, 4096),
          calibrates="M1 matmul spill factor 0.4 (this measurement's 12 -> 4.8 TFLOP/s)",
          assumption="square 4096 operands; latency = flops / rate"),
    Point("m1-matmul-chain-8x1024", "M1 Max", 2.11, f"{G} ch. 10: eight chained 1024-square matmuls in one program, p50 2110 us",
          "8 chained matmuls 1024x1024 @ 1024x1024", _matmul(1024, 1024, 1024, chain=8)),
    Point("m2-fp16-2048", "M2 Pro", 0.290, _INT8, "matmul, fp16 weight 2048x2048", _matmul(1, 2048, 2048), assumption=_ROWS),
    Point("m2-fp16-4096", "M2 Pro", 0.740, _INT8, "matmul, fp16 weight 4096x4096", _matmul(1, 4096, 4096),
          calibrates="M2 dispatch floor and weight stream (two-point fit with m2-fp16-8192)", assumption=_ROWS),
    Point("m2-fp16-8192", "M2 Pro", 2.610, _INT8, "matmul, fp16 weight 8192x8192", _matmul(1, 8192, 8192),
          calibrates="M2 dispatch floor and weight stream (two-point fit with m2-fp16-4096)", assumption=_ROWS),
    Point("m2-int8-2048", "M2 Pro", 0.253, _INT8, "matmul, int8 weight 2048x2048",
          _matmul(1, 2048, 2048, weight=_int8(2048, 2048)), assumption=_ROWS),
    Point("m2-int8-4096", "M2 Pro", 0.447, _INT8, "matmul, int8 weight 4096x4096",
          _matmul(1, 4096, 4096, weight=_int8(4096, 4096)), assumption=_ROWS),
    Point("m2-int8-8192", "M2 Pro", 1.351, _INT8, "matmul, int8 weight 8192x8192",
          _matmul(1, 8192, 8192, weight=_int8(8192, 8192)), assumption=_ROWS),
    Point("m2-fmt-fp16", "M2 Pro", 0.690, _FMT, "matmul, fp16 weight 4096x4096", _matmul(1, 4096, 4096),
          calibrates="none of its own, but it is the same program as the m2-fp16-4096 calibration point",
          assumption=_ROWS + "; output width 4096 assumed"),
    Point("m2-fmt-int8", "M2 Pro", 0.431, _FMT, "matmul, int8 weight 4096x4096",
          _matmul(1, 4096, 4096, weight=_int8(4096, 4096)), assumption=_ROWS + "; output width 4096 assumed"),
    Point("m2-fmt-int4", "M2 Pro", 0.270, _FMT, "matmul, 4-bit palettized weight 4096x4096",
          _matmul(1, 4096, 4096, weight=_lut4(4096, 4096)),
          assumption=_ROWS + "; int4 as a 16-entry lookup table (the form that streams from M1)"),
    Point("m2-fmt-sparse", "M2 Pro", 0.330, _FMT, "matmul, sparse weight 4096x4096, 32% dense",
          _matmul(1, 4096, 4096, weight=_sparse(4096, 4096, 0.32)), assumption=_ROWS + "; output width 4096 assumed"),
    Point("m4max-conv-chain-128", "M4 Max", 2 * 128 * 512 * 512 * 64 / 11.14e12 * 1e3,
          f"{_SEED}: 128 chained 1x1 convs 512 channels, spatial 64, 11.14 TFLOP/s",
          "128 chained 1x1 convs 512->512 on [1, 512, 1, 64]", _conv_chain(512, 64, 128),
          calibrates="M4 Max weight stream: set so these 67 MB of weights do not bind (needs >= 320 GB/s)",
          assumption="latency = flops / rate"),
    Point("m4max-kernel-64x32", "M4 Max", 0.175, f"{_SEED}: 64x32 kernel 0.175 ms",
          "1x1 conv 64->64 on [1, 64, 1, 32]", _conv_chain(64, 32, 1), calibrates="M4 Max dispatch floor",
          assumption="'64x32' read as 64 channels by 32 positions"),
    Point("m4max-kernel-768x256", "M4 Max", 0.205, f"{_SEED}: 768x256 (Stories110M) kernel 0.205 ms",
          "1x1 conv 768->768 on [1, 768, 1, 256]", _conv_chain(768, 256, 1),
          assumption="'768x256' read as dim 768 by sequence 256, one 768->768 projection"),
    Point("m5-floor", "M5 Pro", 0.11, f"{G} ch. 18, tbl:c18-chip-params: M5 dispatch floor 0.11 ms",
          "relu on a small tensor", _elementwise("relu", (1, 64, 1, 64)),
          calibrates="M5 dispatch floor (the same published constant)",
          assumption="a floor-sized op; size not published"),
    Point("m1-conv1-slope-192", "M1 Max", 0.020, f"{G} ch. 20: per-layer slope of 1x1 fp16 conv at 32x32, 192 channels",
          "one more 1x1 conv 192->192 at [1, 192, 32, 32] in a chain", lambda layers: _chain2d(192, 32, layers),
          assumption="input channels equal to output channels; increment from 8 to 9 layers", slope=True),
    Point("m1-conv1-slope-256", "M1 Max", 0.061, f"{G} ch. 20: per-layer slope of 1x1 fp16 conv at 32x32, 256 channels",
          "one more 1x1 conv 256->256 at [1, 256, 32, 32] in a chain", lambda layers: _chain2d(256, 32, layers),
          assumption="input channels equal to output channels; increment from 8 to 9 layers", slope=True),
]


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
    ("seed 001", "SRAM probe: 282.6 / 59.2 / 8.0 GFLOPS per MB at 12.5 / 32 / 128 MB of weights", "kernel shape not published"),
    ("seed 001", "real-time, processRequest and direct evaluate paths", "anekit models the standard evaluate path"),
]
