"""Tests for anekit.cost: op-level quantities against hand formulas, each mechanism of the
latency model (dispatch floor and route, compute roofs, weight streaming by format, resident
weights, exposed kernel load, working set and weight SRAM, fusion, chip scaling), the fit and
its validation against published measurements, intervals, workload hooks, the roofline plot,
`anekit estimate` across chips and `anekit sweep`.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import anekit as ak
from anekit import targets
from anekit.cost import estimate, params_for, plot_roofline
from anekit.cost.model import lane_fill
from anekit.cost.opwork import op_work
from anekit.cost.params import FITTED, GENERATIONS, PRIORS, prior
from anekit.cost import published
from anekit.cost.published import POINTS, UNUSABLE, sources
from anekit.errors import AnekitError, DependencyError, TargetError
from anekit.ir.ops import REGISTRY


def zeros(*shape):
    return np.zeros(shape, np.float16)


def op_named(prog, name):
    return next(o for o in prog.main.ops if o.name == name)


def conv_prog(cin, cout, k, h, w, stride=1):
    x = ak.input("x", (1, cin, h, w))
    return ak.program({"y": ak.conv(x, zeros(cout, cin, k, k), strides=(stride, stride), pad_type="same")})


# ---- op-level quantities -----------------------------------------------------------------------

def test_conv_flops_bytes_and_winograd():
    p = conv_prog(64, 128, 3, 16, 16)
    w = op_work(op_named(p, "y"), ())
    assert w.flops == 2 * 128 * 64 * 3 * 3 * 16 * 16
    assert w.winograd and w.exec_flops == pytest.approx(w.flops / 2.25)
    assert w.weight_bytes == 128 * 64 * 9 * 2
    assert (w.act_in_bytes, w.act_out_bytes) == (64 * 256 * 2, 128 * 256 * 2)
    assert not op_work(op_named(conv_prog(64, 128, 3, 16, 16, stride=2), "y"), ()).winograd
    assert not op_work(op_named(conv_prog(64, 128, 1, 16, 16), "y"), ()).winograd
    assert not op_work(op_named(conv_prog(8, 128, 3, 16, 16), "y"), ()).winograd   # too few channels


def test_matmul_and_linear_flops():
    x = ak.input("x", (3, 5, 7))
    p = ak.program({"m": ak.matmul(x, zeros(7, 11)), "l": ak.linear(x, zeros(11, 7))})
    for name in ("m", "l"):
        w = op_work(op_named(p, name), ())
        assert w.flops == 2 * 3 * 5 * 7 * 11 and w.weight_bytes == 7 * 11 * 2
        assert (w.out_channels, w.spatial) == (11, 15)


def test_grouped_and_transposed_conv_flops():
    x = ak.input("x", (1, 8, 10, 10))
    p = ak.program({"g": ak.conv(x, zeros(8, 2, 3, 3), groups=4),
                    "t": ak.conv_transpose(x, zeros(8, 4, 2, 2), strides=(2, 2))})
    assert op_work(op_named(p, "g"), ()).flops == 2 * 8 * 2 * 9 * 8 * 8
    assert op_work(op_named(p, "t"), ()).flops == 2 * (8 * 100) * 4 * 4   # each input scatters Cout x K


def _weight_of(kind, k=64, n=32):
    if kind == "int8":
        return ak.constexpr_affine_dequantize(quantized_data=np.zeros((k, n), np.int8),
                                              zero_point=np.zeros(n, np.int8), scale=np.ones(n, np.float16), axis=1)
    if kind == "lut":
        idx = ak.ir.make_const(np.zeros((k, n), np.uint8), "uint4")
        return ak.constexpr_lut_to_dense(indices=idx, lut=zeros(1, 1, 16, 1))
    if kind == "sparse":
        mask = np.zeros(k * n, np.uint8)
        mask[: k * n // 4] = 1
        return ak.constexpr_sparse_to_dense(nonzero_data=zeros(k * n // 4),
                                            mask=ak.ir.make_const(mask.reshape(k, n), "uint1"))
    return zeros(k, n)


@pytest.mark.parametrize("kind,streamed_bytes,first_family", [
    ("int8", 64 * 32 + 32 * 2 + 32, "h14"),         # int8 data + fp16 scales + int8 zero points
    ("lut", 64 * 32 / 2 + 16 * 2, "h13"),            # 4-bit indices + 16-entry fp16 table
    ("sparse", 64 * 32 / 8 + 64 * 32 / 4 * 2, "h13"),   # 1-bit mask + fp16 nonzeros
])
def test_compressed_weights_stream_where_the_family_streams_them(kind, streamed_bytes, first_family):
    p = ak.program({"y": ak.matmul(ak.input("x", (1, 64)), _weight_of(kind))})
    op = op_named(p, "y")
    dense = 64 * 32 * 2
    for chip in ("a12", "m1", "m2", "m3"):
        c = targets.get(chip)
        w = op_work(op, c.streams)
        streams = ["h11", "h13", "h14", "h15"].index(c.family) >= ["h11", "h13", "h14", "h15"].index(first_family)
        assert w.weight_bytes == (streamed_bytes if streams else dense), (kind, chip)
        assert w.weight_format == (kind if streams else kind + "+fold")


def test_lane_fill():
    w = op_work(op_named(conv_prog(64, 64, 1, 8, 8), "y"), ())
    assert lane_fill(w) == pytest.approx(64 / 256 * 8 / 16)
    w = op_work(op_named(conv_prog(512, 512, 1, 32, 32), "y"), ())
    assert lane_fill(w) == 1.0


# ---- the latency model --------------------------------------------------------------------------

def chain(c, spatial, layers):
    y = ak.input("x", (1, c, 1, spatial))
    for _ in range(layers):
        y = ak.conv(y, zeros(c, c, 1, 1))
    return ak.program({"y": y})


def test_tiny_op_costs_the_dispatch_floor_and_its_interval_holds_it():
    p = ak.program({"y": ak.relu(ak.input("x", (1, 16, 1, 16)))})
    for chip in ("m1", "m5 pro", "m6"):
        est = estimate(p, chip)
        assert est.bound == "dispatch"
        assert est.dispatch_us == params_for(chip).dispatch_us
        assert est.total_us == pytest.approx(est.dispatch_us, rel=0.02)
        assert est.low_us <= est.total_us <= est.high_us


def test_route_sets_the_floor_and_the_host_copy():
    p = ak.program({"y": ak.relu(ak.input("x", (1, 64, 64, 64)))})     # 0.5 MB in, 0.5 MB out
    std, e5, host = (estimate(p, "m1", route=r) for r in ("standard", "e5rt", "host"))
    pr = params_for("m1")
    assert e5.dispatch_us == pytest.approx(pr.dispatch_us * 0.07 / 0.19)
    assert host.dispatch_us == pytest.approx(pr.dispatch_us + 2 * 64 ** 3 * 2 / (pr.host_copy_gbs * 1e3))
    assert std.total_us - std.dispatch_us == pytest.approx(host.total_us - host.dispatch_us)
    with pytest.raises(AnekitError, match="route"):
        estimate(p, "m1", route="teleport")


def test_realtime_route_floor_is_seed_001s_ratio_and_the_fit_applies_it():
    # seed 001 (M4 Max, 64x32 kernel): _ANEClient real-time evaluate 0.093 ms, standard 0.175 ms
    p = ak.program({"y": ak.relu(ak.input("x", (1, 16, 1, 16)))})
    std, rt = (estimate(p, "m4", route=r) for r in ("standard", "realtime"))
    assert rt.dispatch_us == pytest.approx(std.dispatch_us * 0.093 / 0.175)
    assert std.total_us - std.dispatch_us == pytest.approx(rt.total_us - rt.dispatch_us)
    # the vectorised fit prices a point on that route the way estimate() does
    pytest.importorskip("scipy")
    from anekit.cost import fit as F
    from anekit.cost.params import fitted
    pts = [q for q in POINTS if q.route == "realtime"]
    assert pts and all(q.source == "maderix part 2 M4" for q in pts)
    ds = F.collect(pts)
    assert np.allclose(F.predict(ds, _theta_of(fitted())), [q.predict_ms() for q in pts], rtol=1e-6)


def test_m3_floor_and_tiled_stream_priors_come_from_the_m4_max():
    # the M2's ch. 7 figures are a two-point fit to single-row streams: its intercept is no measured
    # floor and its slope is a single-row rate, so the M3 takes both from seed 001's M4 Max
    d, w = prior("h15", "dispatch_us"), prior("h15", "weight_gbs")
    assert d.value == PRIORS["h16"]["dispatch_us"].value and "M4 Max" in d.source and d.spread >= 2.0
    assert w.value == pytest.approx(PRIORS["h16"]["weight_gbs"].value * 18 / 38) and "TOPS" in w.source
    # every other M3 field still falls back to the M2 Pro
    assert "M2 Pro" in prior("h15", "conv_tflops").source and "M2 Pro" in prior("h15", "gemv_gbs").source


def test_total_is_floor_plus_op_rows():
    est = estimate(conv_prog(512, 512, 3, 32, 32), "m5 pro")
    assert est.total_us == pytest.approx(est.dispatch_us + sum(r.us for r in est.ops))
    name, typ, us, flops, nbytes, bound = est.ops[0]
    assert (name, typ, bound) == ("y", "conv", "compute") and us > 0 and flops > 0 and nbytes > 0


def test_fusion_pays_the_floor_once_and_folds_epilogues():
    y = ak.input("x", (1, 64, 1, 64))
    for _ in range(32):
        y = ak.relu(ak.conv(y, zeros(64, 64, 1, 1)))
    deep = estimate(ak.program({"y": y}), "m1")
    one = estimate(ak.program({"y": ak.relu(ak.conv(ak.input("x", (1, 64, 1, 64)), zeros(64, 64, 1, 1)))}), "m1")
    assert deep.dispatch_us == one.dispatch_us
    assert deep.total_us < 2 * one.total_us          # ch. 9: 32 fused layers ~ the floor of 1
    relus = [r for r in deep.ops if r.type == "relu"]
    assert len(relus) == 32 and all(r.bound == "fused" and r.us == r.io_us for r in relus)
    assert sum(r.us for r in relus) == relus[-1].io_us    # only the program output copy remains


def test_relu_feeding_two_consumers_is_not_fused():
    x = ak.input("x", (1, 64, 1, 64))
    c = ak.conv(x, zeros(64, 64, 1, 1))
    p = ak.program({"a": ak.relu(c), "b": ak.sigmoid(c)})
    assert all(r.bound != "fused" for r in estimate(p, "m1").ops)


def test_first_conv_kernel_load_is_exposed_later_ones_are_prefetched():
    # a single 1x1 2048-channel conv on the M1 waits for its 8 MB kernel at the slow load rate
    # (guide ch. 18); in a fused chain only the first layer's load is exposed (ch. 9, 18)
    pr = params_for("m1")
    one = estimate(conv_prog(2048, 2048, 1, 8, 8), "m1").ops[0]
    assert one.weights_us == pytest.approx(2048 * 2048 * 2 / (pr.conv_load_gbs * 1e3))
    assert one.us == pytest.approx(max(one.compute_us, one.spill_us) + one.weights_us + one.io_us)
    rows = estimate(chain(512, 64, 16), "m1").ops
    later = rows[5]
    assert later.weights_us == pytest.approx(512 * 512 * 2 / (pr.weight_gbs * 1e3))
    assert later.us == pytest.approx(max(later.compute_us, later.weights_us, later.spill_us) + later.io_us)
    # deep 1x1 stacks: per-layer cost is the prefetched stream or compute, far below the load rate
    deep = estimate(chain(512, 64, 64), "m1")
    assert (deep.total_us - deep.dispatch_us) < 64 * 512 * 512 * 2 / (pr.conv_load_gbs * 1e3) / 3


def test_weights_resident_between_calls_on_the_m4_generation_only():
    # 128 chained 512-channel 1x1 convs: 64 MB of weights; ~32 MB stay on chip on h16
    # (seed 001 SRAM probe), none on h13 (guide ch. 7, 18)
    p = chain(512, 64, 128)
    m4 = estimate(p, "m4 max")
    share = (128 * 512 * 512 * 2 - params_for("m4 max").resident_bytes) / (128 * 512 * 512 * 2)
    r = m4.ops[3]
    assert r.weights_us == pytest.approx(512 * 512 * 2 * share / (params_for("m4 max").weight_gbs * 1e3))
    assert params_for("m1").resident_bytes == 0 and params_for("m4 max").resident_bytes == 32e6


def _one_kernel_streamed(p, nbytes):
    """Bytes a one-kernel program streams per call: the resident capacity holds a kernel whole or not at all."""
    return nbytes if nbytes > p.resident_bytes else 0.0


def test_a_kernel_larger_than_the_resident_capacity_streams_whole():
    # seed 001's SRAM probe (M4 Max, one 1x1 conv over 64 positions): 12.5 MiB at 282.6 GFLOPS/MB, 32 MiB at
    # 59.2: past the capacity the whole kernel streams every call, not its excess over the capacity
    p = params_for("m4 max")
    held, whole = (estimate(chain(c, 64, 1), "m4 max").ops[0] for c in (2560, 4160))
    assert held.weights_us == 0.0
    nbytes = 4160 * 4160 * 2                       # 33 MiB: past the 32 MB capacity, clear of the 16 MiB band
    assert nbytes > p.resident_bytes
    assert whole.weights_us == pytest.approx(min(nbytes, p.weight_sram_bytes) / (p.conv_load_gbs * 1e3)
                                             + max(0.0, nbytes - p.weight_sram_bytes) / (p.weight_gbs * 1e3))
    # kernels that fit share the capacity (128 chained 0.5 MiB layers stream only their excess, above); in a
    # program of both, the large kernel streams whole and the small one it does not crowd out stays
    x = ak.input("x", (1, 4160, 1, 64))
    both = estimate(ak.program({"y": ak.conv(ak.conv(x, zeros(4160, 4160, 1, 1)), zeros(64, 4160, 1, 1))}), "m4 max")
    assert both.ops[0].weights_us == pytest.approx(whole.weights_us) and both.ops[1].weights_us == 0.0


def test_compute_bound_conv_follows_the_compute_roof():
    # a big 3x3 conv: compute time = flops / Winograd gain / (roof x lane fill), plus, where the
    # output-channel-group step is measured (M1, guide ch. 20), one input re-read per extra pass
    p = conv_prog(512, 512, 3, 32, 32)
    for chip in ("m1", "m4 max", "m5 pro"):
        pp = params_for(chip)
        r = estimate(p, chip).ops[0]
        passes = math.ceil(512 / (pp.ocg_channels / (9 / 2.25))) if pp.ocg_channels else 1
        restream = (passes - 1) * 512 * 32 * 32 * 2 / (pp.io_gbs * 1e3)
        assert r.compute_us == pytest.approx(r.flops / 2.25 / (pp.conv_tflops * 1e6) + restream)
        assert r.utilization == 1.0
    assert params_for("m1").ocg_channels == 224 and params_for("m4 max").ocg_channels == 0
    assert estimate(p, "m5 pro").ops[0].bound == "compute"


def test_output_channel_group_pass_step_on_m1():
    # guide ch. 20: a 1x1 conv at 32x32 re-reads its input once it passes ~224 output channels
    one, two = chain(192, 32 * 32, 1), chain(256, 32 * 32, 1)
    p = params_for("m1")
    r1, r2 = estimate(one, "m1").ops[0], estimate(two, "m1").ops[0]
    base2 = r2.flops / (p.conv_tflops * 1e6)
    assert r1.compute_us == pytest.approx(r1.flops / (p.conv_tflops * 1e6 * r1.utilization))
    assert r2.compute_us == pytest.approx(base2 + 256 * 32 * 32 * 2 / (p.io_gbs * 1e3))


def test_output_channel_groups_grow_over_fewer_positions():
    # the group fills the accumulator file: 224 channels over a 32x32 tile, 16x more over 64
    # positions (a 4096-channel 1x1 conv on a 64-token window: 2 passes, not 19); never fewer
    # than 224 over a larger image (the compiler tiles it spatially)
    from anekit.cost.model import ocg_passes
    from anekit.cost.opwork import op_work
    p = params_for("m1")

    def passes(cout, positions):
        prog = chain(cout, positions, 1)
        op = next(o for o in prog.main.ops if o.type == "conv")
        return ocg_passes(op_work(op, p.streams), p.ocg_channels)

    assert passes(256, 32 * 32) == 2 and passes(4096, 32 * 32) == 19
    assert passes(4096, 64) == 2 and passes(4096, 1) == 1
    assert passes(256, 64 * 64) == 2


def test_single_row_weights_stream_at_the_gemv_rate():
    # a decode-shaped matmul (one row) streams its weights at gemv_gbs, a 64-row one at weight_gbs
    # (4096 x 4160: 32.5 MiB, clear of the 16 MiB slow band tested below)
    for chip in ("m4", "m5"):
        p = params_for(chip)
        for rows, gbs in ((1, p.gemv_gbs), (64, p.weight_gbs)):
            x = ak.input("x", (rows, 4160))
            r = estimate(ak.program({"y": ak.matmul(x, np.zeros((4160, 4096), np.float16))}), chip).ops[0]
            assert r.weights_us == pytest.approx(_one_kernel_streamed(p, 4160 * 4096 * 2) / (gbs * 1e3), rel=1e-6)


def test_a_weight_of_a_16mib_multiple_streams_in_the_slow_band():
    # ANEForge's GEMV (K=N=4096 fp16, 32 MiB) runs at ~22 GB/s on the M4, M4 Max and M5, 146 GB/s on
    # the M5 Pro and at the single-row ceiling on the M1 (params.SLOW_BAND); the band is the weight's
    # byte count (a multiple of 16 MiB within 0.4%), not its inner dimension
    from anekit.cost.params import SLOW_BAND_GBS

    def gemv(out, inner, rows=1, weight=None):
        w = zeros(out, inner) if weight is None else weight
        return ak.program({"y": ak.linear(ak.input("x", (rows, inner)), w)})

    streamed = _one_kernel_streamed

    in_band = ((4096, 4096), (2048, 4096), (8192, 2048), (14336, 4096))
    out_band = ((4096, 4160), (3072, 4096), (2048, 2048), (6144, 6144), (8016, 4096))
    for chip in ("m4", "m4 max", "m4 pro", "m5"):
        p = params_for(chip)
        assert p.slow_band_gbs == SLOW_BAND_GBS and "ANEForge" in p.source("slow_band_gbs")
        for out, inner in in_band:
            r = estimate(gemv(out, inner), chip).ops[0]
            assert r.weights_us == pytest.approx(streamed(p, out * inner * 2) / (SLOW_BAND_GBS * 1e3),
                                                 rel=1e-6), (chip, out, inner)
        for out, inner in out_band:
            r = estimate(gemv(out, inner), chip).ops[0]
            assert r.weights_us == pytest.approx(streamed(p, out * inner * 2) / (p.gemv_gbs * 1e3),
                                                 rel=1e-6), (chip, out, inner)
        # 64 rows tile the weight (the tiled stream), which the band slows as well; the band is the
        # transfer's length in any format: int8 of 32 MiB sits in it, int8 of 16.25 MiB does not
        tiled = estimate(gemv(4096, 4096, rows=64), chip).ops[0]
        assert tiled.weights_us == pytest.approx(streamed(p, 2 ** 25) / (SLOW_BAND_GBS * 1e3), rel=1e-6)
        tiled_out = estimate(gemv(4096, 4160, rows=64), chip).ops[0]
        assert tiled_out.weights_us == pytest.approx(streamed(p, 4096 * 4160 * 2) / (p.weight_gbs * 1e3), rel=1e-6)
        for out, inner, gbs in ((4096, 8192, SLOW_BAND_GBS), (4096, 4160, p.gemv_gbs)):
            i8 = estimate(gemv(out, inner, weight=_weight_of("int8", out, inner)), chip).ops[0]
            i8_bytes = out * inner + inner * 2 + inner        # int8 data + fp16 scales + int8 zero points
            assert i8.weights_us == pytest.approx(streamed(p, i8_bytes) / (gbs * 1e3), rel=1e-6), (chip, inner)
    for chip in ("m1", "m1 max", "m5 pro", "m2 pro"):
        p = params_for(chip)
        assert p.slow_band_gbs == 0.0
        r = estimate(gemv(4096, 4096), chip).ops[0]
        assert r.weights_us == pytest.approx(streamed(p, 2 ** 25) / (p.gemv_gbs * 1e3), rel=1e-6), chip
    # the band is the weight DMA's, so a conv's kernel streams in it too (seed 001's SRAM probe: a 128 MiB
    # kernel at 16 GB/s), single-row or over 64 positions, where its first-conv load is exposed
    p = params_for("m4")
    for positions in (1, 64):
        conv = ak.program({"y": ak.conv(ak.input("x", (1, 4096, 1, positions)), zeros(4096, 4096, 1, 1))})
        assert estimate(conv, "m4").ops[0].weights_us == pytest.approx(streamed(p, 2 ** 25) / (SLOW_BAND_GBS * 1e3),
                                                                       rel=1e-6), positions


def test_single_row_conv_exposes_no_separate_kernel_load():
    # its kernel load is its work, streamed at the single-row rate; a 64-position conv waits for it
    p = params_for("m1")
    one = estimate(ak.program({"y": ak.conv(ak.input("x", (1, 2048, 1, 1)), zeros(2048, 2048, 1, 1))}), "m1").ops[0]
    assert one.weights_us == pytest.approx(2048 * 2048 * 2 / (p.gemv_gbs * 1e3))
    wide = estimate(conv_prog(2048, 2048, 1, 8, 8), "m1").ops[0]
    assert wide.weights_us == pytest.approx(2048 * 2048 * 2 / (p.conv_load_gbs * 1e3))


def test_single_row_stream_is_capped_by_the_chips_memory_share():
    # the same 16-core engine streams a single-row weight slower on a base part's narrower memory
    # system: gemv = min(engine rate, gemv_share x DRAM); the M4 generations pool one share (TIED)
    from anekit.cost.params import TIED, generation_values
    m4, m4max, m5, m5pro = (params_for(c) for c in ("m4", "m4 max", "m5", "m5 pro"))
    assert m4.gemv_gbs == pytest.approx(min(generation_values("h16")["gemv_gbs"], m4.gemv_share * 120))
    assert m4.gemv_gbs < m4max.gemv_gbs and m5.gemv_gbs < m5pro.gemv_gbs
    assert m5.gemv_share == m4.gemv_share and TIED[("h17", "gemv_share")] == "h16"
    assert "share" in m4.source("gemv_gbs")
    # only the single-row stream: a 64-row matmul streams at the tiled rate on both parts
    one, many = (ak.program({"y": ak.matmul(ak.input("x", (r, 4160)), zeros(4160, 4096))}) for r in (1, 64))
    assert estimate(one, "m4").ops[0].weights_us > estimate(one, "m4 max").ops[0].weights_us
    assert estimate(many, "m4").ops[0].weights_us == pytest.approx(
        _one_kernel_streamed(m4, 4160 * 4096 * 2) / (m4.weight_gbs * 1e3), rel=1e-6)


def test_weight_stream_bound_gemv_tracks_bandwidth_and_format():
    fp16 = ak.program({"y": ak.matmul(ak.input("x", (1, 4096)), zeros(4096, 4096))})
    int8 = ak.program({"y": ak.matmul(ak.input("x", (1, 4096)), _weight_of("int8", 4096, 4096))})
    m2_16, m2_8 = estimate(fp16, "m2 pro"), estimate(int8, "m2 pro")
    assert m2_16.ops[0].bound == "bandwidth" and m2_16.ops[0].stream == "weights"
    pr = params_for("m2 pro")
    assert m2_16.ops[0].weights_us == pytest.approx(4096 * 4096 * 2 / (pr.gemv_gbs * 1e3))   # one row
    # int8 halves the streamed bytes from A14 on (guide ch. 7), and buys nothing on the M1
    assert m2_8.ops[0].weights_us == pytest.approx(m2_16.ops[0].weights_us / 2, rel=0.01)
    m1_16, m1_8 = estimate(fp16, "m1"), estimate(int8, "m1")
    assert m1_8.ops[0].weights_us == pytest.approx(m1_16.ops[0].weights_us)


def test_working_set_spill_slows_the_matmul_not_the_conv():
    def rate(n):
        est = estimate(ak.program({"y": ak.matmul(ak.input("x", (n, n)), zeros(n, n))}), "m1")
        return est.ops[0].flops / est.ops[0].compute_us
    # 1024^2 fp16 (2.1 MB) stays under the 2.31 MB threshold, 2048^2 (8.4 MB) does not (ch. 9, 21)
    assert rate(2048) == pytest.approx(rate(1024) * params_for("m1").spill_factor)
    big = estimate(conv_prog(64, 64, 3, 256, 256), "m1").ops[0]      # 8 MB activation, tiled spatially
    m1 = params_for("m1")     # 64 outputs of a 3x3 Winograd kernel: two output-channel-group passes (ch. 20)
    assert big.compute_us == pytest.approx(big.flops / 2.25 / (m1.conv_tflops * 1e6 * big.utilization)
                                           + 64 * 256 * 256 * 2 / (m1.io_gbs * 1e3))


def test_spill_wait_lengthens_where_the_dram_caps_the_stream():
    # past the working set a matmul waits on DRAM re-reads of its operands (guide ch. 9, 12, 21): the
    # spill factor prices the wait where the tiled stream runs at the engine's rate (M4 Max); the base
    # M4's 120 GB/s caps that stream at 0.75 x 120, so the same engine waits longer by the ratio
    def compute(n, chip):
        return estimate(ak.program({"y": ak.matmul(ak.input("x", (n, n)), zeros(n, n))}), chip).ops[0].compute_us
    m4, m4max = params_for("m4"), params_for("m4 max")
    assert m4max.spill_stall == 1.0
    assert m4.spill_stall == pytest.approx(m4max.weight_gbs / (0.75 * 120)) and m4.spill_stall > 1.5
    assert compute(1024, "m4") == pytest.approx(compute(1024, "m4 max"))      # 2 MiB: on chip, no wait
    s = m4max.spill_factor
    roof = compute(2048, "m4 max") * s                                          # 8 MiB: past it
    assert compute(2048, "m4") == pytest.approx(roof * (1 + (1 / s - 1) * m4.spill_stall))
    assert compute(2048, "m4") > 1.2 * compute(2048, "m4 max")
    # the M1's 68 GB/s does not cap its engine's 51 GB/s stream: no longer wait than the M1 Max's
    assert params_for("m1").spill_stall == 1.0 == params_for("m1 max").spill_stall


def test_m5_working_set_crossing_is_smooth_in_throughput():
    # guide ch. 21: the M5's compiler tiles over batch and output together, so past the working set
    # the matmul rate falls with the operand's size, reaching the spill factor at the 4096-dimension
    # matmul the guide measured (ch. 12: 9.5 against 19.6 TFLOP/s) and falling on past it
    def rate(n, chip):
        est = estimate(ak.program({"y": ak.matmul(ak.input("x", (n, n)), zeros(n, n))}), chip)
        return est.ops[0].flops / est.ops[0].compute_us
    pr = params_for("m5 pro")
    assert pr.smooth_crossing and not params_for("m1").smooth_crossing

    def exponent(n):
        return math.log(n * n * 2 / pr.working_set_bytes) / math.log(4096 * 4096 * 2 / pr.working_set_bytes)
    base = rate(1024, "m5 pro")                       # 2 MiB: under the 4.72 MB working set
    assert 0 < exponent(2048) < 1 < exponent(8192)
    assert rate(2048, "m5 pro") == pytest.approx(base * pr.spill_factor ** exponent(2048))
    assert rate(2048, "m5 pro") > base * pr.spill_factor            # a step would charge the full factor
    assert rate(4096, "m5 pro") == pytest.approx(base * pr.spill_factor * pr.cliff_factor)
    assert rate(8192, "m5 pro") == pytest.approx(base * pr.spill_factor ** exponent(8192) * pr.cliff_factor)


def test_host_copy_runs_at_the_cpu_stream_the_dram_leaves():
    # the host route's copy is a CPU stream from one performance cluster (guide ch. 9: 130.4 GB/s
    # measured), capped by the chip's DRAM (anekit.cost.host.stream_gbs): the M1's 68 GB/s caps it,
    # the M1 Max's 400 GB/s does not
    from anekit.cost.host import CPU_DRAM_SHARE, CPU_GBS
    from anekit.cost.params import generation_values
    shared = generation_values("h13")["host_copy_gbs"]
    m1, m1max = params_for("m1"), params_for("m1 max")
    assert m1max.host_copy_gbs == pytest.approx(shared)
    assert m1.host_copy_gbs == pytest.approx(shared * CPU_DRAM_SHARE * 68.25 / CPU_GBS)
    p = ak.program({"y": ak.relu(ak.input("x", (1, 64, 64, 64)))})     # 0.5 MB in, 0.5 MB out
    copy = {c: estimate(p, c, route="host").dispatch_us - estimate(p, c).dispatch_us for c in ("m1", "m1 max")}
    assert copy["m1"] / copy["m1 max"] == pytest.approx(CPU_GBS / (CPU_DRAM_SHARE * 68.25))


def test_weights_past_the_weight_sram_hit_the_cliff():
    def rate(n):
        est = estimate(ak.program({"y": ak.linear(ak.input("x", (n, n)), zeros(n, n))}), "m4 max")
        return est.ops[0].flops / est.ops[0].compute_us
    pr = params_for("m4 max")
    assert 2048 * 2048 * 2 <= pr.weight_sram_bytes < 6144 * 6144 * 2
    assert rate(6144) == pytest.approx(rate(2048) * pr.cliff_factor)     # maderix part 2: SRAM cliff


def test_big_intermediate_round_trips_through_dram():
    x = ak.input("x", (1, 64, 256, 256))          # 8 MB activations between the two ops
    small = ak.input("x", (1, 64, 32, 32))
    big = estimate(ak.program({"y": ak.relu(ak.mul(ak.sigmoid(x), 2.0))}), "m1")
    assert any(r.spill_us > 0 for r in big.ops)
    ok = estimate(ak.program({"y": ak.relu(ak.mul(ak.sigmoid(small), 2.0))}), "m1")
    assert all(r.spill_us == 0 for r in ok.ops)


def test_chip_scaling_per_die_and_dram_caps():
    p = conv_prog(256, 256, 3, 64, 64)
    # same engine, same 11 TOPS: measured within 15% of each other (ANEForge M1 vs M1 Max)
    assert estimate(p, "m1").total_us == pytest.approx(estimate(p, "m1 max").total_us)
    # an Ultra runs one program on one die: as fast as the Max
    assert estimate(p, "m2 ultra").total_us == pytest.approx(estimate(p, "m2 max").total_us)
    a16, m4max = params_for("a16"), params_for("m4 max")
    assert a16.conv_tflops == pytest.approx(m4max.conv_tflops * 17 / 38)
    # the base M4's 120 GB/s DRAM caps its weight stream below the M4 Max's
    assert params_for("m4").weight_gbs == pytest.approx(0.75 * 120)
    assert params_for("m4").weight_gbs < m4max.weight_gbs


def test_params_for_every_chip_and_target():
    for c in targets.all_chips():
        pr = params_for(c)
        for f in FITTED + ("vector_gbs", "working_set_bytes", "weight_sram_bytes"):
            v = getattr(pr, f)
            assert math.isfinite(v) and v > 0, (c.name, f)
            assert pr.source(f), (c.name, f)
    for t in targets.all_targets():
        if t.family == "ref":
            with pytest.raises(TargetError, match="reference profile"):
                params_for(t.key)
        else:
            assert params_for(t.key).dispatch_us > 0
    assert not params_for("a11").measured and "UNMEASURED" in params_for("a11").source("conv_tflops")


def test_every_parameter_has_a_sourced_prior():
    for gen, chip in GENERATIONS.items():
        assert targets.get(chip).is_chip
        for f in FITTED + ("working_set_bytes", "weight_sram_bytes"):
            pr = prior(gen, f)
            assert pr.value > 0 and pr.spread > 1 and len(pr.source) > 15, (gen, f)
    # the guide's published constants are the priors of the generations it measured
    assert PRIORS["h13"]["weight_gbs"].value == 51.0 and "ch. 9" in PRIORS["h13"]["weight_gbs"].source
    assert PRIORS["h17"]["working_set_bytes"].value == 4.72e6


def test_every_declared_op_gets_a_finite_estimate():
    x = ak.input("x", (1, 8, 4, 4))
    progs = [
        ak.program({"y": ak.softmax(x, axis=1)}),
        ak.program({"y": ak.layer_norm(x, axes=[1])}),
        ak.program({"y": ak.reduce_sum(x, axes=[2, 3])}),
        ak.program({"y": ak.avg_pool(x, kernel_sizes=(2, 2), strides=(2, 2))}),
        ak.program({"y": ak.transpose(x, perm=(0, 2, 1, 3))}),
        ak.program({"y": ak.reshape(x, shape=(1, 8, 16))}),
        ak.program({"y": ak.scaled_dot_product_attention(ak.input("q", (1, 2, 16, 8)), ak.input("k", (1, 2, 16, 8)),
                                                         ak.input("v", (1, 2, 16, 8)))}),
    ]
    for p in progs:
        est = estimate(p, "m3")
        assert math.isfinite(est.total_us) and est.total_us >= est.dispatch_us


def test_estimate_json_and_errors():
    est = estimate(conv_prog(16, 16, 3, 8, 8), "h16g")
    d = json.loads(json.dumps(est.to_dict()))
    assert d["target"] == "M4 Max" and d["compiler"] == "h16g" and d["ops"][0]["name"] == "y"
    assert d["params"]["anchor"] == "M4 Max" and d["params"]["generation"] == "h16"
    assert d["low_us"] <= d["total_us"] <= d["high_us"]
    with pytest.raises(AnekitError, match="needs an anekit Program"):
        estimate("nope", "m1")
    with pytest.raises(TargetError):
        estimate(conv_prog(16, 16, 3, 8, 8), "m0")


# ---- workload hooks ------------------------------------------------------------------------------

def test_decode_and_training_step_hooks():
    head = ak.program({"y": ak.linear(ak.input("x", (1, 768)), zeros(4096, 768))})
    one = estimate(head, "m4 pro")
    d = ak.cost.estimate_decode(head, "m4 pro", calls_per_token=3, host_ms=0.5)
    assert d.ms_per_token == pytest.approx(3 * one.total_ms + 0.5)
    assert d.tokens_per_s == pytest.approx(1e3 / d.ms_per_token)
    assert d.low_tokens_per_s <= d.tokens_per_s <= d.high_tokens_per_s
    s = ak.cost.estimate_step({"fwd": head, "bwd": conv_prog(64, 64, 3, 32, 32)}, "m1", calls={"bwd": 2}, host_ms=1.0)
    assert s.ms == pytest.approx(estimate(head, "m1").total_ms + 2 * estimate(conv_prog(64, 64, 3, 32, 32), "m1").total_ms + 1.0)
    assert s.low_ms <= s.ms <= s.high_ms and set(s.to_dict()["parts"]) == {"fwd", "bwd"}
    with pytest.raises(AnekitError, match="calls names"):
        ak.cost.estimate_step({"fwd": head}, "m1", calls={"nope": 1})
    with pytest.raises(AnekitError, match="calls_per_token"):
        ak.cost.estimate_decode(head, "m1", calls_per_token=0)
    assert [e.target for e in ak.cost.compare(head, ["m1", "m6"])] == ["M1", "M6"]


# ---- fit and validation against published measurements ---------------------------------------------

def test_validation_table_is_sourced_and_spans_the_families():
    assert len(POINTS) >= 100 and len({p.id for p in POINTS}) == len(POINTS)
    fams: dict[str, set] = {}
    for p in POINTS:
        assert p.published_ms > 0 and p.source and p.cite and p.what
        fams.setdefault(targets.get(p.chip).compiler[:3], set()).add(p.source)
    # issue 17: several independent campaigns per family (h18 has one: no second M6 source found)
    for gen in ("h13", "h14", "h16", "h17"):
        assert len(fams[gen]) >= 4, (gen, fams[gen])
    assert len(fams["h15"]) >= 3 and "h18" in fams
    assert len(sources()) >= 24
    assert UNUSABLE and all(len(u) == 3 for u in UNUSABLE)


_DS = {}


def _dataset():
    from anekit.cost import fit as F
    if "ds" not in _DS:             # building the 157 points' programs takes a few seconds
        _DS["ds"] = F.collect(POINTS)
    return F, _DS["ds"]


def test_anemll_heads_are_built_as_anemlls_sixteen_1x1_convs():
    # Anemll's lm_head16_1..16 are nn.Conv2d(hidden, vocab // 16, 1): the conv path, not 16 linears
    heads = [p for p in POINTS if p.id.startswith("anemll-")]
    assert len(heads) == 6 + len(published._ANEMLL_TABLE_GBS)
    for p in heads:
        _, prog = p.programs()[0]
        types = [o.type for o in prog.main.ops]
        assert types.count("conv") == 16 and "linear" not in types and "matmul" not in types, p.id
        assert "Conv2d" in p.assumption


def test_inmem_points_rebuild_the_harness_programs():
    # maderix/ANE inmem_peak rows are d chained 1x1 convs C->C on [1, C, 1, 64]; inmem_bench rows
    # (the 1x ids) a single such conv; the id names (d, C) and the program must have exactly that
    chains = [p for p in POINTS if "-chain-" in p.id and "inmem_" in (p.assumption or "")]
    assert any(p.id.startswith("m4-i3tux-chain-1x") for p in chains)
    for p in chains:
        d, c = (int(v) for v in p.id.rsplit("-", 1)[1].split("x"))
        _, prog = p.programs()[0]
        convs = [o for o in prog.main.ops if o.type == "conv"]
        assert len(convs) == d, p.id
        assert [tuple(t.shape) for t in prog.main.inputs] in ([(1, c, 1, 64)], [(1, c, 1, 2048)]), p.id
        assert p.route == "standard", p.id


def test_flagged_outliers_are_non_monotone_within_their_own_run():
    # each flagged point has a neighbour in its own source with the same layer width and more
    # layers that measured faster: the evidence the flag states, checked against the table
    from anekit.cost.published import MEASUREMENT_OUTLIERS
    by_id = {p.id: p for p in POINTS}
    assert set(MEASUREMENT_OUTLIERS) <= set(by_id)

    def depth_width(pid):
        d, c = pid.rsplit("-", 1)[1].split("x")
        return int(d), int(c)

    def contradicted(p):      # a chain of >= 2x the layers, same width, same run, measured faster
        d, c = depth_width(p.id)
        return any(q.source == p.source and "-chain-" in q.id and depth_width(q.id)[1] == c
                   and depth_width(q.id)[0] >= 2 * d and q.published_ms < p.published_ms for q in POINTS)

    chains = [p for p in POINTS if "-chain-" in p.id]
    assert {p.id for p in chains if contradicted(p)} == set(MEASUREMENT_OUTLIERS)


def test_fit_recovers_known_parameters():
    pytest.importorskip("scipy")
    F, ds = _dataset()
    prior0, _, _, names = F._theta0()
    truth = prior0.copy()
    rng = np.random.default_rng(0)
    moved = [k for k, n in enumerate(names) if n.endswith((".dispatch_us", ".weight_gbs", ".matmul_tflops"))]
    truth[moved] += rng.uniform(-0.2, 0.2, len(moved))          # within the priors' reach
    synthetic = F.Dataset(**{**ds.__dict__, "measured": F.predict(ds, truth)})
    th = F.fit(synthetic)
    before = np.median(np.abs(np.log(F.predict(synthetic, prior0) / synthetic.measured)))
    after = np.median(np.abs(np.log(F.predict(synthetic, th) / synthetic.measured)))
    # the priors pull a little (that is their job), so recovery is close, not exact
    assert after < 0.04 and after < before / 2, (before, after)
    # and it moves the perturbed parameters towards their true values
    assert np.corrcoef(th[moved] - prior0[moved], truth[moved] - prior0[moved])[0, 1] > 0.6


def test_stored_fit_is_what_the_procedure_gives():
    pytest.importorskip("scipy")
    from anekit.cost.params import fitted
    F, ds = _dataset()
    tab = F.table(F.fit(ds))
    stored = fitted()
    assert stored, "src/anekit/cost/fitted.json is missing: run benchmarks/cost_validation.py --write"
    for gen, vals in tab["generations"].items():
        for f, v in vals.items():
            assert stored["generations"][gen][f] == pytest.approx(v, rel=0.02), (gen, f)


def test_a_source_left_out_is_predicted_within_2x():
    pytest.importorskip("scipy")
    F, ds = _dataset()
    src = np.array(ds.sources)
    for left in ("ANEForge M1 (MacBookAir10,1)", "anemll-bench 2 M2 Ultra", "guide M2"):
        keep = src != left
        th = F.fit(ds.subset(keep))
        held = ds.subset(~keep)
        pred = F.predict(held, th)
        assert np.all(np.abs(np.log(pred / held.measured)) < math.log(2)), left


def test_in_sample_error_of_the_stored_fit():
    from anekit.cost.params import fitted
    F, ds = _dataset()
    # the vectorised evaluation the fit uses agrees with estimate() point by point
    for i in (0, 5, 40, 80):
        assert POINTS[i].predict_ms() == pytest.approx(float(F.predict(ds, _theta_of(fitted()))[i]), rel=1e-6)
    errs = np.abs(F.predict(ds, _theta_of(fitted())) / ds.measured - 1)
    assert float(np.median(errs)) < 0.20
    assert float(np.mean(errs < 1.0)) > 0.95          # all but a few within 2x


def _theta_of(tab):
    from anekit.cost import fit as F
    _, _, _, names = F._theta0()
    out = []
    for n in names:
        if "." in n:
            g, f = n.split(".")
            out.append(math.log(tab["generations"][g][f]))
        else:
            out.append(math.log(tab["shared"][n]))
    return np.array(out)


def test_intervals_come_from_residual_bands():
    from anekit.cost.params import fitted
    from anekit.cost.uncertainty import band
    iv = fitted()["intervals"]
    assert iv["*/*"]["n"] == len(POINTS) and iv["*/*"]["r10"] < 0 < iv["*/*"]["r90"]
    lo, hi, key = band("h13", "dispatch")
    assert key in ("h13/dispatch", "*/dispatch") and lo <= hi
    # an unmeasured generation gets the pooled band, widened
    lo_u, hi_u, _ = band("h13", "compute", measured=False)
    lo_m, hi_m, _ = band("zz", "compute")
    assert hi_u - lo_u > 0 and hi_m - lo_m > 0


# ---- roofline plot and CLI ------------------------------------------------------------------------

def test_plot_roofline_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    est = estimate(conv_prog(64, 64, 3, 32, 32), "m1")
    out = plot_roofline(est, tmp_path / "r.png")
    data = (tmp_path / "r.png").read_bytes()
    assert out.endswith("r.png") and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_roofline_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    est = estimate(conv_prog(16, 16, 3, 8, 8), "m1")
    with pytest.raises(DependencyError, match="matplotlib"):
        plot_roofline(est, tmp_path / "r.png")


def test_plot_roofline_rejects_a_non_estimate(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(AnekitError, match="needs an Estimate"):
        plot_roofline({"ops": []}, tmp_path / "r.png")


def _saved(tmp_path, prog, name="prog"):
    from anekit import mil
    path = tmp_path / name
    mil.save(prog, str(path))
    return str(path)


def test_cli_estimate_on_a_saved_program(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from anekit.cli import main
    path = _saved(tmp_path, conv_prog(64, 64, 3, 32, 32))
    png = tmp_path / "roof.png"
    assert main(["estimate", path, "--target", "m4", "--json", "--plot", str(png)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["target"] == "M4" and d["ops"][0]["type"] == "conv" and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["estimate", path, "--target", "m1"]) == 0
    out = capsys.readouterr().out
    floor = params_for("m1").dispatch_us
    assert f"dispatch floor {floor:.0f} us" in out and "likely" in out
    assert main(["estimate", str(tmp_path / "missing"), "--target", "m1"]) == 2
    assert main(["estimate", path, "--target", "zz9"]) == 2
    assert "known chips: M1" in capsys.readouterr().err


def test_cli_estimate_across_chips(tmp_path, capsys):
    from anekit.cli import main
    path = _saved(tmp_path, conv_prog(64, 64, 3, 32, 32))
    assert main(["estimate", path, "--target", "m1,m4,Mac16,12,Apple M5 Pro,m6"]) == 0
    out = capsys.readouterr().out
    lines = [ln.split()[0] for ln in out.splitlines()[3:] if ln.strip()]
    assert lines == ["M1", "M4", "M4", "M5", "M6"]
    assert main(["estimate", path, "--target", "m1,m4max", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [e["target"] for e in d["estimates"]] == ["M1", "M4 Max"]
    assert all(e["low_us"] <= e["total_us"] <= e["high_us"] for e in d["estimates"])
    assert main(["estimate", path, "--compare", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["estimates"]) == len(targets.all_chips())
    assert main(["estimate", path, "--target", "m1,m4", "--plot", str(tmp_path / "x.png")]) == 2
    assert "one chip" in capsys.readouterr().err


# ---- anekit sweep -------------------------------------------------------------------------------

def _sweep_models(tmp_path):
    ok = _saved(tmp_path, conv_prog(64, 64, 3, 16, 16), "conv")
    sin = _saved(tmp_path, ak.program({"y": ak.sin(ak.input("x", (1, 8, 4, 4)))}), "sin")
    bad = tmp_path / "broken.mil"
    bad.write_text("this is not MIL")
    return ok, sin, str(bad)


def test_sweep_table_csv_heatmap_and_failed_model(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from anekit.cli import main
    ok, sin, bad = _sweep_models(tmp_path)
    csv_path, png = tmp_path / "s.csv", tmp_path / "h.png"
    rc = main(["sweep", ok, sin, bad, "--targets", "m1,m3,m6", "--jobs", "2", "--csv", str(csv_path),
               "--plot", str(png)])
    assert rc == 1                                   # one model failed to load; the sweep finished
    out = capsys.readouterr().out
    assert "falls off" in out and "runs on ANE" in out and "broken.mil" in out
    import csv
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 3 + 3 + 1
    sin_m1 = next(r for r in rows if r["model"] == sin and r["target"] == "M1")
    assert sin_m1["verdict"] == "falls off" and "sin" in sin_m1["reason"]        # native from A15
    assert next(r for r in rows if r["model"] == sin and r["target"] == "M3")["verdict"] == "runs on ANE"
    failed = [r for r in rows if r["model"] == bad]
    assert len(failed) == 1 and failed[0]["target"] == "*" and failed[0]["error"]
    conv_m1 = next(r for r in rows if r["model"] == ok and r["target"] == "M1")
    assert float(conv_m1["est_us"]) == pytest.approx(estimate(conv_prog(64, 64, 3, 16, 16), "m1").total_us)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_json_and_bad_targets(tmp_path, capsys):
    from anekit.cli import main
    ok, _, _ = _sweep_models(tmp_path)
    assert main(["sweep", ok, "--targets", "all", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["rows"]) == len(targets.all_chips()) and d["targets"][0] == "M1"
    assert main(["sweep", ok, "--targets", "m1,zz"]) == 2
    assert main(["sweep", ok, "--jobs", "0"]) == 2
    capsys.readouterr()


@pytest.mark.ray
def test_sweep_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (optional extra anekit[ray])")
    from anekit.cli.sweep import run_tasks
    ok, sin, bad = _sweep_models(tmp_path)
    rows = run_tasks([ok, sin, bad], ["M1", "M4"], ray_address="local", progress=False)
    local = run_tasks([ok, sin, bad], ["M1", "M4"], jobs=1, progress=False)
    assert rows == local and len(rows) == 5


def test_decode_benchmark_prices_the_published_window_pipeline():
    # benchmarks/decode_estimate.py's Core ML window pipeline: 64 rows through every layer (tiled
    # weight stream, not the single-row rate), 11 block chunks + 1 head chunk per token
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "decode_estimate.py"
    spec = importlib.util.spec_from_file_location("decode_estimate", path)
    D = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(D)
    r = D.window_pipeline_tok_s("Llama-2-7B", "M3 Max", "lut4")
    assert r["dispatches"] == 12
    arch = D.MODELS["Llama-2-7B"][0]
    blocks = D._window_blocks(arch, D.shape_only_weights(arch, "lut4", False)["layers"][:1])
    est = estimate(blocks, "M3 Max")
    convs = [o for o in est.ops if o.type == "conv"]
    assert len(convs) == 7 and all(o.flops == pytest.approx(2 * 64 * o.weight_bytes * 2, rel=0.01) for o in convs)
    # a token costs at least its 64-row compute at the conv roof, well above one row's
    flops = 2 * 64 * 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert r["us"] > flops / (params_for("M3 Max").conv_tflops * 1e6)


def _decode_benchmark():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "decode_estimate.py"
    spec = importlib.util.spec_from_file_location("decode_estimate", path)
    D = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(D)
    return D


def test_decode_benchmark_prices_the_maderix_code_as_it_ran_on_the_cpu():
    # maderix/ANE inference: USE_ANE_PROJECTIONS 0, so a token is f32 sgemvs over every weight on one
    # thread. The weights it reads: Qwen2.5-0.5B-Instruct's 494,032,768 parameters (model card) less
    # the 24 x 2 + 1 RMSNorm vectors of 896
    D = _decode_benchmark()
    arch, tied, bias = D.MODELS["Qwen2.5-0.5B"]
    assert D._decoder_params(arch, tied, bias) + (2 * 24 + 1) * 896 == 494_032_768
    r = D.cpu_sgemv_tok_s("Qwen2.5-0.5B", "M4 Max")
    n = D._decoder_params(arch, tied, bias)
    kv = 24 * 2 * 128 * 512 * 4
    one = ak.cost.host_ms(2 * n + 24 * 4 * 14 * 64 * 512, 4 * n + kv, "M4 Max", clusters=1)
    assert r["us"] == pytest.approx(one * 1e3) and r["weight_mb"] == pytest.approx(4 * n / 1e6)
    assert r["us"] > ak.cost.host_ms(2 * n, 4 * n + kv, "M4 Max") * 1e3 * 1.5     # not both clusters
    # with its ANE kernels switched on (never measured): 7 dispatches per layer, each paying a floor
    k = D.ane_kernels_tok_s("Qwen2.5-0.5B", "M4 Max")
    assert k["dispatches"] == 168
    assert k["engine_ms"] > 168 * params_for("M4 Max").dispatch_us / 1e3
