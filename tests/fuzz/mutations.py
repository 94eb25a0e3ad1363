"""Hypothesis strategies for byte-level mutations and the hostile file system objects
(FIFO, /dev/zero, folder, symlink out of the working folder) that stand in for files."""
from __future__ import annotations

import os
import struct

from hypothesis import strategies as st

INTERESTING = [0, 1, 2, 7, 8, 63, 64, 65, 127, 255, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               1 << 32, 1 << 40, (1 << 63) - 1, (1 << 64) - 1, 0xDEADBEEF]

byte_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("set8"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("set32"), st.integers(0, 1 << 20), st.sampled_from(INTERESTING).map(lambda v: v & 0xFFFFFFFF)),
    st.tuples(st.just("set64"), st.integers(0, 1 << 20), st.sampled_from(INTERESTING)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 256)),
    st.tuples(st.just("duplicate"), st.integers(0, 1 << 20), st.integers(1, 512)),
)


def mutate_bytes(data: bytes, ops) -> bytes:
    out = bytearray(data)
    for kind, at, arg in ops:
        n = len(out)
        i = at % (n + 1)
        if kind == "flip" and n:
            out[i % n] ^= 1 << arg
        elif kind == "set8" and n:
            out[i % n] = arg
        elif kind == "set32" and n >= 4:
            struct.pack_into("<I", out, i % (n - 3), arg)
        elif kind == "set64" and n >= 8:
            struct.pack_into("<Q", out, i % (n - 7), arg)
        elif kind == "truncate":
            del out[i:]
        elif kind == "insert":
            out[i:i] = arg
        elif kind == "delete":
            del out[i:i + arg]
        elif kind == "duplicate":
            out[i:i] = out[i:i + arg]
    return bytes(out)


mutations = st.lists(byte_mutation, min_size=1, max_size=6)

# What may stand where a file is expected.
HOSTILE_KINDS = ("fifo", "dev_zero", "folder", "symlink_out", "dangling", "empty")
hostile_kind = st.sampled_from(HOSTILE_KINDS)


def make_hostile(path: str, kind: str, outside: str) -> None:
    """Replace `path` by a hostile object. `outside` is a file beyond the package being
    loaded but still inside the case's working folder (reading it is the escape)."""
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil
            shutil.rmtree(path)
        else:
            os.remove(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", path)
    elif kind == "folder":
        os.mkdir(path)
    elif kind == "symlink_out":
        os.symlink(outside, path)
    elif kind == "dangling":
        os.symlink(path + ".missing", path)
    else:
        open(path, "wb").close()
