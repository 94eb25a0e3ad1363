"""Fuzz every `anekit` command: argument lists drawn from each subcommand's own argparse
declaration (so a command added later is covered too), with hostile values: bad numbers,
unknown targets, FIFOs, /dev/zero, folders, missing files and output names that try to leave
the working folder. A case ends with an exit code (0, 1, 2) or argparse's usage exit (2),
never a traceback, within the guard's limits (conftest.py)."""
from __future__ import annotations

import argparse
import os

import pytest
from .conftest import FUZZ
from .corpus import copy_seed, has_coremltools, hwx_seeds, model_seeds, seeds
from hypothesis import given, settings
from hypothesis import strategies as st

from anekit.cli import build_parser, main

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the fuzz harness needs POSIX signals and FIFOs")

SIZES = [-1, 0, 1, 2, 3, 4, 8, 16, 32, 10 ** 6, 10 ** 12, 2 ** 63]   # large ones must be refused, not run
TARGETS = ["m1", "M4 Max", "h16g", "a11", "m9", "u1", "zz", "", "m1\x00", "é"]
TEXT = ["", "-", "--", "x", "x=", "=x", "x=1,2", "x=-4,4", "x=nan,1", "x=1", "main", "nope", "0", "-1", "1e999",
        "../../evil", "\udc80"]


def _commands():
    """(argv prefix, parser) for every leaf command, nested ones (hwx dump) included."""
    out = []

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append((prefix, parser))
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, prefix + [name])
    walk(build_parser(), [])
    return out


COMMANDS = _commands()


def _paths(work: str) -> dict:
    """Files a command may be pointed at, made fresh in the case's folder."""
    p = {"folder": copy_seed("folder", work), "mlmodelc": copy_seed("mlmodelc", work), "npy": copy_seed("npy", work)}
    if has_coremltools():
        p["mlpackage"] = copy_seed("mlpackage", work)
    hwx = os.path.join(work, "p.hwx")
    with open(hwx, "wb") as f:
        f.write(hwx_seeds()[0])
    p["hwx"] = hwx
    fifo = os.path.join(work, "fifo")
    os.mkfifo(fifo)
    p["fifo"] = fifo
    models = model_seeds()         # language models: generate, and estimate's checkpoint route
    p["llama2c"] = os.path.join(work, "m.bin")
    for name, key in (("m.bin", "bin"), ("m.tokenizer.bin", "tok")):
        with open(os.path.join(work, name), "wb") as f:
            f.write(models[key])
    if "safetensors" in models:
        p["hf"] = os.path.join(work, "hf")
        os.mkdir(p["hf"])
        for name, key in (("config.json", "config"), ("model.safetensors", "safetensors")):
            with open(os.path.join(p["hf"], name), "wb") as f:
                f.write(models[key])
    p["dev_zero"] = "/dev/zero"
    p["dir"] = os.path.join(work, "dir")
    os.mkdir(p["dir"])
    p["missing"] = os.path.join(work, "missing.mil")
    p["out"] = os.path.join(work, "out")
    p["plot_png"] = os.path.join(work, "roof.png")
    p["plot_bad"] = os.path.join(work, "roof.pdf")
    p["escape"] = os.path.join(work, "..", "escape.json")     # the command is told to write there: refused or inside?
    return p


def _value(draw, action, paths: dict):
    """One value for an option or positional."""
    if action.choices:
        return draw(st.one_of(st.sampled_from(list(action.choices)), st.sampled_from(TEXT)))
    if action.type is int:     # small values reach the command's work; the listed ones its checks
        return str(draw(st.one_of(st.sampled_from(SIZES), st.integers(-2, 64))))
    dest = action.dest
    if dest in ("target",):
        return draw(st.sampled_from(TARGETS))
    if dest in ("input",):
        name = draw(st.sampled_from(["x", "y", "", "x x"]))
        return f"{name}={paths[draw(st.sampled_from(['npy', 'fifo', 'dev_zero', 'dir', 'missing', 'hwx']))]}"
    if dest in ("range",):
        return draw(st.sampled_from(TEXT))
    kinds = sorted(k for k in paths if k != "escape")
    if dest in ("out", "plot"):
        kinds = ["out", "plot_png", "plot_bad", "dir", "fifo", "dev_zero"]
    return draw(st.one_of(st.sampled_from([paths[k] for k in kinds]), st.sampled_from(TEXT)))


@st.composite
def argv_for(draw, work_paths):
    prefix, parser = draw(st.sampled_from(COMMANDS))
    argv = list(prefix)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:                     # positional: almost always given
            if draw(st.integers(0, 9)):
                argv.append(_value(draw, action, work_paths))
            continue
        if not draw(st.booleans()):
            continue
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
        else:
            for _ in range(draw(st.integers(1, 2)) if isinstance(action, argparse._AppendAction) else 1):
                argv += [flag, _value(draw, action, work_paths)]
    if prefix[:1] == ["selftest"]:          # the full suite is a benchmark, not a hostile input
        argv += ["--quick", "--fake"]
        argv = [a if not (a.isdigit() and int(a) > 3) else "2" for a in argv]
    if prefix[:1] == ["train"]:             # a training run is long legitimate work, not a hostile
        argv = _short_training(argv)        # input: keep its arguments, cut it to two small steps
    if draw(st.integers(0, 19)) == 0:       # an unknown option now and then
        argv.append(draw(st.sampled_from(["--bogus", "-z", "--json=1"])))
    return argv


def _short_training(argv):
    out, i = [], 0
    while i < len(argv):
        flag = argv[i]
        if flag == "--steps" and i + 1 < len(argv):
            value = argv[i + 1]
            out += [flag, "2" if value.lstrip("-").isdigit() and int(value) > 2 else value]
            i += 2
            continue
        if flag == "--config" and i + 1 < len(argv):   # large models: seconds per step
            out += [flag, "tiny" if argv[i + 1] in ("15M", "42M", "110M") else argv[i + 1]]
            i += 2
            continue
        out.append(flag)
        i += 1
    return out if "--steps" in out else out + ["--steps", "2"]


# CLI cases run whole commands (seconds each), so they get a fifth of the file readers' budget.
CLI_FUZZ = settings(FUZZ, max_examples=max(15, FUZZ.max_examples // 5))


@CLI_FUZZ
@given(data=st.data())
def test_fuzz_every_cli_command(guard, data, monkeypatch):
    # selftest's hostile surface is its arguments; its suite is a benchmark, cut to one case
    from anekit.runtime.ane import selftest
    full_suite = selftest.suite
    monkeypatch.setattr(selftest, "suite", lambda quick=False: full_suite(quick=True)[:1])
    with guard.folder() as work:
        paths = _paths(work)
        argv = data.draw(argv_for(paths), label="argv")

        def go():
            try:
                return main(argv)
            except SystemExit as e:       # argparse usage errors and --help exit like this
                return e.code
        code = guard.run(go, work, label=repr(argv))
        assert code in (0, 1, 2, None), (argv, code)
        assert not os.path.exists(os.path.join(work, "..", "escape.json")), argv


def test_every_command_is_covered():
    names = {" ".join(prefix) for prefix, _ in COMMANDS}
    assert {"run", "demo", "check", "estimate", "devices", "selftest", "hwx dump", "hwx diff"} <= names
    assert seeds()["folder"]
