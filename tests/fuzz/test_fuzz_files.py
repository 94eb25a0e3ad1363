"""Fuzz the file readers: MIL text, weight.bin, MIL folders, .mlmodelc, .mlpackage, .hwx and
.npy. Each case gives a result or an AnekitError within the guard's limits (conftest.py)."""
from __future__ import annotations

import os
import shutil
import struct

import numpy as np
import pytest
from .conftest import FUZZ
from .corpus import copy_seed, has_coremltools, hwx_seeds, seeds
from hypothesis import given
from hypothesis import strategies as st
from .mutations import HOSTILE_KINDS, hostile_kind, make_hostile, mutate_bytes, mutations

import anekit as ak
from anekit.errors import AnekitError, PathEscapeError
from anekit.ir.graph import Program
from anekit.mil.blobs import BlobFile, write_blobs

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the fuzz harness needs POSIX signals and FIFOs")

try:
    from test_mil_fuzz import _BASES, mutate as mutate_text, mutation as text_mutation
except ImportError:   # the MIL corpus lives beside the other tests
    _BASES, mutate_text, text_mutation = None, None, None


def _exercise(prog) -> None:
    """Use what was loaded the way a caller would: every function through the printer."""
    if isinstance(prog, Program):
        ak.mil.emit(prog)


