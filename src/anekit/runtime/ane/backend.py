"""AneBackend / AneExecutable: programs run on the Neural Engine through the private framework.

    exe = ak.compile(prog, backend="ane", target="m4")        # Apple Silicon macOS: worker subprocess
    exe = ak.compile(prog, backend="ane", transport=FakeTransport(), target="m4")   # anywhere, in-process
    exe = ak.compile(prog, backend="ane", transport_factory=FakeTransport, target="m4")  # anywhere, worker

The program is lowered with anekit.mil.emit in the dialect its chip needs (ios16 for the h13
and h14 generations, M1/M2/A14 and older; ios18 after: docs/mil.md), its I/O mapped to
[1, C, 1, S] surfaces (anekit.runtime.ane.layout) and handed to an engine: a worker pool that
replaces its subprocess before the compile limit, or a host in this process for a transport
passed directly. The key that makes a program "the same" is the hash of the MIL text, the
weights, the target and the I/O rules.
"""
from __future__ import annotations

import hashlib
import weakref

from ...errors import ANEExecutionError, TargetError, UsageError
from ...ir.graph import Program
from ..base import Availability, Backend, Executable, refuse_states
from ... import mil
from . import layout, preflight
from .machine import ane_availability, check_host_target
from .objc_transport import ObjCTransport
from .pool import DEFAULT_TIMEOUT_S, InProcessEngine, pool_for
from .programs import DEFAULT_COMPILE_BUDGET, DEFAULT_MAX_LOADED
from .protocol import CompileJob
from .transport import Transport


def program_key(mil_text: str, weights: dict[str, bytes], target_name: str, rules: layout.IORules) -> str:
    h = hashlib.sha256()
    for part in (target_name, rules.compiler, str(rules.alignment), rules.input_order, mil_text):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    for rel in sorted(weights):
        h.update(rel.encode("utf-8") + b"\0")
        h.update(hashlib.sha256(weights[rel]).digest())
    return h.hexdigest()


class AneExecutable(Executable):
    backend = "ane"

    def __init__(self, prog, target, function, engine, job: CompileJob, info: dict):
        super().__init__(prog, target, function)
        self._engine, self.job = engine, job
        self.compile_info = info            # {"compiled": bool, "worker": generation, "compile_s", "load_s"}
        self.last_evaluate_s: float | None = None
        self._release = weakref.finalize(self, engine.release, job.key)

    def _run(self, feeds):
        if not self._release.alive:
            raise ANEExecutionError("this executable was closed")
        data = [layout.pack(spec, feeds[spec.name]) for spec in self.job.inputs]
        outs, self.last_evaluate_s = self._engine.run(self.job, data)
        return {spec.name: layout.unpack(spec, raw) for spec, raw in zip(self.job.outputs, outs)}

    def close(self) -> None:
        self._release()


class AneBackend(Backend):
    """Options: `transport` (a Transport instance: runs in this process), `transport_factory`
    (a picklable callable returning one: runs in a worker), `worker` (False: the real framework
    in this process), `compile_budget` (compiles per process, default 100), `max_loaded`
    (loaded programs per process, default 96), `input_order` ("declared" or "ascending_size"),
    `timeout` (seconds a worker may take per request)."""

    name = "ane"

    def __init__(self, transport: Transport | None = None, transport_factory=None, worker: bool | None = None,
                 compile_budget: int | None = DEFAULT_COMPILE_BUDGET, max_loaded: int = DEFAULT_MAX_LOADED,
                 input_order: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, **unknown):
        if unknown:
            raise UsageError(
                f"backend 'ane' takes no options {sorted(unknown)} (it takes transport, transport_factory, worker, "
                f"compile_budget, max_loaded, input_order, timeout)")
        if transport is not None and not isinstance(transport, Transport):
            raise UsageError(f"transport must be a Transport (e.g. FakeTransport()), "
                                          f"got {type(transport).__name__}")
        if transport is not None and (transport_factory is not None or worker):
            raise UsageError("a transport instance runs in this process; pass transport_factory "
                                          "(a picklable callable) to run in a worker")
        if transport_factory is not None and not callable(transport_factory):
            raise UsageError("transport_factory must be callable (e.g. the FakeTransport class)")
        if transport_factory is not None and worker is False:
            raise UsageError("transport_factory is for the worker; pass transport= to run in this process")
        for name, v in (("compile_budget", compile_budget), ("max_loaded", max_loaded)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise UsageError(f"{name} must be an integer, got {v!r}")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if compile_budget is not None and compile_budget < 1:
            raise UsageError(f"compile_budget must be at least 1, got {compile_budget}")
        if max_loaded is None or max_loaded < 1:
            raise UsageError(f"max_loaded must be at least 1, got {max_loaded}")
        layout.io_rules("h16", input_order)     # validates the name early
        self.transport, self.transport_factory, self.worker = transport, transport_factory, worker
        self.compile_budget, self.max_loaded, self.input_order, self.timeout = (
            compile_budget, max_loaded, input_order, timeout)

    @classmethod
    def availability(cls) -> Availability:
        return ane_availability()

    @classmethod
    def runs_target(cls, target) -> bool:
        try:
            check_host_target(target.name)
        except TargetError:
            return False
        return True

    def usable(self) -> Availability:
        if self.transport is not None:
            return Availability(True, f"in this process through {self.transport.describe()}")
        if self.transport_factory is not None:
            return Availability(True, f"in a worker through {getattr(self.transport_factory, '__name__', 'a factory')}")
        return self.availability()

    def engine(self):
        """The engine this backend's options select (shared process-wide, so budgets are too)."""
        if self.transport is not None:
            eng = self.transport.__dict__.get("_anekit_engine")
            if eng is None:
                eng = self.transport.__dict__["_anekit_engine"] = InProcessEngine(
                    self.transport, self.compile_budget, self.max_loaded)
            eng.configure(self.compile_budget, self.max_loaded)
            return eng
        if self.worker is False:
            return _default_in_process(self.compile_budget, self.max_loaded)
        budget = self.compile_budget if self.compile_budget is not None else DEFAULT_COMPILE_BUDGET
        return pool_for(self.transport_factory or ObjCTransport, budget, self.max_loaded, self.timeout)

    def prepare(self, prog: Program, target, function: str = "main") -> CompileJob:
        """Lower `prog` to the job the framework compiles (no framework call)."""
        one = prog.single(function)
        fn = one.main
        refuse_states(fn, "ane")
        rules = layout.io_rules(target, self.input_order)
        inputs, outputs = preflight.io_specs(fn, rules)
        text, files = mil.emit(one, dialect=target.dialect)
        tname = getattr(target, "name", str(target))
        return CompileJob(program_key(text, files, tname, rules), text, dict(files), inputs, outputs,
                          rules.input_order, tname, label=f"'{function}' for {tname}")

    def compile(self, prog: Program, target, function: str = "main", **options) -> AneExecutable:
        if options:
            raise UsageError(f"backend 'ane' compile() takes no options {sorted(options)}")
        job = self.prepare(prog, target, function)
        engine = self.engine()
        info = engine.compile(job)
        return AneExecutable(prog, target, function, engine, job, info)


_DEFAULT_ENGINE: list = []


def _default_in_process(compile_budget, max_loaded) -> InProcessEngine:
    """One ObjCTransport host per process for worker=False."""
    if not _DEFAULT_ENGINE:
        _DEFAULT_ENGINE.append(InProcessEngine(ObjCTransport(), compile_budget, max_loaded))
    _DEFAULT_ENGINE[0].configure(compile_budget, max_loaded)
    return _DEFAULT_ENGINE[0]
