"""The Core ML backend: the program written as an .mlpackage (anekit.io.save, through
coremltools) and predicted with compute units CPU_AND_NE, so Core ML may place it on the
Neural Engine. Predicting needs Core ML itself, i.e. macOS; coremltools on Linux builds and
converts but cannot predict. Like the ANE backend it has not yet run on a Mac (docs/hardware.md).
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile

import numpy as np

from ..coreml import _deps
from ..errors import ANEExecutionError, DependencyError, ShapeError, UsageError
from ..io import save
from ..ir import dtypes as _dt
from ..ir.graph import Program
from .ane.machine import is_apple_silicon, os_version, under_rosetta
from .base import Availability, Backend, Executable, refuse_states

_NEEDS = "the Core ML backend needs Apple Silicon macOS (Core ML predicts only on macOS)"


def _coremltools():
    return _deps.coremltools()


class CoreMLExecutable(Executable):
    backend = "coreml"

    def __init__(self, prog, target, function, model, workdir: str):
        super().__init__(prog, target, function)
        self.model, self.workdir = model, workdir
        self.package = os.path.join(workdir, "model.mlpackage")

    def _run(self, feeds):
        if self.model is None:
            raise ANEExecutionError("this Core ML executable was closed")
        try:
            raw = self.model.predict({name: feeds[name] for name in self.input_names})
        except Exception as e:   # Core ML raises its own exception types
            raise ANEExecutionError(f"Core ML prediction failed: {e}") from None
        out = {}
        for name, t in zip(self.output_names, self.function.outputs):
            if name not in raw:
                raise ANEExecutionError(f"Core ML returned no output '{name}' (got {sorted(raw)})")
            a = np.asarray(raw[name])
            if a.size != t.size:
                raise ShapeError(f"Core ML output '{name}' has shape {list(a.shape)}, expected {list(t.shape)}")
            out[name] = a.reshape(t.shape).astype(_dt.to_numpy(t.dtype))
        return out

    def close(self) -> None:
        self.model = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class CoreMLBackend(Backend):
    name = "coreml"

    @classmethod
    def availability(cls) -> Availability:
        if sys.platform != "darwin":
            return Availability(False, f"{_NEEDS}; this is {platform.system()} {platform.machine()}")
        if not is_apple_silicon():
            return Availability(False, f"{_NEEDS}; this Mac has an Intel CPU (no Neural Engine)")
        if under_rosetta() or platform.machine() != "arm64":
            return Availability(False, f"{_NEEDS}; this Python runs as x86_64 under Rosetta")
        try:
            ct = _coremltools()
        except DependencyError as e:
            return Availability(False, str(e))
        return Availability(True, f"Core ML via coremltools {getattr(ct, '__version__', '?')}, {os_version()}")

    def compile(self, prog: Program, target, function: str = "main", **options) -> CoreMLExecutable:
        if options:
            raise UsageError(f"backend 'coreml' compile() takes no options {sorted(options)}")
        one = prog.single(function)
        refuse_states(one.main, "coreml")
        ct = _coremltools()
        workdir = tempfile.mkdtemp(prefix="anekit-coreml-")
        try:
            path = save(one, os.path.join(workdir, "model.mlpackage"))
            try:
                model = ct.models.MLModel(path, compute_units=ct.ComputeUnit.CPU_AND_NE)
            except Exception as e:   # coremltools / Core ML compile errors
                raise ANEExecutionError(f"Core ML could not load the package: {e}") from None
            return CoreMLExecutable(prog, target, function, model, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
