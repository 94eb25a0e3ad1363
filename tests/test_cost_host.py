"""anekit.cost.host: the CPU roofline for a step's host part and the per-compile cost, against
hand formulas from the constants' sources (guide ch. 9 CPU roof; maderix/ANE training README)."""
from __future__ import annotations

import pytest

from anekit import targets
from anekit.cost import compile_ms, host_ms
from anekit.cost import host as H
from anekit.errors import AnekitError
from anekit.models import llama2c
from anekit.train.estimate import llama_host_work, stories_step_ms


def test_host_ms_is_a_cpu_roofline():
    # M5: one P-cluster; 1898 GFLOP/s and 130.4 GB/s measured on it (guide ch. 9)
    assert host_ms(1.898e9, 0, "m5") == pytest.approx(1.0)
    assert host_ms(0, 130.4e6, "m5") == pytest.approx(1.0)
    # a two-cluster part runs twice the matmul; its stream is capped by its DRAM share
    assert host_ms(1.898e9, 0, "m4 max") == pytest.approx(0.5)
    m1 = targets.get("m1")
    assert host_ms(0, 1e9, "m1") == pytest.approx(1e9 / (min(130.4, H.CPU_DRAM_SHARE * m1.dram_gbs) * 1e6))


def test_host_ms_on_one_cluster():
    # work issued from one thread runs on its own cluster's matrix unit: an M4 Max's two clusters halve
    # the matmul time, one cluster does not; the stream is one cluster's 130.4 GB/s (under its DRAM cap)
    assert host_ms(1.898e9, 0, "m4 max", clusters=1) == pytest.approx(1.0)
    assert host_ms(0, 130.4e6, "m4 max", clusters=1) == pytest.approx(1.0)
    assert host_ms(1e9, 1e9, "m4 max", clusters=2) == pytest.approx(host_ms(1e9, 1e9, "m4 max"))
    for bad in (0, 3, 1.0, "1"):
        with pytest.raises(AnekitError, match="clusters"):
            host_ms(1e9, 0, "m4 max", clusters=bad)


def test_p_clusters_follow_the_core_layouts():
    assert [H.p_clusters(c) for c in ("m4", "m4 pro", "m4 max", "m3 pro", "m2 ultra")] == [1, 2, 2, 1, 4]


def test_compile_cost_and_bad_input():
    assert compile_ms(72) == pytest.approx(7600.0)
    with pytest.raises(AnekitError):
        compile_ms(-1)
    with pytest.raises(AnekitError):
        host_ms(-1.0, 0.0, "m4")


def test_stories_step_adds_host_work_and_keeps_compiles_apart():
    c = llama2c.STORIES110M
    work = llama_host_work(c)
    assert work["classifier fwd+bwd"][0] == 6 * c.vocab_size * c.dim * c.seq_len
    r = stories_step_ms(c, "static", "m4", engine_ms=30.0, compiles_per_step=60)
    host = sum(host_ms(f, b, "m4") for f, b in work.values())
    assert r["step"] == pytest.approx(30.0 + host)
    assert r["compile"] == pytest.approx(60 * 7600.0 / 72)
    assert "host classifier fwd+bwd" not in stories_step_ms(c, "dynamic", "m4", 30.0, head_on_host=False)


def _wide_head(compressed: bool):
    import numpy as np
    import anekit as ak
    from anekit.ir import make_const
    x = ak.input("x", (1, 64, 1, 1))
    if compressed:    # a 4-bit palettized weight: its dense form is never a tensor that crosses
        w = ak.constexpr_lut_to_dense(indices=make_const(np.zeros((151936, 64, 1, 1), np.uint8), "uint4"),
                                      lut=np.zeros((1, 1, 1, 1, 16, 1), np.float16))
    else:
        w = np.zeros((151936, 64, 1, 1), np.float16)
    return ak.program({"logits": ak.conv(ak.relu(x), w)})     # relu on the engine, the conv off it


@pytest.mark.parametrize("compressed", [False, True])
def test_off_engine_ops_priced_on_the_cpu_in_a_decode_token(compressed):
    import anekit as ak
    prog = _wide_head(compressed)      # 151936 output channels: over the engine's axis limit
    d = ak.cost.estimate_decode(prog, "m4 pro")
    est = d.program
    off = est.off_engine
    assert [r.name for r in off] and off[0].type == "conv"
    # only the activations cross (the input row), never the weight, compressed or not
    assert est.split_us == pytest.approx(64 * 2 / (est.params.host_copy_gbs * 1e3))
    assert d.off_engine_ms == pytest.approx(host_ms(off[0].flops, off[0].bytes, "m4 pro"))
    assert d.ms_per_token == pytest.approx(est.total_ms + d.off_engine_ms)
