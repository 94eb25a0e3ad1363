"""ak.compile: backend selection, unavailable backends, input binding, the demo pipeline."""
import platform

import numpy as np
import pytest

import anekit as ak
from anekit.errors import BackendUnavailableError, ShapeError, UsageError
from anekit.runtime import devices

ON_APPLE_SILICON = platform.system() == "Darwin" and platform.machine() == "arm64"


def _prog():
    x = ak.input("x", (1, 8, 1, 16))
    w = np.random.default_rng(0).standard_normal((4, 8, 1, 1)).astype(np.float32)
    return ak.program({"y": ak.relu(ak.conv(x, w))}), w


def test_auto_reports_the_backend_it_chose():
    prog, w = _prog()
    exe = ak.compile(prog, backend="auto", target="m1")
    assert exe.backend == ("ane" if ON_APPLE_SILICON else "sim")
    x = np.random.default_rng(1).standard_normal((1, 8, 1, 16)).astype(np.float32)
    y = exe({"x": x})["y"]
    ref = np.maximum(np.einsum("oc,cs->os", w[:, :, 0, 0].astype(np.float16).astype(np.float64),
                               x.astype(np.float16).astype(np.float64)[0, :, 0]), 0)
    # fp16 output: within a couple of fp16 ulps of the float64 reference
    np.testing.assert_allclose(y[0, :, 0].astype(np.float64), ref, rtol=2e-3, atol=2e-3)


@pytest.mark.skipif(ON_APPLE_SILICON, reason="on Apple Silicon the ANE backend is available")
def test_ane_without_transport_refuses_with_reason_off_apple_silicon():
    prog, _ = _prog()
    with pytest.raises(BackendUnavailableError, match="Apple Silicon macOS"):
        ak.compile(prog, backend="ane", target="m4")


def test_unknown_backend_and_option():
    prog, _ = _prog()
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tpu'"):
        ak.compile(prog, backend="tpu")
    with pytest.raises(UsageError, match="numerics"):
        ak.compile(prog, backend="sim", numerics="bf16")
    with pytest.raises(UsageError, match="compile\\(\\) takes a Program"):
        ak.compile("model.mil")
    exe = ak.compile(prog, backend="sim")
    with pytest.raises(UsageError, match="call with a mapping"):
        exe(np.zeros((1, 8, 1, 16)))


def test_devices_lists_every_backend_with_a_reason():
    rows = {r["backend"]: r for r in devices()}
    assert set(rows) == {"sim", "ane", "coreml"}
    assert rows["sim"]["available"] is True
    for r in rows.values():
        assert isinstance(r["reason"], str) and r["reason"]
    if not ON_APPLE_SILICON:
        assert rows["ane"]["available"] is False and "Apple Silicon" in rows["ane"]["reason"]


def test_inputs_are_checked_by_name_and_shape():
    prog, _ = _prog()
    exe = ak.compile(prog, backend="sim", target="m1")
    with pytest.raises(ShapeError, match=r"missing \['x'\]"):
        exe({})
    with pytest.raises(ShapeError, match=r"unexpected \['z'\]"):
        exe({"x": np.zeros((1, 8, 1, 16)), "z": 1})
    with pytest.raises(ShapeError, match=r"input 'x': expected shape \[1, 8, 1, 16\], got \[8, 15\]"):
        exe({"x": np.zeros((8, 15))})
    # size-1 axes may be left out
    assert exe({"x": np.zeros((8, 16))})["y"].shape == (1, 4, 1, 16)


def test_exact_and_profile_modes_differ_only_by_fp16_effects():
    prog, _ = _prog()
    x = np.random.default_rng(2).standard_normal((1, 8, 1, 16))
    a = ak.compile(prog, backend="sim", target="m4")({"x": x})["y"].astype(np.float64)
    b = ak.compile(prog, backend="sim", target="m4", numerics="exact")({"x": x})["y"].astype(np.float64)
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


def test_demo_pipeline_is_accurate_and_round_trips():
    from anekit.demo import run_demo
    rep = run_demo(target="m1", backend="sim", dim=32, hidden=64, heads=2, seq=16)
    assert rep["roundtrip_identical"] and rep["dialect"] == "ios16" and rep["backend"] == "sim"
    prof, exact = rep["errors"]
    # exact mode: fp32 compute, fp16 output rounding only; profile mode: fp16 at each op boundary
    assert exact["max_rel_err"] < 1e-3
    assert prof["max_rel_err"] < 1e-2 and prof["finite"]
    assert run_demo(target="m4", backend="sim", dim=32, hidden=64, heads=2, seq=16)["dialect"] == "ios18"


def test_strict_numerics_applies_the_tile_model_to_large_matmuls():
    """The guide's [4096] + 1024 ones = 5116, in a matmul whose rows (8 x 1025 products) take
    the default fast route."""
    rows, k = 512, 1025
    x = ak.input("x", (rows, k))
    prog = ak.program({"y": ak.matmul(x, np.ones((k, 8), np.float32))})
    feed = np.ones((rows, k), np.float32)
    feed[:, 0] = 4096
    strict = ak.compile(prog, backend="sim", target="m1", numerics="strict")({"x": feed})["y"]
    assert (strict == 5116).all()
    fast = ak.compile(prog, backend="sim", target="m1")({"x": feed})["y"]
    assert (fast == 5120).all()          # documented limit of the default fast route (docs/numerics.md)


def test_auto_skips_a_hardware_backend_that_does_not_run_the_target(monkeypatch):
    """On an M1 Mac, auto with target m4 simulates the M4 instead of sending M4 MIL to the M1."""
    from anekit.runtime.ane import AneBackend
    from anekit.runtime.base import Availability
    import anekit.runtime.ane.machine as machine
    monkeypatch.setattr(AneBackend, "availability", classmethod(lambda cls: Availability(True, "pretend")))
    monkeypatch.setattr(machine, "chip_target", lambda: "M1")
    prog, _ = _prog()
    assert AneBackend.runs_target(ak.targets.get("m1")) and not AneBackend.runs_target(ak.targets.get("m4"))
    assert ak.compile(prog, backend="auto", target="m4").backend == "sim"