def _mutate_file(path: str, ops) -> None:
    """Rewrite a regular file of a seed with its bytes mutated (folders are left alone)."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(mutate_bytes(data, ops))


def _load_and_use(guard, path: str, work: str, hostile, what: str):
    """ak.load a mutated or hostile model, then use what it gave. A hostile part must be
    refused, and a symlink out of the model as a path escape."""
    prog = guard.run(lambda: ak.load(path), work)
    if hostile:
        assert isinstance(prog, AnekitError), f"loaded a model whose {what} is a {hostile}"
    if hostile == "symlink_out":
        assert isinstance(prog, PathEscapeError), prog
    guard.run(lambda: _exercise(prog), work)


# --- MIL text -----------------------------------------------------------------------------------

@FUZZ
@given(base=st.integers(0, 100), ops=st.lists(text_mutation, min_size=1, max_size=5))
def test_fuzz_mil_text(guard, base, ops):
    text, files = _BASES[base % len(_BASES)]
    for op in ops:
        text = mutate_text(text, op)
    with guard.folder() as work:
        prog = guard.run(lambda: ak.mil.parse(text, files), work)
        guard.run(lambda: _exercise(prog), work)


@FUZZ
@given(prefix=st.sampled_from(["", "program(1.3)\n{\n", 'program(1.3)\n{ func main<ios18>(tensor<fp16, [1]> x) {\n']),
       body=st.text(st.characters(codec="utf-8"), max_size=400),
       repeat=st.sampled_from([1, 1, 50, 5000]))
def test_fuzz_mil_random_text(guard, prefix, body, repeat):
    with guard.folder() as work:
        guard.run(lambda: ak.mil.parse(prefix + body * repeat), work)


# --- weight.bin ------------------------------------------------------------------------------------

def _weight_seed() -> bytes:
    data, _ = write_blobs([np.arange(6, dtype=np.float16), (np.arange(9, dtype=np.uint8) % 16, "uint4"),
                           np.ones((2, 3), np.float32), (np.array([1.5, -2.0], np.float32), "bf16")])
    return data


def _read_everything(path: str) -> None:
    with BlobFile(path) as blobs:
        for offset in blobs.offsets:
            blobs.read(offset)


@FUZZ
@given(ops=mutations)
def test_fuzz_weight_bin(guard, ops):
    data = mutate_bytes(_weight_seed(), ops)
    with guard.folder() as work:
        path = os.path.join(work, "weight.bin")
        with open(path, "wb") as f:
            f.write(data)
        guard.run(lambda: _read_everything(path), work)


@FUZZ
@given(ops=mutations, hostile=st.one_of(st.none(), hostile_kind))
def test_fuzz_mil_folder(guard, ops, hostile):
    with guard.folder() as work:
        folder = copy_seed("folder", work)
        weight = os.path.join(folder, "weights", "weight.bin")
        if hostile:
            make_hostile(weight, hostile, os.path.join(work, "outside.bin"))
            with open(os.path.join(work, "outside.bin"), "wb") as f:
                f.write(_weight_seed())
        else:
            _mutate_file(weight, ops)
        _load_and_use(guard, folder, work, hostile, "weight.bin")


# --- .mlmodelc and .mlpackage --------------------------------------------------------------------

_MODELC_FILES = ("model.mil", "weights/weight.bin", "metadata.json", "weights")


@FUZZ
@given(target=st.sampled_from(_MODELC_FILES), ops=mutations, hostile=st.one_of(st.none(), hostile_kind))
def test_fuzz_mlmodelc(guard, target, ops, hostile):
    with guard.folder() as work:
        compiled = copy_seed("mlmodelc", work)
        path = os.path.join(compiled, *target.split("/"))
        outside = os.path.join(work, "outside")
        with open(outside, "wb") as f:
            f.write(b"program(1.3)\n{}\n")
        if hostile:
            make_hostile(path, hostile, outside)
        else:
            _mutate_file(path, ops)
        prog = guard.run(lambda: ak.load(compiled), work)
        if hostile == "symlink_out" and target != "metadata.json":
            assert isinstance(prog, AnekitError), f"followed a symlinked {target} out of the .mlmodelc"
        guard.run(lambda: _exercise(prog), work)


_PACKAGE_FILES = ("Manifest.json", "Data", "Data/com.apple.CoreML", "Data/com.apple.CoreML/model.mlmodel",
                  "Data/com.apple.CoreML/weights", "Data/com.apple.CoreML/weights/weight.bin")


@pytest.mark.skipif(not has_coremltools(), reason="Core ML packages need coremltools (the `coreml` extra)")
@FUZZ
@given(target=st.sampled_from(_PACKAGE_FILES), ops=mutations, hostile=st.one_of(st.none(), hostile_kind))
def test_fuzz_mlpackage(guard, target, ops, hostile):
    with guard.folder() as work:
        pkg = copy_seed("mlpackage", work)
        path = os.path.join(pkg, *target.split("/"))
        outside = os.path.join(work, "outside")
        if hostile == "symlink_out":     # a faithful copy of what the link replaces, outside the package
            (shutil.copytree if os.path.isdir(path) else shutil.copy)(path, outside)
        if hostile:
            make_hostile(path, hostile, outside)
        else:
            _mutate_file(path, ops)
        _load_and_use(guard, pkg, work, hostile, target)


# --- .hwx ------------------------------------------------------------------------------------------

@FUZZ
@given(seed=st.integers(0, 10), ops=mutations, hostile=st.sampled_from((None,) * 6 + HOSTILE_KINDS))
def test_fuzz_hwx(guard, seed, ops, hostile):
    from anekit.hwx import read
    from anekit.hwx.disasm import render_dump
    from anekit.cli._table import format_table
    bases = hwx_seeds()
    data = mutate_bytes(bases[seed % len(bases)], ops)
    with guard.folder() as work:
        path = os.path.join(work, "p.hwx")
        if hostile:
            make_hostile(path, hostile, os.path.join(work, "other.hwx"))
        else:
            with open(path, "wb") as f:
                f.write(data)

        def go():
            h = read(path)
            render_dump(h, "p.hwx", format_table, all_fields=True)
            h.to_dict()
        out = guard.run(go, work)
        if hostile and hostile != "symlink_out":
            assert isinstance(out, AnekitError)


# --- .npy inputs -------------------------------------------------------------------------------------

@FUZZ
@given(ops=mutations, hostile=st.sampled_from((None,) * 6 + HOSTILE_KINDS), cast=st.booleans())
def test_fuzz_npy_input(guard, ops, hostile, cast):
    from anekit.cli import main
    with guard.folder() as work:
        folder = copy_seed("folder", work)
        path = os.path.join(work, "x.npy")
        if hostile:
            make_hostile(path, hostile, seeds()["npy"])
        else:
            shutil.copy(seeds()["npy"], path)
            _mutate_file(path, ops)
        argv = ["run", folder, "-i", f"x={path}", "--json"] + (["--cast"] if cast else [])
        code = guard.run(lambda: main(argv), work)
        assert code in (0, 2), code
        if hostile in ("fifo", "dev_zero", "folder", "dangling", "empty"):
            assert code == 2


def test_seed_files_load_cleanly(guard):
    """The seeds themselves are valid (so mutations start from real files)."""
    with guard.folder() as work:
        for name in ("folder", "mlmodelc") + (("mlpackage",) if has_coremltools() else ()):
            prog = guard.run(lambda: ak.load(copy_seed(name, work)), work)
            assert isinstance(prog, Program), (name, prog)
        for data in hwx_seeds():
            from anekit.hwx import read
            assert not isinstance(guard.run(lambda: read(data), work), AnekitError)
        assert struct.calcsize("<Q") == 8
