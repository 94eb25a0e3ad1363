"""The direct-dispatch sequence of docs/hardware.md (guide ch. 5, 6), over a Transport.

    dlopen AppleNeuralEngine; classes _ANEInMemoryModelDescriptor, _ANEInMemoryModel,
        _ANERequest, _ANEIOSurfaceObject
    +[_ANEInMemoryModelDescriptor modelWithMILText:(NSData) weights:(NSDictionary) optionsPlist:nil]
        weights: {"@model_path/weights/<f>.bin": {"offset": @0, "data": NSData}}; {} when none
    +[_ANEInMemoryModel inMemoryModelWithDescriptor:]; -hexStringIdentifier names the folder
        NSTemporaryDirectory()/<id>/ that gets model.mil and weights/*.bin before compiling
    -compileWithQoS:21 options:@{} error:&e ; -loadWithQoS:21 options:@{} error:&e
    one IOSurface per tensor, wrapped by +[_ANEIOSurfaceObject objectWithIOSurface:]
    +[_ANERequest requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:nil
        perfStats:nil procedureIndex:@0], built once and reused
    -evaluateWithQoS:21 options:@{} request:req error:&e
    -unloadWithQoS:21 error:&e ; release the surfaces ; remove the temp folder

`LoadedModel` runs this for one program and undoes whatever it did, in that order, when any
step fails (and on close). Objects from `+factory` methods are autoreleased, so the ones kept
past the autorelease pool (model, surface wrappers, request) are retained and later released.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field

from ...errors import ANECompileError, ANEExecutionError, AnekitError, PathEscapeError
from . import foundation as ns
from .layout import SurfaceSpec, request_order
from .transport import LOCK_READ_ONLY, LOCK_READ_WRITE, ErrorOut, Transport, obj, ptr, u32

FRAMEWORK = "/System/Library/PrivateFrameworks/AppleNeuralEngine.framework/AppleNeuralEngine"
DESCRIPTOR, MODEL, REQUEST, SURFACE_OBJECT = (
    "_ANEInMemoryModelDescriptor", "_ANEInMemoryModel", "_ANERequest", "_ANEIOSurfaceObject")
# QoS 21, a value earlier direct-route projects use; all values 0-63 behave the same (docs/hardware.md: no measured effect).
QOS = 21
MODEL_PATH = "@model_path/"
_WEIGHT_FILE = re.compile(r"weights/[A-Za-z0-9_.-]+\.bin\Z")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,200}\Z")


@dataclass
class CompileJob:
    """Everything the framework needs for one program (picklable: it crosses to the worker)."""
    key: str                              # hash of MIL text, weights and target
    mil_text: str
    weights: dict[str, bytes]             # "weights/weight.bin" -> file bytes
    inputs: list[SurfaceSpec]             # declared order
    outputs: list[SurfaceSpec]
    input_order: str = "declared"         # layout.INPUT_ORDERS
    target: str = ""
    label: str = field(default="", compare=False)


def weight_files(weights: dict[str, bytes]) -> dict[str, bytes]:
    """The weight files, checked: relative "weights/<name>.bin" paths only (no escapes)."""
    for rel in weights:
        if not isinstance(rel, str) or not _WEIGHT_FILE.match(rel) or ".." in rel:
            raise PathEscapeError(f"weight file '{rel}' is not a plain weights/<name>.bin path")
    return weights


class LoadedModel:
    """One program compiled, loaded and bound to its surfaces; `evaluate` runs it."""

    def __init__(self, transport: Transport, job: CompileJob):
        self.t, self.job = transport, job
        self.model = None
        self.tmpdir: str | None = None
        self.loaded = False
        self.surfaces: list = []          # (IOSurfaceRef, wrapper or None), inputs then outputs
        self.request = None
        self.closed = False
        self.compile_s = self.load_s = 0.0
        self.teardown_problems: list[str] = []
        try:
            self._open()
        except BaseException:
            self.teardown_problems = self._teardown()   # the original error is the one to raise
            raise

    # --- compile and load ----------------------------------------------------------------
    def _open(self) -> None:
        t, job = self.t, self.job
        weight_files(job.weights)
        with ns.autorelease_pool(t):
            t.load_library(FRAMEWORK)
            classes = {name: ns.cls(t, name) for name in (DESCRIPTOR, MODEL, REQUEST, SURFACE_OBJECT)}
            mil = ns.ns_data(t, job.mil_text.encode("utf-8"))
            weights = ns.ns_dictionary(t, {
                MODEL_PATH + rel: ns.ns_dictionary(t, {"offset": ns.ns_number(t, 0), "data": ns.ns_data(t, blob)})
                for rel, blob in sorted(job.weights.items())})
            desc = t.send(classes[DESCRIPTOR], "modelWithMILText:weights:optionsPlist:", obj(mil), obj(weights), obj(None))
            if desc is None:
                raise ANECompileError(f"{DESCRIPTOR} modelWithMILText:weights:optionsPlist: returned nil "
                                      f"for {self._what()} (the framework rejected the MIL text or weights)")
            model = t.send(classes[MODEL], "inMemoryModelWithDescriptor:", obj(desc))
            if model is None:
                raise ANECompileError(f"{MODEL} inMemoryModelWithDescriptor: returned nil for {self._what()}")
            self.model = ns.retain(t, model)
            ident = ns.to_str(t, t.send(model, "hexStringIdentifier"))
            if not ident or not _IDENTIFIER.match(ident):
                raise ANECompileError(f"hexStringIdentifier returned {ident!r}, not a folder name")
            self._write_folder(os.path.join(ns.temporary_directory(t), ident))
            err = ErrorOut()
            t0 = time.perf_counter()
            ok = t.send(model, "compileWithQoS:options:error:", u32(QOS), obj(ns.ns_dictionary(t, {})), err, returns="B")
            self.compile_s = time.perf_counter() - t0
            if not ok:
                raise ANECompileError(f"ANE compile failed for {self._what()}: {self._error_text(err)}")
        self.load()
        self._bind()

    def _what(self) -> str:
        return self.job.label or f"program {self.job.key[:12]}"

    def _error_text(self, err: ErrorOut) -> str:
        text = ns.describe(self.t, err.value)
        return text if text else "the framework returned NO without an NSError"

    def _write_folder(self, folder: str) -> None:
        """model.mil and weights/*.bin under NSTemporaryDirectory()/<hexStringIdentifier>/."""
        # The identifier follows the content, so an existing folder holds the same files (a
        # leftover, or another process's copy of this program): rewrite it in place.
        self.tmpdir = folder
        try:
            os.makedirs(os.path.join(folder, "weights"), exist_ok=True)
            with open(os.path.join(folder, "model.mil"), "wb") as f:
                f.write(self.job.mil_text.encode("utf-8"))
            for rel, blob in self.job.weights.items():
                with open(os.path.join(folder, rel), "wb") as f:
                    f.write(blob)
        except OSError as e:
            raise ANECompileError(f"cannot write the model folder {folder}: {e}") from None

    def load(self) -> None:
        """-loadWithQoS:options:error: (also after an LRU unload: no recompile needed)."""
        if self.loaded:
            return
        t = self.t
        with ns.autorelease_pool(t):
            err = ErrorOut()
            t0 = time.perf_counter()
            ok = t.send(self.model, "loadWithQoS:options:error:", u32(QOS), obj(ns.ns_dictionary(t, {})), err, returns="B")
            self.load_s = time.perf_counter() - t0
            if not ok:
                raise ANECompileError(f"ANE load failed for {self._what()}: {self._error_text(err)}")
        self.loaded = True

    def unload(self) -> None:
        """-unloadWithQoS:error:; the model stays compiled and can be loaded again."""
        if not self.loaded:
            return
        self.loaded = False
        with ns.autorelease_pool(self.t):
            err = ErrorOut()
            ok = self.t.send(self.model, "unloadWithQoS:error:", u32(QOS), err, returns="B")
            if not ok:
                raise ANEExecutionError(f"ANE unload failed for {self._what()}: {self._error_text(err)}")

    def _bind(self) -> None:
        """One surface per tensor and the request that names them, built once and reused."""
        t, job = self.t, self.job
        with ns.autorelease_pool(t):
            wrappers = []
            for spec in job.inputs + job.outputs:
                surface = t.surface_create(spec.properties())
                if surface is None:
                    raise ANEExecutionError(f"IOSurfaceCreate failed for '{spec.name}' ({spec.alloc} bytes)")
                self.surfaces.append([surface, None])
                if t.surface_alloc_size(surface) < spec.alloc:
                    raise ANEExecutionError(f"IOSurface for '{spec.name}' is smaller than the {spec.alloc} bytes asked for")
                wrapper = t.send(ns.cls(t, SURFACE_OBJECT), "objectWithIOSurface:", ptr(surface))
                if wrapper is None:
                    raise ANEExecutionError(f"{SURFACE_OBJECT} objectWithIOSurface: returned nil for '{spec.name}'")
                self.surfaces[-1][1] = ns.retain(t, wrapper)
                wrappers.append(wrapper)
            n_in = len(job.inputs)
            order = request_order(job.inputs, job.input_order)
            ins = ns.ns_array(t, [wrappers[i] for i in order])
            in_idx = ns.ns_array(t, [ns.ns_number(t, k) for k in range(n_in)])
            outs = ns.ns_array(t, wrappers[n_in:])
            out_idx = ns.ns_array(t, [ns.ns_number(t, k) for k in range(len(job.outputs))])
            request = t.send(ns.cls(t, REQUEST),
                             "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:",
                             obj(ins), obj(in_idx), obj(outs), obj(out_idx), obj(None), obj(None), obj(ns.ns_number(t, 0)))
            if request is None:
                raise ANEExecutionError(f"{REQUEST} requestWithInputs:... returned nil for {self._what()}")
            self.request = ns.retain(t, request)

    # --- run ---------------------------------------------------------------------------------
    def evaluate(self, inputs: list[bytes]) -> tuple[list[bytes], float]:
        """Write the inputs (declared order, packed), evaluate, read the outputs back.
        Returns the output bytes and the seconds the evaluate call took."""
        if self.closed:
            raise ANEExecutionError(f"{self._what()} was closed")
        job, t = self.job, self.t
        if len(inputs) != len(job.inputs):
            raise ANEExecutionError(f"{self._what()} takes {len(job.inputs)} inputs, got {len(inputs)}")
        self.load()
        for (surface, _), spec, data in zip(self.surfaces, job.inputs, inputs):
            if len(data) != spec.nbytes:
                raise ANEExecutionError(f"input '{spec.name}': {len(data)} bytes, the surface takes {spec.nbytes}")
            self._locked(surface, LOCK_READ_WRITE, spec, lambda addr: t.memory_write(addr, data))
        with ns.autorelease_pool(t):
            err = ErrorOut()
            t0 = time.perf_counter()
            ok = t.send(self.model, "evaluateWithQoS:options:request:error:", u32(QOS),
                        obj(ns.ns_dictionary(t, {})), obj(self.request), err, returns="B")
            elapsed = time.perf_counter() - t0
            if not ok:
                raise ANEExecutionError(f"ANE evaluate failed for {self._what()}: {self._error_text(err)}")
        outs = []
        for (surface, _), spec in zip(self.surfaces[len(job.inputs):], job.outputs):
            outs.append(self._locked(surface, LOCK_READ_ONLY, spec, lambda addr: t.memory_read(addr, spec.nbytes)))
        return outs, elapsed

    def _locked(self, surface, options: int, spec: SurfaceSpec, body):
        t = self.t
        rc = t.surface_lock(surface, options)
        if rc != 0:
            raise ANEExecutionError(f"IOSurfaceLock failed for '{spec.name}' (kern_return {rc})")
        try:
            addr = t.surface_base_address(surface)
            if not addr:
                raise ANEExecutionError(f"IOSurfaceGetBaseAddress returned NULL for '{spec.name}'")
            return body(addr)
        finally:
            t.surface_unlock(surface, options)

    # --- teardown ----------------------------------------------------------------------------
    def close(self) -> None:
        """Unload, release the request and surfaces, remove the temp folder, release the model."""
        if self.closed:
            return
        problems = self._teardown()
        if problems:
            raise ANEExecutionError(f"cleanup of {self._what()} was incomplete: " + "; ".join(problems))

    def _teardown(self) -> list[str]:
        self.closed = True
        t, problems = self.t, []

        def attempt(what, fn):
            try:
                fn()
            except (AnekitError, OSError) as e:     # keep going: every resource gets its chance
                problems.append(f"{what}: {e}")

        with ns.autorelease_pool(t):
            if self.loaded:
                attempt("unload", self.unload)
            if self.request is not None:
                attempt("release request", lambda: ns.release(t, self.request))
                self.request = None
            for surface, wrapper in self.surfaces:
                if wrapper is not None:
                    attempt("release surface object", lambda w=wrapper: ns.release(t, w))
                attempt("CFRelease surface", lambda s=surface: t.cf_release(s))
            self.surfaces = []
            if self.tmpdir is not None:
                attempt("remove temp folder", lambda: shutil.rmtree(self.tmpdir))
                self.tmpdir = None
            if self.model is not None:
                attempt("release model", lambda: ns.release(t, self.model))
                self.model = None
        return problems


__all__ = ["FRAMEWORK", "QOS", "CompileJob", "LoadedModel", "weight_files"]
