"""Fuzz the model readers: llama2.c checkpoints and tokenizers, Hugging Face folders (config.json
and safetensors), each loaded, priced (`.estimate`, the skeleton readers) and, when it loads,
run for a token; and training checkpoints. Each case gives a result or an AnekitError within the guard's limits
(conftest.py)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from .conftest import FUZZ
from hypothesis import given
from hypothesis import strategies as st
from .corpus import MODEL_CONFIG as _CONFIG, model_seeds as _seeds
from .mutations import hostile_kind, make_hostile, mutate_bytes, mutations

from anekit.models import hf, llama2c
from anekit.models.tokenizer import Tokenizer

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the fuzz harness needs POSIX signals and FIFOs")

def _use(m) -> None:
    """What a caller does with a loaded model: price it, then one token (skeletons refuse to run)."""
    m.estimate("m4", prompt_tokens=2)
    if not m.shapes_only:
        list(m.generate([1, 2], 2, target="m4"))


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _file(work: str, name: str, seed: bytes, ops, hostile) -> str:
    """The seed mutated, or a hostile object (FIFO, /dev/zero, folder, link out...) in its place."""
    path = os.path.join(work, name)
    if hostile:
        _write(os.path.join(work, "outside"), seed)
        make_hostile(path, hostile, os.path.join(work, "outside"))
    else:
        _write(path, mutate_bytes(seed, ops))
    return path


@FUZZ
@given(ops=mutations, hostile=st.one_of(st.none(), hostile_kind), skeleton=st.booleans())
def test_fuzz_llama2c_checkpoint(guard, ops, hostile, skeleton):
    with guard.folder() as work:
        path = _file(work, "m.bin", _seeds()["bin"], ops, hostile)
        read = llama2c.skeleton if skeleton else llama2c.load
        m = guard.run(lambda: read(path), work)
        if hostile and hostile != "symlink_out":
            assert isinstance(m, Exception), f"read a checkpoint that is a {hostile}"
        if not isinstance(m, Exception):
            guard.run(lambda: _use(m), work)


@FUZZ
@given(ops=mutations, hostile=st.one_of(st.none(), hostile_kind))
def test_fuzz_tokenizer(guard, ops, hostile):
    with guard.folder() as work:
        path = _file(work, "t.bin", _seeds()["tok"], ops, hostile)
        tok = guard.run(lambda: Tokenizer.load(path), work)
        if hostile and hostile != "symlink_out":
            assert isinstance(tok, Exception), f"read a tokenizer that is a {hostile}"
        if not isinstance(tok, Exception):
            guard.run(lambda: (tok.check_vocab(_CONFIG.vocab_size), tok.decode_all(tok.encode("abc ab"))), work)


@FUZZ
@given(part=st.sampled_from(["config.json", "model.safetensors"]), ops=mutations,
       hostile=st.one_of(st.none(), hostile_kind), skeleton=st.booleans())
def test_fuzz_hf_folder(guard, part, ops, hostile, skeleton):
    pytest.importorskip("safetensors", reason="the hf extra (safetensors) is not installed")
    seeds = _seeds()
    with guard.folder() as work:
        folder = os.path.join(work, "model")
        os.mkdir(folder)
        _write(os.path.join(folder, "config.json"), seeds["config"])
        _write(os.path.join(folder, "model.safetensors"), seeds["safetensors"])
        target = os.path.join(folder, part)
        if hostile:
            _write(os.path.join(work, "outside"), seeds["config"] if part == "config.json" else seeds["safetensors"])
            make_hostile(target, hostile, os.path.join(work, "outside"))
        else:
            _write(target, mutate_bytes(seeds["config"] if part == "config.json" else seeds["safetensors"], ops))
        read = hf.skeleton if skeleton else hf.load
        m = guard.run(lambda: read(folder), work)
        if not isinstance(m, Exception):
            guard.run(lambda: _use(m), work)


def test_model_seeds_load_and_run(guard):
    """The seeds themselves load, price and run: the fuzz cases start from working files."""
    with guard.folder() as work:
        for name, data in (("m.bin", _seeds()["bin"]),):
            _write(os.path.join(work, name), data)
        m = guard.run(lambda: llama2c.load(os.path.join(work, "m.bin")), work)
        assert not isinstance(m, Exception), m
        guard.run(lambda: _use(m), work)
        if "safetensors" not in _seeds():
            return                      # no hf extra: the checkpoint above is the whole seed set
        folder = os.path.join(work, "model")
        os.mkdir(folder)
        _write(os.path.join(folder, "config.json"), _seeds()["config"])
        _write(os.path.join(folder, "model.safetensors"), _seeds()["safetensors"])
        for read in (hf.load, hf.skeleton):
            m = guard.run(lambda: read(folder), work)
            assert not isinstance(m, Exception), m
            assert guard.run(lambda: _use(m), work) is None


@FUZZ
@given(ops=mutations, hostile=st.one_of(st.none(), hostile_kind))
def test_fuzz_training_checkpoint(guard, ops, hostile):
    """A training checkpoint (safetensors layout, anekit metadata) mutated or replaced: read gives
    the tensors or a CheckpointError, never a partial result, a crash or a huge allocation."""
    from anekit.train import checkpoint
    with guard.folder() as work:
        seed_path = os.path.join(work, "seed.safetensors")
        rng = np.random.default_rng(3)
        checkpoint.write(seed_path, {"w": rng.standard_normal((4, 6)).astype(np.float32),
                                     "m": np.arange(5, dtype=np.float16), "step": np.array([7], np.int64)},
                         {"step": 7, "optimizer": "adam", "loss_scale": 1024.0})
        with open(seed_path, "rb") as f:
            seed = f.read()
        path = _file(work, "ckpt.safetensors", seed, ops, hostile)
        got = guard.run(lambda: checkpoint.read(path), work)
        if hostile and hostile != "symlink_out":
            assert isinstance(got, Exception), f"read a checkpoint that is a {hostile}"
        if not isinstance(got, Exception):
            tensors, meta = got
            assert isinstance(meta, dict) and all(isinstance(a, np.ndarray) for a in tensors.values())
