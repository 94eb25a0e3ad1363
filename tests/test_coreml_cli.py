"""The CLI accepts Core ML packages wherever it accepts MIL (issue 6 item 3):
`anekit run model.mlpackage --input ...`, `anekit check model.mlpackage --target m2`,
`anekit estimate model.mlpackage --target m4`, and .mlmodelc folders the same way.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="the corpus models are PyTorch modules")
pytest.importorskip("coremltools", reason="Core ML packages need coremltools")

import models_zoo as zoo  # noqa: E402

import anekit as ak  # noqa: E402
from anekit import cli  # noqa: E402


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return zoo.package("rmsnorm", tmp_path_factory)


def test_run_a_package(pkg, tmp_path, capsys):
    entry = zoo.BY_NAME["rmsnorm"]
    x = entry.sample(seed=4)["x"]
    np.save(tmp_path / "x.npy", x)
    out_dir = tmp_path / "out"
    code = cli.main(["run", pkg, "--input", f"x={tmp_path / 'x.npy'}", "--backend", "sim",
                     "--target", "m4", "--out", str(out_dir), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in summary["outputs"]] == ["y"]
    got = np.load(out_dir / "y.npy")
    # the CLI's output is the library's output for the same package and input
    with ak.compile(ak.load(pkg), backend="sim", target="m4") as exe:
        np.testing.assert_array_equal(got, exe({"x": x})["y"])
    ref = entry.reference(entry.module(), {"x": x})["y"]
    assert np.all(np.abs(got - ref) <= entry.atol + entry.rtol * np.abs(ref))


def test_run_reports_a_missing_input_in_one_line(pkg, capsys):
    assert cli.main(["run", pkg, "--backend", "sim"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anekit: error:") and "x fp16[1, 4, 32]" in err and "\n" not in err


def test_run_a_corrupt_package_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.mlpackage"
    bad.mkdir()
    (bad / "Manifest.json").write_text("{")
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anekit: error:") and "not valid JSON" in err and "Traceback" not in err


def test_check_a_package(pkg, capsys):
    code = cli.main(["check", pkg, "--target", "m2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    ops = [o for o in report["ops"]]
    non_const = [op for op in ak.load(pkg).main.ops if op.type != "const"]
    assert len(ops) >= len(non_const)
    assert {o["type"] for o in ops} >= {op.type for op in non_const}


def test_estimate_a_package(pkg, capsys):
    assert cli.main(["estimate", pkg, "--target", "m4", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["total_us"] > 0
    assert {"linear", "rsqrt"} <= {o["type"] for o in est["ops"]}


def test_run_a_compiled_model(pkg, tmp_path, capsys):
    compiled = tmp_path / "rmsnorm.mlmodelc"
    ak.mil.save(ak.load(pkg), str(compiled))
    np.save(tmp_path / "x.npy", zoo.BY_NAME["rmsnorm"].sample()["x"])
    assert cli.main(["run", str(compiled), "--input", f"x={tmp_path / 'x.npy'}", "--backend", "sim", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["name"] == "y"
