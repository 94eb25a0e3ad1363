"""The error of large matmuls against float64 (issue 15 item 2; guide ch. 11 "Where the GPU
leads" and the M1 per-class table): measured on the engine the relative error grows with the
contraction length, 1.2e-2 at N = 2048 and 6.2e-2 at N = 8192 on the M5 and 2.7e-2 at
K = 4096 on the M1, where the GPU's fp16 holds 3.6e-4 at every size.

The metric is ||Y - Y_ref|| / ||Y_ref|| (Frobenius) on standard-normal operands, with Y_ref
the float64 product of the unrounded operands: it reproduces the GPU's flat 3.6e-4 (fp16
input and output rounding around a wide sum). The simulator models the mechanisms the guide
names (fp16 input rounding, fp16 products, four-lane tiles, a wide accumulator, an fp16
port) and so lands on the GPU's figure; docs/numerics.md ("Large-GEMM error") explains why
no rounding-to-nearest accumulation reproduces the engine's curve.
"""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.sim import Simulator

GUIDE = {2048: ("m5", 1.2e-2), 4096: ("m1", 2.7e-2), 8192: ("m5", 6.2e-2)}


def _operands(k, rows=32, cols=32, seed=0):
    rng = np.random.default_rng(seed + k)
    return rng.standard_normal((rows, k)), rng.standard_normal((k, cols))


def _rel(y, ref):
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def sim_gemm_error(k, target):
    a, b = _operands(k)
    x, w = ak.input("x", a.shape), ak.input("w", b.shape)
    y = Simulator(ak.program({"y": ak.matmul(x, w)}), profile=target).run(
        {"x": a.astype(np.float32), "w": b.astype(np.float32)})["y"]
    return _rel(y.astype(np.float64), a @ b)


@pytest.mark.parametrize("k", sorted(GUIDE))
def test_simulated_gemm_error_is_the_fp16_rounding_floor(k):
    """Flat in K at the GPU's figure (3.6e-4, ch. 11), +-30%: input and output rounding."""
    target = GUIDE[k][0]
    assert 3.6e-4 / 1.3 <= sim_gemm_error(k, target) <= 3.6e-4 * 1.3


@pytest.mark.xfail(strict=True, reason="gap: the engine's large-GEMM error (1.2e-2, 2.7e-2, 6.2e-2 at "
                                       "K = 2048, 4096, 8192) is not reproduced; the mechanisms the guide "
                                       "names give the flat fp16 floor 3.6e-4 (docs/numerics.md)")
@pytest.mark.parametrize("k", sorted(GUIDE))
def test_simulated_gemm_error_matches_the_engine_within_1_5x(k):
    target, measured = GUIDE[k]
    assert measured / 1.5 <= sim_gemm_error(k, target) <= measured * 1.5


def _fp16_running_sum_error(k, tile):
    """A narrow accumulator: tiles of `tile` exact products, each added to an fp16 running
    sum that rounds to nearest after every add."""
    a, b = _operands(k, rows=16, cols=16)
    a16, b16 = np.float16(a).astype(np.float64), np.float16(b).astype(np.float64)
    prods = a16[:, :, None] * b16[None, :, :]
    tiles = prods.reshape(16, k // tile, tile, 16).sum(axis=2)
    acc = np.zeros((16, 16))
    for t in range(k // tile):
        acc = np.float16(acc + tiles[:, t]).astype(np.float64)
    return _rel(acc, a @ b)


def test_no_round_to_nearest_accumulator_reaches_the_engines_curve():
    """The evidence behind the gap: even an accumulator that rounds to fp16 after every
    product stays below the measured figures at N = 4096 and 8192 and grows as sqrt(K)
    (about 1.45x per doubling), where the engine's error grows 2.2-2.3x per doubling."""
    errs = {k: _fp16_running_sum_error(k, 1) for k in sorted(GUIDE)}
    assert errs[4096] < GUIDE[4096][1] / 2 and errs[8192] < GUIDE[8192][1] / 4
    growth = (errs[8192] / errs[2048]) ** 0.5
    assert 1.3 < growth < 1.6
    assert (GUIDE[8192][1] / GUIDE[2048][1]) ** 0.5 > 2.2


def _positive_running_sum_errors(k, tiles=(1, 2, 4)):
    """The GPU-like floor and fp16 running sums (round to nearest after every tile of
    `tile` exact products) on all-positive operands, uniform on [0, 1) as torch.rand gives."""
    rng = np.random.default_rng(k)
    a, b = rng.random((16, k)), rng.random((k, 16))
    a16, b16 = np.float16(a).astype(np.float64), np.float16(b).astype(np.float64)
    errs = {"floor": _rel(np.float16(a16 @ b16).astype(np.float64), a @ b)}
    prods = a16[:, :, None] * b16[None, :, :]
    for tile in tiles:
        sums = prods.reshape(16, k // tile, tile, 16).sum(axis=2)
        acc = np.zeros((16, 16))
        for t in range(k // tile):
            acc = np.float16(acc + sums[:, t]).astype(np.float64)
        errs[tile] = _rel(acc, a @ b)
    return errs


def test_all_positive_operands_do_not_give_the_engines_curve():
    """The one input choice that biases round-to-nearest (increments below half the running
    sum's spacing vanish) still misses: its fp16 floor is 2.2e-4, not the 3.6e-4 the GPU shows
    (standard-normal operands give it), a per-product fp16 sum overshoots 2-3.5x and grows
    about 3x per doubling, and pairs or four-lane tiles undershoot at N = 2048 and 4096
    (docs/numerics.md, "Large-GEMM error")."""
    errs = {k: _positive_running_sum_errors(k) for k in sorted(GUIDE)}
    for k, (_, measured) in GUIDE.items():
        assert 1.8e-4 < errs[k]["floor"] < 3.6e-4 / 1.5
        assert errs[k][1] > 1.5 * measured                  # per product: too high
        assert errs[k][4] < measured / 1.5                  # four-lane tiles: too low
    assert errs[2048][2] < GUIDE[2048][1] / 1.5 and errs[4096][2] < GUIDE[4096][1] / 1.5
    assert (errs[8192][1] / errs[2048][1]) ** 0.5 > 2.7     # steeper than the engine's 2.3x
