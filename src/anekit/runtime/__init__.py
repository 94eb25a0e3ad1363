"""Backends that run programs: the simulator everywhere, the ANE and Core ML on Apple Silicon.

    exe = ak.compile(prog, backend="auto", target="m4")   # exe.backend says which one ran
    out = exe({"x": x})
"""
from __future__ import annotations

import importlib
import platform

from .. import targets
from ..errors import BackendUnavailableError, UsageError
from ..ir.graph import Program
from .ane.machine import chip_target
from .base import Availability, Backend, Executable

DEFAULT_TARGET = "m1"
# name -> "module:class"; imported on demand so Linux never loads the Objective-C bridge.
BACKENDS = {
    "sim": "anekit.runtime.sim:SimBackend",
    "ane": "anekit.runtime.ane:AneBackend",
    "coreml": "anekit.runtime.coreml:CoreMLBackend",
}
AUTO_ORDER = ("ane", "sim")   # "auto" takes the first that is available and runs the target


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend '{name}' (choose from auto, {', '.join(BACKENDS)})")
    mod, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def devices() -> list[dict]:
    """Every backend with whether it can run here and why (or what it found)."""
    rows = []
    for name in BACKENDS:
        try:
            a = backend_class(name).availability()
        except Exception as e:  # a backend module that fails to import is unavailable, with the reason
            a = Availability(False, f"failed to load: {e}")
        rows.append({"backend": name, "available": a.available, "reason": a.reason})
    return rows


def default_target() -> str:
    """This Mac's chip on Apple Silicon (so "auto" runs and simulates the same engine), else m1."""
    if platform.system() == "Darwin":
        return chip_target() or DEFAULT_TARGET
    return DEFAULT_TARGET


def resolve_target(target):
    """A chip record from a name, a record, or None (the default target)."""
    return targets.get(target if target is not None else default_target())


def compile(prog: Program, backend: str = "auto", target=None, *, function: str = "main", **options) -> Executable:
    """Compile `prog` for `target` on `backend` ("auto", "sim", "ane", "coreml").

    Options go to the backend: `numerics="exact"` for the simulator, `transport=` for the ANE
    backend (e.g. a FakeTransport). Raises BackendUnavailableError saying why a backend
    cannot run here.
    """
    if not isinstance(prog, Program):
        raise UsageError(f"compile() takes a Program (ak.program(...) or ak.load(...)), got {type(prog).__name__}")
    tgt = resolve_target(target)
    if backend == "auto":   # the first backend that runs here and runs this target
        for name in AUTO_ORDER:
            cls = backend_class(name)
            if cls.availability().available and cls.runs_target(tgt):
                backend = name
                break
    be = backend_class(backend)(**options)
    avail = be.usable()
    if not avail.available:
        raise BackendUnavailableError(f"backend '{backend}' is unavailable here: {avail.reason}")
    return be.compile(prog, tgt, function=function)


__all__ = ["compile", "devices", "backend_class", "resolve_target", "default_target", "Backend", "Executable",
           "Availability", "BACKENDS", "DEFAULT_TARGET"]
