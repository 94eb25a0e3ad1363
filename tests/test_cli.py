"""The `anekit` command line: help everywhere, run, demo, one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

import anekit as ak
from anekit.cli import build_parser, main


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _subcommands(sub, prefix + (name,))


def test_help_on_every_command(capsys):
    cmds = list(_subcommands(build_parser()))
    names = {c[0] for c, _ in cmds}
    assert {"run", "demo", "check", "estimate", "devices", "selftest", "hwx"} <= names
    for cmd, _ in cmds:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        assert "usage: anekit " + " ".join(cmd) in capsys.readouterr().out


@pytest.fixture
def model_dir(tmp_path):
    x = ak.input("x", (1, 4, 1, 8))
    y = ak.tanh(ak.conv(x, np.full((2, 4, 1, 1), 0.25, np.float32)))
    ak.mil.save(ak.program({"y": y, "s": ak.reduce_sum(x, axes=[1])}), tmp_path / "m")
    np.save(tmp_path / "x.npy", np.arange(32, dtype=np.float32).reshape(1, 4, 1, 8) / 32)
    return tmp_path


def test_run_exact_numerics_uses_the_simulator_in_exact_mode(tmp_path, capsys):
    x = ak.input("x", (4,))
    ak.mil.save(ak.program({"y": ak.sqrt(x)}), tmp_path / "m")
    np.save(tmp_path / "x.npy", np.array([-1, 0, np.nan, 2], np.float32))
    args = ["run", str(tmp_path / "m"), "-i", f"x={tmp_path / 'x.npy'}", "--out", str(tmp_path / "o")]
    assert main(args) == 0                                  # chip profile: sqrt(-1) = +0, NaN -> +inf
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "y.npy")[:3], [0, 0, np.inf])
    assert main(args + ["--numerics", "exact"]) == 0        # IEEE semantics
    y = np.load(tmp_path / "o" / "y.npy")
    assert np.isnan(y[0]) and np.isnan(y[2]) and y[3] == np.float16(np.sqrt(2))
    capsys.readouterr()


def test_run_prints_table_json_and_writes_outputs(model_dir, capsys):
    assert main(["run", str(model_dir / "m"), "--input", f"x={model_dir / 'x.npy'}", "--target", "m4"]) == 0
    out = capsys.readouterr().out
    assert "backend sim, target M4" in out and "1x2x1x8" in out and "float16" in out
    assert main(["run", str(model_dir / "m"), "-i", f"x={model_dir / 'x.npy'}", "--json",
                 "--out", str(model_dir / "o")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in rep["outputs"]] == ["y", "s"]
    x = np.load(model_dir / "x.npy").astype(np.float64)
    want = np.tanh(0.25 * x.sum(1))                          # all four channels weighted 0.25
    y = np.load(model_dir / "o" / "y.npy")
    np.testing.assert_allclose(y[0, 0, 0], want[0, 0], atol=2e-3)
    assert rep["outputs"][0]["max"] == pytest.approx(float(y.max()))


def test_run_states_the_numerics_profiles_gaps(model_dir, capsys):
    """A run in the numerics of a family nobody measured (A11: h11) says so on stderr, and in
    --json; exact numerics, which rest on no measurement, carry no note."""
    base = ["run", str(model_dir / "m"), "--input", f"x={model_dir / 'x.npy'}"]
    assert main(base + ["--target", "a11"]) == 0
    captured = capsys.readouterr()
    assert "note: A11 numerics (h11 profile): numerics not measured on this family" in captured.err
    assert "note" not in captured.out
    assert main(base + ["--target", "a11", "--json"]) == 0
    assert any("not measured" in n for n in json.loads(capsys.readouterr().out)["numerics_notes"])
    assert main(base + ["--target", "a11", "--numerics", "exact", "--json"]) == 0
    assert "numerics_notes" not in json.loads(capsys.readouterr().out)
    assert main(base + ["--target", "m1"]) == 0
    assert "note:" not in capsys.readouterr().err          # the guide's measured family: no gap stated


@pytest.mark.parametrize("argv,msg", [
    (["run", "{m}"], "takes inputs x fp16[1, 4, 1, 8]: give --input x=FILE.npy"),
    (["run", "{m}", "-i", "x={d}/x.npy", "-i", "x={d}/x.npy"], "--input x is given twice"),
    (["run", "{m}", "-i", "x={d}/x.npy", "--numerics", "exact", "--backend", "ane"], "--numerics exact runs on the simulator"),
    (["demo", "--heads", "0"], "heads must be a positive integer"),
    (["demo", "--dim", "30", "--heads", "4"], "must split into 4 heads"),
    (["run", "{m}", "--input", "x"], "expected NAME=FILE.npy"),
    (["run", "{m}", "--input", "x={d}/nope.npy"], "no such file"),
    (["run", "{d}/nowhere", "--input", "x={d}/x.npy"], "nowhere"),
    (["run", "{m}", "--input", "x={d}/x.npy", "--target", "m99"], "unknown chip or compiler target 'm99'"),
])
def test_errors_are_one_line_with_exit_2(model_dir, capsys, argv, msg):
    argv = [a.format(m=model_dir / "m", d=model_dir) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("anekit: error: ") and msg in err and err.count("\n") == 1


def test_console_script_demo_json_and_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "anekit"]
    r = subprocess.run(exe + ["demo", "--dim", "32", "--hidden", "64", "--heads", "2", "--seq", "16", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["roundtrip_identical"] and rep["errors"][0]["max_rel_err"] < 1e-2
    bad = tmp_path / "bad.mil"
    bad.write_text("program(1.3) { func main<ios18>(tensor<fp16, [2]> x) { tensor<fp16, [2]> y = relu(x = z)")
    r = subprocess.run(exe + ["run", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("anekit: error: ")


def test_hwx_dump_and_diff_through_main(capsys, tmp_path):
    from test_hwx import VECTORS
    conv, golden = VECTORS / "h13_conv.hwx", VECTORS / "h13_conv_golden.hwx"
    if not conv.is_file():
        pytest.skip(f"hwx vectors not found at {VECTORS} (set ANEKIT_SHARED to the shared folder)")
    assert main(["hwx", "dump", str(conv)]) == 0
    out = capsys.readouterr().out
    assert "zin_ane_compiler" in out and "  Common (" in out and "Cin " in out and "input   image" in out
    assert main(["hwx", "dump", str(conv), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["generation"] == "h13"
    assert main(["hwx", "diff", str(conv), str(golden)]) == 1            # differ, like diff(1)
    assert "2.0 -> 3.0" in capsys.readouterr().out
    assert main(["hwx", "diff", str(conv), str(conv)]) == 0
    bad = tmp_path / "bad.hwx"
    bad.write_bytes(conv.read_bytes()[:100])
    assert main(["hwx", "dump", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anekit: error: ") and err.count("\n") == 1


def test_check_and_estimate_default_to_this_machines_target(model_dir, capsys):
    from anekit.runtime import default_target
    want = ak.targets.get(default_target()).name             # m1 off Apple Silicon
    assert main(["estimate", str(model_dir / "m")]) == 0
    assert f"target {want} " in capsys.readouterr().out
    assert main(["check", str(model_dir / "m"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == want


def test_estimate_takes_the_dispatch_route_as_dispatch(model_dir, capsys):
    """`estimate --dispatch` picks the dispatch route (`check --route` is Core ML vs anekit's
    backend, another question); the old spelling --route is still accepted."""
    totals = {}
    for flag, route in (("--dispatch", "host"), ("--route", "host"), ("--dispatch", "standard")):
        assert main(["estimate", str(model_dir / "m"), "-t", "m4", flag, route, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["route"] == route
        totals[flag, route] = out["estimates"][0]["total_us"] if "estimates" in out else out["total_us"]
    assert totals["--dispatch", "host"] == totals["--route", "host"] != totals["--dispatch", "standard"]
    with pytest.raises(SystemExit) as bad:          # a check route, not a dispatch one
        main(["estimate", str(model_dir / "m"), "--dispatch", "direct"])
    assert bad.value.code == 2 and "invalid choice" in capsys.readouterr().err
