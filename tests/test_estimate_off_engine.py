"""Issue 16 item 8: `ak.estimate` marks the ops `ak.check` puts off the ANE instead of pricing
them as engine ops, and charges the split (an extra dispatch per engine segment, the host copy
of every tensor crossing)."""
from __future__ import annotations

import json

import pytest

import anekit as ak
from anekit import ir, mil
from anekit.cost import estimate, params_for
from anekit.cost.opwork import FP16
from anekit.preflight import OFF_ENGINE


def _runtime_matmul_prog(after: bool = True):
    """A matmul of two runtime tensors over an inner dimension of 16: unsupported on M1 (the
    inner dimension must be a multiple of 32 there), native on M4."""
    a, b = ak.input("a", (1, 8, 16)), ak.input("b", (1, 16, 8))
    x = ak.relu(a) if after else a          # an engine op before the matmul: two segments
    return ir.program({"y": ak.relu(ak.matmul(x, b)) * 2.0})


def test_off_engine_op_is_marked_and_not_priced():
    prog = _runtime_matmul_prog()
    rep = ak.check(prog, "m1")
    off = {v.name for v in rep.ops if v.verdict in OFF_ENGINE}
    assert off == {"matmul_0"}
    e = estimate(prog, "m1")
    rows = {r.name: r for r in e.ops}
    mm = rows["matmul_0"]
    assert not mm.on_engine and "multiple of 32" in mm.off_engine_reason
    assert mm.us == 0.0 and mm.bound == "off-engine"
    assert all(r.on_engine for n, r in rows.items() if n != "matmul_0")
    assert [r.name for r in e.off_engine] == ["matmul_0"]
    # relu (engine) -> matmul (host) -> relu, mul (engine): two engine segments, two crossings
    p = params_for("m1")
    assert e.segments == 2
    crossing = (8 * 16 + 8 * 8) * FP16                    # relu out [1,8,16], matmul out [1,8,8]
    assert e.split_us == pytest.approx(e.dispatch_us + crossing / (p.host_copy_gbs * 1e3))
    assert e.total_us == pytest.approx(e.dispatch_us + e.split_us + sum(r.us for r in e.ops))
    # on M4 the same matmul is an engine op and priced as one
    e4 = estimate(prog, "m4")
    assert all(r.on_engine for r in e4.ops) and e4.segments == 1 and e4.split_us == 0.0
    assert {r.name: r for r in e4.ops}["matmul_0"].us > 0


def test_cli_marks_off_engine_ops_and_json_carries_the_fields(tmp_path, capsys):
    from anekit.cli import main
    path = str(tmp_path / "prog")
    mil.save(_runtime_matmul_prog(after=False), path)
    assert main(["estimate", path, "--target", "m1"]) == 0
    out = capsys.readouterr().out
    assert "matmul_0 *" in out and "off-ANE" in out and "runs off the ANE, not in the total" in out
    assert main(["estimate", path, "--target", "m1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in d["ops"]}
    assert rows["matmul_0"]["on_engine"] is False and rows["matmul_0"]["off_engine_reason"]
    assert rows["y"]["on_engine"] is True and rows["y"]["off_engine_reason"] == ""
    assert d["off_engine"] == ["matmul_0"] and d["segments"] == 1
    assert main(["estimate", path, "--target", "m1,m4", "--compare"]) == 0
    assert "off-ANE ops" in capsys.readouterr().out
