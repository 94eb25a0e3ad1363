"""Tests for anekit.preflight (ak.check): one program per rule that violates it (and one that just passes),
the fp16 range analysis checked against numpy on sampled inputs, the report API and the
`anekit check` command's exit codes.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import anekit as ak
from anekit.preflight import _program_rules, analyze_ranges, check, ranges
from anekit.preflight.rules import KEYED_OPS
from anekit.errors import AnekitError, TargetError
from anekit.ir import Op, Tensor
from anekit.ir.ops import REGISTRY


def prog_of(y, name="y"):
    return ak.program({name: y})


def only(rep, rule):
    found = rep.by_rule(rule)
    assert len(found) == 1, [tuple(f) for f in rep.findings]
    return found[0]


def w16(*shape, value=0.01):
    return np.full(shape, value, dtype=np.float16)


# ---- structural rules ------------------------------------------------------------------------

def test_clean_program_is_ok_everywhere():
    x = ak.input("x", (1, 64, 1, 256), range=(-1, 1))
    p = prog_of(ak.relu(ak.conv(x, w16(64, 64, 1, 1))))
    for target in ("m1", "m2", "m3", "m4", "m5 pro", "a12"):
        rep = check(p, target)
        assert rep.ok and not rep.findings, (target, [tuple(f) for f in rep.findings])
        assert all(o.verdict == "native" for o in rep.ops)


def test_axis_over_family_maximum():
    p = prog_of(ak.relu(ak.input("x", (1, 16385))))
    f = only(check(p, "m1"), "max-dim")
    assert f.verdict == "over_limit" and f.limit == 16384 and f.value == 16385
    assert "axis 1 (W) is 16385" in f.reason and "Appendix A" in f.source
    assert check(p, "m4").ok                              # 65536 from A16
    assert check(prog_of(ak.relu(ak.input("x", (1, 16384)))), "m1").ok


def test_conv_channels_escape_the_axis_cap():
    x = ak.input("x", (1, 16385, 1, 8))
    rep = check(prog_of(ak.conv(x, w16(4, 16385, 1, 1))), "m1")
    assert rep.ok, [tuple(f) for f in rep.findings]       # guide ch. 4: Cin/Cout of 16385 compile
    rep = check(prog_of(ak.conv(ak.input("x", (1, 4, 1, 16385)), w16(4, 4, 1, 1))), "m1")
    assert only(rep, "max-dim").limit == 16384             # the spatial axis does not escape


def test_fp16_conv_kernel_width_over_13_on_m1_family():
    x = ak.input("x", (1, 8, 32, 64))
    wide = prog_of(ak.conv(x, w16(8, 8, 3, 14)))
    f = only(check(wide, "m1"), "conv-kernel-width")
    assert (f.verdict, f.limit, f.value) == ("over_limit", 13, 14)
    assert "kernel width (fp16) 14" in f.reason
    assert not check(wide, "a13").ok                      # same family
    assert check(wide, "m2").ok                           # 16 from A14
    assert check(prog_of(ak.conv(x, w16(8, 8, 3, 13))), "m1").ok
    assert only(check(prog_of(ak.conv(x, w16(8, 8, 3, 17))), "m4"), "conv-kernel-width").limit == 16


def test_conv_kernel_height_limit():
    x = ak.input("x", (1, 2, 64, 8))
    f = only(check(prog_of(ak.conv(x, w16(2, 2, 30, 1))), "m1"), "conv-kernel-height")
    assert (f.limit, f.value) == (29, 30)
    assert check(prog_of(ak.conv(x, w16(2, 2, 16, 3))), "m1").ok    # ch. 4: 16x3 compiles


def test_three_d_conv_is_unsupported():
    x = ak.input("x", (1, 4, 4, 8, 8))
    f = only(check(prog_of(ak.conv(x, w16(4, 4, 2, 3, 3))), "m5 pro"), "conv-3d")
    assert f.verdict == "unsupported"


def test_matmul_with_non_unit_depth_axis():
    a = ak.input("a", (1, 2, 4, 8, 16))
    b = ak.input("b", (1, 2, 4, 16, 8))
    f = only(check(prog_of(ak.matmul(a, b)), "m4"), "matmul-depth")
    assert (f.verdict, f.limit, f.value) == ("over_limit", 1, 2)
    assert "depth" in f.reason
    a1 = ak.input("a", (1, 1, 4, 8, 16))
    b1 = ak.input("b", (1, 1, 4, 16, 8))
    assert check(prog_of(ak.matmul(a1, b1)), "m4").ok


def test_linear_rejects_rank_5():
    x = ak.input("x", (1, 1, 2, 3, 16))
    f = only(check(prog_of(ak.linear(x, w16(8, 16))), "m1"), "linear-rank")
    assert f.verdict == "over_limit" and f.value == 5


def test_rank_over_5():
    p = prog_of(ak.relu(ak.input("x", (1, 1, 2, 2, 2, 2))))
    f = only(check(p, "m3"), "max-rank")
    assert (f.verdict, f.limit, f.value) == ("over_limit", 5, 6)


def _view_const(shape):
    """A weight const that allocates nothing (a broadcast view), to test size limits."""
    arr = np.broadcast_to(np.float16(0.0), shape)
    op = Op(REGISTRY["const"], {}, {"val": arr})
    t = Tensor("fp16", shape, op, 0, None, arr)
    op.outputs.append(t)
    return t


def test_more_than_2gb_of_weights_in_one_program():
    y = ak.input("x", (1, 8192))
    for _ in range(17):   # 17 x 8192 x 8192 fp16 = 2.28 GB
        y = ak.matmul(y, _view_const((8192, 8192)))
    rep = check(prog_of(y), "m4")
    f = only(rep, "weights-total")
    assert f.op == "(program)" and f.verdict == "over_limit"
    assert f.limit == 2 ** 31 and f.value == 17 * 8192 * 8192 * 2
    assert not rep.ok
    y = ak.input("x", (1, 8192))
    for _ in range(15):
        y = ak.matmul(y, _view_const((8192, 8192)))
    assert check(prog_of(y), "m4").ok


def test_compressed_weights_count_at_stored_size():
    idx = ak.ir.make_const(np.zeros((4096, 4096), np.uint8), "uint4")
    lut = ak.constexpr_lut_to_dense(indices=idx, lut=np.zeros((1, 1, 16, 1), np.float16))
    p = prog_of(ak.matmul(ak.input("x", (1, 4096)), lut))
    # 4-bit indices and a 16-entry table, not the 32 MB dense weight, and not twice.
    assert _program_rules(p.main, ak.targets.get("m1")) == []
    from anekit.ir.weights import compressed
    lut_op = next(o for o in p.main.ops if o.type == "constexpr_lut_to_dense")
    assert compressed(lut_op) == ("lut", 4096 * 4096 / 2 + 16 * 2)


def test_op_the_family_does_not_support():
    x = ak.input("x", (1, 8, 1, 32), range=(-1, 1))
    p = prog_of(ak.sin(x))
    f = only(check(p, "m1"), "op-support")
    assert f.verdict == "unsupported" and f.limit == "native from h15"
    assert "host" in f.reason and "Appendix A" in f.source
    assert not check(p, "m2").ok and check(p, "m3").ok
    g = only(check(prog_of(ak.reduce_prod(x, axes=[1])), "m5 pro"), "op-support")
    assert g.limit == "no engine path on any family"


def test_decomposed_op_still_runs_on_the_engine():
    x = ak.input("x", (1, 8, 16, 16))
    p = prog_of(ak.upsample_nearest_neighbor(x, scale_factor_height=2, scale_factor_width=2))
    rep = check(p, "m1")
    f = only(rep, "op-support")
    assert f.verdict == "decomposed" and f.limit == "native from h14"
    assert rep.ok                                          # on the engine, by another route
    assert check(p, "m2").findings == []


def test_fp32_compute_is_demoted():
    x = ak.input("x", (1, 8, 1, 32), dtype="fp32")
    rep = check(prog_of(ak.add(x, x)), "m1")
    f = only(rep, "fp32-compute")
    assert f.verdict == "demoted" and f.limit == "fp16" and "not honoured" in f.reason
    assert only(rep, "input-dtype").verdict == "demoted"
    assert rep.ok                                          # it runs, in fp16
    cast = ak.cast(x, dtype="fp16")
    rep = check(prog_of(ak.relu(cast)), "m1")
    assert rep.by_rule("fp32-compute") == []               # cast at the boundary is fine


def test_integer_program_input_is_unsupported():
    x = ak.input("x", (1, 8), dtype="int32")
    f = only(check(prog_of(ak.add(x, x)), "m4"), "input-dtype")
    assert f.verdict == "unsupported" and f.limit == "fp16"


def test_cast_to_int32_on_m1():
    x = ak.input("x", (1, 8, 1, 32))
    p = prog_of(ak.cast(x, dtype="int32"))
    f = only(check(p, "m1"), "cast-int32")
    assert f.verdict == "unsupported"
    assert check(p, "m2").by_rule("cast-int32") == []


def test_dynamic_weight_conv_above_batch_one():
    w = ak.input("w", (8, 8, 3, 3))
    f = only(check(prog_of(ak.conv(ak.input("x", (2, 8, 16, 16)), w)), "m1"), "dynamic-weight-conv")
    assert (f.verdict, f.limit, f.value) == ("unsupported", "batch 1", 2)
    assert check(prog_of(ak.conv(ak.input("x", (1, 8, 16, 16)), w)), "m1").ok


def test_gather_software_envelope_without_texture_engine():
    x = ak.input("x", (2, 4, 8, 16))
    idx = np.array([0, 1], np.int32)
    p = prog_of(ak.gather(x, idx, axis=3))
    f = only(check(p, "m1"), "gather-envelope")
    assert f.verdict == "unsupported" and f.value == 2
    assert check(p, "m2").by_rule("gather-envelope") == []


# ---- width-slice saturation -------------------------------------------------------------------

def _width_slice(lo, hi, begin=4):
    x = ak.input("x", (1, 4, 1, 64), range=(lo, hi) if lo is not None else None)
    return prog_of(ak.slice_by_size(x, begin=(0, 0, 0, begin), size=(1, 4, 1, 32)))


def test_width_slice_offset_with_values_over_4094_on_h13_h14():
    for target in ("m1", "m2"):
        f = only(check(_width_slice(-5000, 5000), target), "width-slice-saturation")
        assert (f.verdict, f.limit, f.value) == ("risk", 4094, 5000)
        assert "x16" in f.reason
    assert check(_width_slice(-5000, 5000), "m3").findings == []      # clean route from A15
    assert check(_width_slice(-4094, 4094), "m1").findings == []      # 4094 x 16 = 65504 passes
    assert check(_width_slice(-5000, 5000, begin=0), "m1").findings == []   # no offset, no crop


def test_width_slice_without_a_declared_range_is_a_risk():
    f = only(check(_width_slice(None, None), "m1"), "width-slice-saturation")
    assert f.value is None and "no declared input range" in f.reason


def test_width_slice_by_index_uses_the_interval_reaching_it():
    x = ak.input("x", (1, 2, 1, 16), range=(-1, 1))
    big = ak.mul(x, 6000.0)
    p = prog_of(ak.slice_by_index(big, begin=(0, 0, 0, 2), end=(1, 2, 1, 10)))
    f = only(check(p, "m2"), "width-slice-saturation")
    assert f.value == pytest.approx(6000, rel=1e-3)


# ---- fp16 range analysis -----------------------------------------------------------------------

def test_mac_ceiling_flags_interior_partials():
    x = ak.input("x", (1, 512), range=(-100, 100))
    w = np.ones((512, 8), np.float16)
    w[::2] = -1                   # final sums cancel for a constant input, partials do not
    f = only(check(prog_of(ak.matmul(x, w)), "m1"), "mac-overflow")
    assert (f.verdict, f.limit) == ("risk", 32768)
    assert f.value == pytest.approx(512 * 100)
    assert check(prog_of(ak.matmul(x, w * np.float16(0.5))), "m1").findings == []   # 25600 < 32768


def test_mac_ceiling_on_conv_and_linear_with_bias():
    x = ak.input("x", (1, 16, 8, 8), range=(0, 50))
    f = only(check(prog_of(ak.conv(x, w16(4, 16, 3, 3, value=5.0), pad_type="same")), "m5 pro"), "mac-overflow")
    assert f.value == pytest.approx(16 * 9 * 5 * 50)      # 36000
    v = ak.input("v", (1, 64), range=(-10, 10))
    lin = ak.linear(v, w16(4, 64, value=40.0), bias=np.full(4, 8000.0, np.float16))
    g = only(check(prog_of(lin), "m1"), "mac-overflow")
    assert g.value == pytest.approx(64 * 40 * 10 + 8000)


def test_single_tap_conv_uses_the_fp16_ceiling():
    x = ak.input("x", (1, 1, 4, 4), range=(-60000, 60000))
    rep = check(prog_of(ak.conv(x, w16(1, 1, 1, 1, value=1.0))), "m1")
    assert rep.by_rule("mac-overflow") == []              # ch. 3: a 1-channel 1x1 conv passes 60000


def test_output_over_fp16_max():
    a = ak.input("a", (1, 8), range=(0, 40000))
    b = ak.input("b", (1, 8), range=(0, 40000))
    f = only(check(prog_of(ak.add(a, b)), "m4"), "fp16-overflow")
    assert (f.verdict, f.limit, f.value) == ("risk", 65504, 80000)
    assert check(prog_of(ak.add(a, b * 0.5)), "m4").findings == []


def test_bare_exp_over_11_09():
    x = ak.input("x", (1, 8), range=(-4, 12))
    f = only(check(prog_of(ak.exp(x)), "m1"), "exp-overflow")
    assert (f.verdict, f.limit, f.value) == ("risk", 11.09, 12)
    assert "softmax" in f.reason
    assert check(prog_of(ak.exp(ak.input("x", (1, 8), range=(-4, 11)))), "m1").findings == []
    assert check(prog_of(ak.softmax(ak.input("x", (1, 8), range=(-1e4, 1e4)))), "m1").findings == []


def test_one_overflow_is_reported_once():
    x = ak.input("x", (1, 8), range=(0, 40000))
    y = ak.relu(ak.add(x, x))          # relu passes the clipped bound on: no second finding
    rep = check(prog_of(ak.mul(y, 0.5)), "m1")
    assert [f.rule for f in rep.findings] == ["fp16-overflow"]


def test_no_range_declared_means_no_range_findings():
    x = ak.input("x", (1, 512))
    rep = check(prog_of(ak.exp(ak.matmul(x, w16(512, 8, value=100.0)))), "m1")
    assert rep.findings == [] and rep.ok


def _sample_box(rng, shape, lo, hi, n=64):
    out = rng.uniform(lo, hi, size=(n,) + shape)
    corners = rng.integers(0, 2, size=(n,) + shape)          # also hit the box corners
    out[: n // 2] = np.where(corners[: n // 2] == 1, hi, lo)
    return out


def test_intervals_contain_every_sampled_output():
    rng = np.random.default_rng(7)
    W = rng.normal(size=(6, 16)).astype(np.float16)
    b = rng.normal(size=6).astype(np.float16)
    g = rng.uniform(0.5, 2, size=6).astype(np.float16)
    x = ak.input("x", (1, 16), range=(-3, 2))
    h = ak.linear(x, W, bias=b)
    s = ak.silu(h)
    n = ak.layer_norm(s, axes=[1], gamma=g, beta=np.zeros(6, np.float16))
    e = ak.exp(ak.mul(h, 0.25))
    r = ak.reduce_sum(ak.square(h), axes=[1])
    p = ak.program({"h": h, "s": s, "n": n, "e": e, "r": r})
    bounds = analyze_ranges(p)
    xs = _sample_box(rng, (1, 16), -3, 2, n=400)
    Wf, bf, gf = W.astype(np.float64), b.astype(np.float64), g.astype(np.float64)
    hv = xs @ Wf.T + bf
    sv = hv / (1 + np.exp(-hv))
    mu = sv.mean(axis=-1, keepdims=True)
    nv = (sv - mu) / np.sqrt(sv.var(axis=-1, keepdims=True) + 1e-5) * gf
    ref = {"h": hv, "s": sv, "n": nv, "e": np.exp(hv * 0.25), "r": (hv ** 2).sum(axis=-1)}
    for name, vals in ref.items():
        lo, hi = bounds[name]
        assert lo - 1e-6 <= vals.min() and vals.max() <= hi + 1e-6, (name, (lo, hi), (vals.min(), vals.max()))


def test_concat_and_select_take_the_union_of_their_values_only():
    a = ak.input("a", (1, 4, 1, 8), range=(-0.5, 0.25))
    b = ak.input("b", (1, 4, 1, 8), range=(0.0, 0.5))
    r = analyze_ranges(ak.program({"c": ak.concat([a, b], axis=3), "s": ak.select(ak.greater(a, b), a, b)}))
    assert r["c"] == (-0.5, 0.5) and r["s"] == (-0.5, 0.5)     # the axis const (3) is not a value


def test_linear_interval_is_tight():
    W = np.array([[1.0, -2.0, 0.5]], np.float16)
    x = ak.input("x", (1, 3), range=(-1, 3))
    lo, hi = analyze_ranges(prog_of(ak.linear(x, W)))["y"]
    # the extremes are reached at box corners: hi = 1*3 + (-2)*(-1) + 0.5*3
    assert (lo, hi) == (pytest.approx(1 * -1 + -2 * 3 + 0.5 * -1), pytest.approx(3 + 2 + 1.5))


def test_conv_interval_against_numpy_convolution():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(3, 2, 3, 3)).astype(np.float16)
    x = ak.input("x", (1, 2, 5, 5), range=(-1, 4))
    lo, hi = analyze_ranges(prog_of(ak.conv(x, W, pad_type="same")))["y"]
    xs = _sample_box(rng, (2, 5, 5), -1, 4, n=200)
    pad = np.pad(xs, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((len(xs), 3, 5, 5))
    for i in range(5):
        for j in range(5):
            out[:, :, i, j] = np.einsum("nchw,ochw->no", pad[:, :, i:i + 3, j:j + 3], W.astype(np.float64))
    assert lo <= out.min() and out.max() <= hi


def test_check_rules_are_keyed_on_declared_ops():
    assert not KEYED_OPS - set(REGISTRY)


def test_unboundable_op_stays_unbounded_without_crashing():
    x = ak.input("x", (1, 8), range=(0.5, 2))
    lo, hi = analyze_ranges(prog_of(ak.pow(x, 3.0)))["y"]
    assert math.isinf(lo) and math.isinf(hi)


# ---- report API ------------------------------------------------------------------------------

def test_report_api_and_json():
    x = ak.input("x", (1, 8, 1, 32), range=(-1, 1))
    p = ak.program({"a": ak.sin(x), "b": ak.relu(x)})
    rep = check(p, "M1")
    assert not rep.ok
    op, verdict, reason, limit = rep.findings[0]
    assert (op, verdict, limit) == ("a", "unsupported", "native from h15")
    assert rep.verdict("a") == "unsupported" and rep.verdict("b") == "native"
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["ok"] is False and d["target"] == "M1" and d["compiler"] == "h13"
    assert {o["name"]: o["verdict"] for o in d["ops"]} == {"a": "unsupported", "b": "native"}
    assert d["findings"][0]["rule"] == "op-support"


def test_worst_verdict_wins():
    x = ak.input("x", (1, 8, 1, 32), dtype="fp32")
    rep = check(prog_of(ak.sin(x)), "m1")
    assert rep.verdict("y") == "unsupported"
    assert {f.rule for f in rep.findings} == {"op-support", "fp32-compute", "input-dtype"}


def test_ak_check_stays_callable_after_the_package_is_imported():
    import importlib
    importlib.import_module("anekit.preflight")  # the package has its own name, so ak.check stays the function
    x = ak.input("x", (1, 8, 1, 32))
    assert ak.check(prog_of(ak.sin(x)), "m1").ok is False
    assert ak.check(prog_of(ak.relu(x)), target="m1").ok


def test_bad_inputs_raise_anekit_errors():
    x = ak.input("x", (1, 8))
    with pytest.raises(AnekitError, match="needs an anekit Program"):
        check("not a program", "m1")
    with pytest.raises(TargetError):
        check(prog_of(ak.relu(x)), "m99")
    with pytest.raises(AnekitError, match="no function 'nope'"):
        check(prog_of(ak.relu(x)), "m1", function="nope")


# ---- CLI -------------------------------------------------------------------------------------

@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `anekit check/estimate` on Python-built programs (loaded in place of a MIL path)."""
    from anekit.cli import check as cli_check
    from anekit.cli import main
    progs = {}

    def fake_load(path, shapes=None):
        if path not in progs:
            raise AnekitError(f"cannot read {path}")
        return progs[path]

    monkeypatch.setattr(cli_check, "_load", fake_load)

    def run(*argv):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err
    run.progs = progs
    return run


def test_cli_check_exit_codes(cli):
    x = ak.input("x", (1, 8, 1, 32), range=(-1, 1))
    cli.progs["good.mil"] = prog_of(ak.relu(x))
    cli.progs["bad.mil"] = prog_of(ak.sin(x))
    code, out, _ = cli("check", "good.mil", "--target", "m1")
    assert code == 0 and "Everything runs on the ANE" in out
    code, out, _ = cli("check", "bad.mil", "--target", "m1")
    assert code == 1 and "op-support" in out and "native from h15" in out
    assert cli("check", "bad.mil", "--target", "m3")[0] == 0
    code, _, err = cli("check", "missing.mil", "--target", "m1")
    assert code == 2 and err.startswith("anekit: error:")
    code, _, err = cli("check", "good.mil", "--target", "nonsense")
    assert code == 2 and "unknown chip" in err


def test_cli_check_json(cli):
    x = ak.input("x", (1, 8, 1, 32), range=(-1, 1))
    cli.progs["bad.mil"] = prog_of(ak.sin(x))
    code, out, _ = cli("check", "bad.mil", "--target", "m1", "--json")
    assert code == 1
    d = json.loads(out)
    assert d["ok"] is False and d["findings"][0]["limit"] == "native from h15"


def test_cli_check_on_a_saved_mil_program(tmp_path, capsys):
    from anekit import mil
    from anekit.cli import main
    x = ak.input("x", (1, 8, 1, 32))
    path = tmp_path / "prog"
    mil.save(prog_of(ak.sin(x)), str(path))
    assert main(["check", str(path), "--target", "m1"]) == 1
    assert main(["check", str(path), "--target", "m3"]) == 0
    capsys.readouterr()


