"""Issue 16, a newcomer's first hour: the demo's verdict, input dtype checks in `anekit run`,
one CLI convention for targets, JSON and file errors, numpy dtype names, a readable roofline
(each test failed before its fix)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import anekit as ak
from anekit.cli import build_parser, main
from anekit.errors import DTypeError, ModelFormatError, UsageError


# --- 8. demo --------------------------------------------------------------------------------

SMALL = ["--dim", "64", "--hidden", "128", "--heads", "2", "--seq", "16"]


def test_demo_ends_with_a_verdict_against_the_tolerance(capsys):
    assert main(["demo", "-t", "m1", *SMALL]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("PASS on M1: max err / max|ref| ")
    assert "tolerance of fp16 numerics" in out[-1]


def test_demo_json_carries_figures_tolerances_and_the_numerics_of_each_target(capsys):
    reports = {}
    for target in ("m1", "m4"):
        assert main(["demo", "--target", target, "--json", *SMALL]) == 0
        reports[target] = json.loads(capsys.readouterr().out)
    for rep in reports.values():
        assert rep["passed"] is True and rep["verdict"].startswith("PASS")
        for row in rep["errors"]:
            assert 0 <= row["max_rel_err"] <= row["tolerance"] and row["pass"]
    # M1 flushes subnormals in the MAC and saturates width slices; M4 does neither
    assert "MAC flushes subnormals" in reports["m1"]["numerics"]
    assert "MAC flushes subnormals" not in reports["m4"]["numerics"]
    assert reports["m1"]["numerics"] != reports["m4"]["numerics"]


def test_demo_fails_when_the_error_is_over_the_tolerance(monkeypatch, capsys):
    from anekit import demo
    monkeypatch.setattr(demo, "TOLERANCE_FP16", 1e-9)
    assert main(["demo", *SMALL]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL")


def test_demo_refuses_a_negative_seed(capsys):
    assert main(["demo", "--seed", "-1", *SMALL]) == 2
    assert "seed must be a non-negative integer" in capsys.readouterr().err


@pytest.mark.parametrize("name,why", [("m9", "legacy"), ("h11", "legacy"), ("zz9", "unknown")])
def test_demo_refuses_legacy_and_unknown_targets_listing_the_known_ones(capsys, name, why):
    assert main(["demo", "--target", name, *SMALL]) == 2
    err = capsys.readouterr().err
    assert f"--target {name}" in err and why in err
    assert "known targets: M1, " in err and "M4" in err and ", M9," not in err


# --- 9. run checks input dtypes ---------------------------------------------------------------

@pytest.fixture
def fp16_model(tmp_path):
    folder = str(tmp_path / "m")
    ak.save(ak.program({"y": ak.relu(ak.input("x", (1, 4)))}), folder)
    return folder


@pytest.mark.parametrize("data,why", [
    (np.array([[1, 2, 3, 4]], np.int64), "the model declares fp16, the file holds int64 data"),
    (np.array([[1.0, 2.0, 7e4, 0.0]], np.float32), "outside fp16's range"),
    (np.array([[True, False, True, False]]), "holds bool data"),
])
def test_run_refuses_a_dtype_mismatch_unless_cast(fp16_model, tmp_path, capsys, data, why):
    path = tmp_path / "x.npy"
    np.save(path, data)
    assert main(["run", fp16_model, "-i", f"x={path}"]) == 2
    err = capsys.readouterr().err
    assert why in err and "--cast" in err and "--input x" in err
    assert main(["run", fp16_model, "-i", f"x={path}", "--cast", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["outputs"][0]["dtype"] == "float16"


def test_run_accepts_matching_inputs(fp16_model, tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[-1, 2, 3, 4]], np.float16))
    assert main(["run", fp16_model, "-i", f"x={path}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["min"] == 0.0


def test_int32_input_refuses_floats_and_out_of_range_values(tmp_path, capsys):
    folder = str(tmp_path / "m")
    ak.save(ak.program({"y": ak.add(ak.input("i", (3,), dtype="int32"), np.int32(1))}), folder)
    for data, why in ((np.array([1.5, 2, 3]), "holds float64 data"),
                      (np.array([1, 2, 1 << 40], np.int64), "outside int32's range")):
        np.save(tmp_path / "i.npy", data)
        assert main(["run", folder, "-i", f"i={tmp_path / 'i.npy'}"]) == 2
        assert why in capsys.readouterr().err


# --- 10. CLI consistency -------------------------------------------------------------------------

def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_command_that_takes_a_target_takes_t_and_target():
    found = 0
    for name, sub in _subparsers().items():
        for a in sub._actions:
            if "--target" in a.option_strings:
                assert "-t" in a.option_strings, f"anekit {name}: --target without -t"
                found += 1
    assert found >= 5        # run, demo, check, estimate, selftest


def test_json_is_a_flag_that_prints_to_stdout_on_every_command():
    def walk(parsers, prefix=""):
        for name, sub in parsers.items():
            for a in sub._actions:
                if "--json" in a.option_strings:
                    assert a.nargs == 0, f"anekit {prefix}{name} --json takes an argument"
                if a.__class__.__name__ == "_SubParsersAction":
                    walk(a.choices, f"{name} ")
    walk(_subparsers())


def test_selftest_writes_its_report_with_out_and_json_to_stdout(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert main(["selftest", "--quick", "--fake", "--iterations", "1", "--json", "--out", str(path)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(path.read_text())


def test_json_indentation_is_the_same_everywhere(fp16_model, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float16))
    outputs = []
    for argv in (["run", fp16_model, "-i", f"x={tmp_path / 'x.npy'}", "--json"], ["check", fp16_model, "--json"],
                 ["estimate", fp16_model, "--json"], ["devices", "--json"]):
        main(argv)
        outputs.append(capsys.readouterr().out)
    for text in outputs:
        second = text.splitlines()[1]
        assert second.startswith('  "') and not second.startswith('   '), second


def test_errors_about_inputs_and_functions_speak_in_cli_terms(fp16_model, capsys):
    assert main(["run", fp16_model]) == 2
    assert "give --input x=FILE.npy" in capsys.readouterr().err
    assert main(["run", fp16_model, "--function", "nope"]) == 2
    assert "--function nope" in capsys.readouterr().err
    assert main(["check", fp16_model, "--function", "nope"]) == 2
    assert "--function nope" in capsys.readouterr().err


def test_plot_must_be_png_or_svg(fp16_model, tmp_path, capsys):
    assert main(["estimate", fp16_model, "--plot", str(tmp_path / "roof.pdf")]) == 2
    assert "--plot" in capsys.readouterr().err and not (tmp_path / "roof.pdf").exists()


def test_save_refuses_an_extension_it_does_not_write(tmp_path):
    prog = ak.program({"y": ak.relu(ak.input("x", (1, 4)))})
    with pytest.raises(ModelFormatError, match=r"x.onnx: anekit does not write .onnx files"):
        ak.save(prog, str(tmp_path / "x.onnx"))
    assert not (tmp_path / "x.onnx").exists()
    (tmp_path / "existing.v2").mkdir()          # an existing folder is still a folder
    ak.save(prog, str(tmp_path / "existing.v2"))
    assert (tmp_path / "existing.v2" / "model.mil").exists()


@pytest.mark.parametrize("spelling", ["fp16", "float16", "FLOAT16", np.float16, np.dtype("float16")])
def test_numpy_dtype_spellings_are_accepted_where_fp16_is(spelling):
    x = ak.input("x", (1, 4), dtype=spelling)
    assert x.dtype == "fp16"
    assert ak.cast(ak.input("z", (1, 4), dtype="float32"), dtype=spelling).dtype == "fp16"
    from anekit.mil.blobs import read_blob, write_blobs
    data, offsets = write_blobs([(np.ones(2, np.float16), spelling)])
    assert read_blob(data, offsets[0], dtype=spelling).dtype == np.float16
    from anekit.ir.builder import make_const
    assert make_const(np.ones(2), spelling).dtype == "fp16"


def test_unknown_dtype_spellings_are_still_refused():
    with pytest.raises(DTypeError):
        ak.input("x", (1, 4), dtype="float99")
    from anekit.ir import dtypes
    with pytest.raises(DTypeError, match="unknown dtype"):
        dtypes.canonical(np.complex64)


# --- 11. roofline ------------------------------------------------------------------------------

def _estimate():
    from anekit.models import stories
    weights = stories.random_weights(64, 128, 1, 0)[0]
    prog = ak.program({"y": stories.layer(ak.input("x", (1, 64, 1, 32)), weights, 2)})
    return ak.estimate(prog, "m1")


def test_roofline_has_units_named_roofs_labelled_points_and_a_legend():
    pytest.importorskip("matplotlib", reason="the roofline needs matplotlib (the `plot` extra)")
    from anekit.cost.roofline import BOUND_STYLES, roofline_figure
    import matplotlib.pyplot as plt
    est = _estimate()
    fig = roofline_figure(est)
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "FLOP per byte" in ax.get_xlabel() and "FLOP/s" in ax.get_ylabel()
        texts = [t.get_text() for t in ax.texts]
        assert any(t.startswith("conv") and "TFLOP/s" in t for t in texts)
        assert any("matmul" in t and "TFLOP/s" in t for t in texts)
        assert any("GB/s" in t for t in texts)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("conv roof" in t for t in legend) and any("-bound op" in t for t in legend)
        colours = {c for _, c, _ in BOUND_STYLES.values()}
        import matplotlib.colors as mcolors
        used = {mcolors.to_hex(c.get_facecolor()[0]) for c in ax.collections}
        assert used and used <= {mcolors.to_hex(c) for c in colours}
        placed = [r for r in est.ops if r.bound in ("compute", "bandwidth") and r.flops > 0 and r.dram_bytes > 0]
        labels = [t for t in texts if not t.endswith(("TFLOP/s", "GB/s"))]
        # every placed op is labelled: by its name, or as one of "NAME +k more" at a shared spot
        counted = sum(1 + int(t.split(" +")[1].split()[0]) if " +" in t else 1 for t in labels)
        assert placed and counted == len(placed)
        names = {r.name for r in placed}
        assert all(t.split(" +")[0] in names for t in labels)
    finally:
        plt.close(fig)


def test_roofline_renders_to_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib", reason="the roofline needs matplotlib (the `plot` extra)")
    import matplotlib.image as mpimg
    from anekit.cost import plot_roofline
    est = _estimate()
    png = plot_roofline(est, tmp_path / "roof.png")
    img = mpimg.imread(png)
    assert img.shape[0] >= 600 and img.shape[1] >= 1000          # large enough to read the labels
    rgb = img[..., :3]
    assert (rgb.std(axis=(0, 1)) > 0.05).all()                     # not a blank canvas
    green = (rgb[..., 1] > 0.45) & (rgb[..., 0] < 0.3) & (rgb[..., 2] < 0.3)
    assert green.sum() > 20                                         # compute-bound points drawn
    svg = plot_roofline(est, tmp_path / "roof.svg")
    text = open(svg, encoding="utf-8").read()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    with pytest.raises(UsageError, match=r"must end in \.png or \.svg"):
        plot_roofline(est, tmp_path / "roof.jpg")
