"""numba's cache keys a kernel on its own file only; compiled._source_keyed_cache keys the cache
folder on every kernel module's source, so an edit to a shared helper cannot leave another
module's kernels running stale machine code."""
from __future__ import annotations

import shutil
import types
from pathlib import Path

import pytest

from anekit.sim import compiled


def _tree(tmp_path: Path) -> Path:
    """A copy of the kernel modules' layout: compiled.py, _compiled*.py, kernels/_compiled*.py."""
    src = Path(compiled.__file__).resolve().parent
    dst = tmp_path / "sim"
    (dst / "kernels").mkdir(parents=True)
    for p in [src / "compiled.py", *src.glob("_compiled*.py")]:
        shutil.copy(p, dst / p.name)
    for p in src.glob("kernels/_compiled*.py"):
        shutil.copy(p, dst / "kernels" / p.name)
    return dst


def _folder(monkeypatch, sim: Path) -> Path:
    monkeypatch.setattr(compiled, "__file__", str(sim / "compiled.py"))
    config = types.SimpleNamespace(CACHE_DIR="")
    compiled._source_keyed_cache(config)
    return Path(config.CACHE_DIR)


def test_an_edit_to_any_kernel_module_moves_the_cache_and_drops_the_old_one(tmp_path, monkeypatch):
    sim = _tree(tmp_path)
    first = _folder(monkeypatch, sim)
    assert first.parent == sim / "__pycache__" and first.name.startswith("numba-")
    assert _folder(monkeypatch, sim) == first                 # same sources, same cache
    first.mkdir(parents=True)
    helper = sim / "compiled.py"                              # the shared helpers' module
    helper.write_text(helper.read_text() + "\n# edited\n")
    second = _folder(monkeypatch, sim)
    assert second != first and not first.exists()
    (second).mkdir(parents=True)
    norm = sim / "kernels" / "_compiled_norm.py"              # a kernel module below kernels/
    norm.write_text(norm.read_text() + "\n# edited\n")
    third = _folder(monkeypatch, sim)
    assert third not in (first, second) and not second.exists()


def test_a_cache_folder_the_user_chose_is_left_alone():
    config = types.SimpleNamespace(CACHE_DIR="/somewhere/else")
    compiled._source_keyed_cache(config)
    assert config.CACHE_DIR == "/somewhere/else"


@pytest.mark.numba
def test_warm_up_builds_every_lazy_kernel_of_the_simulator():
    """conftest and the benchmarks call warm_up so that no cold compile lands inside a timed
    run (a fresh clone's fuzz test once stopped in the four-lane kernel's compile): every
    LazyKernel declared in the sources must be reachable from it."""
    assert compiled.kernels() is not None, "numba is installed, the compiled route must be on"
    root = Path(compiled.__file__).resolve().parent
    declared = sum(p.read_text().count("compiled.LazyKernel(") for p in root.rglob("*.py"))
    compiled.warm_up()
    assert declared >= 5 and len(compiled._LAZY) == declared
    assert all(lazy.tried for lazy in compiled._LAZY)