def test_cli_check_declares_input_ranges(tmp_path, capsys):
    from anekit import mil
    from anekit.cli import main
    x = ak.input("x", (1, 8))
    path = tmp_path / "prog"
    mil.save(prog_of(ak.exp(x)), str(path))      # MIL text carries no ranges
    assert main(["check", str(path), "--target", "m1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    assert main(["check", str(path), "--target", "m1", "--json", "--range", "x=-4,12"]) == 0
    f = json.loads(capsys.readouterr().out)["findings"]
    assert [(d["rule"], d["limit"], d["value"]) for d in f] == [("exp-overflow", 11.09, 12.0)]
    for bad in ("x=1", "z=0,1", "x=a,b", "x=2,1"):
        assert main(["check", str(path), "--target", "m1", "--range", bad]) == 2
        assert "--range" in capsys.readouterr().err


# ---- converted models --------------------------------------------------------------------------

ZOO_SAMPLE = ("cnn_bn_pool", "encoder_block", "embedding", "kv_cache_state", "extras")


@pytest.mark.parametrize("name", ZOO_SAMPLE)
def test_check_and_estimate_converted_models(name, tmp_path_factory):
    """Programs coremltools emits for common PyTorch layers: every op gets a verdict, every
    finding names a rule, reason and source, and the estimate is finite on every family."""
    pytest.importorskip("torch", reason="the corpus models are PyTorch modules")
    pytest.importorskip("coremltools", reason="converting the corpus needs coremltools")
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    import models_zoo as zoo
    from anekit.preflight import VERDICTS
    from anekit.cost import estimate
    prog = ak.load(zoo.package(name, tmp_path_factory))
    compute_ops = [o.name for o in prog.main.ops if o.type != "const"]
    for chip in ("a12", "m1", "m2", "m3", "m4", "m5 pro", "m11"):
        rep = check(prog, chip)
        assert [o.name for o in rep.ops] == compute_ops
        assert all(o.verdict in VERDICTS for o in rep.ops)
        for f in rep.findings:
            assert f.rule and f.reason and f.source and f.verdict in VERDICTS, tuple(f)
        json.dumps(rep.to_dict())
        est = estimate(prog, chip)
        assert math.isfinite(est.total_us) and est.total_us >= est.dispatch_us
        assert [r.name for r in est.ops] == [o.name for o in prog.main.ops if o.spec.kind not in ("const", "constexpr")]


def test_cli_check_reads_core_ml_packages(tmp_path_factory, capsys):
    pytest.importorskip("torch", reason="the corpus models are PyTorch modules")
    pytest.importorskip("coremltools", reason="converting the corpus needs coremltools")
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    import models_zoo as zoo
    from anekit.cli import main
    assert main(["check", zoo.package("cnn_bn_pool", tmp_path_factory), "--target", "m1"]) == 0
    assert main(["check", zoo.package("embedding", tmp_path_factory), "--target", "m4"]) == 1   # int32 ids in
    assert "input-dtype" in capsys.readouterr().out


def test_range_of_kinked_activations_with_negative_slopes():
    x = ak.input("x", (1, 8), range=(-10, 10))
    r = analyze_ranges(ak.program({"y": ak.leaky_relu(x, alpha=-1.0), "z": ak.elu(x, alpha=-2.0)}))
    assert r["y"] == (0.0, 10.0)            # |x| on [-10, 10]
    assert r["z"][0] == 0.0 and r["z"][1] == 10.0


def test_range_of_lstm_bounds_h_by_one_and_c_by_the_steps():
    x = ak.input("x", (6, 1, 4), range=(-1e4, 1e4))          # any input: the gates saturate
    c0 = ak.input("c0", (1, 2), range=(-3, 2))
    w_ih, w_hh = np.full((8, 4), 50.0, np.float32), np.full((8, 2), 50.0, np.float32)
    y, h, c = ak.lstm(x, np.zeros((1, 2), np.float32), c0, w_ih, w_hh, output_sequence=True)
    r = analyze_ranges(ak.program({"y": y, "h": h, "c": c}))
    assert r["y"] == (-1.0, 1.0) and r["h"] == (-1.0, 1.0)
    assert r["c"] == (-9.0, 9.0)                                # |c0| <= 3, plus one per step
    _, _, c_sig = ak.lstm(x, np.zeros((1, 2), np.float32), c0, w_ih, w_hh, cell_activation="sigmoid")
    assert analyze_ranges(ak.program({"c": c_sig}))["c"] == (-math.inf, math.inf)   # rule covers the default only
