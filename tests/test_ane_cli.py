"""Availability and refusals, `anekit devices`, `anekit selftest`, and the Core ML backend."""
import json
import sys

import numpy as np
import pytest

import anekit as ak
from anekit.cli import main
from anekit.errors import BackendUnavailableError
from anekit.ir.builder import build as op
from anekit.runtime import devices
from anekit.runtime.ane import machine, selftest
from anekit.runtime.coreml import CoreMLBackend

ON_APPLE_SILICON = machine.is_apple_silicon() and not machine.under_rosetta()


def relu_program():
    x = ak.input("x", (1, 8, 1, 16))
    return ak.program({"y": op("relu", x)})


# --- refusals ----------------------------------------------------------------------------------------

def test_ane_without_a_transport_needs_apple_silicon_macos():
    avail = ak.runtime.backend_class("ane").availability()
    if ON_APPLE_SILICON:
        assert avail.available or "AppleNeuralEngine" in avail.reason
        return
    assert not avail.available and "needs Apple Silicon macOS" in avail.reason
    with pytest.raises(BackendUnavailableError, match="needs Apple Silicon macOS"):
        ak.compile(relu_program(), backend="ane", target="m4")


def test_coreml_needs_apple_silicon_macos_to_predict():
    avail = CoreMLBackend.availability()
    if ON_APPLE_SILICON:
        assert avail.available or "coremltools" in avail.reason
        return
    assert not avail.available and "needs Apple Silicon macOS" in avail.reason
    with pytest.raises(BackendUnavailableError, match="needs Apple Silicon macOS"):
        ak.compile(relu_program(), backend="coreml", target="m4")


def test_auto_falls_back_to_the_simulator_off_the_ane():
    if machine.ane_availability().available:
        pytest.skip("here 'auto' picks the real ANE; hardware runs are opt-in (ANEKIT_HW=1)")
    exe = ak.compile(relu_program(), backend="auto", target="m4")
    assert exe.backend == "sim"


@pytest.mark.parametrize("brand, target", [("Apple M1", "M1"), ("Apple M4 Pro", "M4 Pro"), ("Apple M3 Max", "M3 Max"),
                                           ("Apple M5", "M5"), ("Intel(R) Core(TM) i9-9880H", None), ("", None)])
def test_chip_brand_maps_to_a_target(brand, target):
    assert machine.chip_target(brand) == target


# --- anekit devices -------------------------------------------------------------------------------------

def test_devices_lists_every_backend_with_a_reason():
    rows = {r["backend"]: r for r in devices()}
    assert set(rows) == {"sim", "ane", "coreml"}
    assert rows["sim"]["available"]
    for r in rows.values():
        assert isinstance(r["reason"], str) and r["reason"]
    if not ON_APPLE_SILICON:
        assert not rows["ane"]["available"] and not rows["coreml"]["available"]


