"""One preflight: every rule the ANE backend refuses a program by is a finding of `ak.check`,
with the same reason, from the same code (preflight/ane_route.py)."""
import numpy as np
import pytest

import anekit as ak
from anekit.errors import DTypeError, ShapeError, UnsupportedOpError, UsageError
from anekit.preflight import ane_route
from anekit.runtime.ane import FakeTransport


def _refusal(prog, target):
    """The backend's refusal (the fake transport stands in for the framework)."""
    with pytest.raises((DTypeError, ShapeError, UnsupportedOpError)) as info:
        ak.compile(prog, backend="ane", transport=FakeTransport(chip=target), target=target)
    return info


def _only(rep, rule):
    found = rep.by_rule(rule)
    assert len(found) == 1, rep.findings
    return found[0]


def test_m1_runtime_matmul_with_inner_dim_off_32_is_reported_and_refused():
    q, k = ak.input("q", (1, 4, 1, 48)), ak.input("k", (1, 4, 1, 48))
    prog = ak.program({"y": ak.reshape(q.reshape(4, 48) @ k.reshape(4, 48).T, (1, 4, 1, 4))})
    f = _only(ak.check(prog, "m1"), "m1-runtime-matmul")
    assert (f.verdict, f.value) == ("unsupported", 48) and "silently zero" in f.reason
    assert not ak.check(prog, "m1").ok
    assert ak.check(prog, "m4").by_rule("m1-runtime-matmul") == []     # M1 (h13) only
    info = _refusal(prog, "m1")
    assert info.type is ShapeError and f.reason in str(info.value)
    # a multiple of 32, or a constant operand, is fine
    q32 = ak.input("q", (32, 64))
    assert ak.check(ak.program({"y": q32 @ ak.input("k", (64, 32))}), "m1").by_rule("m1-runtime-matmul") == []
    assert ak.check(ak.program({"y": q @ np.ones((48, 8), np.float16)}), "m1").by_rule("m1-runtime-matmul") == []


def test_fp32_io_must_be_cast_inside_on_the_direct_route():
    x = ak.input("x", (1, 8, 1, 16), dtype="fp32")
    prog = ak.program({"y": ak.relu(x)})
    rep = ak.check(prog, "m4", route="direct")
    f, out = rep.by_rule("io-fp32-cast")     # the input feeds relu, the output comes from it
    assert (f.op, out.op) == ("x", "y") and not rep.ok
    assert f.verdict == "unsupported" and "cast to fp16 inside" in f.reason
    info = _refusal(prog, "m4")
    assert info.type is DTypeError and f.reason in str(info.value)
    # Core ML casts I/O itself
    assert ak.check(prog, "m4", route="coreml").by_rule("io-fp32-cast") == []
    cast_in = ak.program({"y": ak.cast(ak.relu(ak.cast(x, dtype="fp16")), dtype="fp32")})
    assert ak.check(cast_in, "m4", route="direct").by_rule("io-fp32-cast") == []


def test_io_must_be_1_c_1_s_on_the_direct_route():
    x = ak.input("x", (1, 3, 8, 8))
    prog = ak.program({"y": ak.relu(x)})
    rep = ak.check(prog, "m4", route="direct")
    found = rep.by_rule("io-layout")
    assert [(f.op_type, f.value) for f in found] == [("input", [1, 3, 8, 8]), ("output", [1, 3, 8, 8])]
    assert not rep.ok and ak.check(prog, "m4", route="coreml").ok
    info = _refusal(prog, "m4")
    assert info.type is ShapeError and found[0].reason in str(info.value)
    good = ak.program({"y": ak.relu(ak.input("x", (1, 3, 1, 64)))})
    assert ak.check(good, "m4", route="direct").ok


def test_runtime_conv_weight_above_batch_one_is_reported_and_refused():
    w = ak.input("w", (8, 8, 1, 1))
    prog = ak.program({"y": ak.conv(ak.input("x", (2, 8, 1, 16)), w)})
    f = _only(ak.check(prog, "m4"), "dynamic-weight-conv")
    assert "runtime tensor" in f.reason and f.source.startswith("ANE guide ch. 19")
    # the backend refuses through the same findings (here the I/O layout comes first)
    assert f in ane_route.findings(prog.main, "h16")
    one = ak.program({"y": ak.conv(ak.input("x", (1, 8, 1, 16)), w)})
    assert ak.check(one, "m4").by_rule("dynamic-weight-conv") == []      # batch one runs (ch. 19)


def test_unknown_route_is_a_usage_error():
    with pytest.raises(UsageError, match="route"):
        ak.check(ak.program({"y": ak.relu(ak.input("x", (1, 2, 1, 2)))}), "m4", route="usb")


def test_cli_check_takes_the_route(tmp_path, capsys):
    from anekit.cli import main
    x = ak.input("x", (1, 3, 8, 8))
    ak.save(ak.program({"y": ak.relu(x)}), str(tmp_path / "m.mil"))
    assert main(["check", str(tmp_path / "m.mil"), "-t", "m4"]) == 0
    assert main(["check", str(tmp_path / "m.mil"), "-t", "m4", "--route", "direct"]) == 1
    assert "io-layout" in capsys.readouterr().out
