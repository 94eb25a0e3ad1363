"""Valid seed files the fuzz tests start from and mutate: a MIL folder with weights, a .mil
file, a compiled .mlmodelc, an .mlpackage (when coremltools is installed), .hwx programs
(the shared vectors when present, else a synthetic container) and .npy inputs."""
from __future__ import annotations

import functools
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

import anekit as ak

SHARED = Path(os.environ.get("ANEKIT_SHARED", Path(__file__).resolve().parents[3] / "shared"))


def program():
    rng = np.random.default_rng(0)
    x = ak.input("x", (1, 4, 1, 8))
    w = rng.standard_normal((6, 4, 1, 1)).astype(np.float16)
    y = ak.relu(ak.conv(x, w, bias=np.arange(6, dtype=np.float16)))
    z = ak.softmax(ak.mul(y, 0.5), axis=1)
    return ak.program({"y": y, "z": z})


def has_coremltools() -> bool:
    try:
        import coremltools  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def seeds() -> dict:
    """name -> path of each seed, built once per session in a private folder."""
    root = tempfile.mkdtemp(prefix="anekit-fuzz-seeds-")
    prog = program()
    out = {}
    out["folder"] = ak.save(prog, os.path.join(root, "model"))
    out["mil"] = os.path.join(out["folder"], "model.mil")
    compiled = os.path.join(root, "model.mlmodelc")
    shutil.copytree(out["folder"], compiled)
    with open(os.path.join(compiled, "metadata.json"), "w") as f:
        f.write('[{"defaultFunctionName": "main"}]')
    out["mlmodelc"] = compiled
    if has_coremltools():
        out["mlpackage"] = ak.save(prog, os.path.join(root, "model.mlpackage"))
    np.save(os.path.join(root, "x.npy"), np.random.default_rng(1).standard_normal((1, 4, 1, 8)).astype(np.float16))
    out["npy"] = os.path.join(root, "x.npy")
    out["root"] = root
    return out


def hwx_seeds() -> list[bytes]:
    vectors = SHARED / "vectors" / "hwx"
    found = sorted(vectors.glob("*.hwx")) if vectors.is_dir() else []
    if found:
        return [p.read_bytes() for p in found[:4]]
    text = struct.pack("<8I", 0x1000, 0x20, 0x3C000000, 0, 1 << 25, 7, 0, 0)
    return [container_with_text(4, text), container_with_text(9, text)]


def container_with_text(subtype: int, text: bytes) -> bytes:
    """Header, one __TEXT segment holding __text, nothing else."""
    text_at = 32 + 152
    section = struct.pack("<16s16s2Q8I", b"__text", b"__TEXT", 0x30000000, len(text), text_at, 4, 0, 0, 0, 0, 0, 0)
    segment = struct.pack("<2I16s4Q4I", 0x19, 152, b"__TEXT", 0x30000000, len(text), text_at, len(text), 5, 5, 1, 0)
    header = struct.pack("<8I", 0xBEEFFACE, 0x80, subtype, 2, 1, 152, 0, 0)
    return header + segment + section + text


def copy_seed(name: str, work: str) -> str:
    src = seeds()[name]
    dst = os.path.join(work, os.path.basename(src))
    if os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst
