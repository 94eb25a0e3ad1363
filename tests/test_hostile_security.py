"""Issue 16, security: no write outside the folder the user chose, no read through a symlink
out of a package, no FIFO / device read (each test failed before its fix)."""
from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest

import anekit as ak
from anekit.cli import main
from anekit.errors import (AnekitError, HwxFormatError, ModelFormatError, PathEscapeError, UsageError,
                           WeightFileError)
from anekit.mil.blobs import BlobFile

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")
SPEC = os.path.join("Data", "com.apple.CoreML", "model.mlmodel")


def _mil_folder(tmp_path, weights: bool = True) -> str:
    x = ak.input("x", (1, 4, 1, 8))
    w = np.arange(24, dtype=np.float16).reshape(6, 4, 1, 1)
    y = ak.relu(ak.conv(x, w)) if weights else ak.relu(x)
    folder = str(tmp_path / "model")
    ak.save(ak.program({"y": y}), folder)
    return folder


def _package_with_output_name(tmp_path, name: str) -> str:
    """A package whose output is called `name` (the protobuf allows any string)."""
    pytest.importorskip("coremltools", reason="Core ML packages need coremltools (the `coreml` extra)")
    from anekit.coreml import parse_model
    x = ak.input("x", (1, 4))
    path = str(tmp_path / "m.mlpackage")
    ak.save(ak.program({"y": ak.relu(x)}), path)
    spec = os.path.join(path, SPEC)
    with open(spec, "rb") as f:
        model = parse_model(f.read())
    fn = model.mlProgram.functions["main"]
    block = fn.block_specializations[fn.opset]
    for op in block.operations:
        for o in op.outputs:
            if o.name == "y":
                o.name = name
    block.outputs[:] = [name if o == "y" else o for o in block.outputs]
    for o in model.description.output:
        if o.name == "y":
            o.name = name
    with open(spec, "wb") as f:
        f.write(model.SerializeToString())
    return path


# --- 1. outputs named by the model ---------------------------------------------------------

@pytest.mark.parametrize("name", ["../../evil", "sub/evil", "..", "ABSOLUTE"])
def test_run_out_refuses_output_names_that_leave_the_folder(tmp_path, capsys, name):
    if name == "ABSOLUTE":
        name = str(tmp_path / "victim")
    pkg = _package_with_output_name(tmp_path, name)
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    before = set(tmp_path.rglob("*"))
    rc = main(["run", pkg, "-i", f"x={tmp_path / 'x.npy'}", "--out", str(out)])
    assert rc == 2
    assert "not a plain file name" in capsys.readouterr().err
    assert set(tmp_path.rglob("*")) == before


def test_run_out_does_not_write_through_a_planted_symlink(tmp_path, capsys):
    folder = _mil_folder(tmp_path, weights=False)
    np.save(tmp_path / "x.npy", np.ones((1, 4, 1, 8), np.float32))
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, out / "y.npy")
    assert main(["run", folder, "-i", f"x={tmp_path / 'x.npy'}", "--out", str(out)]) == 2
    assert victim.read_text() == "keep me"
    assert "y.npy" in capsys.readouterr().err


def test_run_out_writes_plain_names(tmp_path):
    folder = _mil_folder(tmp_path, weights=False)
    np.save(tmp_path / "x.npy", np.ones((1, 4, 1, 8), np.float32))
    assert main(["run", folder, "-i", f"x={tmp_path / 'x.npy'}", "--out", str(tmp_path / "o")]) == 0
    assert np.load(tmp_path / "o" / "y.npy").shape == (1, 4, 1, 8)


# --- 2. symlinks out of a package or model folder --------------------------------------------

def test_mlpackage_with_symlinked_data_folder_is_refused(tmp_path):
    pytest.importorskip("coremltools", reason="Core ML packages need coremltools (the `coreml` extra)")
    pkg = str(tmp_path / "m.mlpackage")
    ak.save(ak.program({"y": ak.relu(ak.input("x", (1, 4)))}), pkg)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(os.path.join(pkg, "Data"), elsewhere)
    os.symlink(elsewhere, os.path.join(pkg, "Data"))
    with pytest.raises(PathEscapeError, match="leaves"):
        ak.load(pkg)


def test_mlmodelc_with_symlinked_model_mil_is_refused(tmp_path):
    folder = _mil_folder(tmp_path, weights=False)
    compiled = tmp_path / "m.mlmodelc"
    compiled.mkdir()
    outside = tmp_path / "outside.mil"
    shutil.copy(os.path.join(folder, "model.mil"), outside)
    os.symlink(outside, compiled / "model.mil")
    with pytest.raises(PathEscapeError, match="outside"):
        ak.load(str(compiled))


def test_save_does_not_write_through_a_symlinked_weights_folder(tmp_path):
    x = ak.input("x", (1, 4, 1, 8))
    prog = ak.program({"y": ak.conv(x, np.ones((6, 4, 1, 1), np.float16))})
    folder = tmp_path / "model"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, folder / "weights")
    with pytest.raises(PathEscapeError, match="outside"):
        ak.save(prog, str(folder))
    assert os.listdir(elsewhere) == []
    mil_file = tmp_path / "other" / "m.mil"
    mil_file.parent.mkdir()
    os.symlink(elsewhere, mil_file.parent / "weights")
    with pytest.raises(PathEscapeError, match="outside"):
        ak.save(prog, str(mil_file))
    assert os.listdir(elsewhere) == []


# --- 3. FIFOs, devices and folders given as files --------------------------------------------

def _fifo(tmp_path, name: str) -> str:
    path = str(tmp_path / name)
    os.mkfifo(path)
    return path


def _bounded(fn, seconds: float = 10.0):
    """Run fn in a thread; fail (never hang) when it does not return in time."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:   # noqa: BLE001 - handed back to the test
            result["error"] = e
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in result:
        raise result["error"]
    return result.get("value")


@needs_fifo
def test_fifo_weight_bin_is_refused_without_blocking(tmp_path):
    folder = _mil_folder(tmp_path)
    weight = os.path.join(folder, "weights", "weight.bin")
    os.remove(weight)
    os.mkfifo(weight)
    with pytest.raises(WeightFileError, match="FIFO"):
        _bounded(lambda: ak.load(folder))
    with pytest.raises(WeightFileError, match="FIFO"):
        _bounded(lambda: BlobFile(weight))


@needs_fifo
def test_fifo_model_mil_is_refused_without_blocking(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    os.mkfifo(folder / "model.mil")
    with pytest.raises(ModelFormatError, match="FIFO"):
        _bounded(lambda: ak.load(str(folder)))


@needs_fifo
@pytest.mark.parametrize("source", ["fifo", "/dev/zero", "folder"])
def test_hwx_from_a_fifo_device_or_folder_is_refused(tmp_path, source):
    if source == "fifo":
        path = _fifo(tmp_path, "p.hwx")
    elif source == "folder":
        path = str(tmp_path)
    else:
        if not os.path.exists(source):
            pytest.skip("no /dev/zero on this system")
        path = source
    from anekit.hwx import read
    with pytest.raises(HwxFormatError, match="not a regular file"):
        _bounded(lambda: read(path))


@needs_fifo
@pytest.mark.parametrize("source", ["fifo", "/dev/zero"])
def test_npy_input_from_a_fifo_or_device_is_refused(tmp_path, capsys, source):
    folder = _mil_folder(tmp_path, weights=False)
    path = _fifo(tmp_path, "x.npy") if source == "fifo" else source
    rc = _bounded(lambda: main(["run", folder, "-i", f"x={path}"]))
    assert rc == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and path in err


def test_weight_file_that_is_a_device_is_refused():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    with pytest.raises(WeightFileError, match="character device"):
        _bounded(lambda: BlobFile("/dev/zero"))


def test_every_refusal_is_an_anekit_error():
    assert issubclass(PathEscapeError, AnekitError) and issubclass(UsageError, AnekitError)


@needs_fifo
@pytest.mark.parametrize("argv", [["selftest", "--quick", "--fake", "--out", "{fifo}"],
                                  ["estimate", "{model}", "--plot", "{fifo}"]])
def test_report_and_plot_files_refuse_a_fifo_without_blocking(tmp_path, capsys, argv):
    if "--plot" in argv:
        pytest.importorskip("matplotlib", reason="the roofline plot needs matplotlib (the `plot` extra)")
    fifo = _fifo(tmp_path, "out.png" if "--plot" in argv else "report.json")
    model = _mil_folder(tmp_path, weights=False)
    argv = [a.format(fifo=fifo, model=model) for a in argv]
    assert _bounded(lambda: main(argv)) == 2
    err = capsys.readouterr().err
    assert fifo in err and "FIFO" in err


def test_report_file_that_is_a_device_is_refused(capsys):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    assert _bounded(lambda: main(["selftest", "--quick", "--fake", "--out", "/dev/zero"])) == 2
    assert "character device" in capsys.readouterr().err