def test_devices_command_text_and_json(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "backend" in out and "ane" in out and "coreml" in out and "chip:" in out
    if not ON_APPLE_SILICON:
        assert "needs Apple Silicon macOS" in out and "no Apple chip detected" in out
    assert main(["devices", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [b["backend"] for b in rep["backends"]] == ["sim", "ane", "coreml"]
    assert set(rep) == {"backends", "chip", "target", "os"}
    if sys.platform != "darwin":
        assert rep["chip"] is None


# --- anekit selftest -------------------------------------------------------------------------------------

def test_selftest_writes_one_json_report_through_the_fake(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = main(["selftest", "--quick", "--fake", "--iterations", "2", "--out", str(path)])
    captured = capsys.readouterr()
    rep = json.loads(path.read_text())
    assert code == 0, rep["summary"]
    assert rep["transport"] == "fake" and rep["hardware"] is False and rep["target"] == "M4"
    assert rep["os"] and rep["anekit"] == ak.__version__ and "FakeTransport" in rep["note"]
    names = [c["name"] for c in rep["cases"]]
    assert names[:6] == ["relu", "add", "sigmoid", "softmax_channels", "conv1x1_64to128", "matmul_runtime_k64"]
    assert [c["kind"] for c in rep["cases"]] == ["op"] * 6 + ["block", "chain"]
    assert names[7].startswith("conv1x1_chain128")
    for c in rep["cases"]:
        assert c["ok"], c
        assert c["max_abs_diff"] == 0.0 and c["finite"]          # the fake computes with the simulator
        assert set(c["latency_ms"]) == {"p50", "p90", "p99"}
        assert c["latency_ms"]["p50"] <= c["latency_ms"]["p99"]
        assert c["iterations"] == 2
    assert rep["summary"] == {"cases": 8, "ok": 8, "failed": []}
    # progress on stderr, one line per case and result; the table on stdout
    assert "[1/8] relu" in captured.err and "[8/8] conv1x1_chain128" in captured.err
    assert "relu" in captured.out and "fake transport" in captured.out


def test_selftest_records_a_failing_case_and_exits_1(monkeypatch, tmp_path, capsys):
    def broken():
        x = ak.input("x0", (1, 3, 8, 8))                # not [1, C, 1, S]: refused by the backend
        return ak.program({"y": op("relu", x)})
    cases = selftest.suite(quick=True)[:1] + [selftest.Case("broken", "op", broken)]
    monkeypatch.setattr(selftest, "suite", lambda quick=False: cases)
    path = tmp_path / "r.json"
    assert main(["selftest", "--fake", "--iterations", "1", "--out", str(path)]) == 1
    rep = json.loads(path.read_text())
    assert rep["summary"]["failed"] == ["broken"]
    bad = rep["cases"][1]
    assert not bad["ok"] and "ShapeError" in bad["error"] and "[1, C, 1, S]" in bad["error"]
    assert "FAILED" in capsys.readouterr().err


def test_selftest_max_diff_sees_a_difference():
    # the comparison itself, independent of the fake: a one-ulp change and an inf are seen
    ref = {"y": np.array([1.0, 2.0, np.inf], np.float16)}
    assert selftest._max_diff({"y": ref["y"].copy()}, ref) == (0.0, 0.0, False)
    got = {"y": np.array([1.0, 2.001953125, np.inf], np.float16)}
    d, rel, _ = selftest._max_diff(got, ref)
    assert d == pytest.approx(2 ** -9) and rel == pytest.approx(2 ** -10)
    d, _, _ = selftest._max_diff({"y": np.array([1.0, 2.0, 5.0], np.float16)}, ref)
    assert d == float("inf")


def test_selftest_rejects_bad_iterations(capsys):
    assert main(["selftest", "--iterations", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


# --- Core ML backend at its boundary ------------------------------------------------------------------------

def test_coreml_backend_writes_a_package_and_predicts_with_cpu_and_ne(monkeypatch):
    ct = pytest.importorskip("coremltools", reason="the coreml extra (coremltools) is not installed")
    from anekit.runtime.base import Availability
    seen = {}

    class RecordingModel:
        """Stands in for coremltools.models.MLModel (which cannot predict off macOS)."""

        def __init__(self, path, compute_units=None):
            seen["path"], seen["compute_units"] = path, compute_units
            self.prog = ak.load(path)                      # the package anekit wrote reads back
            self.sim = ak.compile(self.prog, backend="sim", target="m4")

        def predict(self, feeds):
            seen["feeds"] = {k: (v.shape, v.dtype) for k, v in feeds.items()}
            return {k: v.ravel() for k, v in self.sim(feeds).items()}   # flat, as Core ML may

    monkeypatch.setattr(CoreMLBackend, "availability", classmethod(lambda cls: Availability(True, "test")))
    monkeypatch.setattr(ct.models, "MLModel", RecordingModel)
    prog = relu_program()
    exe = ak.compile(prog, backend="coreml", target="m4")
    assert seen["compute_units"] == ct.ComputeUnit.CPU_AND_NE
    assert seen["path"].endswith(".mlpackage")
    x = np.random.default_rng(0).standard_normal((1, 8, 1, 16)).astype(np.float16)
    y = exe({"x": x})["y"]
    assert seen["feeds"] == {"x": ((1, 8, 1, 16), np.dtype(np.float16))}
    assert y.shape == (1, 8, 1, 16) and y.dtype == np.float16
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    package = exe.package
    exe.close()
    import os
    assert not os.path.exists(package)
