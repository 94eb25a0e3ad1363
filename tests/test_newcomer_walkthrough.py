"""Defects a new user's walkthrough of README.md and docs/ hit in the command line (each test
failed before its fix)."""
from __future__ import annotations

import numpy as np

import anekit as ak
from anekit.cli import main


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_run_out_is_a_folder_and_a_npy_name_is_refused_before_running(tmp_path, capsys):
    # `--out y.npy` used to create a folder y.npy/ holding y.npy
    ak.mil.save(ak.program({"y": ak.relu(ak.input("x", (1, 2, 1, 4)))}), tmp_path / "m")
    np.save(tmp_path / "x.npy", np.ones((1, 2, 1, 4), np.float16))
    run = ["run", str(tmp_path / "m"), "--input", f"x={tmp_path / 'x.npy'}"]
    assert main([*run, "--out", str(tmp_path / "y.npy")]) == 2
    _one_line_error(capsys, "--out", "is a folder")
    assert not (tmp_path / "y.npy").exists()
    assert main([*run, "--out", str(tmp_path / "o")]) == 0        # a folder still works
    assert np.load(tmp_path / "o" / "y.npy").shape == (1, 2, 1, 4)

