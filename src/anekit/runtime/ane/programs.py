"""The programs one process holds on the ANE: compiled once per key, loaded ones capped (LRU).

A ProgramHost lives wherever the framework is called: in the worker subprocess (the default)
or in the caller's process (a transport passed directly). It counts compiles, refuses past
its budget (the framework itself fails silently after ~119, docs/hardware.md), compiles a program
(hash of MIL text, weights and target) only once while it is held, and keeps at most
`max_loaded` programs loaded (~128 is the framework's cap, guide ch. 14), unloading the least
recently used; an unloaded program is loaded again on its next run without recompiling
(unload and reload are reported to work on M5).
"""
from __future__ import annotations

from collections import OrderedDict

from ...errors import ANECompileError, ANEExecutionError
from .protocol import CompileJob, LoadedModel
from .transport import Transport

DEFAULT_COMPILE_BUDGET = 100     # of the ~119 the framework allows per process (docs/hardware.md)
DEFAULT_MAX_LOADED = 96          # of the ~128 loaded programs per process (guide ch. 14)


class _Held:
    __slots__ = ("model", "refs")

    def __init__(self, model: LoadedModel):
        self.model, self.refs = model, 1


class ProgramHost:
    def __init__(self, transport: Transport, compile_budget: int | None = DEFAULT_COMPILE_BUDGET,
                 max_loaded: int = DEFAULT_MAX_LOADED):
        if max_loaded < 1:
            raise ANECompileError(f"max_loaded must be at least 1, got {max_loaded}")
        self.t = transport
        self.compile_budget, self.max_loaded = compile_budget, max_loaded
        self.compiles = 0
        self.unloads = 0
        self._held: dict[str, _Held] = {}
        self._loaded: OrderedDict[str, None] = OrderedDict()   # least recently used first

    def compile(self, job: CompileJob) -> dict:
        """Compile and load `job` unless this host already holds its key; returns
        {"compiled": bool, "compiles": total so far, "compile_s", "load_s", "folder": the
        model's temp folder}."""
        held = self._held.get(job.key)
        if held is not None:
            held.refs += 1
            return {"compiled": False, "compiles": self.compiles, "compile_s": 0.0, "load_s": 0.0,
                    "folder": held.model.tmpdir}
        if self.compile_budget is not None and self.compiles >= self.compile_budget:
            raise ANECompileError(
                f"this process has compiled {self.compiles} ANE programs, its budget of {self.compile_budget} "
                f"(the framework fails silently after ~119 compiles per process); compile in a worker "
                f"(the default without transport=) or raise compile_budget")
        self.t.check_target(job.target)
        self._make_room()
        self.compiles += 1            # counted on failure too: the framework's leak is per attempt
        model = LoadedModel(self.t, job)
        self._held[job.key] = _Held(model)
        self._loaded[job.key] = None
        return {"compiled": True, "compiles": self.compiles, "compile_s": model.compile_s, "load_s": model.load_s,
                "folder": model.tmpdir}

    def run(self, key: str, inputs: list[bytes]) -> tuple[list[bytes], float]:
        held = self._held.get(key)
        if held is None:
            raise ANEExecutionError(f"program {key[:12]} is not held by this process (released or never compiled)")
        if key in self._loaded:
            self._loaded.move_to_end(key)
        else:
            self._make_room()
            held.model.load()
            self._loaded[key] = None
        return held.model.evaluate(inputs)

    def release(self, key: str) -> None:
        """Drop one reference; the last one unloads and tears the program down."""
        held = self._held.get(key)
        if held is None:
            return
        held.refs -= 1
        if held.refs <= 0:
            del self._held[key]
            self._loaded.pop(key, None)
            held.model.close()

    def _make_room(self) -> None:
        while len(self._loaded) >= self.max_loaded:
            victim, _ = self._loaded.popitem(last=False)
            self._held[victim].model.unload()
            self.unloads += 1

    def close(self) -> list[str]:
        """Tear down every held program; returns the problems met (cleanup keeps going)."""
        problems = []
        for key in list(self._held):
            held = self._held.pop(key)
            self._loaded.pop(key, None)
            try:
                held.model.close()
            except ANEExecutionError as e:
                problems.append(str(e))
        return problems

    def stats(self) -> dict:
        return {"compiles": self.compiles, "held": len(self._held), "loaded": len(self._loaded),
                "unloads": self.unloads}
