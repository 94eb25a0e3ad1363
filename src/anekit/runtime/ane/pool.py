"""Engines the backend talks to: a worker pool (the default) or a host in this process.

WorkerPool keeps one worker subprocess at a time and replaces it before its compile count
reaches `compile_limit` (100 of the framework's ~119, docs/hardware.md), so a session can compile any
number of programs. The pool knows which worker generation holds each program; an executable
whose program lived in a replaced worker is compiled again in the current one on its next
run, transparently. Within a generation a key is compiled once; extra compiles of the same
key only add a reference.
"""
from __future__ import annotations

import atexit
import pickle
import threading

from ...errors import ANEExecutionError
from .programs import DEFAULT_COMPILE_BUDGET, DEFAULT_MAX_LOADED, ProgramHost
from .protocol import CompileJob
from .worker import WorkerProcess

DEFAULT_TIMEOUT_S = 600.0


class _Entry:
    __slots__ = ("generation", "refs", "folder")

    def __init__(self, generation: int):
        self.generation, self.refs, self.folder = generation, 0, None


class WorkerPool:
    def __init__(self, factory, compile_limit: int = DEFAULT_COMPILE_BUDGET, max_loaded: int = DEFAULT_MAX_LOADED,
                 timeout: float = DEFAULT_TIMEOUT_S):
        if compile_limit < 1:
            raise ANEExecutionError(f"compile_limit must be at least 1, got {compile_limit}")
        self.factory, self.compile_limit, self.max_loaded, self.timeout = factory, compile_limit, max_loaded, timeout
        self.worker: WorkerProcess | None = None
        self.generation = 0
        self.compiles_in_worker = 0
        self.retired: list[int] = []           # compile counts of replaced workers
        self.worker_pids: list[int] = []
        self.closed = False
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.RLock()

    # --- engine interface ----------------------------------------------------------------------
    def compile(self, job: CompileJob) -> dict:
        with self._lock:
            entry = self._entries.get(job.key)
            if entry is not None and entry.generation == self.generation and self._worker_ok():
                entry.refs += 1
                return {"compiled": False, "worker": self.generation, "compile_s": 0.0, "load_s": 0.0,
                        "folder": entry.folder}
            info = self._compile_here(job)
            if entry is None:
                entry = self._entries[job.key] = _Entry(self.generation)
            entry.generation, entry.folder = self.generation, info.get("folder")
            entry.refs += 1
            return info

    def run(self, job: CompileJob, inputs: list[bytes]):
        with self._lock:
            entry = self._entries.get(job.key)
            if entry is None:
                raise ANEExecutionError(f"program {job.key[:12]} was released")
            if entry.generation != self.generation or not self._worker_ok():
                info = self._compile_here(job)        # its worker was replaced: compile it again here
                entry.generation, entry.folder = self.generation, info.get("folder")
            return self.worker.call("run", job.key, inputs)

    def release(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.refs -= 1
            if entry.refs > 0:
                return
            del self._entries[key]
            if entry.generation == self.generation and self._worker_ok():
                try:
                    self.worker.call("release", key)
                except ANEExecutionError:
                    if self._worker_ok():      # a cleanup problem is the caller's to see;
                        raise                  # a worker that died took the program with it

    # --- workers -------------------------------------------------------------------------------
    def _worker_ok(self) -> bool:
        return self.worker is not None and self.worker.alive

    def _compile_here(self, job: CompileJob) -> dict:
        if self.closed:
            raise ANEExecutionError("the ANE worker pool was shut down")
        if not self._worker_ok() or self.compiles_in_worker >= self.compile_limit:
            self._replace()
        self.compiles_in_worker += 1         # failed attempts count too: the leak is per attempt
        info = self.worker.call("compile", job)
        info["worker"] = self.generation
        return info

    def _replace(self) -> None:
        """Retire the current worker (it unloads and cleans up everything) and start a new one."""
        if self.worker is not None:
            self.worker.close()
            self.retired.append(self.compiles_in_worker)
        self.worker = None
        self.generation += 1
        self.compiles_in_worker = 0
        self.worker = WorkerProcess(self.factory, self.max_loaded, self.timeout)
        self.worker_pids.append(self.worker.pid)

    def worker_calls(self) -> list:
        """The current worker's transport calls (a FakeTransport records them; others give [])."""
        with self._lock:
            return self.worker.call("calls") if self._worker_ok() else []

    def stats(self) -> dict:
        with self._lock:
            current = [self.compiles_in_worker] if self.worker is not None else []
            return {"workers_started": len(self.worker_pids), "replacements": max(len(self.worker_pids) - 1, 0),
                    "compiles_per_worker": self.retired + current, "programs": len(self._entries),
                    "generation": self.generation}

    def close(self) -> list[str]:
        with self._lock:
            self.closed = True
            problems = self.worker.close() if self.worker is not None else []
            if self.worker is not None:
                self.retired.append(self.compiles_in_worker)
            self.worker = None
            self._entries.clear()
            return problems


class InProcessEngine:
    """The same interface over a ProgramHost in this process (a transport passed directly)."""

    def __init__(self, transport, compile_budget: int | None = DEFAULT_COMPILE_BUDGET,
                 max_loaded: int = DEFAULT_MAX_LOADED):
        self.host = ProgramHost(transport, compile_budget, max_loaded)
        self._lock = threading.RLock()

    def configure(self, compile_budget, max_loaded) -> None:
        self.host.compile_budget, self.host.max_loaded = compile_budget, max_loaded

    def compile(self, job: CompileJob) -> dict:
        with self._lock:
            return {**self.host.compile(job), "worker": None}

    def run(self, job: CompileJob, inputs: list[bytes]):
        with self._lock:
            return self.host.run(job.key, inputs)

    def release(self, key: str) -> None:
        with self._lock:
            self.host.release(key)

    def stats(self) -> dict:
        return self.host.stats()

    def close(self) -> list[str]:
        with self._lock:
            return self.host.close()


_POOLS: dict[tuple, WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(factory, compile_limit: int = DEFAULT_COMPILE_BUDGET, max_loaded: int = DEFAULT_MAX_LOADED,
             timeout: float = DEFAULT_TIMEOUT_S) -> WorkerPool:
    """The process-wide pool for this transport factory, limits and timeout (one per distinct setting)."""
    try:
        ident = pickle.dumps(factory)
    except Exception:
        ident = repr(factory).encode()
    key = (ident, compile_limit, max_loaded, timeout)   # each setting gets its own worker process
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None or pool.closed:
            pool = _POOLS[key] = WorkerPool(factory, compile_limit, max_loaded, timeout)
        return pool


def shutdown() -> None:
    """Stop every worker this process started (runs at exit)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        try:
            pool.close()
        except Exception:  # at exit: never let one pool's failure stop the others
            pass


atexit.register(shutdown)
