"""Shared fixtures, and one marker per optional dependency.

A test that needs an optional package carries its marker (`@pytest.mark.torch`, or
`pytestmark = pytest.mark.coremltools` for a whole module); when the package is missing only
those tests skip, with the extra that provides it, and everything numpy-only still runs.

torchvision: PyPI's torchvision for torch 2.13 is built against CUDA torch: on the CPU torch we test with its
`_C` extension does not load and `import torchvision` fails in `_meta_registrations.py`
("operator torchvision::nms does not exist") — and so does every `import transformers` path that
imports torchvision when it is installed (ENV-NOTES.md). Defining the two operator schemas with
torch.library before anything imports torchvision lets the import succeed; only the detection
ops stay unusable. Nothing happens where torchvision is absent or its extension loads.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import signal

import numpy as np
import pytest

# The shared reference folder (the ANE guide, hwx vectors): ANEKIT_SHARED, else ../shared
# next to the checkout. Tests that read it skip with that reason when it is absent.
SHARED = pathlib.Path(os.environ.get("ANEKIT_SHARED", pathlib.Path(__file__).resolve().parents[2] / "shared"))

# marker -> (module to import, the pyproject extra that installs it)
OPTIONAL = {
    "torch": ("torch", "torch"),
    "coremltools": ("coremltools", "coreml"),
    "matplotlib": ("matplotlib", "plot"),
    "transformers": ("transformers", "test"),
    "numba": ("numba", "fast"),
    "mpmath": ("mpmath", "test"),
}


def available(module: str) -> bool:
    """Whether `module` imports here (a stub that refuses to import counts as missing)."""
    try:
        if importlib.util.find_spec(module) is None:
            return False
        importlib.import_module(module)
        return True
    except Exception:
        return False


def pytest_configure(config):
    for marker, (module, extra) in OPTIONAL.items():
        config.addinivalue_line("markers", f"{marker}: needs {module} (the `{extra}` extra)")


def pytest_collection_modifyitems(config, items):
    missing = {m: f"needs {mod} (pip install anekit[{extra}])" for m, (mod, extra) in OPTIONAL.items()
               if not available(mod)}
    for item in items:
        for marker, reason in missing.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


def optional(module: str):
    """The module if it imports, else None (for module-level names used only by marked tests)."""
    return importlib.import_module(module) if available(module) else None


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels_ready():
    """Compile the simulator's numba kernels (or load them from numba's cache) before the first
    test: a cold compile takes seconds, which would otherwise land inside whichever test first
    simulates (the fuzz tests stop a case after 10 s). Nothing happens without numba."""
    from anekit.sim import compiled
    compiled.warm_up()


@pytest.fixture
def rng():
    """A fixed-seed generator: the same draws in every run."""
    return np.random.default_rng(0)


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt) for the test, whatever disposition the
    runner inherited (CI runners often start pytest with SIGINT ignored)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


_TORCHVISION_SCHEMAS = None   # keeps the torch.library.Library alive for the session


def _define_torchvision_schemas():
    global _TORCHVISION_SCHEMAS
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or importlib.util.find_spec("torch") is None:
        return
    import torch
    ext = next(pathlib.Path(spec.origin).parent.glob("_C*.so"), None)
    if ext is not None:
        try:
            torch.ops.load_library(str(ext))
            return                  # a matching build: torchvision registers its own ops
        except (OSError, RuntimeError):
            pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS = lib


_define_torchvision_schemas()
