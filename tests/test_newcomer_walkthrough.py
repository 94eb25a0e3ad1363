"""Defects a new user's walkthrough of README.md and docs/ hit in the command line (each of the
first tests failed before its fix), then the newcomer's wrong paths and target names on every
command that takes one (these held already; tests/fuzz covers random ones, not each by name)."""
from __future__ import annotations

import json

import numpy as np
import pytest

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


def test_generate_tokenizer_that_is_a_folder_is_named_as_such(tmp_path, capsys):
    from anekit.models import llama2c
    c = llama2c.Config(dim=16, hidden_dim=32, n_layers=1, n_heads=2, n_kv_heads=2, vocab_size=300, seq_len=8)
    llama2c.new(c, seed=0).save(tmp_path / "m.bin")
    (tmp_path / "tokdir").mkdir()
    assert main(["generate", str(tmp_path / "m.bin"), "--prompt", "a", "--tokenizer", str(tmp_path / "tokdir")]) == 2
    _one_line_error(capsys, "is a folder")


def test_train_stories_refuses_a_seq_len_whose_attention_cannot_be_allocated(capsys):
    # --seq-len 100000 used to die with a traceback allocating a 37 GiB causal mask
    assert main(["train", "stories", "--seq-len", "100000", "--steps", "1", "--no-progress"]) == 2
    _one_line_error(capsys, "--seq-len 100000", "GiB", "lower --seq-len")


def test_train_commands_refuse_a_negative_seed_with_one_line(capsys):
    # --seed -1 used to end in numpy's "expected non-negative integer" traceback
    assert main(["train", "digits", "--seed", "-1", "--steps", "1", "--no-progress"]) == 2
    _one_line_error(capsys, "--seed must be >= 0, got -1")
    assert main(["train", "stories", "--seed", "-1", "--steps", "1", "--no-progress"]) == 2
    _one_line_error(capsys, "--seed must be >= 0, got -1")


def test_train_stories_after_resume_names_the_step_of_its_first_loss(tmp_path, capsys):
    # after --resume the report said "loss ... at step 1" for the first step of this run (step 3)
    base = ["train", "stories", "--config", "tiny", "--seq-len", "16", "--no-progress", "--sample-tokens", "0",
            "--checkpoint", str(tmp_path)]
    assert main([*base, "--steps", "2"]) == 0
    assert " at step 1 -> " in capsys.readouterr().out
    assert main([*base, "--steps", "4", "--resume"]) == 0
    out = capsys.readouterr().out
    assert " at step 3 -> " in out and " at step 1 " not in out
    assert main([*base, "--steps", "5", "--resume", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["first_step"] == 5 and rep["steps"] == 5


# --- a newcomer's wrong paths and target names: one line, exit 2, for every command ---------------

@pytest.fixture
def files(tmp_path):
    ak.mil.save(ak.program({"y": ak.relu(ak.input("x", (1, 2, 1, 4)))}), tmp_path / "m")
    np.save(tmp_path / "x.npy", np.ones((1, 2, 1, 4), np.float16))
    from anekit.models import llama2c
    from anekit.train.pipelines.corpus import byte_tokenizer
    c = llama2c.Config(dim=16, hidden_dim=32, n_layers=1, n_heads=2, n_kv_heads=2, vocab_size=259, seq_len=8)
    llama2c.new(c, seed=0).save(tmp_path / "lm.bin")
    byte_tokenizer().save(tmp_path / "lm.tokenizer.bin")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    return tmp_path


PATH_COMMANDS = [                       # {} is the bad path; the rest is valid
    ["run", "{}", "--input", "x=@/x.npy"],
    ["run", "@/m", "--input", "x={}"],
    ["check", "{}"],
    ["estimate", "{}"],
    ["hwx", "dump", "{}"],
    ["hwx", "diff", "{}", "{}"],
    ["generate", "{}", "--prompt", "a"],
    ["generate", "@/lm.bin", "--prompt", "a", "--tokenizer", "{}"],
    ["train", "stories", "--steps", "1", "--data", "{}"],
    ["train", "stories", "--steps", "1", "--tokenizer", "{}"],
    ["train", "digits", "--steps", "1", "--data", "{}"],
]


@pytest.mark.parametrize("bad", ["missing.mil", "folder", "empty"])
@pytest.mark.parametrize("cmd", PATH_COMMANDS, ids=[" ".join(c) for c in PATH_COMMANDS])
def test_a_missing_folder_or_empty_path_is_one_line(files, capsys, cmd, bad):
    args = [a.replace("@", str(files)).replace("{}", str(files / bad)) for a in cmd]
    assert main([*args, "--no-progress"] if args[0] == "train" else args) == 2
    _one_line_error(capsys)


TARGET_COMMANDS = [
    ["run", "@/m", "--input", "x=@/x.npy"], ["check", "@/m"], ["estimate", "@/m"], ["estimate", "@/m", "--compare"],
    ["demo"], ["selftest", "--quick"], ["train", "digits", "--steps", "1"], ["train", "stories", "--steps", "1"],
    ["generate", "@/lm.bin", "--prompt", "a"],
]


@pytest.mark.parametrize("cmd", TARGET_COMMANDS, ids=[" ".join(c) for c in TARGET_COMMANDS])
def test_a_wrong_target_is_one_line_naming_it(files, capsys, cmd):
    args = [a.replace("@", str(files)) for a in cmd]
    assert main([*args, "--target", "m99x"]) == 2
    _one_line_error(capsys, "m99x")


def test_sweep_with_a_wrong_target_is_one_line(files, capsys):
    assert main(["sweep", str(files / "m"), "--targets", "m1,m99x"]) == 2
    _one_line_error(capsys, "m99x")
